//! linkedin-token-exchange: "Sign in with LinkedIn" for axum apps, as a library and as a
//! service. It exchanges the LinkedIn JavaScript API's credentials cookie for OAuth 1.0a REST
//! credentials, signs members in with OpenID Connect (LinkedIn's quirks handled), keeps them
//! in the host's session, and ships an emulated LinkedIn ([`sandbox`]) to test against.
//!
//! # In your axum app
//!
//! [`LinkedInSignIn`] is built from code ([`LinkedInSignIn::builder`]: every setting typed,
//! at its default until set; nothing read from the environment, and a [`BuildError`] naming
//! the method rather than an exit) or from the service's variables
//! ([`LinkedInSignIn::from_env`], the library's one reader of the environment). Its [`router`](LinkedInSignIn::router) serves
//! `GET /auth/linkedin`, `GET /auth/linkedin/callback`, `POST /token-exchange` (with
//! [`SignInBuilder::jsapi`]), `GET /session`, `GET /me`, `POST /logout`, the pass-through
//! `/linkedin/api/{*path}` ([`SignInBuilder::api_allow`]) and the member's own sessions
//! (`GET /sessions`, `DELETE /sessions/{handle}`, `POST /sessions/end-others`, over the member
//! index of this crate's sealed store given as an `Extension`). Wrap your app in
//! its [`session_layer`](LinkedInSignIn::session_layer), over any store of tower-sessions
//! 0.14 (re-exported here as [`tower_sessions`]: a layer of another version is not seen, and
//! every route then answers 503 `session_layer_missing`). [`Connected`] (401 `not_connected`
//! without a member) and [`MemberSession`] then work in your own handlers, whatever your state
//! type, with nothing else added by hand. Serve it with the client's address
//! (`into_make_service_with_connect_info`): the sign-in routes' rate limit needs it, and
//! without it they answer 500 `client_address_unknown` rather than run unlimited (or give
//! [`SignInBuilder::client_address`], or [`SignInBuilder::rate_limit`] with
//! [`RateLimit::Off`]).
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{Router, routing::get};
//! use linkedin_token_exchange::{Connected, LinkedInSignIn};
//! use linkedin_token_exchange::tower_sessions::MemoryStore;
//!
//! async fn private(Connected(member): Connected) -> String {
//!     format!("Hello, {}", member.name().unwrap_or("member"))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let sign_in = LinkedInSignIn::builder()
//!     .public_origin("https://app.example.com")
//!     .oidc("client-id", "client-secret")
//!     .build()?;
//! let app = Router::new()
//!     .route("/private", get(private))
//!     .merge(sign_in.router())
//!     .layer(sign_in.session_layer(MemoryStore::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! Nested under a prefix (`.nest("/linkedin", sign_in.router())`), set
//! [`SignInBuilder::redirect_url`] to the nested callback, and
//! [`SignInBuilder::after_sign_in`] to where the member lands. In your tests, mount
//! [`sandbox::Sandbox::router`] and feed its registration to the builder: `examples/host-app`
//! signs a member in that way. This crate's own sealed stores (memory, SQLite, Redis,
//! PostgreSQL, AES-256-GCM at rest) are [`stores::SealedStore::connect`].
//!
//! # The API on one page
//!
//! - [`LinkedInSignIn`], its [`SignInBuilder`] and [`BuildError`]; the settings' types
//!   [`RateLimit`], [`PkceMode`], [`TrustedProxies`], [`AllowedHosts`].
//! - The extractors [`Connected`] and [`MemberSession`], the [`Member`] with its
//!   [`Credentials`] (secrets as [`Secret`]) and [`Flow`], the [`SessionPolicy`].
//! - [`LinkedInApi`], from [`LinkedInSignIn::api`]: LinkedIn's API called as the member,
//!   signed with their credentials, LinkedIn's refusals typed as [`Error`]s
//!   (`linkedin_access_withdrawn`, `linkedin_forbidden`, `linkedin_version_retired`,
//!   `linkedin_rate_limited`).
//! - The error every route and extractor answers with, [`Error`] (JSON with a stable code),
//!   and what it carries: [`CookieError`], [`UpstreamError`], [`Refusal`].
//! - [`tower_sessions`], re-exported: the version the extractors read.
//! - [`stores`] (features `sqlite`, `postgres`, `redis`): this crate's sealed stores, and over
//!   them [`LinkedInSignIn::keep_sessions`]: tokens refreshed before expiry and introspected.
//! - [`sandbox`] (feature `sandbox`): the emulated LinkedIn, [`sandbox::Sandbox`].
//! - [`server`] (feature `server`): the service itself. The binary is one user of this
//!   library: [`server::Server::build`] converts its [`server::config::Config`] (the
//!   environment) into a [`SignInBuilder`], builds the sign-in through it, and adds what only
//!   the service has: the login page, the assets, the probes, metrics, side listeners and a
//!   bounded HTTPS listener.
//!
//! # Features
//!
//! - `server` (default): the binary's server and command line, TLS, the login page, the
//!   admin and metrics listeners, Prometheus and OpenTelemetry export; it turns on every
//!   store below.
//! - `sandbox` (default): the emulated LinkedIn, [`sandbox::Sandbox`].
//! - `sqlite`, `postgres`, `redis`: the sealed stores of [`stores::SealedStore::connect`]
//!   (memory is in every build; a store URL this build lacks is refused at connect, naming
//!   its feature), and with `redis` the rate limit's budget shared by a fleet.
//!
//! A host that depends on this crate with `default-features = false` compiles the sign-in
//! routes, the extractors and the memory store, and none of the server's dependencies.

