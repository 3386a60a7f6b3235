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
//!
//! A load of a signed-in member's session notes its last use in the member index
//! ([`index`](super::index)), at most once per [`LAST_SEEN_EVERY`] per session in this
//! instance: the member's list of their sessions says when each was last used, and a request
//! that only reads the store (`/auth/check`, the hot path) writes it once a minute at most.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::connect::{ConnectError, Store};
use super::guard;
use super::index::{Entry, Indexed, MemberIndex, OwnSession, SessionSummary};
use super::member::{Ended, Member, TOMBSTONE_TTL, ended_in, member_in, tombstone, tombstone_id};
use super::seal::Keyring;
use crate::config::StoreUrl;
use crate::limits::STORE_TIMEOUT;
use crate::telemetry::Telemetry;

/// The one key of a sealed record's data.
const SEALED: &str = "lte.sealed";

/// How often, at most, this instance notes that a session was used (its `last_seen`).
pub(crate) const LAST_SEEN_EVERY: Duration = Duration::from_secs(60);

/// The most sessions whose last use is remembered as noted (beyond it, some are noted again
/// sooner: never more often than each load).
const SEEN_CAPACITY: usize = 100_000;

/// The sessions whose use was noted within the last `every`, at most `capacity` of them: a
/// map from a 64-bit digest of the id to when. Beyond `capacity`, the entries older than
/// `every` go, and should none be, all of them (those sessions are then noted again sooner,
/// never more often than each load). A lock and a hash lookup a load, and 24 bytes a session:
/// a bounded cache with its own eviction (moka's) cost more of both, for a figure of which a
/// wrong answer costs one `UPDATE` at most.
struct Noted {
    every: Duration,
    capacity: usize,
    when: std::sync::Mutex<std::collections::HashMap<u64, std::time::Instant>>,
}

impl Noted {
    fn new(every: Duration, capacity: usize) -> Self {
        Self {
            every,
            capacity,
            when: Default::default(),
        }
    }

    fn key(id: &Id) -> u64 {
        // Ids are random: their two halves folded are as good a key as any hash of them.
        (id.0 as u64) ^ ((id.0 >> 64) as u64)
    }

    /// Whether `id`'s use was noted within the last `every`.
    fn contains(&self, id: &Id) -> bool {
        let Ok(when) = self.when.lock() else {
            return false;
        };
        when.get(&Self::key(id))
            .is_some_and(|at| at.elapsed() < self.every)
    }

    /// Notes `id`'s use now.
    fn insert(&self, id: &Id) {
        let Ok(mut when) = self.when.lock() else {
            return;
        };
        if when.len() >= self.capacity {
            let every = self.every;
            when.retain(|_, at| at.elapsed() < every);
            if when.len() >= self.capacity {
                when.clear();
            }
        }
        when.insert(Self::key(id), std::time::Instant::now());
    }

