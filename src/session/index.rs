//! The member → sessions index: which sessions each signed-in member holds, kept by every
//! store beside the sessions themselves, so that all of a member's sessions can be listed
//! and ended at once (sign out everywhere, the admin routes).
//!
//! The index holds only what it must: the member id, the session ids, and for each session
//! its flow, when it was signed in, when it was last used, the browser it was signed in with
//! ("Chrome on Linux", from [`device`](super::device)) and when it expires; never a token,
//! nor anything else of the sealed record. The member sees their own list (`GET /sessions`),
//! each session named by a handle made from its id, never the id itself. "Last used" is
//! written at most once a minute per session and instance ([`SessionBackend`]'s loads), so
//! that a request does not write the store each time it reads it. How each store keeps the
//! index, and how an ended or expired session leaves it:
//!
//! [`SessionBackend`]: super::SessionBackend
//!
//! - **memory**: a map beside the sessions' cache ([`MemoryIndex`]). An entry leaves with its
//!   record, however the record goes (a logout, eviction for room, its own expiry): the
//!   cache's removal listener forgets it. Expiry is lazy in the cache, so entries whose
//!   expiry has passed are never listed or counted.
//! - **SQLite, PostgreSQL**: a table of (session id, member id, flow, sign-in time, browser,
//!   last use); the last two columns are added to a table of an earlier version. SQLite
//!   writes the row in the same transaction as the new session (the group-commit writer);
//!   PostgreSQL just after it. A trigger deletes the row with its session's row, whichever
//!   way that goes: a logout, a revocation, or the expiry sweep (`sweep`). Expiry is read
//!   from the sessions table, so an expired session that the sweep has not reached yet is
//!   already neither listed nor counted.
//! - **Redis** (plain, Sentinel or Cluster): per member, under one hash tag so that both keys
//!   live on one Cluster node, a sorted set of session ids scored by their expiry and a hash
//!   of each one's `<flow> <sign-in time> <last use> <browser>` (an entry of an earlier
//!   version, `<flow> <sign-in time>`, reads as last used at sign-in, by an unknown
//!   browser). Every save of the session moves its score to its
//!   new expiry; every write and read of the index drops the entries whose expiry has passed;
//!   each key expires itself with the latest session. Each change is one script on one
//!   member's keys (no command spans two members, nor a member and a session). A logout reads
//!   the record before deleting it, to learn whose index entry to remove.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
#[cfg(feature = "redis")]
use tower_sessions_redis_store::fred::interfaces::{KeysInterface, LuaInterface};
#[cfg(feature = "redis")]
use tower_sessions_redis_store::fred::prelude::Pool as RedisPool;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use tower_sessions_sqlx_store::sqlx;
#[cfg(feature = "postgres")]
use tower_sessions_sqlx_store::sqlx::PgPool;
#[cfg(feature = "sqlite")]
use tower_sessions_sqlx_store::sqlx::SqlitePool;

use super::MemoryStore;
#[cfg(feature = "sqlite")]
use super::SqliteSessions;

/// One session of a member, as the admin routes show it (never its id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    /// The flow that signed it in (`jsapi` or `oidc`).
    pub flow: String,
    /// When it was signed in, as a Unix timestamp.
    pub created_at: i64,
    /// When it ends unless used again, as a Unix timestamp.
    pub expires_at: i64,
}

/// One of the member's own sessions, as `GET /sessions` shows it to them: named by a handle
/// ([`Keyring::handle`](super::seal::Keyring::handle) of its id), never by its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct OwnSession {
    /// Names the session in `DELETE /sessions/{handle}`; opaque, and not the session id.
    pub handle: String,
    /// The flow that signed it in (`jsapi` or `oidc`).
    pub flow: String,
    /// When it was signed in, as a Unix timestamp.
    pub created_at: i64,
    /// When it was last used, as a Unix timestamp (noted once a minute at most).
    pub last_seen: i64,
    /// The browser it was signed in with ("Chrome on Linux").
    pub browser: String,
    /// Whether it is the session of the request that asks.
    pub current: bool,
}

/// A listed session from a SQL row (`flow`, `created_at`, the sessions table's `expiry_date`),
/// in SQLite and PostgreSQL alike.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn summary<R>(row: &R) -> Result<SessionSummary, sqlx::Error>
where
    R: sqlx::Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> OffsetDateTime: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SessionSummary {
        flow: row.try_get("flow")?,
        created_at: row.try_get("created_at")?,
        expires_at: row
            .try_get::<OffsetDateTime, _>("expiry_date")?
            .unix_timestamp(),
    })
}

