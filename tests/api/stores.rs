//! One session suite, run against every store (memory, SQLite, Redis, PostgreSQL) through
//! the real HTTP interface; plus what only some stores promise: surviving a restart (SQLite)
//! and being shared by several instances (Redis, PostgreSQL).
//!
//! Redis and PostgreSQL come from `TEST_REDIS_URL` and `TEST_POSTGRES_URL` (by default
//! 127.0.0.1:6379 and 127.0.0.1:5432, database `test`); a test whose server does not answer
//! says that it is skipped and why, and fails instead under `LTE_REQUIRE_ALL_TESTS=1`, as
//! `.ci/run` sets it (it also starts both servers when they are down).

use std::sync::Arc;
use std::time::{Duration, Instant};

use linkedin_token_exchange::server::Server;
use linkedin_token_exchange::server::config::StoreUrl;
use serde_json::json;
use tempfile::TempDir;

use crate::support::servers::{FreshPostgres, skip_or_fail};
use crate::support::stores::{
    Store, app_on, config_on, memory, per_store, postgres, redis, sqlite, store_or_skip,
};
use crate::support::{
    Behaviour, FakeUpstream, FetchJson, SECRET_KEY, TestApp, json_of, session_id_in,
    session_set_cookie, signed_cookie, test_config, trusting_client,
};

fn max_age(response: &reqwest::Response) -> i64 {
    session_set_cookie(response)
        .split("; ")
        .find_map(|p| p.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .unwrap()
}

async fn exchange_session_profile_logout(test: &str, store: Store) {
    let Some(app) = app_on(test, store).await else {
        return;
    };
    app.sign_in("store-member").await;
    let response = app.post("/token-exchange").await;
    // Credentials live 60 days, the idle limit is a day: the session lives a day.
    let age = max_age(&response);
    assert!((86_000..=86_400).contains(&age), "Max-Age {age}");
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("connected")),
        "{body}"
    );

    assert_eq!(app.session().await["member_id"], "store-member");
    let profile: serde_json::Value = app.get("/me").await.json().await.unwrap();
    assert_eq!(profile["id"], "store-member");
    assert_eq!(app.exchange().await.1["status"], "already_connected");

    assert_eq!(app.post("/logout").await.status(), 200);
    assert_eq!(app.session().await, json!({"connected": false}));
    assert_eq!(app.get("/me").await.status(), 401);
}

async fn session_id_cycles_for_a_new_member(test: &str, store: Store) {
    let Some(app) = app_on(test, store).await else {
        return;
    };
    app.sign_in("cycle-one").await;
    app.exchange().await;
    let first = app.session_id().unwrap();
    app.sign_in("cycle-two").await;
    assert_eq!(app.exchange().await.1["status"], "connected");
    let second = app.session_id().unwrap();
    assert_ne!(first, second);
    assert_eq!(app.session().await["member_id"], "cycle-two");

    assert_eq!(
        app.session_with_id(&first).await,
        json!({"connected": false}),
        "the old id is gone from the store"
    );
}

async fn sessions_end_when_their_credentials_expire(test: &str, store: Store) {
    let upstream = FakeUpstream::start(Behaviour::Grant {
        delay: Duration::ZERO,
        // Whole seconds, rounded down at the exchange: 4 leaves room for a loaded machine
        // between the exchange and the first check.
        expires_in: 4,
    })
    .await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let Some(mut config) = config_on(test, store, &dir) else {
        return;
    };
    upstream.configure(&mut config);
    let app = TestApp::start(config, dir).await;
    app.set_jsapi_cookie(
        &app.jar,
        &signed_cookie("short-lived", "expiring-member", SECRET_KEY),
    );
    let response = app.post("/token-exchange").await;
    assert!(
        max_age(&response) <= 4,
        "the session ends with its credentials"
    );
    assert_eq!(response.status(), 200);
    assert_eq!(app.session().await["connected"], true);
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    assert_eq!(app.session().await, json!({"connected": false}));
    assert_eq!(app.get("/me").await.status(), 401);
}

per_store!([memory, sqlite, redis, postgres], {
    exchange_then_session_then_profile_then_logout => exchange_session_profile_logout,
    a_new_member_cycles_the_session_id => session_id_cycles_for_a_new_member,
    a_session_ends_when_its_credentials_expire => sessions_end_when_their_credentials_expire,
});

#[tokio::test]
async fn sqlite_sessions_survive_a_restart() {
    let upstream = FakeUpstream::start(crate::support::GRANT).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.sessions.store = sqlite(&dir).unwrap();
    upstream.configure(&mut config);

    let first = TestApp::start(config.clone(), dir.clone()).await;
    let jar = first.jar.clone();
    first.set_jsapi_cookie(
        &jar,
        &signed_cookie("restart-token", "restart-member", SECRET_KEY),
    );
    assert_eq!(first.exchange().await.0, 200);
    first.stop().await;

    let second = TestApp::start(config, dir.clone()).await;
    // The old browser (same cookie jar: cookies ignore ports) talks to the new process.
    let browser = trusting_client(&dir, jar.clone());
    let session: serde_json::Value = browser.get(second.url("/session")).fetch_json().await;
    assert_eq!(session["member_id"], "restart-member", "{session}");
    let profile = browser.get(second.url("/me")).send().await.unwrap();
    assert_eq!(profile.status(), 200);
}

