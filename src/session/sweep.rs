//! Deleting expired sessions from the SQL stores (SQLite, PostgreSQL) in small batches that
//! yield to requests between them: one `DELETE` of a million rows would hold SQLite's only
//! writer (and PostgreSQL's locks) for the whole time, and every sign-in would wait behind it.
//!
//! SQLite's batches run on the group-commit writer's own connection, in turn with the new
//! sessions (see `sqlite`): a sign-in waits behind one batch at most and never for the lock,
//! and the sweep waits behind one batch of new sessions at most, with a batch that grows with
//! the new sessions inserted meanwhile (its fair share: expired rows go at least as fast as
//! new ones come, however busy the writer). Each batch also has a time budget
//! ([`BATCH_BUDGET`], the `DELETE` alone as the writer times it): one that took longer makes
//! the next one smaller, one that took less than half makes it larger. The next batch is
//! asked for at once: the writer's turns are what paces it.
//!
//! PostgreSQL's batches are [`BATCH`] rows with a 10 ms pause after each.
//! Redis expires its keys itself; the memory store forgets at each record's expiry.

use std::future::Future;
use std::time::Duration;
#[cfg(feature = "postgres")]
use std::time::Instant;

use time::OffsetDateTime;
use tower_sessions_sqlx_store::sqlx;
#[cfg(feature = "postgres")]
use tower_sessions_sqlx_store::sqlx::PgPool;

#[cfg(feature = "sqlite")]
use super::SqliteSessions;

/// How often a sweep starts.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(300);
/// The most rows deleted by one statement (SQLite: unless its fair share is more).
pub(crate) const BATCH: u64 = 500;
/// The fewest rows deleted by one statement (unless fewer are left).
const MIN_BATCH: u64 = 16;
/// How long one SQLite batch should hold the writer (the `DELETE` alone, timed by the writer).
pub(crate) const BATCH_BUDGET: Duration = Duration::from_millis(2);
/// The pause between two of PostgreSQL's batches while requests come in.
const PAUSE: Duration = Duration::from_millis(10);

/// What one batch of the sweep did (SQLite's: [`SqliteSessions::delete_expired`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swept {
    /// Rows deleted.
    pub deleted: u64,
    /// The most rows the batch could delete: what was asked, or more (SQLite's fair share).
    /// Fewer deleted means none are left.
    pub limit: u64,
    /// How long the `DELETE` held the writer (SQLite), or took (PostgreSQL).
    pub took: Duration,
    /// Whether the writer stored new sessions since the previous batch of the sweep: requests
    /// are coming in.
    pub busy: bool,
}

/// The size of the batch after one of `size` rows that took `took`: halved when it went over
/// `budget`, grown by half when it took less than half of it, within [`MIN_BATCH`]..=[`BATCH`].
fn next_batch(size: u64, took: Duration, budget: Duration) -> u64 {
    if took > budget {
        (size / 2).max(MIN_BATCH)
    } else if took < budget / 2 {
        (size + size / 2).min(BATCH)
    } else {
        size
    }
}

/// Runs `batch` until one deletes fewer rows than it could; how many went in all. With a
/// `budget` (SQLite), with the sizes [`next_batch`] picks, each asked for as soon as the last
/// is done (the writer takes them in turn with new sessions); without, [`BATCH`] rows and a
/// [`PAUSE`] after each while requests come in.
async fn sweep_with<B, F>(budget: Option<Duration>, mut batch: B) -> Result<u64, String>
where
    B: FnMut(u64) -> F,
    F: Future<Output = Result<Swept, String>>,
{
    let mut total = 0;
    let mut size = if budget.is_some() {
        MIN_BATCH * 4
    } else {
        BATCH
    };
    loop {
        let swept = batch(size).await?;
        total += swept.deleted;
        if swept.deleted < swept.limit.max(size) {
            return Ok(total);
        }
        match budget {
            Some(budget) => {
                size = next_batch(size, swept.took, budget);
                tokio::task::yield_now().await;
            }
            None if swept.busy => tokio::time::sleep(PAUSE).await,
            None => tokio::task::yield_now().await,
        }
    }
}