/// One of a member's sessions as the index keeps it, with its id: for the member's own list
/// (where the id becomes a handle) and for ending one of them. Never serialized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Indexed {
    /// The session.
    pub id: Id,
    /// Its flow, sign-in time and expiry.
    pub summary: SessionSummary,
    /// When it was last used, as a Unix timestamp (its sign-in time until then).
    pub last_seen: i64,
    /// The browser it was signed in with ([`device::describe`](super::device::describe));
    /// [`device::UNKNOWN`](super::device::UNKNOWN) for a session indexed without one.
    pub browser: String,
}

impl Indexed {
    /// `browser` as kept, or [`device::UNKNOWN`](super::device::UNKNOWN) when none was.
    fn browser_or_unknown(browser: String) -> String {
        if browser.trim().is_empty() {
            super::device::UNKNOWN.to_owned()
        } else {
            browser
        }
    }
}

/// A listed session from a SQL row (`session_id`, `flow`, `created_at`, `browser`,
/// `last_seen`, the sessions table's `expiry_date`), in SQLite and PostgreSQL alike; `None`
/// for a row whose id does not parse.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn indexed<R>(row: &R) -> Result<Option<Indexed>, sqlx::Error>
where
    R: sqlx::Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> OffsetDateTime: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let summary = summary(row)?;
    let Ok(id) = row.try_get::<String, _>("session_id")?.parse::<Id>() else {
        return Ok(None);
    };
    Ok(Some(Indexed {
        id,
        last_seen: row.try_get::<i64, _>("last_seen")?.max(summary.created_at),
        browser: Indexed::browser_or_unknown(row.try_get("browser")?),
        summary,
    }))
}

/// What the index learns about a session from its (unsealed) record: whose it is, how they
/// signed in, and with which browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The member.
    pub member_id: String,
    /// `jsapi` or `oidc`.
    pub flow: &'static str,
    /// The browser that signed in ([`device`](super::device)); empty when not recorded.
    pub browser: String,
}

