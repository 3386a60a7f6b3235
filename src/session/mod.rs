//! Sessions: which store holds them (memory, SQLite, Redis, PostgreSQL) and what they hold.
//!
//! Only this module knows which store is in use ([`SessionBackend`]); handlers see typed
//! [`StoredCredentials`] through [`LinkedInSession`] and never a raw key. Cookie flags and
//! expiry policy are set here too, so that every route gets the same rules.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{
    ClientLike, Config as RedisConfig, Pool as RedisPool, ReconnectPolicy,
};
use tower_sessions_sqlx_store::PostgresStore;
use tower_sessions_sqlx_store::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::{ConfigError, Secret};

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteSessions;

/// The cookie that carries the session id.
pub const SESSION_COOKIE: &str = "lte_session";
/// How long connecting to a store may take before the start is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often expired sessions are swept from stores that do not expire them themselves.
const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// Where sessions live, as written in `SESSION_STORE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// In this process only: lost at restart, not shared.
    Memory,
    /// A SQLite file (created with its folder when missing).
    Sqlite(PathBuf),
    /// A Redis server, shared by several instances.
    Redis(String),
    /// A PostgreSQL database, shared by several instances.
    Postgres(String),
}

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            Ok(Self::Memory)
        } else if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, as in sqlite://data/sessions.db".into());
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if s.starts_with("redis://") || s.starts_with("rediss://") {
            url::Url::parse(s).map_err(|err| format!("not a Redis URL: {err}"))?;
            Ok(Self::Redis(s.to_owned()))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            url::Url::parse(s).map_err(|err| format!("not a PostgreSQL URL: {err}"))?;
            Ok(Self::Postgres(s.to_owned()))
        } else {
            Err("expected memory, sqlite://PATH, redis://HOST:PORT or postgres://…".into())
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            // URLs may carry passwords: show only the scheme and host.
            Self::Redis(url) | Self::Postgres(url) => match url::Url::parse(url) {
                Ok(u) => write!(f, "{}://{}", u.scheme(), u.host_str().unwrap_or("")),
                Err(_) => f.write_str("(unparsable URL)"),
            },
        }
    }
}

/// The session store chosen at run time; forwards all four `SessionStore` methods.
#[derive(Clone, Debug)]
pub enum SessionBackend {
    /// `memory`.
    Memory(MemoryStore),
    /// `sqlite://…`.
    Sqlite(SqliteSessions),
    /// `redis://…`.
    Redis(RedisStore<RedisPool>),
    /// `postgres://…`.
    Postgres(PostgresStore),
}

impl SessionBackend {
    /// Connects to the store, runs its migrations and, where the store needs one, starts the
    /// task that deletes expired sessions. Fails within seconds, naming `SESSION_STORE`.
    pub async fn connect(url: &StoreUrl) -> Result<Self, ConfigError> {
        let fail = |what: &str, err: &dyn fmt::Display| {
            ConfigError::new("SESSION_STORE", format!("cannot use {url}: {what}: {err}"))
        };
        let backend = match url {
            StoreUrl::Memory => Self::Memory(MemoryStore::default()),
            StoreUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| fail("cannot create its folder", &e))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    // Checkpoints (and their fsync) run in the background, not in a commit.
                    .pragma("wal_autocheckpoint", "0")
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| fail("cannot open", &e))?;
                let sessions = SqliteSessions::open(pool)
                    .await
                    .map_err(|e| fail("migration failed", &e))?;
                spawn_sweeper(sessions.clone());
                Self::Sqlite(sessions)
            }
            StoreUrl::Postgres(dsn) => {
                let options = PgConnectOptions::from_str(dsn).map_err(|e| fail("bad URL", &e))?;
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| fail("cannot connect", &e))?;
                let store = PostgresStore::new(pool);
                store
                    .migrate()
                    .await
                    .map_err(|e| fail("migration failed", &e))?;
                spawn_sweeper(store.clone());
                Self::Postgres(store)
            }
            StoreUrl::Redis(dsn) => {
                let config = RedisConfig::from_url(dsn).map_err(|e| fail("bad URL", &e))?;
                // Reconnect after a later outage; the first connection must succeed in time.
                let policy = ReconnectPolicy::new_exponential(0, 100, 5_000, 2);
                let pool = RedisPool::new(config, None, None, Some(policy), 4)
                    .map_err(|e| fail("bad configuration", &e))?;
                match tokio::time::timeout(CONNECT_TIMEOUT, pool.init()).await {
                    Ok(Ok(_task)) => {}
                    Ok(Err(e)) => return Err(fail("cannot connect", &e)),
                    Err(_) => return Err(fail("cannot connect", &"no answer within 5 s")),
                }
                // Redis expires keys itself (EXAT), so no sweeper is needed.
                Self::Redis(RedisStore::new(pool))
            }
        };
        Ok(backend)
    }

    /// The session layer with the SPEC's cookie rules: `Secure`, `HttpOnly`, `SameSite=Lax`.
    pub fn layer(self, idle: Duration) -> SessionManagerLayer<Self> {
        SessionManagerLayer::new(self)
            .with_name(SESSION_COOKIE)
            .with_secure(true)
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(to_time(idle)))
    }
}