#![warn(missing_docs)]
#![warn(unreachable_pub)]
// Without the server, the library compiles parts of modules that only the server calls or
// re-exports (the
// configuration's service groups, the error page, the admin's store operations): unused
// there, not dead. The default build (the server, every store, the sandbox) denies dead code
// in CI, and checks every item.
#![cfg_attr(
    not(feature = "server"),
    allow(dead_code, unused_imports, unreachable_pub)
)]

#[cfg(feature = "server")]
mod app;
#[cfg(feature = "server")]
mod assertion;
mod client_addr;
mod config;
#[cfg(any(feature = "server", feature = "sandbox"))]
mod csp;
mod error;
mod gate;
mod handlers;
mod limits;
mod linkedin;
mod ratelimit;
mod return_to;
#[cfg(feature = "sandbox")]
pub mod sandbox;
mod secret;
#[cfg(feature = "server")]
pub mod server;
mod session;
mod sign_in;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub mod stores;
mod telemetry;
mod text;
mod tls;

pub use config::{AllowedHosts, PkceMode, RateLimit, TrustedProxies};
pub use error::AppError as Error;
pub use linkedin::api::LinkedInApi;
pub use linkedin::cookie::CookieError;
pub use linkedin::oidc::Refusal;
pub use linkedin::transport::UpstreamError;
pub use secret::Secret;
pub use session::{Connected, Credentials, Flow, Member, MemberSession, SessionPolicy};
pub use sign_in::{BuildError, LinkedInSignIn, SignInBuilder};
/// The tower-sessions this crate's extractors read (0.14): build your store and layer with
/// it, not with another version.
pub use tower_sessions;

/// Not part of the API: what this crate's own integration tests and fuzz targets reach
/// inside it (the OAuth 1.0a client against the sandbox, the cookie parser, the stores'
/// sweepers). Hidden from the documentation, with no stability promise.
#[doc(hidden)]
pub mod __private {
    pub use crate::linkedin::client::{LinkedInClient, LinkedInEndpoints};
    pub use crate::linkedin::cookie::{JsapiCookie, find_cookie};
    #[cfg(feature = "postgres")]
    pub use crate::session::postgres::PostgresSessions;
    #[cfg(feature = "sqlite")]
    pub use crate::session::sqlite::SqliteSessions;
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub use crate::session::sweep::Sweeper;
}
