//! The `memory` store: sessions in this process, forgotten at their own expiry date, and at
//! most [`MemoryStore::DEFAULT_CAPACITY`] (or the configured cap) of them: past the cap the
//! least recently used session is evicted, with a warning, so that a flood of new sessions
//! cannot exhaust the machine.
//!
//! Sessions that hold only a sign-in in progress (marked [`PENDING_ONLY`] by the backend,
//! which alone can read the sealed data) live in a cache of their own, with a cap of the same
//! size: a flood of anonymous sign-in starts evicts other sign-ins in progress, never a
//! signed-in member.
//!
//! The member index of this store ([`MemoryIndex`]) lives beside the caches: a record that
//! leaves (deleted, evicted for room, expired) leaves the index too.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::index::MemoryIndex;

/// The plain key of a record whose sealed data is only a sign-in in progress.
pub(crate) const PENDING_ONLY: &str = "lte.pending_only";

/// Sessions in this process, each dropped at its own expiry date so that memory comes back
/// as sessions end (tower-sessions' `MemoryStore` never forgets an expired session).
#[derive(Clone)]
pub(crate) struct MemoryStore {
    /// Sessions of signed-in members (and anything else that is not only a sign-in).
    members: moka::sync::Cache<Id, Record>,
    /// Sessions that hold only a sign-in in progress.
    pending: moka::sync::Cache<Id, Record>,
    /// Which member holds which of `members` (kept by the backend, emptied with the cache).
    index: Arc<MemoryIndex>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }
}

impl MemoryStore {
    /// The default cap: about 100 MiB of sessions at most.
    pub(crate) const DEFAULT_CAPACITY: u64 = 100_000;

    /// A store of at most `capacity` sessions, and as many sign-ins in progress; past either
    /// cap, the least recently used of that kind goes.
    pub(crate) fn with_capacity(capacity: u64) -> Self {
        let index = Arc::new(MemoryIndex::default());
        Self {
            members: cache(
                capacity,
                Some(index.clone()),
                Evictions::new(
                    "the memory session store is full: the least recently used sessions were signed out (raise MEMORY_SESSIONS, or use SQLite, Redis or PostgreSQL)",
                ),
            ),
            pending: cache(
                capacity,
                None,
                Evictions::new(
                    "the memory session store holds MEMORY_SESSIONS sign-ins in progress: the least recently started were dropped (signed-in members are kept)",
                ),
            ),
            index,
        }
    }

    /// The member → sessions index of this store.
    pub(crate) fn index(&self) -> &MemoryIndex {
        &self.index
    }

    /// Whether the session `id` of a signed-in member is held (expired or not).
    pub(crate) fn holds_member_session(&self, id: &Id) -> bool {
        self.members.contains_key(id)
    }

    #[cfg(test)]
    /// Sessions held now, sign-ins in progress included (approximately: expired ones go
    /// lazily).
    pub(crate) fn len(&self) -> u64 {
        self.members.run_pending_tasks();
        self.pending.run_pending_tasks();
        self.members.entry_count() + self.pending.entry_count()
    }

    /// The cache a record belongs in, and the other one.
    fn caches_for(
        &self,
        record: &Record,
    ) -> (
        &moka::sync::Cache<Id, Record>,
        &moka::sync::Cache<Id, Record>,
    ) {
        if record.data.contains_key(PENDING_ONLY) {
            (&self.pending, &self.members)
        } else {
            (&self.members, &self.pending)
        }
    }
}

/// A cache of at most `capacity` records; a record that leaves it (other than replaced by
/// a newer version of itself) leaves `index` too.
fn cache(
    capacity: u64,
    index: Option<Arc<MemoryIndex>>,
    evictions: Evictions,
) -> moka::sync::Cache<Id, Record> {
    use moka::notification::RemovalCause;
    let evictions = Arc::new(evictions);
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .eviction_listener(move |id: Arc<Id>, _, cause| {
            if cause == RemovalCause::Size {
                evictions.count(capacity);
            }
            if let Some(index) = index.as_ref().filter(|_| cause != RemovalCause::Replaced) {
                index.forget(&id);
            }
        })
        .expire_after(RecordExpiry)
        .build()
}

/// Counts sessions evicted for room, and says so at most once a minute.
struct Evictions {
    message: &'static str,
    since_said: AtomicU64,
    said_at: std::sync::Mutex<Option<Instant>>,
}

impl Evictions {
    fn new(message: &'static str) -> Self {
        Self {
            message,
            since_said: AtomicU64::new(0),
            said_at: std::sync::Mutex::new(None),
        }
    }

    fn count(&self, capacity: u64) {
        let evicted = self.since_said.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut said_at) = self.said_at.lock() else {
            return;
        };
        if said_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            *said_at = Some(Instant::now());
            self.since_said.store(0, Ordering::Relaxed);
            tracing::warn!(evicted, capacity, "{}", self.message);
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.members.entry_count())
            .field("sign_ins", &self.pending.entry_count())
            .finish()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let (home, other) = self.caches_for(record);
        // Insert only under an id nobody holds (in either cache), atomically in its own.
        loop {
            if !other.contains_key(&record.id)
                && home
                    .entry(record.id)
                    .or_insert_with(|| record.clone())
                    .is_fresh()
            {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    /// Updates a session that is still held, and only such a one: a session that ended while
    /// its request ran (a logout elsewhere, a revocation) is not written back.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (home, other) = self.caches_for(record);
        let moved = other.remove(&record.id).is_some();
        home.entry(record.id).and_compute_with(|held| {
            if held.is_some() || moved {
                moka::ops::compute::Op::Put(record.clone())
            } else {
                moka::ops::compute::Op::Nop
            }
        });
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self
            .members
            .get(id)
            .or_else(|| self.pending.get(id))
            .filter(|r| r.expiry_date > OffsetDateTime::now_utc()))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.members.invalidate(id);
        self.pending.invalidate(id);
        Ok(())
    }
}

