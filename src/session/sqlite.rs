//! The `sqlite://` store with group commit: new sessions from concurrent requests are
//! written by one thread in one transaction, so that a burst of sign-ins costs one commit
//! (one write of the log) instead of one each. Every request still gets its answer only after
//! its row is committed.
//!
//! The writer is a thread of its own with a connection of its own (rusqlite, outside sqlx's
//! pool), fed from one queue: a batch is one hand-off to that thread and back, where sqlx took
//! four trips to its connection's worker thread (`BEGIN`, two `INSERT`s, `COMMIT`), each a
//! sleep and a wake. Its page cache stays warm: SQLite drops a connection's page cache
//! whenever another connection has written since its last use. Should the connection fail,
//! the next batch opens another.
//!
//! The sweep of expired rows (`sweep`) goes through the same queue, and gets a fair share of
//! the writer: a batch of the sweep waits behind at most one batch of new sessions, and
//! deletes at least [`SWEEP_SHARE`] times as many rows as were inserted since the sweep's last
//! batch (within the sweep's largest batch), so that under sustained sign-ins expired rows go
//! at least as fast as new ones come, not only while the writer idles. A sign-in waits behind
//! one such `DELETE` at most, and never for SQLite's lock: a `DELETE` on another connection
//! would make the writer meet a busy database, and SQLite's busy handler sleeps 1, 2, 5,
//! 10 ms… before it tries again, however soon the lock is free.
//!
//! A new session of a signed-in member gets its member index row (`index`) in the same
//! transaction as its own row.
//!
//! Sessions are loaded by reader threads of their own (`Readers`), and saved and deleted by
//! `tower-sessions-sqlx-store`; all on its table, with its encoding (the expiry as RFC 3339
//! text, as sqlx binds an `OffsetDateTime`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions_sqlx_store::SqliteStore;
use tower_sessions_sqlx_store::sqlx::sqlite::SqliteConnectOptions;
use tower_sessions_sqlx_store::sqlx::{self, SqlitePool};

use super::index::Entry;
use super::sweep::Swept;

/// The most new sessions one transaction carries.
const MAX_BATCH: usize = 64;
/// Work waiting for the writer; a full queue makes requests wait (back-pressure).
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
/// A batch of the sweep deletes at least this many rows per new session inserted since its
/// previous batch.
pub(crate) const SWEEP_SHARE: u64 = 2;
/// The most rows one batch of the sweep deletes, whatever its share.
const MAX_SWEEP_BATCH: u64 = 1_000;
/// The writer's statements.
const INSERT: &str =
    "insert or abort into tower_sessions (id, data, expiry_date) values (?1, ?2, ?3)";
const INSERT_ENTRY: &str = "insert into lte_member_sessions \
     (session_id, member_id, flow, created_at, browser, last_seen) values (?1, ?2, ?3, ?4, ?5, ?4)";
const SWEEP: &str = "delete from tower_sessions where rowid in \
     (select rowid from tower_sessions where expiry_date < ?1 limit ?2)";

/// SQLite sessions; see the module documentation.
#[derive(Clone, Debug)]
pub struct SqliteSessions {
    store: SqliteStore,
    pool: SqlitePool,
    readers: Readers,
    jobs: mpsc::Sender<Job>,
}

/// Work for the writer thread.
#[derive(Debug)]
enum Job {
    Create(PendingCreate),
    Sweep(PendingSweep),
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
    limit: u64,
    done: oneshot::Sender<Result<Swept, String>>,
}

