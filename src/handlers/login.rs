//! `GET /`: the login page (askama), with the JSAPI script and its `IN/Login` button.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{RawQuery, State};

use super::{Routes, Verb};
use crate::app::AppState;
use crate::error::Result;
use crate::handlers::oidc::{SANDBOX_MEMBER, sandbox_member};
use crate::session::{Flow, MemberSession};

/// The login page.
#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// The JSAPI script to embed.
    jsapi_url: String,
    /// The app's API key, for the framework config.
    api_key: String,
    /// The connected member, when the session holds credentials.
    member_id: Option<String>,
    /// How they signed in: "the JavaScript API" or "OpenID Connect".
    flow: &'static str,
    /// Whether the page offers "Sign in with LinkedIn (OpenID Connect)".
    oidc: bool,
    /// Where that link leads: `/auth/linkedin`, with the page's `sandbox_member` in sandbox
    /// mode.
    oidc_href: String,
    /// Whether the page talks to the built-in sandbox.
    sandbox: bool,
}

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new().at(Verb::Get, "/", login_page)
}

async fn login_page(
    State(state): State<AppState>,
    session: MemberSession,
    RawQuery(query): RawQuery,
) -> Result<LoginPage> {
    let member = session.member().await?;
    let flow = match member.as_ref().map(|m| m.credentials.flow()) {
        Some(Flow::Oidc) => "OpenID Connect",
        _ => "the JavaScript API",
    };
    // An invalid member is left off the link (`GET /auth/linkedin` would refuse it).
    let state = &state.sign_in;
    let oidc_href = match sandbox_member(state, query.as_deref()) {
        Ok(Some(member)) => format!("/auth/linkedin?{SANDBOX_MEMBER}={member}"),
        _ => "/auth/linkedin".to_owned(),
    };
    let (jsapi_url, api_key) = state
        .jsapi
        .as_ref()
        .map(|jsapi| (jsapi.script_url.clone(), jsapi.api_key.clone()))
        .unwrap_or_default();
    Ok(LoginPage {
        jsapi_url,
        api_key,
        member_id: member.map(|m| m.member_id),
        flow,
        oidc: state.oidc.is_some(),
        oidc_href,
        sandbox: state.sandbox,
    })
}
