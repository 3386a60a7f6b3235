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
//! The sweep of expired rows (`sweep`) takes turns with new sessions on that same connection:
//! the writer runs one batch of the sweep when no new session is waiting, or after a batch of
//! new sessions, never two sweep batches in a row while new sessions wait. So a sign-in waits
//! behind one small `DELETE` at most, and never for SQLite's lock: a `DELETE` on another
//! connection would make the writer's `INSERT` meet a busy database, and SQLite's busy handler
//! sleeps 1, 2, 5, 10 ms… before it tries again, however soon the lock is free; it would also
//! drop the writer's page cache.
//!
//! A new session of a signed-in member gets its member index row (`index`) in the same
//! transaction as its own row.
//!
//! Sessions are loaded by reader threads of their own (`Readers`), and saved and deleted by
//! `tower-sessions-sqlx-store`; all on its table, with its encoding.

use std::time::Instant;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions_sqlx_store::SqliteStore;
use tower_sessions_sqlx_store::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tower_sessions_sqlx_store::sqlx::{self, ConnectOptions, Connection, SqlitePool};

use super::index::{Entry, SQLITE_TABLE};
use super::sweep::Swept;

/// The most rows one `INSERT` carries (three parameters each, and six for the index: far
/// below SQLite's limit).
const MAX_BATCH: usize = 64;
/// New sessions waiting for the writer; a full queue makes requests wait (back-pressure).
const QUEUE: usize = 4 * MAX_BATCH;
/// How often the write-ahead log is checkpointed.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// `SqliteStore`'s table.
const TABLE: &str = "tower_sessions";
/// What a reader asks for (from [`TABLE`]; the expiry is checked on the decoded record).
const LOAD: &str = "select data from tower_sessions where id = ?1";
/// How many threads load sessions ([`Readers`]).
const READERS: usize = 2;
/// Loads waiting for a reader; one more fails at once (a 503) instead of queueing.
const READ_QUEUE: usize = 1024;

/// SQLite sessions; see the module documentation.
#[derive(Clone, Debug)]
pub struct SqliteSessions {
    store: SqliteStore,
    pool: SqlitePool,
    readers: Readers,
    creates: mpsc::Sender<PendingCreate>,
    sweeps: mpsc::Sender<PendingSweep>,
}

#[derive(Debug)]
struct PendingCreate {
    record: Record,
    /// The member index's entry, written in the same transaction.
    entry: Option<Entry>,
    done: oneshot::Sender<session_store::Result<Id>>,
}

/// One batch of the sweep, waiting for its turn on the writer's connection.
#[derive(Debug)]
struct PendingSweep {
    before: OffsetDateTime,
    limit: i64,
    done: oneshot::Sender<sqlx::Result<Swept>>,
}

impl SqliteSessions {
    /// Creates the table when missing and starts the writer task, whose connection is made
    /// with `writer` (the options `pool` was made with).
    pub async fn open(pool: SqlitePool, writer: SqliteConnectOptions) -> sqlx::Result<Self> {
        let store = SqliteStore::new(pool.clone());
        store.migrate().await?;
        let connection = writer.connect().await?;
        let readers = Readers::start(writer.get_filename())?;
        let (creates, queue) = mpsc::channel(QUEUE);
        let (sweeps, sweep_queue) = mpsc::channel(1);
        tokio::spawn(checkpoint(pool.clone()));
        let writer = Writer {
            options: writer,
            connection: Some(connection),
            store: store.clone(),
        };
        tokio::spawn(writer.run(queue, sweep_queue));
        Ok(Self {
            store,
            pool,
            readers,
            creates,
            sweeps,
        })
    }

    /// The connection pool (for the sweeper's index).
    pub fn pool(&self) -> SqlitePool {
        self.pool.clone()
    }