impl SqliteSessions {
    /// Creates the table when missing and starts the writer thread, whose connection is made
    /// to the file `writer` names (with `synchronous=NORMAL` and checkpoints left to the
    /// background, as the pool's).
    pub async fn open(pool: SqlitePool, writer: SqliteConnectOptions) -> sqlx::Result<Self> {
        let store = SqliteStore::new(pool.clone());
        store.migrate().await?;
        let path = writer.get_filename().to_owned();
        let connection =
            open_writer(&path).map_err(|err| sqlx::Error::Configuration(err.into()))?;
        let readers = Readers::start(&path)?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(checkpoint(pool.clone()));
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                Writer {
                    path,
                    connection: Some(connection),
                    inserted: 0,
                }
                .run(queue)
            })
            .map_err(sqlx::Error::Io)?;
        Ok(Self {
            store,
            pool,
            readers,
            jobs,
        })
    }

    /// The connection pool (for the sweeper's index).
    pub fn pool(&self) -> SqlitePool {
        self.pool.clone()
    }

    /// Deletes up to `limit` rows that expired before `before` (more when new sessions came
    /// since the previous batch: see the module documentation), on the writer's connection in
    /// its turn.
    pub async fn delete_expired(
        &self,
        before: OffsetDateTime,
        limit: u64,
    ) -> Result<Swept, String> {
        let (done, answer) = oneshot::channel();
        let stopped = || "the SQLite writer has stopped".to_owned();
        self.jobs
            .send(Job::Sweep(PendingSweep {
                before,
                limit,
                done,
            }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Copies the write-ahead log into the database now and then, off the request path (the
/// connections run with `wal_autocheckpoint=0`). A passive checkpoint never blocks writers;
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

/// The writer's connection: as the pool's (`synchronous=NORMAL`, no checkpoint in a commit,
/// foreign keys on, waiting for a lock as long as a store operation may take).
fn open_writer(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let connection = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(crate::limits::STORE_TIMEOUT)?;
    connection.execute_batch(
        "pragma synchronous = normal; pragma wal_autocheckpoint = 0; pragma foreign_keys = on;",
    )?;
    Ok(connection)
}

/// `at` as sqlx binds an `OffsetDateTime` to SQLite (RFC 3339 text), so that the sweep's and
/// the store's comparisons read the writer's rows the same way.
fn sqlite_time(at: OffsetDateTime) -> Result<String, String> {
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|err| err.to_string())
}

/// The thread that owns the writer connection.
struct Writer {
    path: PathBuf,
    /// None after a failure: the next batch opens another.
    connection: Option<rusqlite::Connection>,
    /// New sessions inserted since the sweep's last batch.
    inserted: u64,
}

impl Writer {
    /// Takes the queue's work as it comes, until every `SqliteSessions` is dropped: the new
    /// sessions waiting (up to [`MAX_BATCH`]) in one transaction, then the sweep's batch if
    /// one waits.
    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut sweep = None;
        while let Some(job) = jobs.blocking_recv() {
            let mut next = Some(job);
            while let Some(job) = next.take() {
                match job {
                    Job::Create(create) => batch.push(create),
                    // One sweeper waits for each batch's answer, so this is rare: the older
                    // batch goes first.
                    Job::Sweep(newer) => {
                        if let Some(older) = sweep.replace(newer) {
                            self.sweep(older);
                        }
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = jobs.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.inserted += batch.len() as u64;
                self.insert(&mut batch);
            }
            if let Some(sweep) = sweep.take() {
                self.sweep(sweep);
            }
        }
    }

    /// The connection, opened again when the last one failed.
    fn connection(&mut self) -> rusqlite::Result<&mut rusqlite::Connection> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => open_writer(&self.path)?,
        };
        Ok(self.connection.insert(connection))
    }

    /// Forgets the connection after an error that was not only the statement's (as on a full
    /// disk), so that the next batch opens another.
    fn check(&mut self, err: &rusqlite::Error) {
        if !matches!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        ) {
            tracing::warn!(%err, "SQLite writer connection failed; the next batch opens another");
            self.connection = None;
        }
    }

    /// Writes `batch` in one transaction and answers each of its requests.
    fn insert(&mut self, batch: &mut Vec<PendingCreate>) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let written = self
            .connection()
            .and_then(|connection| insert_batch(connection, batch, now));
        match written {
            Ok(answers) => {
                for (pending, answer) in batch.drain(..).zip(answers) {
                    let _ = pending.done.send(answer);
                }
            }
            Err(err) => {
                self.check(&err);
                for pending in batch.drain(..) {
                    let _ = pending
                        .done
                        .send(Err(session_store::Error::Backend(err.to_string())));
                }
            }
        }
    }

    /// Runs one batch of the sweep: `limit` rows, or more when new sessions came since the
    /// previous one (its fair share).
    fn sweep(&mut self, sweep: PendingSweep) {
        let busy = self.inserted > 0;
        let limit = sweep.limit.max(
            self.inserted
                .saturating_mul(SWEEP_SHARE)
                .min(MAX_SWEEP_BATCH),
        );
        self.inserted = 0;
        let started = Instant::now();
        let result = sqlite_time(sweep.before).and_then(|before| {
            let deleted = self.connection().and_then(|connection| {
                connection.prepare_cached(SWEEP)?.execute(rusqlite::params![
                    before,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ])
            });
            if let Err(err) = &deleted {
                self.check(err);
            }
            deleted.map_err(|err| err.to_string())
        });
        let _ = sweep.done.send(result.map(|deleted| Swept {
            deleted: deleted as u64,
            limit,
            took: started.elapsed(),
            busy,
        }));
    }
}

