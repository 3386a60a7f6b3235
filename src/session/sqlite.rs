//! The `sqlite://` store with group commit: new sessions from concurrent requests are
//! written by one task in one multi-row `INSERT`, so that a burst of sign-ins costs one
//! statement (one trip to SQLite's worker thread, one transaction) instead of one each.
//! Every request still gets its answer only after its row is committed.
//!
//! The writer has a connection of its own, outside the pool: SQLite drops a connection's page
//! cache whenever another connection has written since its last use, so batches that took
//! turns on the pool's connections read the index pages they touch again each time. No
//! acquire (and its ping) per batch either. Should that connection fail, the next batch opens
//! another.
//!
//! Loading, saving and deleting are `tower-sessions-sqlx-store`'s, on the same table and with
//! the same encoding; sweeping is `sweep`'s.

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions_sqlx_store::SqliteStore;
use tower_sessions_sqlx_store::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tower_sessions_sqlx_store::sqlx::{self, ConnectOptions, SqlitePool};

/// The most rows one `INSERT` carries (three parameters each, far below SQLite's limit).
const MAX_BATCH: usize = 64;
/// New sessions waiting for the writer; a full queue makes requests wait (back-pressure).
const QUEUE: usize = 4 * MAX_BATCH;
/// How often the write-ahead log is checkpointed.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// `SqliteStore`'s table.
const TABLE: &str = "tower_sessions";

/// SQLite sessions; see the module documentation.
#[derive(Clone, Debug)]
pub struct SqliteSessions {
    store: SqliteStore,
    pool: SqlitePool,
    creates: mpsc::Sender<PendingCreate>,
}

#[derive(Debug)]
struct PendingCreate {
    record: Record,
    done: oneshot::Sender<session_store::Result<Id>>,
}

impl SqliteSessions {
    /// Creates the table when missing and starts the writer task, whose connection is made
    /// with `writer` (the options `pool` was made with).
    pub async fn open(pool: SqlitePool, writer: SqliteConnectOptions) -> sqlx::Result<Self> {
        let store = SqliteStore::new(pool.clone());
        store.migrate().await?;
        let connection = writer.connect().await?;
        let (creates, queue) = mpsc::channel(QUEUE);
        tokio::spawn(checkpoint(pool.clone()));
        tokio::spawn(write_batches(writer, connection, store.clone(), queue));
        Ok(Self {
            store,
            pool,
            creates,
        })
    }

    /// The connection pool (for the sweeper).
    pub fn pool(&self) -> SqlitePool {
        self.pool.clone()
    }
}

/// Copies the write-ahead log into the database now and then, off the request path (the
/// connection runs with `wal_autocheckpoint=0`). A passive checkpoint never blocks writers;
/// once it is complete, the next commit starts the log from its beginning again.
async fn checkpoint(pool: SqlitePool) {
    let mut ticks = tokio::time::interval(CHECKPOINT_INTERVAL);
    loop {
        ticks.tick().await;
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(%err, "SQLite checkpoint failed");
        }
    }
}

async fn write_batches(
    options: SqliteConnectOptions,
    connection: SqliteConnection,
    store: SqliteStore,
    mut queue: mpsc::Receiver<PendingCreate>,
) {
    let mut connection = Some(connection);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut batch);
        let writer = match &mut connection {
            Some(writer) => writer,
            None => match options.connect().await {
                Ok(writer) => connection.insert(writer),
                Err(err) => {
                    fail(batch, &err);
                    continue;
                }
            },
        };
        if !insert_batch(writer, &store, batch).await {
            tracing::warn!("SQLite writer connection failed; the next batch opens another");
            connection = None;
        }
    }
}

/// Answers every request of `batch` with `err`.
fn fail(batch: Vec<PendingCreate>, err: &sqlx::Error) {
    for pending in batch {
        let _ = pending
            .done
            .send(Err(session_store::Error::Backend(err.to_string())));
    }
}

