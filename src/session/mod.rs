//! Sessions: which store holds them, what they hold, and the rules every route shares.
//!
//! - [`connect`]: the store chosen at run time (memory, SQLite, Redis, PostgreSQL), connected
//!   and migrated; [`backend`]: each operation on it sealed and bounded in time; [`guard`](mod@guard):
//!   the middleware that orders a request's writes and deletes;
//! - [`member`]: the typed [`Member`] and its flow's [`Credentials`], reached by handlers
//!   through the [`MemberSession`] and [`Connected`] extractors;
//! - [`seal`] (pure) and [`keys`]: records sealed at rest with AES-256-GCM, and where the
//!   keys come from;
//! - `redis_fleet` (feature `redis`): Redis reached through Sentinel or as a Cluster, and
//!   the one bounded fred pool every Redis store uses;
//! - [`memory`], `sqlite` (feature `sqlite`), `postgres` (feature `postgres`): the stores
//!   written (or wrapped) here; `sweep`: expired rows of the SQL stores deleted in small
//!   batches;
//! - [`index`]: which sessions each member holds, in every store, so that they can be ended
//!   together (sign out everywhere, revocation) or listed and ended one by one by the member
//!   (`/sessions`); [`device`] (pure): the browser each was signed in with, in a few words;
//! - [`upkeep`]: OpenID Connect sessions refreshed before their token expires and
//!   introspected, by one instance of a fleet at a time ([`lease`]: a lock in the store).
//!
//! Only this module knows which store is in use, and handlers never see a raw key. Cookie
//! flags and expiry policy are set here too ([`layer`]), and which of several session
//! cookies a request names ([`cookie`]).

use std::time::Duration;

use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer, SessionStore};

pub(crate) mod backend;
pub(crate) mod connect;
pub(crate) mod cookie;
pub(crate) mod device;
pub(crate) mod guard;
pub(crate) mod index;
pub(crate) mod keys;
pub(crate) mod lease;
pub(crate) mod member;
pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod private;
#[cfg(feature = "redis")]
pub(crate) mod redis_fleet;
pub(crate) mod seal;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sweep;
pub(crate) mod upkeep;

pub use backend::SessionBackend;
pub use connect::ConnectError;
pub(crate) use guard::guard;
pub(crate) use index::{OwnSession, SessionSummary};
pub use member::{Connected, Credentials, Flow, Member, MemberSession, SessionPolicy};
pub(crate) use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub(crate) use sqlite::SqliteSessions;

/// The cookie that carries the session id. The `__Host-` prefix makes browsers take it only
/// from this host, `Secure`, with `Path=/` and no `Domain`: a sibling subdomain cannot plant
/// one.
pub(crate) const SESSION_COOKIE: &str = "__Host-lte_session";
/// The cookie with `SESSION_COOKIE_DOMAIN` set: a `__Host-` cookie may not carry `Domain`, so
/// the `__Secure-` prefix (browsers still take it only when `Secure`, over HTTPS).
pub(crate) const DOMAIN_SESSION_COOKIE: &str = "__Secure-lte_session";

/// The session cookie's name, given `SESSION_COOKIE_DOMAIN`.
pub(crate) fn cookie_name(domain: Option<&str>) -> &'static str {
    match domain {
        Some(_) => DOMAIN_SESSION_COOKIE,
        None => SESSION_COOKIE,
    }
}

/// The session layer with the cookie rules: `Secure`, `HttpOnly`, `SameSite=Lax`, path `/`,
/// an inactivity expiry, and `Domain` when `domain` is given. `Lax`, not tower-sessions'
/// default `Strict`: the browser comes back from the provider (another site) on a top-level
/// redirect, and must bring the cookie that holds the pending sign-in.
pub(crate) fn layer<S: SessionStore>(
    backend: S,
    policy: SessionPolicy,
    domain: Option<&str>,
) -> SessionManagerLayer<S> {
    let layer = SessionManagerLayer::new(backend)
        .with_name(cookie_name(domain))
        .with_secure(true)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(to_time(policy.idle)));
    match domain {
        Some(domain) => layer.with_domain(domain.to_owned()),
        None => layer,
    }
}

/// `duration` as the `time` crate's, to the nanosecond.
fn to_time(duration: Duration) -> time::Duration {
    time::Duration::try_from(duration).unwrap_or(time::Duration::MAX)
}
