//! An existing axum app (a public `/` and a protected `/private`) that adds "Sign in with
//! LinkedIn" with `linkedin-token-exchange`'s builder, behind its own session layer.

use axum::Router;
use axum::routing::get;
use linkedin_token_exchange::{Connected, Credentials, LinkedInSignIn};
use tower_sessions::{MemoryStore, SessionManagerLayer};

/// The app: its own routes, the sign-in routes merged in, and its own session layer over all
/// of them. `secure` is false only for plain HTTP on a loopback address (tests, local runs).
pub fn app(sign_in: &LinkedInSignIn, secure: bool) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/private", get(private))
        .merge(sign_in.router())
        .layer(axum::Extension(sign_in.session_policy()))
        .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(secure))
}

async fn home() -> &'static str {
    "Welcome. Sign in at /auth/linkedin, then visit /private."
}

/// Only for a signed-in member; anyone else gets 401 `not_connected`.
async fn private(Connected(member): Connected) -> String {
    let name = match &member.credentials {
        Credentials::Oidc {
            name: Some(name), ..
        } => name.clone(),
        _ => member.member_id.clone(),
    };
    format!("Hello, {name}")
}
