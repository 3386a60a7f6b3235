//! The sessions group: where sessions live, the keys that seal them, and how long they last.

use std::path::PathBuf;
use std::time::Duration;

use super::StoreUrl;
use crate::secret::Secret;

/// The session store and its keys.
#[derive(clap::Args, Clone, Debug)]
pub struct Sessions {
    /// `memory`, `sqlite://PATH`, `redis://HOST:PORT[/DB]`,
    /// `redis-sentinel://HOST:PORT[,HOST:PORT…]/SERVICE_NAME[/DB]`,
    /// `redis-cluster://HOST:PORT[,HOST:PORT…]` or `postgres://…`.
    #[arg(
        long = "session-store",
        env = "SESSION_STORE",
        value_name = "SESSION_STORE",
        default_value = "sqlite://data/sessions.db",
        hide_env_values = true
    )]
    pub store: StoreUrl,

    /// The most sessions the `memory` store holds; past it, the least recently used goes.
    #[arg(long = "memory-sessions", env = "MEMORY_SESSIONS", value_name = "MEMORY_SESSIONS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub memory_sessions: u64,

    /// Keys that encrypt the sessions at rest: a comma list of base64 32-byte keys; the first
    /// encrypts, every one decrypts. Unset: a key generated into `SESSION_KEY_FILE` (memory
    /// and SQLite only).
    #[arg(
        long = "session-keys",
        env = "SESSION_KEYS",
        value_name = "SESSION_KEYS",
        hide_env_values = true
    )]
    pub keys: Option<Secret>,

    /// Where the generated session key is kept when `SESSION_KEYS` is unset.
    #[arg(
        long = "session-key-file",
        env = "SESSION_KEY_FILE",
        value_name = "SESSION_KEY_FILE",
        default_value = "data/session.key"
    )]
    pub key_file: PathBuf,

    /// A session ends after this much inactivity, or when its credentials expire.
    #[arg(long = "session-idle-minutes", env = "SESSION_IDLE_MINUTES", value_name = "SESSION_IDLE_MINUTES", default_value_t = 1440,
          value_parser = clap::value_parser!(u64).range(1..=525_600))]
    pub idle_minutes: u64,
}

impl Sessions {
    /// The inactivity limit of a session.
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_minutes * 60)
    }
}