fn spawn_sweeper<S: ExpiredDeletion + Clone>(store: S) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            ticks.tick().await;
            if let Err(err) = store.delete_expired().await {
                tracing::warn!(%err, "could not delete expired sessions");
            }
        }
    });
}

macro_rules! forward {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Self::Memory($store) => $call,
            Self::Sqlite($store) => $call,
            Self::Redis($store) => $call,
            Self::Postgres($store) => $call,
        }
    };
}

#[async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        forward!(self, store => store.create(record).await)
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        forward!(self, store => store.save(record).await)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        forward!(self, store => store.load(id).await)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        forward!(self, store => store.delete(id).await)
    }
}

fn to_time(duration: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX))
}

/// The member's REST credentials, as the session keeps them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredCredentials {
    /// The LinkedIn member id.
    pub member_id: String,
    /// The OAuth 1.0a token.
    pub oauth_token: String,
    /// The OAuth 1.0a token secret (never leaves the server).
    pub oauth_token_secret: Secret,
    /// When the token expires, as a Unix timestamp.
    pub expires_at: i64,
}

impl StoredCredentials {
    /// Whether the credentials are still valid at `now`.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now.unix_timestamp()
    }
}

/// Typed access to the credentials in a session; the one place that names the session key.
pub struct LinkedInSession<'a> {
    session: &'a Session,
    idle: Duration,
}

impl<'a> LinkedInSession<'a> {
    /// The session key for the credentials.
    const KEY: &'static str = "linkedin.credentials";

    /// Wraps a request's session; `idle` is the inactivity limit.
    pub fn new(session: &'a Session, idle: Duration) -> Self {
        Self { session, idle }
    }

    /// The credentials when present and unexpired. Expired credentials end the session, and
    /// a session in use lives on for another idle period (never past its credentials).
    pub async fn credentials(&self) -> Result<Option<StoredCredentials>, session_store::Error> {
        let Some(creds) = self
            .session
            .get::<StoredCredentials>(Self::KEY)
            .await
            .map_err(unwrap_store)?
        else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        if !creds.is_valid_at(now) {
            self.session.flush().await.map_err(unwrap_store)?;
            return Ok(None);
        }
        self.set_expiry(&creds, now);
        Ok(Some(creds))
    }

    /// Stores the credentials of a member the session did not hold. A session that already
    /// has an id gets a new one, so that nobody can fix a session id in advance.
    pub async fn store(&self, creds: &StoredCredentials) -> Result<(), session_store::Error> {
        if self.session.id().is_some() {
            self.session.cycle_id().await.map_err(unwrap_store)?;
        }
        self.session
            .insert(Self::KEY, creds)
            .await
            .map_err(unwrap_store)?;
        self.set_expiry(creds, OffsetDateTime::now_utc());
        Ok(())
    }

    /// Deletes the session from the store and clears its cookie.
    pub async fn end(&self) -> Result<(), session_store::Error> {
        self.session.flush().await.map_err(unwrap_store)
    }

    /// A session lives until the earlier of "idle for too long" and "credentials expired".
    fn set_expiry(&self, creds: &StoredCredentials, now: OffsetDateTime) {
        let idle_end = now + to_time(self.idle);
        let creds_end = OffsetDateTime::from_unix_timestamp(creds.expires_at).unwrap_or(idle_end);
        self.session
            .set_expiry(Some(Expiry::AtDateTime(idle_end.min(creds_end))));
    }
}

fn unwrap_store(err: tower_sessions::session::Error) -> session_store::Error {
    match err {
        tower_sessions::session::Error::Store(err) => err,
        tower_sessions::session::Error::SerdeJson(err) => {
            session_store::Error::Decode(err.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_and_display_without_passwords() {
        assert_eq!("memory".parse::<StoreUrl>(), Ok(StoreUrl::Memory));
        assert_eq!(
            "sqlite://data/sessions.db".parse::<StoreUrl>(),
            Ok(StoreUrl::Sqlite("data/sessions.db".into()))
        );
        let pg: StoreUrl = "postgres://user:pw@db.example/app".parse().unwrap();
        assert_eq!(pg.to_string(), "postgres://db.example");
        assert!("mysql://x".parse::<StoreUrl>().is_err());
        assert!("sqlite://".parse::<StoreUrl>().is_err());
    }

    #[test]
    fn credentials_expire_at_their_timestamp() {
        let creds = StoredCredentials {
            member_id: "m".into(),
            oauth_token: "t".into(),
            oauth_token_secret: Secret::new("s"),
            expires_at: 1_000,
        };
        assert!(creds.is_valid_at(OffsetDateTime::from_unix_timestamp(999).unwrap()));
        assert!(!creds.is_valid_at(OffsetDateTime::from_unix_timestamp(1_000).unwrap()));
        assert!(!format!("{creds:?}").contains("\"s\""));
    }
}