impl Entry {
    /// The entry of a record that holds a signed-in member; `None` for any other session.
    pub fn of(record: &Record) -> Option<Self> {
        super::member::member_in(&record.data).map(|member| Self {
            flow: member.credentials.flow().as_str(),
            member_id: member.member_id,
            browser: super::member::browser_in(&record.data)
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// The SQLite table of the index.
#[cfg(feature = "sqlite")]
pub(super) const SQLITE_TABLE: &str = "lte_member_sessions";

/// The index of the store in use; cheap to clone.
#[derive(Clone, Debug)]
pub(super) enum MemberIndex {
    /// Kept by the memory store itself ([`MemoryStore::index`]).
    Memory(MemoryStore),
    /// Written by the SQLite writer with each new session ([`SqliteSessions::create_indexed`]).
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteSessions),
    /// `"tower_sessions"."member_session"`.
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
    /// Two keys per member.
    #[cfg(feature = "redis")]
    Redis(RedisPool),
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
fn backend_error(err: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

// The Redis calls are boxed: fred's futures run to kilobytes, and unboxed they would make
// every future that may await one (each session load and create, whatever the store) that
// large, copied at each move.
impl MemberIndex {
    /// Creates the table and its trigger (SQL stores); nothing to do for the others.
    pub(super) async fn migrate(&self) -> Result<(), String> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(sessions) => migrate_sqlite(&sessions.pool())
                .await
                .map_err(|e| e.to_string()),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => migrate_postgres(pool).await.map_err(|e| e.to_string()),
            #[cfg(feature = "redis")]
            Self::Redis(_) => Ok(()),
            Self::Memory(_) => Ok(()),
        }
    }

    /// Records a new session `id` of `entry`'s member, expiring at `expires`. SQLite's entry
    /// is already written, with the session.
    pub(super) async fn add(
        &self,
        id: &Id,
        entry: &Entry,
        expires: OffsetDateTime,
    ) -> session_store::Result<()> {
        match self {
            Self::Memory(store) => {
                store.index().record(id, entry, expires.unix_timestamp());
                Ok(())
            }
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Ok(()),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => sqlx::query(
                r#"insert into "tower_sessions"."member_session"
                     (session_id, member_id, flow, created_at, browser, last_seen)
                   values ($1, $2, $3, $4, $5, $4) on conflict (session_id) do nothing"#,
            )
            .bind(id.to_string())
            .bind(&entry.member_id)
            .bind(entry.flow)
            .bind(now())
            .bind(&entry.browser)
            .execute(pool)
            .await
            .map(drop)
            .map_err(backend_error),
            #[cfg(feature = "redis")]
            Self::Redis(pool) => {
                Box::pin(redis::touch(pool, id, entry, expires.unix_timestamp())).await
            }
        }
    }

    /// Follows a session saved again with a new expiry (the SQL stores read the expiry from
    /// the sessions table, so they have nothing to do). A session that has ended meanwhile is
    /// not written back by its save, and not indexed again here (Redis: its entry is dropped
    /// at the next read, which checks that each session still exists).
    pub(super) async fn touch(
        &self,
        id: &Id,
        entry: &Entry,
        expires: OffsetDateTime,
    ) -> session_store::Result<()> {
        match self {
            Self::Memory(store) => {
                if store.holds_member_session(id) {
                    store.index().record(id, entry, expires.unix_timestamp());
                }
                Ok(())
            }
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Ok(()),
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => Ok(()),
            #[cfg(feature = "redis")]
            Self::Redis(pool) => {
                Box::pin(redis::touch(pool, id, entry, expires.unix_timestamp())).await
            }
        }
    }

    /// Whether a new session's entry is written with its record (SQLite's writer), so that
    /// [`add`](Self::add) has nothing to do.
    pub(super) fn written_with_the_session(&self) -> bool {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => true,
            _ => false,
        }
    }

    /// Whether [`forget`](Self::forget) needs the member of the session that ends (the other
    /// stores forget by themselves, with the record).
    pub(super) fn forgets_by_member(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(_) => true,
            _ => false,
        }
    }

    /// Removes session `id` of `member_id` from the index, once its record is deleted.
    pub(super) async fn forget(&self, member_id: &str, id: &Id) -> session_store::Result<()> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(pool) => Box::pin(redis::forget(pool, member_id, &[id.to_string()])).await,
            _ => {
                let _ = (member_id, id);
                Ok(())
            }
        }
    }

    /// The unexpired sessions of `member_id`, oldest first.
    pub(super) async fn list(&self, member_id: &str) -> session_store::Result<Vec<SessionSummary>> {
        Ok(self
            .sessions(member_id)
            .await?
            .into_iter()
            .map(|session| session.summary)
            .collect())
    }

    /// The unexpired sessions of `member_id` with their ids, last use and browser, oldest
    /// first.
    pub(super) async fn sessions(&self, member_id: &str) -> session_store::Result<Vec<Indexed>> {
        let mut sessions: Vec<Indexed> = match self {
            Self::Memory(store) => {
                let now = now();
                store
                    .index()
                    .entries(member_id)
                    .into_iter()
                    .filter(|session| {
                        session.summary.expires_at > now && store.holds_member_session(&session.id)
                    })
                    .collect()
            }
            #[cfg(feature = "sqlite")]
            Self::Sqlite(sessions) => sql::list_sqlite(&sessions.pool(), member_id).await?,
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => sql::list_postgres(pool, member_id).await?,
            #[cfg(feature = "redis")]
            Self::Redis(pool) => Box::pin(redis::live(pool, member_id)).await?,
        };
        sessions.sort_by_key(|s| (s.summary.created_at, s.summary.expires_at, s.id.0));
        Ok(sessions)
    }

    /// Notes that session `id` of `member_id` was used at `at` (Unix seconds). Only an entry
    /// that exists is changed, and never moved back in time: a session that has ended is not
    /// indexed again.
    pub(super) async fn seen(
        &self,
        id: &Id,
        member_id: &str,
        at: i64,
    ) -> session_store::Result<()> {
        // Only Redis finds an entry by its member.
        #[cfg(not(feature = "redis"))]
        let _ = member_id;
        match self {
            Self::Memory(store) => {
                store.index().seen(id, at);
                Ok(())
            }
            #[cfg(feature = "sqlite")]
            Self::Sqlite(sessions) => sqlx::query(&format!(
                "update {SQLITE_TABLE} set last_seen = ? where session_id = ? and last_seen < ?"
            ))
            .bind(at)
            .bind(id.to_string())
            .bind(at)
            .execute(&sessions.pool())
            .await
            .map(drop)
            .map_err(backend_error),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => sqlx::query(
                r#"update "tower_sessions"."member_session" set last_seen = $1
                   where session_id = $2 and last_seen < $1"#,
            )
            .bind(at)
            .bind(id.to_string())
            .execute(pool)
            .await
            .map(drop)
            .map_err(backend_error),
            #[cfg(feature = "redis")]
            Self::Redis(pool) => Box::pin(redis::seen(pool, member_id, id, at)).await,
        }
    }

    /// Ends every session of `member_id`: their records are deleted, and their index entries
    /// with them. How many unexpired sessions ended.
    pub(super) async fn revoke(&self, member_id: &str) -> session_store::Result<u64> {
        match self {
            Self::Memory(store) => {
                let mut ended = 0;
                for Indexed { id, .. } in store.index().entries(member_id) {
                    if store.load(&id).await?.is_some() {
                        ended += 1;
                    }
                    store.delete(&id).await?;
                }
                Ok(ended)
            }
            #[cfg(feature = "sqlite")]
            Self::Sqlite(sessions) => sql::revoke_sqlite(&sessions.pool(), member_id).await,
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => sql::revoke_postgres(pool, member_id).await,
            #[cfg(feature = "redis")]
            Self::Redis(pool) => Box::pin(redis::revoke(pool, member_id)).await,
        }
    }
}

