//! Leases in the store: a named lock with an owner and an end, so that one instance of those
//! sharing a store does a piece of work (the upkeep's pass, one session's refresh) and the
//! others leave it. A lease that its owner does not release ends by itself, so an instance
//! that dies holding one blocks nobody for longer than the lease's life.
//!
//! Each store keeps them where its sessions are:
//! - **Redis** (plain, Sentinel, Cluster): a key `lte:lease:<name>` holding the owner, taken
//!   with `SET NX PX`; renewed and released by a script that first checks the owner (one key,
//!   so one Cluster slot);
//! - **SQLite, PostgreSQL**: a row (name, owner, end in milliseconds) of a table of their own,
//!   taken by an upsert that only overwrites an ended lease; so instances sharing a SQLite
//!   file take turns too;
//! - **memory**: a map in the process (a memory store is one process's).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tower_sessions::session_store;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use tower_sessions_sqlx_store::sqlx;

use super::backend::SessionBackend;
use super::index::MemberIndex;

/// The SQLite table of the leases.
#[cfg(feature = "sqlite")]
const SQLITE_TABLE: &str = "lte_leases";

/// The memory store's leases: name → (owner, end).
#[derive(Debug, Default)]
pub(crate) struct MemoryLeases(Mutex<HashMap<String, (String, Instant)>>);

impl MemoryLeases {
    fn acquire(&self, name: &str, owner: &str, ttl: Duration) -> bool {
        let Ok(mut leases) = self.0.lock() else {
            return false;
        };
        let now = Instant::now();
        match leases.get(name) {
            Some((_, end)) if *end > now => false,
            _ => {
                leases.insert(name.to_owned(), (owner.to_owned(), now + ttl));
                true
            }
        }
    }

    fn renew(&self, name: &str, owner: &str, ttl: Duration) -> bool {
        let Ok(mut leases) = self.0.lock() else {
            return false;
        };
        match leases.get_mut(name) {
            Some((held_by, end)) if held_by == owner => {
                *end = Instant::now() + ttl;
                true
            }
            _ => false,
        }
    }

    fn release(&self, name: &str, owner: &str) {
        if let Ok(mut leases) = self.0.lock()
            && leases
                .get(name)
                .is_some_and(|(held_by, _)| held_by == owner)
        {
            leases.remove(name);
        }
    }

    /// Forgets the leases that have ended.
    fn purge(&self) {
        if let Ok(mut leases) = self.0.lock() {
            let now = Instant::now();
            leases.retain(|_, (_, end)| *end > now);
        }
    }
}

/// Creates the SQL stores' table (PostgreSQL: under the migration lock, as the index's).
pub(super) async fn migrate(index: &MemberIndex) -> Result<(), String> {
    match index {
        #[cfg(feature = "sqlite")]
        MemberIndex::Sqlite(sessions) => sqlx::query(&format!(
            "create table if not exists {SQLITE_TABLE} (name text primary key not null, \
             owner text not null, expires_at integer not null)"
        ))
        .execute(&sessions.pool())
        .await
        .map(drop)
        .map_err(|e| e.to_string()),
        #[cfg(feature = "postgres")]
        MemberIndex::Postgres(pool) => sql::migrate_postgres(pool).await.map_err(|e| e.to_string()),
        _ => Ok(()),
    }
}

