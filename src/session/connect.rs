//! Connecting the store a [`StoreUrl`] names (memory, SQLite, Redis (plain, Sentinel or
//! Cluster, through `redis_fleet`), PostgreSQL): its
//! driver's limits, its migrations and its sweeper, or a [`ConnectError`] that says which
//! step failed, within seconds. Each store but memory is a feature (`sqlite`, `postgres`,
//! `redis`): a URL naming one this build lacks is a [`ConnectError`] naming the feature.

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use std::fmt;
#[cfg(feature = "postgres")]
use std::str::FromStr;

#[cfg(feature = "redis")]
use tower_sessions_redis_store::RedisStore;
#[cfg(feature = "redis")]
use tower_sessions_redis_store::fred::prelude::Pool as RedisPool;
#[cfg(feature = "postgres")]
use tower_sessions_sqlx_store::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
#[cfg(feature = "sqlite")]
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
#[cfg(feature = "postgres")]
use tower_sessions_sqlx_store::{PostgresStore, sqlx};

use super::MemoryStore;
#[cfg(feature = "sqlite")]
use super::SqliteSessions;
#[cfg(feature = "postgres")]
use super::index::MIGRATION_LOCK;
use super::index::MemberIndex;
#[cfg(feature = "postgres")]
use super::postgres::PostgresSessions;
#[cfg(feature = "sqlite")]
use super::private;
#[cfg(feature = "redis")]
use super::redis_fleet;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use super::sweep::Sweeper;
use crate::config::StoreUrl;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use crate::limits::STORE_TIMEOUT;

/// Why the store could not be used at start.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {store}: {what}: {detail}")]
pub struct ConnectError {
    /// The store, shown without credentials.
    pub store: String,
    /// The step that failed.
    pub what: &'static str,
    /// What went wrong.
    pub detail: String,
}

#[derive(Clone, Debug)]
pub(super) enum Store {
    /// `memory`.
    Memory(MemoryStore),
    /// `sqlite://…`.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteSessions),
    /// `redis://…`, `redis-sentinel://…` or `redis-cluster://…`: one kind of client.
    #[cfg(feature = "redis")]
    Redis(RedisStore<RedisPool>),
    /// `postgres://…`.
    #[cfg(feature = "postgres")]
    Postgres(PostgresSessions),
}