/// Inserts `batch` in one statement. Should an id already exist (ids are 128 random bits, so
/// this is for correctness, not expected), each record is created on its own by the store,
/// which draws new ids until one is free. False when the connection itself failed, not only
/// the statement (as on a full disk), so that the caller replaces it.
async fn insert_batch(
    writer: &mut SqliteConnection,
    store: &SqliteStore,
    batch: Vec<PendingCreate>,
) -> bool {
    let mut rows = Vec::with_capacity(batch.len());
    for pending in batch {
        match rmp_serde::to_vec(&pending.record) {
            Ok(data) => rows.push((pending, data)),
            Err(err) => {
                let _ = pending
                    .done
                    .send(Err(session_store::Error::Encode(err.to_string())));
            }
        }
    }
    if rows.is_empty() {
        return true;
    }
    let placeholders = vec!["(?, ?, ?)"; rows.len()].join(", ");
    let sql = format!("insert or abort into {TABLE} (id, data, expiry_date) values {placeholders}");
    let mut query = sqlx::query(&sql);
    for (pending, data) in &rows {
        query = query
            .bind(pending.record.id.to_string())
            .bind(data.as_slice())
            .bind(pending.record.expiry_date);
    }
    match query.execute(&mut *writer).await {
        Ok(_) => {
            for (pending, _) in rows {
                let _ = pending.done.send(Ok(pending.record.id));
            }
            true
        }
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
            for (mut pending, _) in rows {
                let result = store
                    .create(&mut pending.record)
                    .await
                    .map(|()| pending.record.id);
                let _ = pending.done.send(result);
            }
            true
        }
        Err(err) => {
            let statement_failed = matches!(err, sqlx::Error::Database(_));
            fail(rows.into_iter().map(|(pending, _)| pending).collect(), &err);
            statement_failed
        }
    }
}

#[async_trait]
impl SessionStore for SqliteSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let (done, answer) = oneshot::channel();
        let stopped = || session_store::Error::Backend("the SQLite writer has stopped".into());
        self.creates
            .send(PendingCreate {
                record: record.clone(),
                done,
            })
            .await
            .map_err(|_| stopped())?;
        record.id = answer.await.map_err(|_| stopped())??;
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.store.save(record).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.store.load(id).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store.delete(id).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use time::OffsetDateTime;

    use super::*;

    async fn open() -> (SqliteSessions, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("s.db"))
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options.clone()).await.unwrap();
        (SqliteSessions::open(pool, options).await.unwrap(), dir)
    }

    fn record(id: i128) -> Record {
        Record {
            id: Id(id),
            data: [("k".to_owned(), serde_json::json!(id.to_string()))].into(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_are_all_stored_and_readable_by_the_store() {
        let (sessions, _dir) = open().await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let sessions = sessions.clone();
                tokio::spawn(async move {
                    let mut r = record(1_000 + i);
                    sessions.create(&mut r).await.unwrap();
                    r
                })
            })
            .collect();
        let mut ids = HashSet::new();
        for task in tasks {
            let created = task.await.unwrap();
            let loaded = sessions.load(&created.id).await.unwrap().expect("stored");
            assert_eq!(loaded.data, created.data);
            ids.insert(created.id);
        }
        assert_eq!(ids.len(), 200);
    }

    #[tokio::test]
    async fn a_colliding_id_gets_a_new_one_and_leaves_the_existing_row_alone() {
        let (sessions, _dir) = open().await;
        let mut first = record(42);
        sessions.create(&mut first).await.unwrap();
        let mut second = record(42);
        second.data = [("k".to_owned(), serde_json::json!("second"))].into();
        sessions.create(&mut second).await.unwrap();
        assert_ne!(second.id, Id(42));
        assert_eq!(
            sessions.load(&Id(42)).await.unwrap().unwrap().data,
            first.data
        );
        assert_eq!(
            sessions.load(&second.id).await.unwrap().unwrap().data,
            second.data
        );
    }
}