/// Now, in milliseconds since the epoch (the SQL stores' lease ends).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// `ttl` in whole milliseconds, at least one.
fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
fn backend_error(err: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

impl SessionBackend {
    /// Takes the lease `name` for `owner` for `ttl`, unless someone holds it (its owner
    /// too: a lease is taken anew only once it has ended). Whether it was taken.
    pub(crate) async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> session_store::Result<bool> {
        let index = &self.0.index;
        let call = async {
            match index {
                MemberIndex::Memory(_) => Ok(self.0.leases.acquire(name, owner, ttl)),
                #[cfg(feature = "sqlite")]
                MemberIndex::Sqlite(sessions) => {
                    let now = now_ms();
                    sqlx::query(&format!(
                        "insert into {SQLITE_TABLE} (name, owner, expires_at) values (?, ?, ?) \
                         on conflict (name) do update set owner = excluded.owner, \
                         expires_at = excluded.expires_at where {SQLITE_TABLE}.expires_at <= ?"
                    ))
                    .bind(name)
                    .bind(owner)
                    .bind(now.saturating_add(millis(ttl)))
                    .bind(now)
                    .execute(&sessions.pool())
                    .await
                    .map(|done| done.rows_affected() == 1)
                    .map_err(backend_error)
                }
                #[cfg(feature = "postgres")]
                MemberIndex::Postgres(pool) => sql::acquire_postgres(pool, name, owner, ttl).await,
                #[cfg(feature = "redis")]
                MemberIndex::Redis(pool) => {
                    let args = vec![owner.to_owned(), millis(ttl).to_string()];
                    Ok(redis::run(pool, redis::ACQUIRE, name, args).await? == 1)
                }
            }
        };
        self.bounded("lease", call).await
    }

    /// Extends `owner`'s lease `name` to `ttl` from now; false when `owner` does not hold it
    /// (any more).
    pub(crate) async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> session_store::Result<bool> {
        let index = &self.0.index;
        let call = async {
            match index {
                MemberIndex::Memory(_) => Ok(self.0.leases.renew(name, owner, ttl)),
                #[cfg(feature = "sqlite")]
                MemberIndex::Sqlite(sessions) => sqlx::query(&format!(
                    "update {SQLITE_TABLE} set expires_at = ? where name = ? and owner = ?"
                ))
                .bind(now_ms().saturating_add(millis(ttl)))
                .bind(name)
                .bind(owner)
                .execute(&sessions.pool())
                .await
                .map(|done| done.rows_affected() == 1)
                .map_err(backend_error),
                #[cfg(feature = "postgres")]
                MemberIndex::Postgres(pool) => sqlx::query(
                    r#"update "tower_sessions"."lease" set expires_at = $1
                       where name = $2 and owner = $3"#,
                )
                .bind(now_ms().saturating_add(millis(ttl)))
                .bind(name)
                .bind(owner)
                .execute(pool)
                .await
                .map(|done| done.rows_affected() == 1)
                .map_err(backend_error),
                #[cfg(feature = "redis")]
                MemberIndex::Redis(pool) => {
                    let args = vec![owner.to_owned(), millis(ttl).to_string()];
                    Ok(redis::run(pool, redis::RENEW, name, args).await? == 1)
                }
            }
        };
        self.bounded("lease", call).await
    }

    /// Gives `owner`'s lease `name` back before its end; nothing when another holds it.
    pub(crate) async fn release_lease(&self, name: &str, owner: &str) -> session_store::Result<()> {
        let index = &self.0.index;
        let call = async {
            match index {
                MemberIndex::Memory(_) => {
                    self.0.leases.release(name, owner);
                    Ok(())
                }
                #[cfg(feature = "sqlite")]
                MemberIndex::Sqlite(sessions) => sqlx::query(&format!(
                    "delete from {SQLITE_TABLE} where name = ? and owner = ?"
                ))
                .bind(name)
                .bind(owner)
                .execute(&sessions.pool())
                .await
                .map(drop)
                .map_err(backend_error),
                #[cfg(feature = "postgres")]
                MemberIndex::Postgres(pool) => sqlx::query(
                    r#"delete from "tower_sessions"."lease" where name = $1 and owner = $2"#,
                )
                .bind(name)
                .bind(owner)
                .execute(pool)
                .await
                .map(drop)
                .map_err(backend_error),
                #[cfg(feature = "redis")]
                MemberIndex::Redis(pool) => {
                    redis::run(pool, redis::RELEASE, name, vec![owner.to_owned()])
                        .await
                        .map(drop)
                }
            }
        };
        self.bounded("lease", call).await
    }

    /// Deletes the leases that ended more than an hour ago (those left to end by themselves
    /// after a failure); Redis expires its own.
    pub(crate) async fn purge_leases(&self) -> session_store::Result<()> {
        let index = &self.0.index;
        let call = async {
            match index {
                MemberIndex::Memory(_) => {
                    self.0.leases.purge();
                    Ok(())
                }
                #[cfg(feature = "sqlite")]
                MemberIndex::Sqlite(sessions) => {
                    sqlx::query(&format!("delete from {SQLITE_TABLE} where expires_at < ?"))
                        .bind(now_ms().saturating_sub(3_600_000))
                        .execute(&sessions.pool())
                        .await
                        .map(drop)
                        .map_err(backend_error)
                }
                #[cfg(feature = "postgres")]
                MemberIndex::Postgres(pool) => {
                    sqlx::query(r#"delete from "tower_sessions"."lease" where expires_at < $1"#)
                        .bind(now_ms().saturating_sub(3_600_000))
                        .execute(pool)
                        .await
                        .map(drop)
                        .map_err(backend_error)
                }
                #[cfg(feature = "redis")]
                MemberIndex::Redis(_) => Ok(()),
            }
        };
        self.bounded("lease", call).await
    }
}

/// PostgreSQL's table, `"tower_sessions"."lease"`.
#[cfg(feature = "postgres")]
mod sql {
    use tower_sessions_sqlx_store::sqlx::PgPool;

    use super::*;

    pub(super) async fn migrate_postgres(pool: &PgPool) -> sqlx::Result<()> {
        let mut tx = pool.begin().await?;
        // As the index's migration: instances starting at once would race on the catalog.
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(super::super::index::MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            r#"create table if not exists "tower_sessions"."lease" (
                 name text primary key not null,
                 owner text not null,
                 expires_at bigint not null)"#,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub(super) async fn acquire_postgres(
        pool: &PgPool,
        name: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> session_store::Result<bool> {
        let now = now_ms();
        sqlx::query(
            r#"insert into "tower_sessions"."lease" (name, owner, expires_at) values ($1, $2, $3)
               on conflict (name) do update set owner = excluded.owner,
                 expires_at = excluded.expires_at
               where "tower_sessions"."lease".expires_at <= $4"#,
        )
        .bind(name)
        .bind(owner)
        .bind(now.saturating_add(millis(ttl)))
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1)
        .map_err(backend_error)
    }
}

/// Redis's scripts, each on the lease's one key.
#[cfg(feature = "redis")]
mod redis {
    /// `ARGV`: owner, milliseconds. 1 when taken.
    pub(super) const ACQUIRE: &str = r#"
        if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
        return 0"#;
    /// `ARGV`: owner, milliseconds. 1 when the owner held it.
    pub(super) const RENEW: &str = r#"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return 1
        end
        return 0"#;
    /// `ARGV`: owner.
    pub(super) const RELEASE: &str = r#"
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0"#;

    /// The key of lease `name`.
    fn key(name: &str) -> String {
        format!("lte:lease:{name}")
    }

    /// Runs `script` on lease `name` with `args`: its answer (1 for done).
    pub(super) async fn run(
        pool: &tower_sessions_redis_store::fred::prelude::Pool,
        script: &str,
        name: &str,
        args: Vec<String>,
    ) -> tower_sessions::session_store::Result<i64> {
        use tower_sessions_redis_store::fred::interfaces::LuaInterface;
        pool.eval(script, vec![key(name)], args)
            .await
            .map_err(super::backend_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_lease_is_held_until_it_ends_or_its_owner_gives_it_back() {
        let leases = MemoryLeases::default();
        let long = Duration::from_secs(60);
        assert!(leases.acquire("pass", "a", long));
        assert!(!leases.acquire("pass", "b", long), "held by a");
        assert!(
            !leases.acquire("pass", "a", long),
            "taken anew only once ended"
        );
        assert!(leases.renew("pass", "a", long));
        assert!(!leases.renew("pass", "b", long), "b does not hold it");
        leases.release("pass", "b");
        assert!(
            !leases.acquire("pass", "b", long),
            "b cannot give a's lease back"
        );
        leases.release("pass", "a");
        assert!(leases.acquire("pass", "b", Duration::ZERO), "given back");
        // A lease whose end has passed is free, and purged.
        assert!(leases.acquire("pass", "c", long));
        leases.purge();
        assert!(!leases.acquire("pass", "a", long));
        assert!(leases.acquire("other", "a", long), "leases are by name");
    }
}
