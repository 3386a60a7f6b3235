//! The `memory` store: sessions in this process, forgotten at their own expiry date, and at
//! most [`MemoryStore::DEFAULT_CAPACITY`] (or the configured cap) of them: past the cap the
//! least recently used session is evicted, with a warning, so that a flood of new sessions
//! cannot exhaust the machine.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// Sessions in this process, each dropped at its own expiry date so that memory comes back
/// as sessions end (tower-sessions' `MemoryStore` never forgets an expired session).
#[derive(Clone)]
pub struct MemoryStore(moka::sync::Cache<Id, Record>);

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }
}

impl MemoryStore {
    /// The default cap: about 100 MiB of sessions at most.
    pub const DEFAULT_CAPACITY: u64 = 100_000;

    /// A store of at most `capacity` sessions; past it, the least recently used goes.
    pub fn with_capacity(capacity: u64) -> Self {
        let evictions = Arc::new(Evictions::default());
        Self(
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .eviction_listener(move |_, _, cause| {
                    if cause == moka::notification::RemovalCause::Size {
                        evictions.count(capacity);
                    }
                })
                .expire_after(RecordExpiry)
                .build(),
        )
    }

    /// Sessions held now (approximately: expired ones go lazily).
    pub fn len(&self) -> u64 {
        self.0.run_pending_tasks();
        self.0.entry_count()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counts sessions evicted for room, and says so at most once a minute.
#[derive(Default)]
struct Evictions {
    since_said: AtomicU64,
    said_at: std::sync::Mutex<Option<Instant>>,
}

impl Evictions {
    fn count(&self, capacity: u64) {
        let evicted = self.since_said.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut said_at) = self.said_at.lock() else {
            return;
        };
        if said_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            *said_at = Some(Instant::now());
            self.since_said.store(0, Ordering::Relaxed);
            tracing::warn!(
                evicted,
                capacity,
                "the memory session store is full: the least recently used sessions were signed out (raise MEMORY_SESSIONS, or use SQLite, Redis or PostgreSQL)"
            );
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.0.entry_count())
            .finish()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // Insert only under an id nobody holds, atomically.
        while !self
            .0
            .entry(record.id)
            .or_insert_with(|| record.clone())
            .is_fresh()
        {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.0.insert(record.id, record.clone());
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self
            .0
            .get(id)
            .filter(|r| r.expiry_date > OffsetDateTime::now_utc()))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.0.invalidate(id);
        Ok(())
    }
}

/// A record lives in memory until its own expiry date.
struct RecordExpiry;

impl RecordExpiry {
    fn remaining(record: &Record) -> Option<Duration> {
        let left = record.expiry_date - OffsetDateTime::now_utc();
        Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
    }
}

impl moka::Expiry<Id, Record> for RecordExpiry {
    fn expire_after_create(
        &self,
        _: &Id,
        record: &Record,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Self::remaining(record)
    }

    fn expire_after_update(
        &self,
        _: &Id,
        record: &Record,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Self::remaining(record)
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
            store.save(&record(n)).await.unwrap();
        }
        // Session 0 is used again, so 1 is now the least recently used.
        assert!(store.load(&Id(0)).await.unwrap().is_some());
        store.0.run_pending_tasks();
        for n in 100..150 {
            store.save(&record(n)).await.unwrap();
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
}
