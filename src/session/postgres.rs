//! The `postgres://` store: `tower-sessions-sqlx-store`'s, except that saving a session only
//! updates its row, so that a session that ended while its request ran (a logout elsewhere, a
//! revocation) is not written back by that request.

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions_sqlx_store::PostgresStore;
use tower_sessions_sqlx_store::sqlx::{self, PgPool};

/// PostgreSQL sessions in `"tower_sessions"."session"`.
#[derive(Clone, Debug)]
pub struct PostgresSessions {
    store: PostgresStore,
    pool: PgPool,
}

impl PostgresSessions {
    /// The sessions of `pool`, in the table `store` migrates.
    pub fn new(store: PostgresStore, pool: PgPool) -> Self {
        Self { store, pool }
    }
}

#[async_trait]
impl SessionStore for PostgresSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.store.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = rmp_serde::to_vec(record)
            .map_err(|err| session_store::Error::Encode(err.to_string()))?;
        sqlx::query(
            r#"update "tower_sessions"."session" set data = $1, expiry_date = $2 where id = $3"#,
        )
        .bind(data)
        .bind(record.expiry_date)
        .bind(record.id.to_string())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|err| session_store::Error::Backend(err.to_string()))
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.store.load(id).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store.delete(id).await
    }
}