/// The index of the memory store: each member's sessions, and each session's member.
#[derive(Debug, Default)]
pub(crate) struct MemoryIndex {
    entries: Mutex<MemoryEntries>,
}

#[derive(Debug, Default)]
struct MemoryEntries {
    by_member: HashMap<String, HashMap<Id, Indexed>>,
    member_of: HashMap<Id, String>,
}

impl MemoryIndex {
    /// Records session `id` of `entry`'s member with its expiry (its sign-in time is kept
    /// when it is already known).
    pub(super) fn record(&self, id: &Id, entry: &Entry, expires_at: i64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        entries.member_of.insert(*id, entry.member_id.clone());
        entries
            .by_member
            .entry(entry.member_id.clone())
            .or_default()
            .entry(*id)
            .and_modify(|session| session.summary.expires_at = expires_at)
            .or_insert_with(|| {
                let now = now();
                Indexed {
                    id: *id,
                    summary: SessionSummary {
                        flow: entry.flow.to_owned(),
                        created_at: now,
                        expires_at,
                    },
                    last_seen: now,
                    browser: Indexed::browser_or_unknown(entry.browser.clone()),
                }
            });
    }

    /// Notes that session `id` was used at `at`, when it is recorded.
    pub(super) fn seen(&self, id: &Id, at: i64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let Some(member) = entries.member_of.get(id).cloned() else {
            return;
        };
        if let Some(session) = entries
            .by_member
            .get_mut(&member)
            .and_then(|sessions| sessions.get_mut(id))
        {
            session.last_seen = session.last_seen.max(at);
        }
    }

    /// Forgets session `id` (its record has left the store).
    pub(crate) fn forget(&self, id: &Id) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let Some(member) = entries.member_of.remove(id) else {
            return;
        };
        if let Some(sessions) = entries.by_member.get_mut(&member) {
            sessions.remove(id);
            if sessions.is_empty() {
                entries.by_member.remove(&member);
            }
        }
    }

    /// The sessions recorded for `member_id`, expired or not.
    fn entries(&self, member_id: &str) -> Vec<Indexed> {
        self.entries
            .lock()
            .ok()
            .and_then(|entries| {
                entries
                    .by_member
                    .get(member_id)
                    .map(|sessions| sessions.values().cloned().collect())
            })
            .unwrap_or_default()
    }

    #[cfg(test)]
    /// How many sessions are recorded, for every member.
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map(|e| e.member_of.len()).unwrap_or(0)
    }

    #[cfg(test)]
    /// Whether no session is recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(feature = "sqlite")]