    /// Deletes up to `limit` rows that expired before `before`, on the writer's connection in
    /// its turn (see the module documentation).
    pub async fn delete_expired(&self, before: OffsetDateTime, limit: i64) -> sqlx::Result<Swept> {
        let (done, answer) = oneshot::channel();
        let stopped = || sqlx::Error::WorkerCrashed;
        self.sweeps
            .send(PendingSweep {
                before,
                limit,
                done,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
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

/// Threads that load sessions, each on a read-only connection of its own, all taking loads
/// from one queue.
///
/// `/auth/check` is one point read, made for every request a proxy lets through, so its cost
/// is the store's. Through sqlx's pool it took three trips to a connection's worker thread (the
/// pool pings a connection before it lends it and again when it comes back), and since a
/// connection runs one query at a time, each trip put that thread to sleep and woke it again.
/// A reader here takes one trip, and sleeps only when no load waits: under load it answers
/// one after another (docs/performance.md, "Forward authentication").
#[derive(Clone, Debug)]
struct Readers {
    queue: flume::Sender<Load>,
}

/// One load, waiting for a reader.
#[derive(Debug)]
struct Load {
    id: Id,
    /// The row's data, if there is a row.
    answer: oneshot::Sender<Result<Option<Vec<u8>>, String>>,
}

impl Readers {
    /// Opens the readers' connections to `path` (so that a file that cannot be read fails the
    /// start) and starts their threads, which end when the last `SqliteSessions` is dropped.
    fn start(path: &std::path::Path) -> sqlx::Result<Self> {
        let (queue, loads) = flume::bounded(READ_QUEUE);
        for n in 0..READERS {
            let connection =
                open_reader(path).map_err(|err| sqlx::Error::Configuration(err.into()))?;
            let (path, loads) = (path.to_owned(), loads.clone());
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{n}"))
                .spawn(move || read(&path, Some(connection), &loads))
                .map_err(sqlx::Error::Io)?;
        }
        Ok(Self { queue })
    }

    /// The unexpired record stored under `id`, as `SqliteStore::load` reads it.
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        use flume::TrySendError;
        let (answer, answered) = oneshot::channel();
        let stopped = || session_store::Error::Backend("the SQLite readers have stopped".into());
        self.queue
            .try_send(Load { id: *id, answer })
            .map_err(|err| match err {
                TrySendError::Full(_) => {
                    session_store::Error::Backend("every SQLite reader is behind".into())
                }
                TrySendError::Disconnected(_) => stopped(),
            })?;
        let Some(data) = answered
            .await
            .map_err(|_| stopped())?
            .map_err(session_store::Error::Backend)?
        else {
            return Ok(None);
        };
        let record: Record = rmp_serde::from_slice(&data)
            .map_err(|err| session_store::Error::Decode(err.to_string()))?;
        Ok((record.expiry_date > OffsetDateTime::now_utc()).then_some(record))
    }
}

/// A reader's connection: read-only, waiting for a lock as long as a store operation may take.
fn open_reader(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let connection = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(crate::limits::STORE_TIMEOUT)?;
    Ok(connection)
}

/// A reader thread: answers loads until the queue closes. A load whose request has given up
/// (timed out) is skipped; after a failure the connection is opened again for the next load.
/// Only the failure of a connection that worked is logged: requests answer 503 and count
/// store errors, so an outage is not one line per load.
fn read(
    path: &std::path::Path,
    mut connection: Option<rusqlite::Connection>,
    loads: &flume::Receiver<Load>,
) {
    use rusqlite::OptionalExtension;
    for load in loads {
        if load.answer.is_closed() {
            continue;
        }
        let was_open = connection.is_some();
        let opened = match connection.take() {
            Some(open) => Ok(open),
            None => open_reader(path),
        };
        let row = opened.and_then(|open| {
            let row = open
                .prepare_cached(LOAD)?
                .query_row([load.id.to_string()], |row| row.get(0))
                .optional();
            connection = Some(open);
            row
        });
        if let Err(err) = &row {
            if was_open {
                tracing::warn!(%err, "SQLite reader failed; the next load opens another connection");
            }
            connection = None;
        }
        let _ = load.answer.send(row.map_err(|err| err.to_string()));
    }
}

/// The task that owns the writer connection.
struct Writer {
    options: SqliteConnectOptions,
    /// None after a failure: the next batch opens another.
    connection: Option<SqliteConnection>,
    store: SqliteStore,
}

impl Writer {
    /// Writes batches of new sessions as they come, with the sweep's batches in turn between
    /// them, until the store is dropped.
    async fn run(
        mut self,
        mut creates: mpsc::Receiver<PendingCreate>,
        mut sweeps: mpsc::Receiver<PendingSweep>,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut inserted = false;
        loop {
            tokio::select! {
                biased;
                received = creates.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    self.insert(std::mem::take(&mut batch)).await;
                    // The sweep's turn: one batch of it between two of new sessions, however
                    // many wait, so that it is neither starved nor ahead of them.
                    if let Ok(sweep) = sweeps.try_recv() {
                        self.sweep(sweep, true).await;
                        inserted = false;
                    } else {
                        inserted = true;
                    }
                }
                Some(sweep) = sweeps.recv() => {
                    self.sweep(sweep, inserted).await;
                    inserted = false;
                }
            }
        }
    }

    /// The connection, opened again when the last one failed.
    async fn connection(&mut self) -> sqlx::Result<&mut SqliteConnection> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.options.connect().await?,
        };
        Ok(self.connection.insert(connection))
    }

