//! This crate's sealed session stores, for a host's session layer: SQLite (feature `sqlite`),
//! PostgreSQL (`postgres`), Redis, through Sentinel or as a Cluster (`redis`), and memory.
//! Every record is sealed with AES-256-GCM under the keys given, and each store keeps the
//! index that ends all of a member's sessions at once (sign out everywhere). The store is
//! chosen by its URL ([`StoreUrl`], parsed from `sqlite://…`, `postgres://…`, `redis://…`,
//! `redis-sentinel://…`, `redis-cluster://…` or `memory`), connected and migrated by
//! [`SealedStore::connect`]; a URL naming a store this build lacks is refused there, naming
//! its feature.
//!
//! ```no_run
//! use linkedin_token_exchange::stores::{SealedStore, StoreUrl};
//! use linkedin_token_exchange::{LinkedInSignIn, Secret};
//!
//! # async fn run(sign_in: LinkedInSignIn) -> Result<(), Box<dyn std::error::Error>> {
//! let url: StoreUrl = "sqlite://data/sessions.db".parse()?;
//! // SESSION_KEYS's format: base64 keys of 32 bytes (`openssl rand -base64 32`), the first
//! // seals, the others still open older records.
//! let keys = Secret::new("Xl3Kx8U1bX2mU3e0h6mN0yYy3b0cQ2mN8y9cU2b1hD0=");
//! let store = SealedStore::connect(&url, &keys).await?;
//! let layer = sign_in.session_layer(store);
//! # Ok(()) }
//! ```

use crate::secret::Secret;
use crate::session::backend::BackendOptions;
use crate::session::seal::{Keyring, parse_keys};
use crate::telemetry::Telemetry;

pub use crate::config::StoreUrl;
pub use crate::session::ConnectError;
/// A sealed session store: a `tower_sessions::SessionStore` over one of this crate's stores.
pub use crate::session::SessionBackend as SealedStore;

/// The most sessions the memory store holds for a host.
const MEMORY_CAPACITY: u64 = 100_000;

impl SealedStore {
    /// Connects the store at `url` (and migrates a SQL store), sealing its records with
    /// `keys`: a comma list of base64 keys of 32 bytes, the first of which seals. The error
    /// names the step that failed, and never a password or a key.
    pub async fn connect(url: &StoreUrl, keys: &Secret) -> Result<Self, ConnectError> {
        let refused = |detail: String| ConnectError {
            store: url.to_string(),
            what: "the keys",
            detail,
        };
        let keys = parse_keys(keys.expose()).map_err(refused)?;
        let keyring = Keyring::new(&keys).ok_or_else(|| refused("names no key".into()))?;
        let options = BackendOptions {
            keyring,
            memory_capacity: MEMORY_CAPACITY,
            telemetry: Telemetry::disabled(),
        };
        Self::connect_with(url, options).await
    }
}