/// A SQL table of sessions with expired rows to delete.
#[derive(Clone, Debug)]
pub enum Sweeper {
    /// `tower_sessions` in SQLite, swept by its writer.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteSessions),
    /// `"tower_sessions"."session"` in PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

impl Sweeper {
    /// Adds the index that finds expired rows without reading the whole table.
    pub async fn index(&self) -> sqlx::Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(sessions) => {
                sqlx::query("create index if not exists tower_sessions_expiry on tower_sessions (expiry_date)")
                    .execute(&sessions.pool())
                    .await?;
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => {
                sqlx::query(
                    r#"create index if not exists session_expiry on "tower_sessions"."session" (expiry_date)"#,
                )
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Deletes up to `size` rows expired before `now` (SQLite: or its fair share).
    async fn batch(&self, now: OffsetDateTime, size: u64) -> Result<Swept, String> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(sessions) => sessions.delete_expired(now, size).await,
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => {
                let started = Instant::now();
                let done = sqlx::query(
                    r#"delete from "tower_sessions"."session" where id in
                   (select id from "tower_sessions"."session" where expiry_date < $1 limit $2)"#,
                )
                .bind(now)
                .bind(i64::try_from(size).unwrap_or(i64::MAX))
                .execute(pool)
                .await
                .map_err(|err| err.to_string())?;
                Ok(Swept {
                    deleted: done.rows_affected(),
                    limit: size,
                    took: started.elapsed(),
                    busy: true,
                })
            }
        }
    }

    /// Deletes every row expired now, batch by batch; how many went.
    pub async fn sweep(&self) -> Result<u64, String> {
        let now = OffsetDateTime::now_utc();
        let budget = match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Some(BATCH_BUDGET),
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => None,
        };
        sweep_with(budget, |size| self.batch(now, size)).await
    }

    /// Adds the index, then sweeps every [`SWEEP_INTERVAL`] for as long as the process runs.
    pub async fn start(self) -> sqlx::Result<()> {
        self.index().await?;
        self.spawn();
        Ok(())
    }