impl Store {
    /// The store's kind, as trace spans name it.
    pub(super) fn system(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => "sqlite",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgresql",
        }
    }

    /// Connects to the store `url` names, runs its migrations and, where it needs one,
    /// starts its sweeper; with the store's member index (migrated by the caller).
    pub(super) async fn connect(
        url: &StoreUrl,
        memory_capacity: u64,
    ) -> Result<(Self, MemberIndex), ConnectError> {
        #[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
        let fail = |what: &'static str, err: &dyn fmt::Display| ConnectError {
            store: url.to_string(),
            what,
            detail: err.to_string(),
        };
        let backend = match url {
            StoreUrl::Memory => {
                let store = MemoryStore::with_capacity(memory_capacity);
                (Self::Memory(store.clone()), MemberIndex::Memory(store))
            }
            #[cfg(not(feature = "sqlite"))]
            StoreUrl::Sqlite(_) => {
                return Err(not_built(url, "this build has no SQLite store", "sqlite"));
            }
            #[cfg(feature = "sqlite")]
            StoreUrl::Sqlite(path) => {
                check_folder(path).map_err(|e| fail("cannot create it", &e))?;
                prepare_private_file(path).map_err(|e| fail("cannot create it", &e))?;
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    // Checkpoints (and their fsync) run in the background, not in a commit.
                    .pragma("wal_autocheckpoint", "0")
                    .busy_timeout(STORE_TIMEOUT);
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    // No ping before each use: a connection to a local file does not go stale
                    // the way a network one does, and the ping was a trip to its worker thread
                    // per save (docs/performance.md, "Forward authentication").
                    .test_before_acquire(false)
                    .acquire_timeout(STORE_TIMEOUT)
                    .connect_with(options.clone())
                    .await
                    .map_err(|e| fail("cannot open", &e))?;
                let sessions = SqliteSessions::open(pool, options)
                    .await
                    .map_err(|e| fail("migration, writer or reader connection failed", &e))?;
                Sweeper::Sqlite(sessions.clone())
                    .start()
                    .await
                    .map_err(|e| fail("migration failed", &e))?;
                (
                    Self::Sqlite(sessions.clone()),
                    MemberIndex::Sqlite(sessions),
                )
            }
            #[cfg(not(feature = "postgres"))]
            StoreUrl::Postgres(_) => {
                return Err(not_built(
                    url,
                    "this build has no PostgreSQL store",
                    "postgres",
                ));
            }
            #[cfg(feature = "postgres")]
            StoreUrl::Postgres(dsn) => {
                let options =
                    PgConnectOptions::from_str(dsn.as_str()).map_err(|e| fail("bad URL", &e))?;
                let pool = match PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(STORE_TIMEOUT)
                    .connect_with(options)
                    .await
                {
                    Ok(pool) => pool,
                    Err(e) => {
                        let why = unreachable_reason(dsn, 5432).await;
                        return Err(fail(
                            "cannot connect",
                            &why.unwrap_or_else(|| e.to_string()),
                        ));
                    }
                };
                let store = PostgresStore::new(pool.clone());
                // The store's table, then the sweeper's index on it.
                let migrate = async {
                    store.migrate().await?;
                    Sweeper::Postgres(pool.clone()).start().await
                };
                one_migration_at_a_time(&pool, migrate)
                    .await
                    .and_then(|migrated| migrated)
                    .map_err(|e| fail("migration failed", &e))?;
                (
                    Self::Postgres(PostgresSessions::new(store, pool.clone())),
                    MemberIndex::Postgres(pool),
                )
            }
            #[cfg(not(feature = "redis"))]
            StoreUrl::Redis(_) | StoreUrl::RedisFleet(_) => {
                return Err(not_built(url, "this build has no Redis store", "redis"));
            }
            #[cfg(feature = "redis")]
            StoreUrl::Redis(_) | StoreUrl::RedisFleet(_) => {
                let pool = match redis_fleet::connect(url, 4).await {
                    Ok(pool) => pool,
                    Err(e) => {
                        let why = match url {
                            StoreUrl::Redis(dsn) => unreachable_reason(dsn, 6379).await,
                            _ => None,
                        };
                        return Err(fail(e.what, &why.unwrap_or(e.detail)));
                    }
                };
                // Redis expires keys itself (EXAT), so no sweeper is needed.
                (
                    Self::Redis(RedisStore::new(pool.clone())),
                    MemberIndex::Redis(pool),
                )
            }
        };
        Ok(backend)
    }
}

/// The error for a store this build was compiled without: `what` says which store,
/// `feature` the Cargo feature that brings it.
#[cfg(not(all(feature = "sqlite", feature = "postgres", feature = "redis")))]
fn not_built(url: &StoreUrl, what: &'static str, feature: &str) -> ConnectError {
    ConnectError {
        store: url.to_string(),
        what,
        detail: format!("feature \"{feature}\""),
    }
}

/// Why the server of `url` cannot be reached, in words (`connection refused at HOST:PORT`),
/// found by opening a TCP connection to it; `None` when it can be reached (the store's own
/// error then says what went wrong after connecting).
#[cfg(any(feature = "postgres", feature = "redis"))]
async fn unreachable_reason(url: &url::Url, default_port: u16) -> Option<String> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    let at = format!("{host}:{}", url.port().unwrap_or(default_port));
    match tokio::time::timeout(STORE_TIMEOUT, tokio::net::TcpStream::connect(&at)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Some(format!("connection refused at {at}"))
        }
        Ok(Err(e)) => Some(format!("cannot reach {at}: {e}")),
        Err(_) => Some(format!(
            "no answer from {at} within {} ms",
            STORE_TIMEOUT.as_millis()
        )),
    }
}

/// The folder the default store lives in (`sqlite://data/sessions.db`): the only one this
/// service creates.
#[cfg(feature = "sqlite")]
const DEFAULT_FOLDER: &str = "data";

/// Refuses a SQLite file whose folder does not exist, unless it is the default `data/`: a
/// mistyped path must not make folders wherever it points.
#[cfg(feature = "sqlite")]
fn check_folder(path: &std::path::Path) -> Result<(), String> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() && dir != std::path::Path::new(DEFAULT_FOLDER) => Err(format!(
            "the folder {} does not exist (only the default {DEFAULT_FOLDER}/ is created): create it, or fix the path",
            dir.display()
        )),
        _ => Ok(()),
    }
}

