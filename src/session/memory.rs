//! The `memory` store: sessions in this process, forgotten at their own expiry date.

use std::fmt;
use std::time::Duration;

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
        Self(
            moka::sync::Cache::builder()
                .expire_after(RecordExpiry)
                .build(),
        )
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
