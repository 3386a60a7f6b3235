//! The session stores a suite runs against (memory, SQLite, Redis, PostgreSQL), one function
//! each, so that a test module writes its suite once and a macro instantiates it per store.
//!
//! Redis and PostgreSQL are the shared test servers of [`super::servers`] (`TEST_REDIS_URL`,
//! `TEST_POSTGRES_URL`); where one does not answer, the test says that it is skipped and why,
//! or fails under `LTE_REQUIRE_ALL_TESTS=1`.

use std::sync::Arc;

use linkedin_token_exchange::server::config::{Config, StoreUrl};
use tempfile::TempDir;

use super::servers::{postgres_for_tests, redis_url_for_tests, skip_or_fail};
use super::{TestApp, test_config};

/// A store for a test in `dir`, or why there is none here.
pub type Store = fn(&TempDir) -> Result<StoreUrl, String>;

/// The memory store (one process's).
pub fn memory(_: &TempDir) -> Result<StoreUrl, String> {
    Ok(StoreUrl::Memory)
}

/// A SQLite file in `dir`.
pub fn sqlite(dir: &TempDir) -> Result<StoreUrl, String> {
    // Only the default `data/` (relative) is created by the service; a named one must exist.
    std::fs::create_dir_all(dir.path().join("data")).map_err(|e| e.to_string())?;
    Ok(StoreUrl::Sqlite(dir.path().join("data/sessions.db")))
}

/// The shared test Redis.
pub fn redis(_: &TempDir) -> Result<StoreUrl, String> {
    redis_url_for_tests().map(|url| url.parse().unwrap())
}

/// The shared test PostgreSQL.
pub fn postgres(_: &TempDir) -> Result<StoreUrl, String> {
    postgres_for_tests().map(|url| url.parse().unwrap())
}

/// A member name no other test run uses (the Redis and PostgreSQL stores are shared).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// `store` in `dir`, or `None` after saying that `test` is skipped.
pub fn store_or_skip(test: &str, store: Store, dir: &TempDir) -> Option<StoreUrl> {
    store(dir)
        .map_err(|reason| skip_or_fail(test, &reason))
        .ok()
}

/// The test configuration on `store`, or `None` after saying that `test` is skipped.
pub fn config_on(test: &str, store: Store, dir: &TempDir) -> Option<Config> {
    let mut config = test_config(dir);
    config.sessions.store = store_or_skip(test, store, dir)?;
    Some(config)
}

/// The sandbox app on `store`, or `None` after saying that `test` is skipped.
pub async fn app_on(test: &str, store: Store) -> Option<TestApp> {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = config_on(test, store, &dir)?;
    Some(TestApp::start(config, dir).await)
}

/// The sandbox app on a store already chosen (several instances sharing one).
pub async fn app_with_store(store: StoreUrl) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.sessions.store = store;
    TestApp::start(config, dir).await
}

/// A suite once per store: `per_store!([memory, sqlite], { a_test => run, ... })` writes, for
/// each store, a module named after it with one `#[tokio::test]` per pair, which calls
/// `super::run(name, super::store)`, `name` being the test's own path (for skip messages).
macro_rules! per_store {
    ([$($store:ident),+ $(,)?], $tests:tt) => {
        $($crate::support::stores::per_store!(@store $store, $tests);)+
    };
    (@store $store:ident, { $($test:ident => $run:ident),+ $(,)? }) => {
        mod $store {
            $(
                #[tokio::test]
                async fn $test() {
                    let test = concat!(module_path!(), "::", stringify!($test));
                    super::$run(test, super::$store).await;
                }
            )+
        }
    };
}
pub(crate) use per_store;