async fn migrate_sqlite(pool: &SqlitePool) -> sqlx::Result<()> {
    let statements = [
        format!(
            "create table if not exists {SQLITE_TABLE} (session_id text primary key not null, \
             member_id text not null, flow text not null, created_at integer not null, \
             browser text not null default '', last_seen integer not null default 0)"
        ),
        format!("create index if not exists {SQLITE_TABLE}_member on {SQLITE_TABLE} (member_id)"),
        // The entry goes with its session's row: a logout, a revocation or the sweep.
        format!(
            "create trigger if not exists {SQLITE_TABLE}_follow after delete on tower_sessions \
             begin delete from {SQLITE_TABLE} where session_id = old.id; end"
        ),
    ];
    for statement in statements {
        sqlx::query(&statement).execute(pool).await?;
    }
    // A table of an earlier version gets the browser and last-use columns.
    let columns: Vec<String> = sqlx::query_scalar(&format!(
        "select name from pragma_table_info('{SQLITE_TABLE}')"
    ))
    .fetch_all(pool)
    .await?;
    for (column, definition) in [
        ("browser", "text not null default ''"),
        ("last_seen", "integer not null default 0"),
    ] {
        if columns.iter().any(|c| c == column) {
            continue;
        }
        let added = sqlx::query(&format!(
            "alter table {SQLITE_TABLE} add column {column} {definition}"
        ))
        .execute(pool)
        .await;
        match added {
            // Another process sharing the file added it first.
            Err(sqlx::Error::Database(err)) if err.message().contains("duplicate column") => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// The advisory lock under which an instance migrates PostgreSQL: the store's tables, then the
/// member index, one instance at a time.
#[cfg(feature = "postgres")]
pub(crate) const MIGRATION_LOCK: i64 = 7_160_817_235;

#[cfg(feature = "postgres")]
async fn migrate_postgres(pool: &PgPool) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    // Instances starting at once would race on the catalog: one at a time.
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    let statements = [
        r#"create table if not exists "tower_sessions"."member_session" (
             session_id text primary key not null,
             member_id text not null,
             flow text not null,
             created_at bigint not null)"#,
        // The browser and last use (a table of an earlier version has neither). Looked up
        // first: an `alter table` locks the table out, even when it has nothing to do.
        r#"do $$ begin
             if not exists (select 1 from information_schema.columns
                            where table_schema = 'tower_sessions'
                              and table_name = 'member_session' and column_name = 'last_seen') then
               alter table "tower_sessions"."member_session"
                 add column if not exists browser text not null default '',
                 add column if not exists last_seen bigint not null default 0;
             end if;
           end $$"#,
        r#"create index if not exists member_session_member
             on "tower_sessions"."member_session" (member_id)"#,
        r#"create or replace function "tower_sessions".forget_member_session() returns trigger
             language plpgsql as $$
             begin
               delete from "tower_sessions"."member_session" where session_id = old.id;
               return old;
             end $$"#,
        r#"do $$ begin
             if not exists (select 1 from pg_trigger where tgname = 'member_session_follow') then
               create trigger member_session_follow after delete on "tower_sessions"."session"
                 for each row execute function "tower_sessions".forget_member_session();
             end if;
           end $$"#,
    ];
    for statement in statements {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// The SQL stores' queries.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql {
    use super::*;

    /// The rows' sessions; a row whose id does not parse (none this crate wrote) is left out.
    fn collect<R>(rows: &[R]) -> session_store::Result<Vec<Indexed>>
    where
        R: sqlx::Row,
        for<'r> &'r str: sqlx::ColumnIndex<R>,
        for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> OffsetDateTime: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let rows: Vec<Option<Indexed>> = rows
            .iter()
            .map(indexed)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend_error)?;
        Ok(rows.into_iter().flatten().collect())
    }

    #[cfg(feature = "sqlite")]
    pub(super) async fn list_sqlite(
        pool: &SqlitePool,
        member_id: &str,
    ) -> session_store::Result<Vec<Indexed>> {
        let rows = sqlx::query(&format!(
            "select i.session_id, i.flow, i.created_at, i.browser, i.last_seen, s.expiry_date \
             from {SQLITE_TABLE} i \
             join tower_sessions s on s.id = i.session_id \
             where i.member_id = ? and s.expiry_date > ?"
        ))
        .bind(member_id)
        .bind(OffsetDateTime::now_utc())
        .fetch_all(pool)
        .await
        .map_err(backend_error)?;
        collect(&rows)
    }

    #[cfg(feature = "postgres")]
    pub(super) async fn list_postgres(
        pool: &PgPool,
        member_id: &str,
    ) -> session_store::Result<Vec<Indexed>> {
        let rows = sqlx::query(
            r#"select i.session_id, i.flow, i.created_at, i.browser, i.last_seen, s.expiry_date
               from "tower_sessions"."member_session" i
               join "tower_sessions"."session" s on s.id = i.session_id
               where i.member_id = $1 and s.expiry_date > $2"#,
        )
        .bind(member_id)
        .bind(OffsetDateTime::now_utc())
        .fetch_all(pool)
        .await
        .map_err(backend_error)?;
        collect(&rows)
    }

    /// Deletes the member's sessions (the trigger takes their entries), then any entry left
    /// without a session; counts those that had not expired.
    #[cfg(feature = "sqlite")]
    pub(super) async fn revoke_sqlite(
        pool: &SqlitePool,
        member_id: &str,
    ) -> session_store::Result<u64> {
        let now = OffsetDateTime::now_utc();
        let expiries: Vec<OffsetDateTime> = sqlx::query_scalar(&format!(
            "delete from tower_sessions where id in \
             (select session_id from {SQLITE_TABLE} where member_id = ?) returning expiry_date"
        ))
        .bind(member_id)
        .fetch_all(pool)
        .await
        .map_err(backend_error)?;
        sqlx::query(&format!("delete from {SQLITE_TABLE} where member_id = ?"))
            .bind(member_id)
            .execute(pool)
            .await
            .map_err(backend_error)?;
        Ok(expiries.iter().filter(|&&at| at > now).count() as u64)
    }

    /// As `revoke_sqlite`, in one statement.
    #[cfg(feature = "postgres")]
    pub(super) async fn revoke_postgres(
        pool: &PgPool,
        member_id: &str,
    ) -> session_store::Result<u64> {
        let now = OffsetDateTime::now_utc();
        let expiries: Vec<OffsetDateTime> = sqlx::query_scalar(
            r#"with gone as (
                 delete from "tower_sessions"."session" where id in
                   (select session_id from "tower_sessions"."member_session" where member_id = $1)
                 returning expiry_date),
               orphans as (
                 delete from "tower_sessions"."member_session" where member_id = $1)
               select expiry_date from gone"#,
        )
        .bind(member_id)
        .fetch_all(pool)
        .await
        .map_err(backend_error)?;
        Ok(expiries.iter().filter(|&&at| at > now).count() as u64)
    }
}

