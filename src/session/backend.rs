//! [`SessionBackend`]: the store chosen at run time, bounded in time, sealing what it
//! stores, and [`guard`], the middleware that makes each request's store changes land in a
//! safe order.
//!
//! Every record is sealed ([`seal`](super::seal)) before it reaches the store and opened when
//! it comes back, bound to its session id: the store only ever holds ciphertext. A record
//! that no configured key opens, or one written in plain text by an earlier version, reads as
//! an empty session (not connected), with one warning per record.
//!
//! Every store operation answers within [`STORE_TIMEOUT`] or fails with a typed error, so a
//! store outage becomes a prompt 503 instead of a hang. Deletes made while a request runs
//! (`cycle_id`'s removal of the old id, a logout) are held back until the request's writes
//! have succeeded: a sign-in writes the new record before the old one goes, and a failed
//! write leaves the previous session exactly as it was.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{
    ClientLike, Config as RedisConfig, ConnectionConfig, PerformanceConfig, Pool as RedisPool,
    ReconnectPolicy,
};
use tower_sessions_sqlx_store::PostgresStore;
use tower_sessions_sqlx_store::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use super::index::{Entry, MemberIndex, SessionSummary};
use super::postgres::PostgresSessions;
use super::private;
use super::seal::Keyring;
use super::sweep::Sweeper;
use super::{MemoryStore, SqliteSessions};
use crate::config::StoreUrl;
use crate::error::{AppError, LoggedError};
use crate::telemetry::Telemetry;

/// The one key of a sealed record's data.
const SEALED: &str = "lte.sealed";