    /// Forgets the connection after an error that was not only the statement's (as on a full
    /// disk), so that the next batch opens another.
    fn check(&mut self, err: &sqlx::Error) {
        if !matches!(err, sqlx::Error::Database(_)) {
            tracing::warn!(%err, "SQLite writer connection failed; the next batch opens another");
            self.connection = None;
        }
    }

    async fn insert(&mut self, batch: Vec<PendingCreate>) {
        let store = self.store.clone();
        let result = match self.connection().await {
            Ok(writer) => insert_batch(writer, &store, batch).await,
            Err(err) => {
                fail(batch, &err);
                Err(err)
            }
        };
        if let Err(err) = result {
            self.check(&err);
        }
    }

    /// Runs one batch of the sweep; `busy` is whether new sessions were stored since the
    /// previous one.
    async fn sweep(&mut self, sweep: PendingSweep, busy: bool) {
        let started = Instant::now();
        let result = match self.connection().await {
            Ok(writer) => sqlx::query(
                "delete from tower_sessions where rowid in \
                 (select rowid from tower_sessions where expiry_date < ? limit ?)",
            )
            .bind(sweep.before)
            .bind(sweep.limit)
            .execute(writer)
            .await
            .map(|done| Swept {
                deleted: done.rows_affected(),
                took: started.elapsed(),
                busy,
            }),
            Err(err) => Err(err),
        };
        if let Err(err) = &result {
            self.check(err);
        }
        let _ = sweep.done.send(result);
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
/// which draws new ids until one is free. Every request is answered; the error, if any, is
/// returned too, so that the caller can tell whether the connection failed.
async fn insert_batch(
    writer: &mut SqliteConnection,
    store: &SqliteStore,
    batch: Vec<PendingCreate>,
) -> sqlx::Result<()> {
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
        return Ok(());
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
    let entries: Vec<_> = rows
        .iter()
        .filter_map(|(pending, _)| Some((pending.record.id, pending.entry.as_ref()?)))
        .collect();
    let written = if entries.is_empty() {
        query.execute(&mut *writer).await.map(drop)
    } else {
        let placeholders = vec!["(?, ?, ?, ?, ?, ?)"; entries.len()].join(", ");
        let sql = format!(
            "insert into {SQLITE_TABLE} (session_id, member_id, flow, created_at, browser, \
             last_seen) values {placeholders}"
        );
        let mut index = sqlx::query(&sql);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        for (id, entry) in &entries {
            index = index
                .bind(id.to_string())
                .bind(entry.member_id.as_str())
                .bind(entry.flow)
                .bind(now)
                .bind(entry.browser.as_str())
                .bind(now);
        }
        async {
            let mut tx = writer.begin().await?;
            query.execute(&mut *tx).await?;
            index.execute(&mut *tx).await?;
            tx.commit().await
        }
        .await
    };
    match written {
        Ok(()) => {
            for (pending, _) in rows {
                let _ = pending.done.send(Ok(pending.record.id));
            }
            Ok(())
        }
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
            for (mut pending, _) in rows {
                let result = match store.create(&mut pending.record).await {
                    Ok(()) => match &pending.entry {
                        Some(entry) => index_one(writer, &pending.record.id, entry).await,
                        None => Ok(()),
                    },
                    Err(err) => Err(err),
                };
                let _ = pending.done.send(result.map(|()| pending.record.id));
            }
            Ok(())
        }
        Err(err) => {
            fail(rows.into_iter().map(|(pending, _)| pending).collect(), &err);
            Err(err)
        }
    }
}

impl SqliteSessions {
    /// Creates `record` (under a new id should its own be taken) and, with `entry`, its row
    /// of the member index, in one transaction.
    pub async fn create_indexed(
        &self,
        record: &mut Record,
        entry: Option<Entry>,
    ) -> session_store::Result<()> {
        let (done, answer) = oneshot::channel();
        let stopped = || session_store::Error::Backend("the SQLite writer has stopped".into());
        self.creates
            .send(PendingCreate {
                record: record.clone(),
                entry,
                done,
            })
            .await
            .map_err(|_| stopped())?;
        record.id = answer.await.map_err(|_| stopped())??;
        Ok(())
    }
}

/// Writes the index row of one session created apart from its batch.
async fn index_one(
    writer: &mut SqliteConnection,
    id: &Id,
    entry: &Entry,
) -> session_store::Result<()> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    sqlx::query(&format!(
        "insert into {SQLITE_TABLE} (session_id, member_id, flow, created_at, browser, last_seen) \
         values (?, ?, ?, ?, ?, ?)"
    ))
    .bind(id.to_string())
    .bind(entry.member_id.as_str())
    .bind(entry.flow)
    .bind(now)
    .bind(entry.browser.as_str())
    .bind(now)
    .execute(writer)
    .await
    .map(drop)
    .map_err(|err| session_store::Error::Backend(err.to_string()))
}

