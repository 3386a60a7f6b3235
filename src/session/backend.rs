//! [`SessionBackend`]: the store chosen at run time, bounded in time, sealing what it
//! stores.
//!
//! Every record is sealed ([`seal`](super::seal)) before it reaches the store and opened when
//! it comes back, bound to its session id: the store only ever holds ciphertext. A record
//! that no configured key opens, or one written in plain text, reads as an empty session
//! (not connected), with one warning per record.
//!
//! Every store operation answers within `STORE_TIMEOUT` or fails with a typed error, so a
//! store outage becomes a prompt 503 instead of a hang. A delete made inside a request waits
//! for the request's writes ([`guard`](mod@super::guard)).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::connect::{ConnectError, Store};
use super::guard;
use super::index::{Entry, MemberIndex, SessionSummary};
use super::seal::Keyring;
use crate::config::StoreUrl;
use crate::limits::STORE_TIMEOUT;
use crate::telemetry::Telemetry;

/// The one key of a sealed record's data.
const SEALED: &str = "lte.sealed";

/// Calls the same method on whichever store is in use.
macro_rules! forward {
    ($store:ident, $s:ident => $call:expr) => {
        match $store {
            Store::Memory($s) => $call,
            #[cfg(feature = "sqlite")]
            Store::Sqlite($s) => $call,
            #[cfg(feature = "redis")]
            Store::Redis($s) => $call,
            #[cfg(feature = "postgres")]
            Store::Postgres($s) => $call,
        }
    };
}

/// The session store chosen at run time; forwards all four `SessionStore` methods, each
/// bounded by `STORE_TIMEOUT`, sealing records on the way in and opening them on the way
/// out. Cheap to clone (the session layer and the guard take one per request).
#[derive(Clone)]
pub struct SessionBackend(pub(super) Arc<Backend>);

pub(super) struct Backend {
    store: Store,
    /// Who holds which session ([`index`](super::index)).
    pub(super) index: MemberIndex,
    /// The memory store's leases ([`lease`](super::lease)); the others keep theirs in the
    /// store.
    pub(super) leases: super::lease::MemoryLeases,
    keyring: Keyring,
    telemetry: Telemetry,
    /// Records already reported as unreadable (so each is reported once).
    unreadable: moka::sync::Cache<Id, ()>,
}

/// What a [`SessionBackend`] needs besides the store's URL.
pub(crate) struct BackendOptions {
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

impl SessionBackend {
    /// Connects to the store, runs its migrations and, where the store needs one, starts the
    /// task that deletes expired sessions. Fails within seconds.
    pub(crate) async fn connect_with(
        url: &StoreUrl,
        options: BackendOptions,
    ) -> Result<Self, ConnectError> {
        let (store, index) = Store::connect(url, options.memory_capacity).await?;
        index.migrate().await.map_err(|e| ConnectError {
            store: url.to_string(),
            what: "migration of the member index failed",
            detail: e.to_string(),
        })?;
        super::lease::migrate(&index)
            .await
            .map_err(|e| ConnectError {
                store: url.to_string(),
                what: "migration of the leases failed",
                detail: e.to_string(),
            })?;
        Ok(Self(Arc::new(Backend {
            store,
            index,
            leases: super::lease::MemoryLeases::default(),
            keyring: options.keyring,
            telemetry: options.telemetry,
            unreadable: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3_600))
                .build(),
        })))
    }

    /// One lookup, as a request would make it: whether the store answers, within
    /// `STORE_TIMEOUT`.
    pub async fn ping(&self) -> session_store::Result<()> {
        let store = &self.0.store;
        let id = Id::default();
        self.bounded("ping", forward!(store, s => s.load(&id)))
            .await
            .map(drop)
    }

    /// Runs one store operation within `STORE_TIMEOUT`; a failure is counted, and noted in
    /// the request's journal where there is one.
    pub(super) async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = session_store::Result<T>>,
    ) -> session_store::Result<T> {
        use tracing::Instrument;
        let span = tracing::debug_span!(
            "session_store",
            "otel.name" = %format_args!("session_store {operation}"),
            "otel.kind" = "client",
            "db.operation.name" = operation,
            "db.system.name" = self.0.store.system(),
        );
        let result = match tokio::time::timeout(STORE_TIMEOUT, call)
            .instrument(span)
            .await
        {
            Ok(result) => result,
            Err(_) => Err(session_store::Error::Backend(format!(
                "no answer within {} ms",
                STORE_TIMEOUT.as_millis()
            ))),
        };
        if let Err(err) = &result {
            self.0.telemetry.store_error(operation);
            guard::note_failure(operation, err);
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

#[async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut sealed = self.seal(record)?;
        let store = &self.0.store;
        let entry = Entry::of(record);
        match (store, &entry) {
            // The index row goes in the same transaction as the session.
            #[cfg(feature = "sqlite")]
            (Store::Sqlite(s), Some(_)) => {
                self.bounded("create", s.create_indexed(&mut sealed, entry.clone()))
                    .await?;
            }
            _ => {
                self.bounded("create", forward!(store, s => s.create(&mut sealed)))
                    .await?;
            }
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
        // A request that read the session before the upkeep refreshed its token must not
        // write the old token back.
        let kept = super::upkeep::keep_refreshed(self, record).await?;
        let record = kept.as_ref().unwrap_or(record);
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
        if guard::defer_delete(*id) {
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