/// The Redis index: per member, `lte:member:{<member>}:sessions` (a sorted set of session
/// ids scored by expiry) and `lte:member:{<member>}:meta` (a hash of each session's
/// `<flow> <signed-in time> <last use> <browser>`; an earlier version's
/// `<flow> <signed-in time>` still reads). The braces make a Cluster hash tag: both keys of a member live
/// on one node, and each script touches only those two keys.
#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use tower_sessions_redis_store::fred::types::Value;

    /// Drops the entries whose expiry (score) is at or before `ARGV[1]` from both keys; the
    /// keys then expire with the latest session, or go when none is left.
    const PRUNE: &str = r#"
        local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
        if #gone > 0 then
          redis.call('ZREM', KEYS[1], unpack(gone))
          redis.call('HDEL', KEYS[2], unpack(gone))
        end
        local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
        if #last == 0 then
          redis.call('DEL', KEYS[1], KEYS[2])
        else
          redis.call('EXPIREAT', KEYS[1], last[2])
          redis.call('EXPIREAT', KEYS[2], last[2])
        end
    "#;

    /// `ARGV`: now, session id, its expiry, `<flow> <now> <now> <browser>`.
    fn touch_script() -> String {
        format!(
            r#"
            redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
            redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[4])
            {PRUNE}
            return 1"#
        )
    }

    /// `ARGV`: now; answers `id, expiry, meta` for each live entry.
    fn list_script() -> String {
        format!(
            r#"
            {PRUNE}
            local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
            local answer = {{}}
            for i = 1, #entries, 2 do
              table.insert(answer, entries[i])
              table.insert(answer, entries[i + 1])
              table.insert(answer, redis.call('HGET', KEYS[2], entries[i]) or '')
            end
            return answer"#
        )
    }

    /// `ARGV`: the session id, the time it was used. Rewrites its meta with that last use,
    /// when the session is still indexed and was not seen later.
    const SEEN: &str = r#"
        if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
        local meta = redis.call('HGET', KEYS[2], ARGV[1])
        if not meta then return 0 end
        local flow, created, seen, browser = string.match(meta, '^(%S*) (%S*) (%S*) (.*)$')
        if not flow then
          flow, created = string.match(meta, '^(%S*) (%S*)')
          seen, browser = created, ''
        end
        if not flow then return 0 end
        if (tonumber(seen) or 0) >= tonumber(ARGV[2]) then return 0 end
        redis.call('HSET', KEYS[2], ARGV[1], flow .. ' ' .. created .. ' ' .. ARGV[2] .. ' ' .. browser)
        return 1"#;

    /// `ARGV`: the ids to remove.
    const FORGET: &str = r#"
        redis.call('ZREM', KEYS[1], unpack(ARGV))
        redis.call('HDEL', KEYS[2], unpack(ARGV))
        if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
        return 1"#;

    /// The two keys of `member_id`'s index. Characters that would end the hash tag early (or
    /// make two members' keys alike) are percent-encoded.
    pub(super) fn keys(member_id: &str) -> Vec<String> {
        const TAG: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
            .add(b'{')
            .add(b'}')
            .add(b'%')
            .add(b' ');
        let tag = percent_encoding::utf8_percent_encode(member_id, TAG);
        vec![
            format!("lte:member:{{{tag}}}:sessions"),
            format!("lte:member:{{{tag}}}:meta"),
        ]
    }

    pub(super) async fn touch(
        pool: &RedisPool,
        id: &Id,
        entry: &Entry,
        expires_at: i64,
    ) -> session_store::Result<()> {
        let now = now();
        // The browser is one line of text from a fixed vocabulary; the last field, so that it
        // may hold spaces.
        let browser: String = entry.browser.chars().filter(|c| !c.is_control()).collect();
        let args = vec![
            now.to_string(),
            id.to_string(),
            expires_at.to_string(),
            format!("{} {now} {now} {browser}", entry.flow),
        ];
        pool.eval::<Value, _, _, _>(touch_script(), keys(&entry.member_id), args)
            .await
            .map(drop)
            .map_err(backend_error)
    }

    pub(super) async fn forget(
        pool: &RedisPool,
        member_id: &str,
        ids: &[String],
    ) -> session_store::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        pool.eval::<Value, _, _, _>(FORGET, keys(member_id), ids.to_vec())
            .await
            .map(drop)
            .map_err(backend_error)
    }

    pub(super) async fn seen(
        pool: &RedisPool,
        member_id: &str,
        id: &Id,
        at: i64,
    ) -> session_store::Result<()> {
        pool.eval::<Value, _, _, _>(SEEN, keys(member_id), vec![id.to_string(), at.to_string()])
            .await
            .map(drop)
            .map_err(backend_error)
    }

    /// A session's meta, `<flow> <signed-in time> <last use> <browser>` (or an earlier
    /// version's `<flow> <signed-in time>`): its flow, sign-in time, last use and browser.
    pub(super) fn parse_meta(meta: &str) -> (String, i64, i64, String) {
        let mut fields = meta.splitn(4, ' ');
        let flow = fields.next().unwrap_or_default().to_owned();
        let created_at = fields.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        let last_seen = fields
            .next()
            .and_then(|t| t.parse::<i64>().ok())
            .map_or(created_at, |seen| seen.max(created_at));
        let browser = fields.next().unwrap_or_default().to_owned();
        (flow, created_at, last_seen, browser)
    }

    /// The member's unexpired entries whose record still exists; an entry whose record is
    /// gone (its removal from the index failed) is removed now.
    pub(super) async fn live(
        pool: &RedisPool,
        member_id: &str,
    ) -> session_store::Result<Vec<Indexed>> {
        let flat: Vec<String> = pool
            .eval(list_script(), keys(member_id), vec![now().to_string()])
            .await
            .map_err(backend_error)?;
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for entry in flat.chunks_exact(3) {
            let [id, expiry, meta] = entry else { continue };
            // Each session is a key of its own, in its own slot: one command each.
            let exists: i64 = pool.exists(id.as_str()).await.map_err(backend_error)?;
            if exists == 0 {
                stale.push(id.clone());
                continue;
            }
            let Ok(parsed) = id.parse::<Id>() else {
                stale.push(id.clone());
                continue;
            };
            let (flow, created_at, last_seen, browser) = parse_meta(meta);
            live.push(Indexed {
                id: parsed,
                summary: SessionSummary {
                    flow,
                    created_at,
                    expires_at: expiry.parse::<f64>().map_or(0, |e| e as i64),
                },
                last_seen,
                browser: Indexed::browser_or_unknown(browser),
            });
        }
        forget(pool, member_id, &stale).await?;
        Ok(live)
    }

    pub(super) async fn revoke(pool: &RedisPool, member_id: &str) -> session_store::Result<u64> {
        let live = live(pool, member_id).await?;
        let mut ended = 0;
        let mut ids = Vec::with_capacity(live.len());
        for Indexed { id, .. } in live {
            let id = id.to_string();
            let deleted: i64 = pool.del(id.as_str()).await.map_err(backend_error)?;
            ended += deleted.unsigned_abs();
            ids.push(id);
        }
        forget(pool, member_id, &ids).await?;
        Ok(ended)
    }

    #[cfg(test)]
    mod tests {
        use super::{keys, parse_meta};

        #[test]
        fn a_meta_of_this_version_or_the_last_one_reads() {
            assert_eq!(
                parse_meta("oidc 100 160 Chrome on Linux"),
                ("oidc".into(), 100, 160, "Chrome on Linux".into())
            );
            assert_eq!(
                parse_meta("jsapi 100"),
                ("jsapi".into(), 100, 100, String::new())
            );
            assert_eq!(
                parse_meta("jsapi 100 90 "),
                ("jsapi".into(), 100, 100, String::new())
            );
            assert_eq!(parse_meta(""), (String::new(), 0, 0, String::new()));
        }

        #[test]
        fn a_members_keys_share_one_hash_tag_that_no_member_id_can_break() {
            assert_eq!(
                keys("abc-123"),
                ["lte:member:{abc-123}:sessions", "lte:member:{abc-123}:meta"]
            );
            let odd = keys("a}b{c%");
            assert_eq!(odd[0], "lte:member:{a%7Db%7Bc%25}:sessions");
            assert_ne!(keys("a}")[0], keys("a%7D")[0]);
        }
    }
}