#[async_trait]
impl SessionStore for SqliteSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.create_indexed(record, None).await
    }

    /// Updates the session's row, and only that: a session that ended while its request ran
    /// (a logout elsewhere, a revocation) is not written back.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = rmp_serde::to_vec(record)
            .map_err(|err| session_store::Error::Encode(err.to_string()))?;
        sqlx::query(&format!(
            "update {TABLE} set data = ?, expiry_date = ? where id = ?"
        ))
        .bind(data)
        .bind(record.expiry_date)
        .bind(record.id.to_string())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|err| session_store::Error::Backend(err.to_string()))
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.readers.load(id).await
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
    async fn a_save_after_the_session_was_deleted_does_not_bring_it_back() {
        let (sessions, _dir) = open().await;
        let mut r = record(7);
        sessions.create(&mut r).await.unwrap();
        r.data = [("k".to_owned(), serde_json::json!("changed"))].into();
        sessions.save(&r).await.unwrap();
        assert_eq!(sessions.load(&r.id).await.unwrap().unwrap().data, r.data);
        sessions.delete(&r.id).await.unwrap();
        sessions.save(&r).await.unwrap();
        assert!(sessions.load(&r.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_expired_record_is_not_loaded() {
        let (sessions, _dir) = open().await;
        let mut r = record(8);
        sessions.create(&mut r).await.unwrap();
        assert!(sessions.load(&r.id).await.unwrap().is_some());
        r.expiry_date = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        sessions.save(&r).await.unwrap();
        assert!(sessions.load(&r.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn readers_cannot_write() {
        let (_sessions, dir) = open().await;
        let reader = open_reader(&dir.path().join("s.db")).unwrap();
        let err = reader
            .execute(&format!("delete from {TABLE}"), [])
            .unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ReadOnly),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_failed_load_does_not_break_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute("create table unrelated (x)", []).unwrap();
        let readers = Readers::start(&path).unwrap();
        let err = readers.load(&Id(1)).await.unwrap_err();
        assert!(err.to_string().contains("no such table"), "{err}");
        other
            .execute(
                &format!("create table {TABLE} (id text primary key, data blob, expiry_date)"),
                [],
            )
            .unwrap();
        let stored = record(1);
        other
            .execute(
                &format!("insert into {TABLE} (id, data) values (?1, ?2)"),
                (Id(1).to_string(), rmp_serde::to_vec(&stored).unwrap()),
            )
            .unwrap();
        let loaded = readers.load(&Id(1)).await.unwrap().expect("stored");
        assert_eq!(loaded.data, stored.data);
        assert!(readers.load(&Id(2)).await.unwrap().is_none());
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
