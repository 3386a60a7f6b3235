//! linkedin-token-exchange: exchanges the LinkedIn JavaScript API's credentials cookie for
//! OAuth 1.0a REST credentials kept in a server-side session.
//!
//! - [`config`]: the only reader of the environment; typed, fail-fast settings.
//! - [`secret`]: [`secret::Secret`], a string that never shows itself in `Debug`.
//! - [`app`]: [`app::AppState`] and [`app::build_app`], the router shared by `main` and tests.
//! - [`server`], [`tls`]: listening over HTTPS, bounded connections, the self-signed
//!   bootstrap, graceful shutdown.
//! - [`error`]: one error enum, one status and code mapping, the JSON rendering;
//!   [`limits`]: the request body limits; [`text`]: the one cleaner for outside text.
//! - [`session`]: the session store chosen at run time (bounded in time), the typed member
//!   it holds, and the extractors handlers reach it through.
//! - [`linkedin::cookie`] (pure), [`linkedin::transport`] (I/O) and [`linkedin::client`]
//!   (OAuth 1.0a), [`linkedin::oidc`] (OpenID Connect): the LinkedIn side.
//! - [`handlers`]: thin handlers, one `router()` each.
//! - [`telemetry`]: metrics, request ids, the log format; [`ratelimit`]: the sign-in limits.
//! - `sandbox` (feature `sandbox`, on by default): the emulated LinkedIn under `/sandbox/`.

pub mod app;
pub mod config;
pub mod error;
pub mod handlers;
pub mod limits;
pub mod linkedin;
pub mod ratelimit;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod secret;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod text;
pub mod tls;