/// Every member's sessions of one flow, for the upkeep's passes (`upkeep`).
impl MemberIndex {
    /// The ids of the unexpired sessions signed in through `flow` (`jsapi`, `oidc`), every
    /// member's. Memory, SQLite and PostgreSQL read their index; Redis scans the members'
    /// `…:meta` hashes (every node of a Cluster), so it may list a session that has just
    /// ended: its load then finds nothing.
    pub(super) async fn sessions_of_flow(&self, flow: &str) -> session_store::Result<Vec<Id>> {
        #[cfg_attr(
            not(any(feature = "sqlite", feature = "postgres", feature = "redis")),
            allow(unused_variables)
        )]
        let parsed =
            |ids: Vec<String>| -> Vec<Id> { ids.iter().filter_map(|id| id.parse().ok()).collect() };
        Ok(match self {
            Self::Memory(store) => {
                let now = now();
                // Copied out first: the cache's removal listener takes this lock too.
                let listed: Vec<Id> = match store.index().entries.lock() {
                    Ok(entries) => entries
                        .by_member
                        .values()
                        .flat_map(|sessions| sessions.values())
                        .filter(|indexed| {
                            indexed.summary.flow == flow && indexed.summary.expires_at > now
                        })
                        .map(|indexed| indexed.id)
                        .collect(),
                    Err(_) => Vec::new(),
                };
                listed
                    .into_iter()
                    .filter(|id| store.holds_member_session(id))
                    .collect()
            }
            #[cfg(feature = "sqlite")]
            Self::Sqlite(sessions) => parsed(
                sqlx::query_scalar(&format!(
                    "select i.session_id from {SQLITE_TABLE} i \
                 join tower_sessions s on s.id = i.session_id \
                 where i.flow = ? and s.expiry_date > ?"
                ))
                .bind(flow)
                .bind(OffsetDateTime::now_utc())
                .fetch_all(&sessions.pool())
                .await
                .map_err(backend_error)?,
            ),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => parsed(
                sqlx::query_scalar(
                    r#"select i.session_id from "tower_sessions"."member_session" i
                   join "tower_sessions"."session" s on s.id = i.session_id
                   where i.flow = $1 and s.expiry_date > $2"#,
                )
                .bind(flow)
                .bind(OffsetDateTime::now_utc())
                .fetch_all(pool)
                .await
                .map_err(backend_error)?,
            ),
            #[cfg(feature = "redis")]
            Self::Redis(pool) => parsed(redis_scan::sessions_of_flow(pool, flow).await?),
        })
    }
}

