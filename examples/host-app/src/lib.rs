//! An existing axum app (a public `/` and a protected `/private`) that adds "Sign in with
//! LinkedIn" with `linkedin-token-exchange`'s builder, behind the session layer the library
//! makes (over the host's choice of store).

use axum::Router;
use axum::routing::get;
use linkedin_token_exchange::tower_sessions::MemoryStore;
use linkedin_token_exchange::{Connected, Credentials, LinkedInSignIn};

/// The app: its own routes, the sign-in routes merged in, and the library's session layer
/// (`Secure`: browsers keep it over HTTPS, and over plain HTTP on a loopback address) over
/// all of them.
pub fn app(sign_in: &LinkedInSignIn) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/private", get(private))
        .merge(sign_in.router())
        .layer(sign_in.session_layer(MemoryStore::default()))
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
