//! Deleting expired sessions from the SQL stores (SQLite, PostgreSQL) in small batches that
//! yield to requests between them: one `DELETE` of a million rows would hold SQLite's only
//! writer (and PostgreSQL's locks) for the whole time, and every sign-in would wait behind it.
//! Redis expires its keys itself; the memory store forgets at each record's expiry.

use std::time::Duration;

use time::OffsetDateTime;
use tower_sessions_sqlx_store::sqlx::{self, PgPool, SqlitePool};

/// How often a sweep starts.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(300);
/// Rows deleted by one statement.
pub const BATCH: i64 = 500;
/// The pause between two batches, in which requests get the writer.
const PAUSE: Duration = Duration::from_millis(10);

/// A SQL table of sessions with expired rows to delete.
#[derive(Clone, Debug)]
pub enum Sweeper {
    /// `tower_sessions` in SQLite.
    Sqlite(SqlitePool),
    /// `"tower_sessions"."session"` in PostgreSQL.
    Postgres(PgPool),
}

impl Sweeper {
    /// Adds the index that finds expired rows without reading the whole table.
    pub async fn index(&self) -> sqlx::Result<()> {
        match self {
            Self::Sqlite(pool) => {
                sqlx::query("create index if not exists tower_sessions_expiry on tower_sessions (expiry_date)")
                    .execute(pool)
                    .await?;
            }
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

    /// Deletes up to [`BATCH`] rows expired before `now`; how many went.
    async fn batch(&self, now: OffsetDateTime) -> sqlx::Result<u64> {
        let done = match self {
            Self::Sqlite(pool) => sqlx::query(
                "delete from tower_sessions where id in \
                 (select id from tower_sessions where expiry_date < ? limit ?)",
            )
            .bind(now)
            .bind(BATCH)
            .execute(pool)
            .await?
            .rows_affected(),
            Self::Postgres(pool) => sqlx::query(
                r#"delete from "tower_sessions"."session" where id in
                   (select id from "tower_sessions"."session" where expiry_date < $1 limit $2)"#,
            )
            .bind(now)
            .bind(BATCH)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(done)
    }

    /// Deletes every row expired now, batch by batch; how many went.
    pub async fn sweep(&self) -> sqlx::Result<u64> {
        let now = OffsetDateTime::now_utc();
        let mut total = 0;
        loop {
            let done = self.batch(now).await?;
            total += done;
            if done < BATCH.unsigned_abs() {
                return Ok(total);
            }
            tokio::time::sleep(PAUSE).await;
        }
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
mod tests {
    use super::*;
    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::SessionStore;
    use tower_sessions_sqlx_store::SqliteStore;

    #[tokio::test]
    async fn every_expired_row_goes_batch_by_batch_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("s.db"))
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let store = SqliteStore::new(pool.clone());
        store.migrate().await.unwrap();
        let sweeper = Sweeper::Sqlite(pool.clone());
        sweeper.index().await.unwrap();
        let at = |minutes: i64| OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
        let expired = 3 * BATCH + 7;
        let mut insert = pool.begin().await.unwrap();
        for n in 0..expired {
            sqlx::query("insert into tower_sessions (id, data, expiry_date) values (?, ?, ?)")
                .bind(Id(i128::from(n)).to_string())
                .bind(&b"expired"[..])
                .bind(at(-5))
                .execute(&mut *insert)
                .await
                .unwrap();
        }
        insert.commit().await.unwrap();
        let live = Record {
            id: Id(-1),
            data: Default::default(),
            expiry_date: at(60),
        };
        store.save(&live).await.unwrap();

        assert_eq!(sweeper.sweep().await.unwrap(), expired.unsigned_abs());
        let left: i64 = sqlx::query_scalar("select count(*) from tower_sessions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 1, "only the live session is left");
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