    /// Forgets `id` (its session ended).
    fn forget(&self, id: &Id) {
        if let Ok(mut when) = self.when.lock() {
            when.remove(&Self::key(id));
        }
    }
}

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
    /// Sessions whose last use was noted within [`LAST_SEEN_EVERY`] (each entry lives that
    /// long).
    seen: Noted,
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
        Self::connect_noting_use_every(url, options, LAST_SEEN_EVERY).await
    }

    /// [`connect_with`](Self::connect_with), noting a session's use at most once per
    /// `seen_every` (tests shorten it).
    async fn connect_noting_use_every(
        url: &StoreUrl,
        options: BackendOptions,
        seen_every: Duration,
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
            seen: Noted::new(seen_every, SEEN_CAPACITY),
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
            // SQLite's entry went in with the row.
            if !self.0.index.written_with_the_session() {
                let index = self.0.index.add(&record.id, entry, record.expiry_date);
                self.bounded("index", index).await?;
            }
            // Signed in now: that is its last use.
            self.0.seen.insert(&record.id);
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

    /// A signed-in member's session also has its use noted, once a minute at most. A session
    /// the store ended because LinkedIn withdrew its token is found again as its tombstone
    /// (`SessionBackend::end_sessions_holding`), so that its browser, still holding the id,
    /// is told why.
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self.load_opened(id).await? {
            Some(record) => {
                self.note_use(&record).await;
                Ok(Some(record))
            }
            None => self.tombstone_of(id).await,
        }
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
    /// The record under `id`, opened; its use is not noted, and no tombstone is looked for.
    async fn load_opened(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let store = &self.0.store;
        let loaded = self
            .bounded("load", forward!(store, s => s.load(id)))
            .await?;
        Ok(loaded.map(|record| self.open(id, record)))
    }

    /// Notes in the member index that `record`'s session is in use now, unless this instance
    /// did within [`LAST_SEEN_EVERY`], or it holds no member. A failure is counted and left
    /// at that: the request goes on, and the next minute tries again.
    async fn note_use(&self, record: &Record) {
        if self.0.seen.contains(&record.id) {
            return;
        }
        let now = time::OffsetDateTime::now_utc();
        if record.expiry_date <= now {
            return;
        }
        let Some(entry) = Entry::of(record) else {
            return;
        };
        self.0.seen.insert(&record.id);
        let seen = self
            .0
            .index
            .seen(&record.id, &entry.member_id, now.unix_timestamp());
        if let Err(err) = self.bounded("index", seen).await {
            tracing::debug!(%err, "a session's last use was not noted");
        }
    }

    /// The tombstone of the ended session `id`, moved back under `id`: created there (from
    /// now on the session's own record, which its browser's requests read and save as any
    /// other) and removed from [`tombstone_id`]. `None` when there is none, which is one more
    /// read for an id the store does not know.
    async fn tombstone_of(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let kept = tombstone_id(id);
        let Some(tombstone) = self.load_opened(&kept).await? else {
            return Ok(None);
        };
        if ended_in(&tombstone.data).is_none() {
            return Ok(None);
        }
        let mut moved = Record {
            id: *id,
            data: tombstone.data,
            expiry_date: tombstone.expiry_date,
        };
        self.create(&mut moved).await?;
        self.delete_now(&kept).await?;
        // Another request of the same browser moved it first: the id holds that copy.
        if moved.id != *id {
            self.delete_now(&moved.id).await?;
            return self.load_opened(id).await;
        }
        Ok(Some(moved))
    }

    async fn delete_now(&self, id: &Id) -> session_store::Result<()> {
        let store = &self.0.store;
        let member = match self.0.index.forgets_by_member() {
            true => self.load_opened(id).await?.and_then(|r| Entry::of(&r)),
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

    /// The handle of session `id`: what the member's list shows instead of the id.
    fn handle_of(&self, id: &Id) -> String {
        self.0.keyring.handle(id.to_string().as_bytes())
    }

    /// The unexpired sessions of `member_id` with their ids, oldest first.
    async fn indexed_sessions(&self, member_id: &str) -> session_store::Result<Vec<Indexed>> {
        self.bounded("index", self.0.index.sessions(member_id))
            .await
    }

    /// The member's own unexpired sessions, oldest first, each named by its handle (never its
    /// id), `current` marking the one whose id is `current`.
    pub(crate) async fn own_sessions(
        &self,
        member_id: &str,
        current: Option<Id>,
    ) -> session_store::Result<Vec<OwnSession>> {
        Ok(self
            .indexed_sessions(member_id)
            .await?
            .into_iter()
            .map(|session| OwnSession {
                handle: self.handle_of(&session.id),
                current: Some(session.id) == current,
                flow: session.summary.flow,
                created_at: session.summary.created_at,
                last_seen: session.last_seen,
                browser: session.browser,
            })
            .collect())
    }

    /// The id of the unexpired session of `member_id` named by `handle`; `None` when no
    /// session of theirs has it (another member's handle included).
    pub(crate) async fn own_session(
        &self,
        member_id: &str,
        handle: &str,
    ) -> session_store::Result<Option<Id>> {
        Ok(self
            .indexed_sessions(member_id)
            .await?
            .into_iter()
            .map(|session| session.id)
            .find(|id| self.0.keyring.is_handle(id.to_string().as_bytes(), handle)))
    }

    /// Ends session `id` of `member_id` now, in every instance sharing the store: not held
    /// back until the request's writes, since it is not the request's own session (that one
    /// ends through [`MemberSession::end`](super::MemberSession::end)).
    pub(crate) async fn end_session(&self, member_id: &str, id: &Id) -> session_store::Result<()> {
        let store = &self.0.store;
        self.bounded("delete", forward!(store, s => s.delete(id)))
            .await?;
        self.0.seen.forget(id);
        if self.0.index.forgets_by_member() {
            let forget = self.0.index.forget(member_id, id);
            self.bounded("index", forget).await?;
        }
        Ok(())
    }

    /// Ends every unexpired session of `member_id` but `keep`; how many ended.
    pub(crate) async fn end_other_sessions(
        &self,
        member_id: &str,
        keep: Option<Id>,
    ) -> session_store::Result<u64> {
        let mut ended = 0;
        for session in self.indexed_sessions(member_id).await? {
            if Some(session.id) != keep {
                self.end_session(member_id, &session.id).await?;
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Ends every session of `member`'s member (through the member index, in every instance
    /// sharing the store) that holds the same LinkedIn token as `member`, because of `why`
    /// (LinkedIn withdrew the token): each is deleted, index entry included, and a tombstone
    /// that holds only `why` is kept under [`tombstone_id`] of its id for [`TOMBSTONE_TTL`].
    /// The browser that held the session, asking again, finds the tombstone moved back under
    /// its id (`load`), and is told why. Deleting first, rather than writing the tombstone in
    /// place, keeps a save of the session still in flight (another request of that browser)
    /// from writing the member back: every store's save only updates a record that exists.
    /// The member's sessions with another token (another sign-in) stay. How many sessions
    /// ended.
    ///
    /// `current` is the session of the request that learnt of the withdrawal: its tombstone
    /// goes under its own id at once, since the request saves it afterwards
    /// ([`MemberSession::end_because`](super::MemberSession::end_because)), and a save must
    /// find a record (Redis refuses to save a deleted one).
    pub(crate) async fn end_sessions_holding(
        &self,
        member: &Member,
        why: Ended,
        current: Option<Id>,
    ) -> session_store::Result<u64> {
        let mut ended = 0;
        for session in self.indexed_sessions(&member.member_id).await? {
            let id = session.id;
            let Some(record) = self.load(&id).await? else {
                continue;
            };
            let holds_it = member_in(&record.data)
                .is_some_and(|held| held.credentials.same_token(&member.credentials));
            if !holds_it {
                continue;
            }
            self.delete_now(&id).await?;
            let mut tombstone = Record {
                id: if Some(id) == current {
                    id
                } else {
                    tombstone_id(&id)
                },
                data: tombstone(why),
                expiry_date: time::OffsetDateTime::now_utc()
                    + time::Duration::try_from(TOMBSTONE_TTL).unwrap_or(time::Duration::DAY),
            };
            // Should the derived id be taken (a tombstone of the same session, ended twice),
            // the store draws another and this one is never read: the session has ended all
            // the same.
            self.create(&mut tombstone).await?;
            ended += 1;
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::secret::Secret;
    use crate::session::member::signed_in_data;
    use crate::session::{Credentials, Member};

    /// A backend over `url` that notes a session's use at most every 2 seconds.
    async fn backend(url: &StoreUrl) -> SessionBackend {
        let options = BackendOptions {
            keyring: Keyring::new(&[[7; 32]]).unwrap(),
            memory_capacity: 1_000,
            telemetry: Telemetry::disabled(),
        };
        SessionBackend::connect_noting_use_every(url, options, Duration::from_secs(2))
            .await
            .unwrap()
    }

    /// A session of `member_id` signed in with "Firefox on Linux", created in `backend`.
    async fn signed_in(backend: &SessionBackend, member_id: &str) -> Record {
        let now = OffsetDateTime::now_utc();
        let member = Member::signed_in(
            member_id.to_owned(),
            Credentials::Oidc {
                access_token: Secret::new("token"),
                name: None,
                email: None,
                refresh_token: None,
                refresh_expires_at: None,
                issued_at: None,
            },
            3_600,
            now.unix_timestamp(),
        );
        let mut record = Record {
            id: Id::default(),
            data: signed_in_data(&member, "Firefox on Linux"),
            expiry_date: now + time::Duration::hours(1),
        };
        backend.create(&mut record).await.unwrap();
        record
    }

    async fn last_use_is_noted_at_most_once_per_interval(url: StoreUrl) {
        let backend = backend(&url).await;
        let record = signed_in(&backend, "seen-member").await;
        let listed = backend.indexed_sessions("seen-member").await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        let signed_in_at = listed[0].summary.created_at;
        assert_eq!(listed[0].last_seen, signed_in_at);
        assert_eq!(listed[0].browser, "Firefox on Linux");
        assert_eq!(listed[0].id, record.id);

        // Used a second later, within the interval of the sign-in: nothing is written.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(backend.load(&record.id).await.unwrap().is_some());
        let listed = backend.indexed_sessions("seen-member").await.unwrap();
        assert_eq!(
            listed[0].last_seen, signed_in_at,
            "noted within the interval"
        );

        // Used again once the interval has passed: noted, once.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert!(backend.load(&record.id).await.unwrap().is_some());
        let noted = backend.indexed_sessions("seen-member").await.unwrap()[0].last_seen;
        assert!(noted >= signed_in_at + 2, "{noted} after {signed_in_at}");
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert!(backend.load(&record.id).await.unwrap().is_some());
        assert_eq!(
            backend.indexed_sessions("seen-member").await.unwrap()[0].last_seen,
            noted,
            "noted again within the interval"
        );

        // An ended session is not noted back into the index.
        backend
            .end_session("seen-member", &record.id)
            .await
            .unwrap();
        backend.0.seen.forget(&record.id);
        backend.note_use(&record).await;
        assert!(
            backend
                .indexed_sessions("seen-member")
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn the_memory_store_notes_a_sessions_last_use_once_per_interval() {
        last_use_is_noted_at_most_once_per_interval(StoreUrl::Memory).await;
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn the_sqlite_store_notes_a_sessions_last_use_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::Sqlite(dir.path().join("sessions.db"));
        last_use_is_noted_at_most_once_per_interval(url).await;
    }

    #[tokio::test]
    async fn a_handle_finds_only_its_members_session_and_ends_only_the_others() {
        let backend = backend(&StoreUrl::Memory).await;
        let mine = signed_in(&backend, "handle-member").await;
        let other_device = signed_in(&backend, "handle-member").await;
        let theirs = signed_in(&backend, "handle-bystander").await;
        let listed = backend
            .own_sessions("handle-member", Some(mine.id))
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed.iter().filter(|s| s.current).count(), 1);
        for session in &listed {
            let shown = serde_json::to_string(session).unwrap();
            for id in [mine.id, other_device.id] {
                assert!(!shown.contains(&id.to_string()), "{shown}");
            }
        }
        let bystanders = backend
            .own_sessions("handle-bystander", None)
            .await
            .unwrap();
        assert_eq!(bystanders.len(), 1);
        // The bystander's handle finds nothing among the member's sessions.
        assert_eq!(
            backend
                .own_session("handle-member", &bystanders[0].handle)
                .await
                .unwrap(),
            None
        );
        let other = listed.iter().find(|s| !s.current).unwrap();
        assert_eq!(
            backend
                .own_session("handle-member", &other.handle)
                .await
                .unwrap(),
            Some(other_device.id)
        );
        assert_eq!(
            backend
                .end_other_sessions("handle-member", Some(mine.id))
                .await
                .unwrap(),
            1
        );
        assert!(backend.load(&other_device.id).await.unwrap().is_none());
        assert!(backend.load(&mine.id).await.unwrap().is_some());
        assert!(backend.load(&theirs.id).await.unwrap().is_some());
    }
}