/// A record lives in memory until its own expiry date.
struct RecordExpiry;

impl RecordExpiry {
    /// What is left until `record`'s expiry date (nothing once it has passed).
    fn remaining(record: &Record) -> Duration {
        let left = record.expiry_date - OffsetDateTime::now_utc();
        Duration::try_from(left).unwrap_or(Duration::ZERO)
    }
}

impl moka::Expiry<Id, Record> for RecordExpiry {
    fn expire_after_create(
        &self,
        _: &Id,
        record: &Record,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(Self::remaining(record))
    }

    fn expire_after_update(
        &self,
        _: &Id,
        record: &Record,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(Self::remaining(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i128) -> Record {
        Record {
            id: Id(n),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        }
    }

    #[tokio::test]
    async fn a_full_store_evicts_the_least_recently_used_session() {
        let store = MemoryStore::with_capacity(100);
        for n in 0..100 {
            store.create(&mut record(n)).await.unwrap();
        }
        // Session 0 is used again, so 1 is now the least recently used.
        assert!(store.load(&Id(0)).await.unwrap().is_some());
        store.members.run_pending_tasks();
        for n in 100..150 {
            store.create(&mut record(n)).await.unwrap();
        }
        assert!(store.len() <= 100, "{}", store.len());
        assert!(
            store.load(&Id(0)).await.unwrap().is_some(),
            "recently used: kept"
        );
        assert!(
            store.load(&Id(1)).await.unwrap().is_none(),
            "least recently used: evicted"
        );
        assert!(store.load(&Id(149)).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_session_leaves_the_member_index_when_deleted_evicted_or_expired() {
        use crate::session::index::Entry;
        let store = MemoryStore::with_capacity(2);
        let entry = Entry {
            member_id: "m".into(),
            flow: "jsapi",
            browser: "Firefox on Linux".into(),
        };
        let mut short = record(1);
        short.expiry_date = OffsetDateTime::now_utc() + time::Duration::seconds(1);
        for r in [&short, &record(2), &record(3)] {
            store.create(&mut r.clone()).await.unwrap();
            store
                .index()
                .record(&r.id, &entry, r.expiry_date.unix_timestamp());
        }
        store.members.run_pending_tasks();
        assert_eq!(store.index().len(), 2, "one evicted for room");
        let survivors: Vec<Id> = [Id(1), Id(2), Id(3)]
            .into_iter()
            .filter(|id| store.members.contains_key(id))
            .collect();
        store.delete(&survivors[0]).await.unwrap();
        assert_eq!(store.index().len(), 1, "one deleted");

        let store = MemoryStore::default();
        store.create(&mut short.clone()).await.unwrap();
        store
            .index()
            .record(&short.id, &entry, short.expiry_date.unix_timestamp());
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        store.members.run_pending_tasks();
        assert!(store.index().is_empty(), "expired on its own");
    }

    #[tokio::test]
    async fn a_save_after_the_session_was_deleted_does_not_bring_it_back() {
        let store = MemoryStore::default();
        let mut r = record(5);
        store.create(&mut r).await.unwrap();
        store.save(&r).await.unwrap();
        assert!(store.load(&r.id).await.unwrap().is_some());
        store.delete(&r.id).await.unwrap();
        store.save(&r).await.unwrap();
        assert!(store.load(&r.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_save_of_an_ended_session_indexes_it_again_nowhere() {
        use crate::session::index::{Entry, MemberIndex};
        let store = MemoryStore::default();
        let index = MemberIndex::Memory(store.clone());
        let entry = Entry {
            member_id: "m".into(),
            flow: "oidc",
            browser: String::new(),
        };
        let mut r = record(9);
        store.create(&mut r).await.unwrap();
        index.add(&r.id, &entry, r.expiry_date).await.unwrap();
        assert_eq!(index.list("m").await.unwrap().len(), 1);
        assert_eq!(index.revoke("m").await.unwrap(), 1);
        // The request that loaded the session before the revocation saves it now.
        index.touch(&r.id, &entry, r.expiry_date).await.unwrap();
        store.save(&r).await.unwrap();
        assert!(index.list("m").await.unwrap().is_empty());
        assert!(store.index().is_empty());
    }

    #[tokio::test]
    async fn sign_ins_in_progress_never_evict_a_member() {
        let store = MemoryStore::with_capacity(10);
        store.create(&mut record(0)).await.unwrap();
        for n in 1..200 {
            let mut pending = record(n);
            pending
                .data
                .insert(PENDING_ONLY.into(), serde_json::Value::Bool(true));
            store.create(&mut pending).await.unwrap();
        }
        assert!(
            store.load(&Id(0)).await.unwrap().is_some(),
            "the member stays"
        );
        assert!(store.load(&Id(199)).await.unwrap().is_some());
        assert!(store.len() <= 11, "{}", store.len());
        // Signed in: the record moves to the members' side.
        store.save(&record(199)).await.unwrap();
        store.members.run_pending_tasks();
        store.pending.run_pending_tasks();
        assert!(store.members.contains_key(&Id(199)));
        assert!(!store.pending.contains_key(&Id(199)));
    }
}