/// The scan of every member's Redis index.
#[cfg(feature = "redis")]
mod redis_scan {
    use futures_util::StreamExt;
    use tower_sessions_redis_store::fred::interfaces::{ClientLike, HashesInterface};

    use super::*;

    /// The session ids whose `…:meta` entry names `flow`, in every member's hash.
    pub(super) async fn sessions_of_flow(
        pool: &RedisPool,
        flow: &str,
    ) -> session_store::Result<Vec<String>> {
        const PATTERN: &str = "lte:member:*:meta";
        const PAGE: u32 = 500;
        let client = pool.next();
        let mut keys = Vec::new();
        if client.is_clustered() {
            let mut scan = std::pin::pin!(client.scan_cluster_buffered(PATTERN, Some(PAGE), None));
            while let Some(key) = scan.next().await {
                keys.push(key.map_err(backend_error)?);
            }
        } else {
            let mut scan = std::pin::pin!(client.scan_buffered(PATTERN, Some(PAGE), None));
            while let Some(key) = scan.next().await {
                keys.push(key.map_err(backend_error)?);
            }
        }
        let mut ids = Vec::new();
        for key in keys {
            let meta: HashMap<String, String> = pool.hgetall(key).await.map_err(backend_error)?;
            ids.extend(
                meta.into_iter()
                    .filter(|(_, value)| value.split(' ').next() == Some(flow))
                    .map(|(id, _)| id),
            );
        }
        Ok(ids)
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sqlite_index_of_an_earlier_version_gains_the_browser_and_last_use() {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("s.db"))
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options.clone()).await.unwrap();
        let sessions = SqliteSessions::open(pool.clone(), options).await.unwrap();
        // The table as the previous version made it, with one of its rows.
        sqlx::query(&format!(
            "create table {SQLITE_TABLE} (session_id text primary key not null, \
             member_id text not null, flow text not null, created_at integer not null)"
        ))
        .execute(&pool)
        .await
        .unwrap();
        let mut record = Record {
            id: Id(77),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        sessions.create(&mut record).await.unwrap();
        sqlx::query(&format!(
            "insert into {SQLITE_TABLE} (session_id, member_id, flow, created_at) \
             values (?, 'old-member', 'jsapi', 1000)"
        ))
        .bind(record.id.to_string())
        .execute(&pool)
        .await
        .unwrap();

        let index = MemberIndex::Sqlite(sessions);
        index.migrate().await.unwrap();
        // Twice, as every start does.
        index.migrate().await.unwrap();
        let listed = index.sessions("old-member").await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!((listed[0].id, listed[0].last_seen), (record.id, 1000));
        assert_eq!(listed[0].browser, super::super::device::UNKNOWN);
        index.seen(&record.id, "old-member", 2000).await.unwrap();
        index.seen(&record.id, "old-member", 1500).await.unwrap();
        assert_eq!(
            index.sessions("old-member").await.unwrap()[0].last_seen,
            2000
        );
    }
}