/// Calls the same method on whichever store is in use.
macro_rules! forward {
    ($store:ident, $s:ident => $call:expr) => {
        match $store {
            Store::Memory($s) => $call,
            Store::Sqlite($s) => $call,
            Store::Redis($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

/// The longest a store operation may take before the request is answered 503.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long connecting to a store may take before the start is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The session store chosen at run time; forwards all four `SessionStore` methods, each
/// bounded by [`STORE_TIMEOUT`], sealing records on the way in and opening them on the way
/// out. Cheap to clone (the session layer and the guard take one per request).
#[derive(Clone)]
pub struct SessionBackend(Arc<Backend>);

struct Backend {
    store: Store,
    /// Who holds which session ([`index`](super::index)).
    index: MemberIndex,
    keyring: Keyring,
    telemetry: Telemetry,
    /// Records already reported as unreadable (so each is reported once).
    unreadable: moka::sync::Cache<Id, ()>,
}

/// What a [`SessionBackend`] needs besides the store's URL.
pub struct BackendOptions {
    /// Seals and opens the records.
    pub keyring: Keyring,
    /// The most sessions the `memory` store holds.
    pub memory_capacity: u64,
    /// Where store failures are counted.
    pub telemetry: Telemetry,
}

impl fmt::Debug for SessionBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBackend")
            .field("store", &self.0.store)
            .field("keyring", &self.0.keyring)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
enum Store {
    /// `memory`.
    Memory(MemoryStore),
    /// `sqlite://…`.
    Sqlite(SqliteSessions),
    /// `redis://…`.
    Redis(RedisStore<RedisPool>),
    /// `postgres://…`.
    Postgres(PostgresSessions),
}

impl SessionBackend {
    /// Connects to the store, runs its migrations and, where the store needs one, starts the
    /// task that deletes expired sessions. Fails within seconds.
    pub async fn connect(url: &StoreUrl, options: BackendOptions) -> Result<Self, ConnectError> {
        let (store, index) = Store::connect(url, options.memory_capacity).await?;
        index.migrate().await.map_err(|e| ConnectError {
            store: url.to_string(),
            what: "migration of the member index failed",
            detail: e.to_string(),
        })?;
        Ok(Self(Arc::new(Backend {
            store,
            index,
            keyring: options.keyring,
            telemetry: options.telemetry,
            unreadable: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3_600))
                .build(),
        })))
    }

    /// One lookup, as a request would make it: whether the store answers, within
    /// [`STORE_TIMEOUT`].
    pub async fn ping(&self) -> session_store::Result<()> {
        let store = &self.0.store;
        let id = Id::default();
        self.bounded("ping", forward!(store, s => s.load(&id)))
            .await
            .map(drop)
    }

    /// Runs one store operation within [`STORE_TIMEOUT`]; a failure is counted, and noted in
    /// the request's journal where there is one.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = session_store::Result<T>>,
    ) -> session_store::Result<T> {
        let result = match tokio::time::timeout(STORE_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(session_store::Error::Backend(format!(
                "no answer within {} ms",
                STORE_TIMEOUT.as_millis()
            ))),
        };
        if let Err(err) = &result {
            self.0.telemetry.store_error(operation);
            let _ = JOURNAL.try_with(|journal| journal.failed(operation, err));
        }
        result
    }

    /// `record` with its data sealed for its id.
    fn seal(&self, record: &Record) -> session_store::Result<Record> {
        let plain = serde_json::to_vec(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let sealed = self.0.keyring.seal(&plain, &associated_data(&record.id));
        let mut data: std::collections::HashMap<_, _> =
            [(SEALED.to_owned(), serde_json::Value::String(sealed))].into();
        // The memory store cannot read sealed data: it is told which sessions hold only a
        // sign-in in progress, so that it evicts those before any signed-in member.
        if matches!(self.0.store, Store::Memory(_))
            && super::member::holds_only_a_pending_sign_in(&record.data)
        {
            data.insert(
                super::memory::PENDING_ONLY.to_owned(),
                serde_json::Value::Bool(true),
            );
        }
        Ok(Record {
            id: record.id,
            data,
            expiry_date: record.expiry_date,
        })
    }

    /// `record`, found under `id`, with its data opened for that id; what does not open
    /// (another key, another session's record moved here, plain text) reads as no data.
    fn open(&self, id: &Id, mut record: Record) -> Record {
        record.id = *id;
        let opened = match record.data.get(SEALED) {
            Some(serde_json::Value::String(sealed)) => self
                .0
                .keyring
                .open(sealed, &associated_data(id))
                .map_err(|e| e.to_string())
                .and_then(|plain| serde_json::from_slice(&plain).map_err(|e| e.to_string())),
            _ => Err("it is not sealed (written by an earlier version)".to_owned()),
        };
        record.data = opened.unwrap_or_else(|why| {
            if !self.0.unreadable.contains_key(&record.id) {
                self.0.unreadable.insert(record.id, ());
                tracing::warn!("a stored session does not open and reads as signed out: {why}");
            }
            Default::default()
        });
        record
    }
}

/// What binds a sealed record to its session.
fn associated_data(id: &Id) -> Vec<u8> {
    format!("lte-session {id}").into_bytes()
}

impl Store {
    /// The store at `url`, and its member index.
    async fn connect(
        url: &StoreUrl,
        memory_capacity: u64,
    ) -> Result<(Self, MemberIndex), ConnectError> {
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
            StoreUrl::Sqlite(path) => {
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
                    .acquire_timeout(STORE_TIMEOUT)
                    .connect_with(options.clone())
                    .await
                    .map_err(|e| fail("cannot open", &e))?;
                let sessions = SqliteSessions::open(pool, options)
                    .await
                    .map_err(|e| fail("migration or writer connection failed", &e))?;
                Sweeper::Sqlite(sessions.clone())
                    .start()
                    .await
                    .map_err(|e| fail("migration failed", &e))?;
                (
                    Self::Sqlite(sessions.clone()),
                    MemberIndex::Sqlite(sessions),
                )
            }
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
                store
                    .migrate()
                    .await
                    .map_err(|e| fail("migration failed", &e))?;
                Sweeper::Postgres(pool.clone())
                    .start()
                    .await
                    .map_err(|e| fail("migration failed", &e))?;
                (
                    Self::Postgres(PostgresSessions::new(store, pool.clone())),
                    MemberIndex::Postgres(pool),
                )
            }
            StoreUrl::Redis(dsn) => {
                let config =
                    RedisConfig::from_url(dsn.as_str()).map_err(|e| fail("bad URL", &e))?;
                // Commands fail once their time is up instead of queueing for a whole outage;
                // the connection comes back by itself, retried every second at most.
                let performance = PerformanceConfig {
                    default_command_timeout: STORE_TIMEOUT,
                    ..PerformanceConfig::default()
                };
                let connection = ConnectionConfig {
                    connection_timeout: Duration::from_secs(1),
                    internal_command_timeout: Duration::from_secs(1),
                    max_command_attempts: 1,
                    ..ConnectionConfig::default()
                };
                let policy = ReconnectPolicy::new_exponential(0, 100, 1_000, 2);
                let pool =
                    RedisPool::new(config, Some(performance), Some(connection), Some(policy), 4)
                        .map_err(|e| fail("bad configuration", &e))?;
                match tokio::time::timeout(CONNECT_TIMEOUT, pool.init()).await {
                    Ok(Ok(_task)) => {}
                    Ok(Err(e)) => {
                        let why = unreachable_reason(dsn, 6379).await;
                        return Err(fail(
                            "cannot connect",
                            &why.unwrap_or_else(|| e.to_string()),
                        ));
                    }
                    Err(_) => return Err(fail("cannot connect", &"no answer within 5 s")),
                }
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

/// Why the server of `url` cannot be reached, in words (`connection refused at HOST:PORT`),
/// found by opening a TCP connection to it; `None` when it can be reached (the store's own
/// error then says what went wrong after connecting).
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

/// Creates the SQLite file's folder (owner only) and the file itself readable by its owner
/// only; SQLite gives its `-wal` and `-shm` files the same mode. An existing file that others
/// can read is narrowed.
fn prepare_private_file(path: &std::path::Path) -> std::io::Result<()> {
    private::create_parent(path)?;
    private::options().append(true).create(true).open(path)?;
    private::narrow_to_owner(path)
}

#[async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut sealed = self.seal(record)?;
        let store = &self.0.store;
        let entry = Entry::of(record);
        if let (Store::Sqlite(s), Some(_)) = (store, &entry) {
            // The index row goes in the same transaction as the session.
            self.bounded("create", s.create_indexed(&mut sealed, entry.clone()))
                .await?;
        } else {
            self.bounded("create", forward!(store, s => s.create(&mut sealed)))
                .await?;
        }
        if sealed.id != record.id {
            // The store drew another id (a collision): seal again for the id it kept.
            record.id = sealed.id;
            let resealed = self.seal(record)?;
            self.bounded("save", forward!(store, s => s.save(&resealed)))
                .await?;
        }
        if let Some(entry) = &entry {
            let index = self.0.index.add(&record.id, entry, record.expiry_date);
            self.bounded("index", index).await?;
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let sealed = self.seal(record)?;
        let store = &self.0.store;
        // The index first: should the save fail, its entry outlives the session, never the
        // other way round.
        if let Some(entry) = Entry::of(record) {
            let index = self.0.index.touch(&record.id, &entry, record.expiry_date);
            self.bounded("index", index).await?;
        }
        self.bounded("save", forward!(store, s => s.save(&sealed)))
            .await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let store = &self.0.store;
        let loaded = self
            .bounded("load", forward!(store, s => s.load(id)))
            .await?;
        Ok(loaded.map(|record| self.open(id, record)))
    }

    /// Inside a request, the delete waits until the request's writes have succeeded.
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        if JOURNAL
            .try_with(|journal| journal.defer_delete(*id))
            .is_ok()
        {
            return Ok(());
        }
        self.delete_now(id).await
    }
}

impl SessionBackend {
    async fn delete_now(&self, id: &Id) -> session_store::Result<()> {
        let store = &self.0.store;
        let member = match self.0.index.forgets_by_member() {
            true => self.load(id).await?.and_then(|r| Entry::of(&r)),
            false => None,
        };
        self.bounded("delete", forward!(store, s => s.delete(id)))
            .await?;
        match member {
            Some(entry) => {
                let forget = self.0.index.forget(&entry.member_id, id);
                self.bounded("index", forget).await
            }
            None => Ok(()),
        }
    }

    /// The unexpired sessions of `member_id` (never their ids).
    pub async fn member_sessions(
        &self,
        member_id: &str,
    ) -> session_store::Result<Vec<SessionSummary>> {
        self.bounded("index", self.0.index.list(member_id)).await
    }

    /// Ends every session of `member_id`, in every instance sharing the store; how many
    /// unexpired ones there were.
    pub async fn end_member_sessions(&self, member_id: &str) -> session_store::Result<u64> {
        self.bounded("revoke", self.0.index.revoke(member_id)).await
    }
}

tokio::task_local! {
    /// The store changes of the request running on this task.
    static JOURNAL: Arc<Journal>;
}

/// What a request did to the store that must be finished, or answered, after the session
/// layer has written the session.
#[derive(Default)]
struct Journal {
    deferred_deletes: Mutex<Vec<Id>>,
    failure: Mutex<Option<(&'static str, String)>>,
}

impl Journal {
    fn defer_delete(&self, id: Id) {
        if let Ok(mut ids) = self.deferred_deletes.lock() {
            ids.push(id);
        }
    }

    fn failed(&self, operation: &'static str, err: &session_store::Error) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert((operation, err.to_string()));
        }
    }

    fn take(&self) -> (Vec<Id>, Option<(&'static str, String)>) {
        let ids = self
            .deferred_deletes
            .lock()
            .map(|mut ids| std::mem::take(&mut *ids))
            .unwrap_or_default();
        let failure = self.failure.lock().ok().and_then(|mut f| f.take());
        (ids, failure)
    }
}

/// Wraps the session layer: answers a store failure in the layer's own save (which the layer
/// would answer with an empty 500) as 503 `session_store_unavailable`, and carries out the
/// request's deletes once its writes have succeeded. A delete that fails turns the answer
/// into a 503 too: the browser then keeps its old session id, and that session is intact.
pub async fn guard(
    State(backend): State<SessionBackend>,
    request: Request,
    next: Next,
) -> Response {
    let journal = Arc::new(Journal::default());
    let response = JOURNAL.scope(journal.clone(), next.run(request)).await;
    let (deletes, failure) = journal.take();
    // The session layer's own answer to a failed save: an empty 500.
    if let Some((operation, detail)) = failure
        && response.extensions().get::<LoggedError>().is_none()
        && response.status().is_server_error()
    {
        return store_unavailable(operation, detail);
    }
    if response.status().is_server_error() {
        return response;
    }
    for id in deletes {
        if let Err(err) = backend.delete_now(&id).await {
            return store_unavailable("delete", err.to_string());
        }
    }
    response
}

fn store_unavailable(operation: &'static str, detail: String) -> Response {
    AppError::SessionStore(session_store::Error::Backend(format!(
        "{operation}: {detail}"
    )))
    .into_response()
}
