//! An existing axum app (a public `/` and a protected `/private`) that adds "Sign in with
//! LinkedIn" with `linkedin-token-exchange`'s builder, behind the session layer the library
//! makes (over the host's choice of store).

use axum::Router;
use axum::routing::get;
use linkedin_token_exchange::tower_sessions::{MemoryStore, SessionStore};
use linkedin_token_exchange::{Connected, LinkedInSignIn};

/// The app with its sessions in memory (see [`app_with_store`]).
pub fn app(sign_in: &LinkedInSignIn) -> Router {
    app_with_store(sign_in, MemoryStore::default())
}

/// The app: its own routes, the sign-in routes merged in, and the library's session layer
/// (`Secure`: browsers keep it over HTTPS, and over plain HTTP on a loopback address) over
/// all of them, its sessions in `store` (any tower-sessions 0.14 store, such as the library's
/// sealed ones in `linkedin_token_exchange::stores`).
pub fn app_with_store<S: SessionStore + Clone>(sign_in: &LinkedInSignIn, store: S) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/private", get(private))
        .merge(sign_in.router())
        .layer(sign_in.session_layer(store))
}

async fn home() -> &'static str {
    "Welcome. Sign in at /auth/linkedin, then visit /private."
}

/// Only for a signed-in member; anyone else gets 401 `not_connected`.
async fn private(Connected(member): Connected) -> String {
    // The name, not `member_id`: for OpenID Connect that is LinkedIn's opaque `sub`.
    format!("Hello, {}", member.name().unwrap_or("member"))
}