/// Inserts `batch` (and the index rows of its signed-in members) in one transaction: the
/// answer for each request, or the error that failed the whole transaction (rolled back).
/// Should an id already exist (ids are 128 random bits, so this is for correctness, not
/// expected), that record is inserted under a new id, drawn until one is free; a record that
/// does not encode fails alone.
fn insert_batch(
    connection: &mut rusqlite::Connection,
    batch: &mut [PendingCreate],
    now: i64,
) -> rusqlite::Result<Vec<session_store::Result<Id>>> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        for pending in batch.iter_mut() {
            let expiry = match sqlite_time(pending.record.expiry_date) {
                Ok(expiry) => expiry,
                Err(err) => {
                    answers.push(Err(session_store::Error::Encode(err)));
                    continue;
                }
            };
            loop {
                let data = match rmp_serde::to_vec(&pending.record) {
                    Ok(data) => data,
                    Err(err) => {
                        break answers.push(Err(session_store::Error::Encode(err.to_string())));
                    }
                };
                let id = pending.record.id.to_string();
                match insert.execute(rusqlite::params![id, data, expiry]) {
                    Ok(_) => {}
                    Err(err)
                        if err.sqlite_error_code()
                            == Some(rusqlite::ErrorCode::ConstraintViolation) =>
                    {
                        pending.record.id = Id::default();
                        continue;
                    }
                    Err(err) => return Err(err),
                }
                if let Some(entry) = &pending.entry {
                    tx.prepare_cached(INSERT_ENTRY)?.execute(rusqlite::params![
                        id,
                        entry.member_id,
                        entry.flow,
                        now,
                        entry.browser
                    ])?;
                }
                break answers.push(Ok(pending.record.id));
            }
        }
    }
    tx.commit()?;
    Ok(answers)
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
        self.jobs
            .send(Job::Create(PendingCreate {
                record: record.clone(),
                entry,
                done,
            }))
            .await
            .map_err(|_| stopped())?;
        record.id = answer.await.map_err(|_| stopped())??;
        Ok(())
    }
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

    #[test]
    fn the_writer_indexes_into_the_index_table() {
        assert!(INSERT_ENTRY.contains(&format!(" {} ", super::super::index::SQLITE_TABLE)));
    }

    #[tokio::test]
    async fn the_writer_stores_the_expiry_as_sqlx_does_so_that_the_store_and_the_sweep_read_it() {
        let (sessions, _dir) = open().await;
        let mut r = record(9);
        sessions.create(&mut r).await.unwrap();
        let stored: OffsetDateTime =
            sqlx::query_scalar("select expiry_date from tower_sessions where id = ?")
                .bind(r.id.to_string())
                .fetch_one(&sessions.pool)
                .await
                .unwrap();
        assert_eq!(stored, r.expiry_date);
        let later: i64 =
            sqlx::query_scalar("select count(*) from tower_sessions where expiry_date < ?")
                .bind(r.expiry_date + time::Duration::seconds(1))
                .fetch_one(&sessions.pool)
                .await
                .unwrap();
        assert_eq!(later, 1);
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