/// Two instances in real mode on different ports, one store, one shared LinkedIn (a third
/// server in sandbox mode): what one does, the other sees.
async fn two_instances_share(store: StoreUrl) {
    let linkedin = crate::support::spawn_app().await;
    // Both instances serve the same certificate, as they would behind one load balancer.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let start = |store: StoreUrl| {
        let linkedin_cert = linkedin.dir.path().join("cert.pem");
        let access = linkedin.url("/sandbox/uas/oauth/accessToken");
        let api = linkedin.url("/sandbox");
        let dir = dir.clone();
        async move {
            let mut config = test_config(&dir);
            config.sessions.store = store;
            config.linkedin.sandbox = Some(false);
            config.linkedin.access_token_url = Some(access.parse().unwrap());
            config.linkedin.api_url = Some(api.parse().unwrap());
            config.limits.upstream_ca_cert = Some(linkedin_cert);
            TestApp::start(config, dir).await
        }
    };
    let a = start(store.clone()).await;
    let b = start(store).await;
    assert_ne!(a.addr.port(), b.addr.port());

    // One browser; its cookies go to both instances (cookies ignore ports).
    let cookie = linkedin.authorize("shared-member").await;
    a.set_jsapi_cookie(&a.jar, &cookie);
    let on = |app: &TestApp, path: &str| a.client.get(app.url(path));
    let post_on =
        |app: &TestApp, path: &str| a.client.post(app.url(path)).header("origin", &app.base);

    let (status, body) = json_of(post_on(&a, "/token-exchange").send().await.unwrap()).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("connected")),
        "{body}"
    );
    assert!(session_id_in(&a.jar, &b.base).is_some());

    let on_b: serde_json::Value = on(&b, "/session").fetch_json().await;
    assert_eq!(on_b["member_id"], "shared-member", "B sees A's exchange");
    let profile: serde_json::Value = on(&b, "/me").fetch_json().await;
    assert_eq!(profile["id"], "shared-member");

    assert_eq!(post_on(&b, "/logout").send().await.unwrap().status(), 200);
    let on_a: serde_json::Value = on(&a, "/session").fetch_json().await;
    assert_eq!(on_a, json!({"connected": false}), "A sees B's logout");
}

#[tokio::test]
async fn two_instances_share_sessions_through_redis() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(store) = store_or_skip("two_instances_share_sessions_through_redis", redis, &dir) {
        two_instances_share(store).await;
    }
}

#[tokio::test]
async fn two_instances_share_sessions_through_postgres() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(store) = store_or_skip(
        "two_instances_share_sessions_through_postgres",
        postgres,
        &dir,
    ) {
        two_instances_share(store).await;
    }
}

#[tokio::test]
async fn an_unreachable_store_fails_the_start_fast_naming_session_store() {
    for url in [
        "redis://127.0.0.1:1",
        "postgres://postgres@127.0.0.1:1/test",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir);
        config.sessions.store = url.parse().unwrap();
        let started = Instant::now();
        let err = Server::build(&config).await.err().expect("the start fails");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{url}: took {:?}",
            started.elapsed()
        );
        assert_eq!(err.variable, "SESSION_STORE");
        assert!(
            err.to_string().starts_with("SESSION_STORE: cannot use"),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'));
    }
}

#[tokio::test]
async fn the_sqlite_file_and_its_new_folder_are_for_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    // The default store, `sqlite://data/sessions.db`: the one folder the service creates.
    let served = crate::support::Served::start(
        "localhost",
        &[("SESSION_STORE", "sqlite://data/sessions.db")],
        "/healthz",
    )
    .await;
    let created = served.dir.path().join("data/sessions.db");
    assert_eq!(mode(&created), 0o600, "the file");
    assert_eq!(
        mode(created.parent().unwrap()),
        0o700,
        "the folder it created"
    );
    let wal = created.with_extension("db-wal");
    assert!(!wal.exists() || mode(&wal) == 0o600, "the write-ahead log");
    drop(served);

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    let db = dir.path().join("sessions.db");
    config.sessions.store = StoreUrl::Sqlite(db.clone());
    let app = TestApp::start(config.clone(), dir.clone()).await;
    app.sign_in("private-member").await;
    assert_eq!(app.exchange().await.0, 200);
    assert_eq!(mode(&db), 0o600, "the file");
    app.stop().await;

    // A file left readable by others is narrowed at the next start.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let app = TestApp::start(config, dir).await;
    assert_eq!(mode(&db), 0o600);
    app.stop().await;
}

/// tower-sessions' migration takes no lock: instances that start at once on a database no one
/// has migrated yet raced on PostgreSQL's catalog (`duplicate key value violates unique
/// constraint "pg_class_relname_nsp_index"`), or the loser of `create schema if not exists`
/// skipped its table and the member index found no `tower_sessions.session`. A fleet's first
/// deployment starts exactly so. Every instance starts, and they share sessions.
#[tokio::test]
async fn instances_starting_at_once_on_a_fresh_postgresql_database_all_start() {
    let fresh = match FreshPostgres::create() {
        Ok(fresh) => fresh,
        Err(why) => {
            return skip_or_fail(
                "instances_starting_at_once_on_a_fresh_postgresql_database_all_start",
                &why,
            );
        }
    };
    let dirs: Vec<TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut starts = tokio::task::JoinSet::new();
    for dir in &dirs {
        let mut config = test_config(dir);
        config.sessions.store = fresh.url.parse().unwrap();
        starts.spawn(async move { Server::build(&config).await.map(drop) });
    }
    let failed: Vec<String> = starts
        .join_all()
        .await
        .into_iter()
        .filter_map(|started| started.err().map(|e| e.to_string()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 4 did not start: {failed:?}",
        failed.len()
    );
}