    fn spawn(self) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                ticks.tick().await;
                let started = std::time::Instant::now();
                match self.sweep().await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(
                        deleted,
                        seconds = started.elapsed().as_secs_f64(),
                        "deleted expired sessions"
                    ),
                    Err(err) => tracing::warn!(%err, "could not delete expired sessions"),
                }
            }
        });
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use std::time::Instant;

    use super::*;
    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::SessionStore;
    use tower_sessions_sqlx_store::SqliteStore;
    use tower_sessions_sqlx_store::sqlx::SqlitePool;

    #[test]
    fn a_batch_over_its_budget_halves_the_next_and_a_quick_one_grows_it_within_bounds() {
        let (slow, quick, fair) = (BATCH_BUDGET * 3, BATCH_BUDGET / 4, BATCH_BUDGET * 3 / 4);
        let budget = BATCH_BUDGET;
        assert_eq!(next_batch(400, slow, budget), 200);
        assert_eq!(next_batch(20, slow, budget), MIN_BATCH);
        assert_eq!(next_batch(100, quick, budget), 150);
        assert_eq!(next_batch(400, quick, budget), BATCH);
        assert_eq!(next_batch(100, fair, budget), 100);
    }

    /// A fake table of `rows` rows where deleting one takes `per_row`: the sizes the sweep
    /// asked for, and how many it deleted in all. With `share`, each batch may delete that
    /// many rows more than asked (SQLite's writer, when new sessions came meanwhile).
    async fn sweep_fake(
        budget: Option<Duration>,
        rows: u64,
        per_row: Duration,
        busy: bool,
    ) -> (Vec<u64>, u64) {
        sweep_fake_sharing(budget, rows, per_row, busy, 0).await
    }

    async fn sweep_fake_sharing(
        budget: Option<Duration>,
        rows: u64,
        per_row: Duration,
        busy: bool,
        share: u64,
    ) -> (Vec<u64>, u64) {
        let mut left = rows;
        let mut sizes = Vec::new();
        let total = sweep_with(budget, |size| {
            sizes.push(size);
            let limit = size.max(share);
            let deleted = left.min(limit);
            left -= deleted;
            let took = per_row * u32::try_from(deleted).unwrap();
            async move {
                Ok(Swept {
                    deleted,
                    limit,
                    took,
                    busy,
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(left, 0, "every row went");
        (sizes, total)
    }

    #[tokio::test]
    async fn batches_over_the_budget_shrink_until_within_it_and_every_row_still_goes() {
        // 100 µs a row: 64 rows take 6.4 ms, over the 2 ms budget; 16 take 1.6 ms, within it.
        let (sizes, total) =
            sweep_fake(Some(BATCH_BUDGET), 5_000, Duration::from_micros(100), false).await;
        assert_eq!(total, 5_000);
        assert_eq!(&sizes[..3], &[64, 32, 16], "halved while over the budget");
        assert!(
            sizes.iter().skip(2).all(|&size| size == MIN_BATCH),
            "then within it: {sizes:?}"
        );

        // 1 µs a row: every batch takes less than half the budget, so they grow to BATCH.
        let (sizes, total) =
            sweep_fake(Some(BATCH_BUDGET), 20_000, Duration::from_micros(1), false).await;
        assert_eq!(total, 20_000);
        assert_eq!(&sizes[..4], &[64, 96, 144, 216]);
        assert_eq!(sizes.iter().max(), Some(&BATCH));

        // Without a budget (PostgreSQL): BATCH rows each time, however long they take.
        let (sizes, total) = sweep_fake(None, 1_200, Duration::from_micros(100), false).await;
        assert_eq!((sizes, total), (vec![BATCH; 3], 1_200));
    }

    #[tokio::test]
    async fn a_batch_larger_than_asked_for_does_not_end_the_sweep_and_every_row_goes() {
        // The writer's fair share: 300 rows a batch where 64 were asked.
        let (sizes, total) =
            sweep_fake_sharing(Some(BATCH_BUDGET), 2_000, Duration::ZERO, true, 300).await;
        assert_eq!(total, 2_000);
        // 300 deleted of 64 asked: not the last batch. Then 96, 144, 216 asked (300 each), 324,
        // and the last 476 of 486.
        assert_eq!(sizes, [64, 96, 144, 216, 324, 486]);
    }

    #[tokio::test]
    async fn only_postgres_pauses_between_batches_while_requests_come_in() {
        // SQLite: the writer paces the sweep by its turns, so no pause, busy or not.
        for busy in [false, true] {
            let started = Instant::now();
            let (sizes, _) =
                sweep_fake(Some(BATCH_BUDGET), 2_000, Duration::from_micros(1), busy).await;
            assert!(sizes.len() > 5, "{sizes:?}");
            assert!(
                started.elapsed() < PAUSE,
                "no pause: {:?}",
                started.elapsed()
            );
        }

        // PostgreSQL: a pause after each full batch while requests come in, none otherwise.
        let started = Instant::now();
        let (sizes, _) = sweep_fake(None, 2_000, Duration::from_micros(1), false).await;
        assert_eq!(sizes.len(), 5);
        assert!(started.elapsed() < PAUSE, "no pause when idle");
        let started = Instant::now();
        let (sizes, _) = sweep_fake(None, 2_000, Duration::from_micros(1), true).await;
        let pauses = u32::try_from(sizes.len() - 1).unwrap();
        assert!(
            started.elapsed() >= PAUSE * pauses,
            "a pause after each full batch: {:?}",
            started.elapsed()
        );
    }

    /// A SQLite store in a fresh folder, with the expiry index.
    async fn open() -> (SqliteSessions, SqlitePool, Sweeper, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("s.db"))
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options.clone()).await.unwrap();
        let sessions = SqliteSessions::open(pool.clone(), options).await.unwrap();
        let sweeper = Sweeper::Sqlite(sessions.clone());
        sweeper.index().await.unwrap();
        (sessions, pool, sweeper, dir)
    }

    fn at(minutes: i64) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::minutes(minutes)
    }

    /// Stores `count` sessions that expired five minutes ago, with ids from `first` on.
    async fn insert_expired(pool: &SqlitePool, first: i64, count: i64) {
        let mut insert = pool.begin().await.unwrap();
        for n in first..first + count {
            sqlx::query("insert into tower_sessions (id, data, expiry_date) values (?, ?, ?)")
                .bind(Id(i128::from(n)).to_string())
                .bind(&b"expired"[..])
                .bind(at(-5))
                .execute(&mut *insert)
                .await
                .unwrap();
        }
        insert.commit().await.unwrap();
    }

    async fn count(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar("select count(*) from tower_sessions")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_writer_tells_the_sweep_whether_new_sessions_came_since_its_last_batch() {
        let (sessions, pool, _sweeper, _dir) = open().await;
        insert_expired(&pool, 0, 10).await;
        let first = sessions.delete_expired(at(0), 2).await.unwrap();
        assert_eq!((first.deleted, first.busy), (2, false));
        let mut live = Record {
            id: Id(-1),
            data: Default::default(),
            expiry_date: at(60),
        };
        sessions.create(&mut live).await.unwrap();
        let second = sessions.delete_expired(at(0), 3).await.unwrap();
        assert_eq!((second.deleted, second.busy), (3, true));
        let third = sessions.delete_expired(at(0), 100).await.unwrap();
        assert_eq!((third.deleted, third.busy), (5, false));
        assert_eq!(count(&pool).await, 1, "only the live session is left");
    }

    #[tokio::test]
    async fn a_batch_after_new_sessions_deletes_its_share_of_them_at_least() {
        let (sessions, pool, _sweeper, _dir) = open().await;
        insert_expired(&pool, 0, 100).await;
        for n in 0..5 {
            let mut live = Record {
                id: Id(-1 - n),
                data: Default::default(),
                expiry_date: at(60),
            };
            sessions.create(&mut live).await.unwrap();
        }
        let swept = sessions.delete_expired(at(0), 1).await.unwrap();
        let share = 5 * crate::session::sqlite::SWEEP_SHARE;
        assert_eq!(
            (swept.deleted, swept.limit, swept.busy),
            (share, share, true)
        );
        // Nothing inserted since: the batch is what was asked.
        let swept = sessions.delete_expired(at(0), 1).await.unwrap();
        assert_eq!((swept.deleted, swept.limit, swept.busy), (1, 1, false));
        assert_eq!(
            count(&pool).await,
            100 - i64::try_from(share).unwrap() - 1 + 5
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweep_ends_while_new_sessions_keep_the_writer_busy_and_they_all_stay() {
        let (sessions, pool, sweeper, _dir) = open().await;
        let expired = 4_000;
        insert_expired(&pool, 0, expired).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let (sessions, stop) = (sessions.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut created = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let mut record = Record {
                            id: Id::default(),
                            data: Default::default(),
                            expiry_date: at(60),
                        };
                        sessions.create(&mut record).await.unwrap();
                        created += 1;
                    }
                    created
                })
            })
            .collect();
        let deleted = tokio::time::timeout(Duration::from_secs(60), sweeper.sweep())
            .await
            .expect("the sweep is not starved by new sessions")
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut created = 0;
        for writer in writers {
            created += writer.await.unwrap();
        }
        assert_eq!(deleted, expired.unsigned_abs());
        assert!(created > 0);
        assert_eq!(count(&pool).await, created, "every new session stayed");
    }

    #[tokio::test]
    async fn every_expired_row_goes_batch_by_batch_and_live_ones_stay() {
        let (_sessions, pool, sweeper, _dir) = open().await;
        let store = SqliteStore::new(pool.clone());
        let expired = 3 * BATCH + 7;
        insert_expired(&pool, 0, i64::try_from(expired).unwrap()).await;
        let live = Record {
            id: Id(-1),
            data: Default::default(),
            expiry_date: at(60),
        };
        store.save(&live).await.unwrap();

        assert_eq!(sweeper.sweep().await.unwrap(), expired);
        assert_eq!(count(&pool).await, 1, "only the live session is left");
        assert!(store.load(&Id(-1)).await.unwrap().is_some());
        let plan: Vec<String> =
            sqlx::query("explain query plan select id from tower_sessions where expiry_date < ?")
                .bind(at(0))
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
                .collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("tower_sessions_expiry")),
            "the sweep uses the index: {plan:?}"
        );
    }
}