/// Creates the SQLite file's folder (owner only) and the file itself readable by its owner
/// only; SQLite gives its `-wal` and `-shm` files the same mode. An existing file that others
/// can read is narrowed.
#[cfg(feature = "sqlite")]
fn prepare_private_file(path: &std::path::Path) -> std::io::Result<()> {
    private::create_parent(path)?;
    private::options().append(true).create(true).open(path)?;
    private::narrow_to_owner(path)
}

/// Runs `migrate` while this instance holds the advisory lock the member index's migration
/// takes too ([`MIGRATION_LOCK`]), released when its transaction ends. tower-sessions'
/// migration, and the sweeper's `create index if not exists`, take no lock of their own:
/// instances starting at once on a database no one had migrated raced on PostgreSQL's catalog
/// ("duplicate key value violates unique constraint pg_class_relname_nsp_index"), as a
/// fleet's first deployment starts.
#[cfg(feature = "postgres")]
async fn one_migration_at_a_time<T>(
    pool: &sqlx::PgPool,
    migrate: impl std::future::Future<Output = T>,
) -> sqlx::Result<T> {
    let mut lock = pool.begin().await?;
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *lock)
        .await?;
    let migrated = migrate.await;
    lock.commit().await?;
    Ok(migrated)
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use super::*;

    #[test]
    fn only_the_default_folder_may_be_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_folder(std::path::Path::new("data/sessions.db")).is_ok());
        assert!(check_folder(std::path::Path::new("sessions.db")).is_ok());
        assert!(check_folder(&dir.path().join("sessions.db")).is_ok());
        let err = check_folder(&dir.path().join("missing/sessions.db")).unwrap_err();
        assert!(err.contains("missing"), "{err}");
        assert!(check_folder(&dir.path().join("data/sessions.db")).is_err());
    }
}

/// Run in a build without some store (`cargo test --lib --no-default-features`, as CI does).
#[cfg(test)]
#[cfg(not(all(feature = "sqlite", feature = "postgres", feature = "redis")))]
mod not_built {
    use super::super::backend::{BackendOptions, SessionBackend};
    use super::super::seal::{KEY_LEN, Keyring};
    use super::*;
    use crate::telemetry::Telemetry;

    #[tokio::test]
    async fn a_store_this_build_lacks_is_refused_at_connect_naming_its_feature() {
        let stores = [
            (
                "sqlite://data/sessions.db",
                "SQLite",
                "sqlite",
                cfg!(feature = "sqlite"),
            ),
            (
                "postgres://app:Qx7k@Vz9w@db.example/sessions",
                "PostgreSQL",
                "postgres",
                cfg!(feature = "postgres"),
            ),
            (
                "redis://:Qx7k@Vz9w@cache.example:6379/0",
                "Redis",
                "redis",
                cfg!(feature = "redis"),
            ),
            (
                "redis-cluster://:Qx7k@Vz9w@a:7000,b:7001",
                "Redis",
                "redis",
                cfg!(feature = "redis"),
            ),
        ];
        let lacking = stores.into_iter().filter(|(_, _, _, built)| !built);
        for (url, store, feature, _) in lacking {
            let url: StoreUrl = url.parse().unwrap();
            let options = BackendOptions {
                keyring: Keyring::new(&[[7; KEY_LEN]]).unwrap(),
                memory_capacity: 10,
                telemetry: Telemetry::disabled(),
            };
            let err = SessionBackend::connect_with(&url, options)
                .await
                .unwrap_err();
            let message = err.to_string();
            assert!(
                message.ends_with(&format!(
                    ": this build has no {store} store: feature \"{feature}\""
                )),
                "{message}"
            );
            assert!(!message.contains("Qx7k"), "{message}");
        }
        // The memory store is in every build.
        let options = BackendOptions {
            keyring: Keyring::new(&[[7; KEY_LEN]]).unwrap(),
            memory_capacity: 10,
            telemetry: Telemetry::disabled(),
        };
        assert!(
            SessionBackend::connect_with(&StoreUrl::Memory, options)
                .await
                .is_ok()
        );
    }
}
