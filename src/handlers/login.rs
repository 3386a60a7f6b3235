//! `GET /`: the login page (askama), with the JSAPI script and its `IN/Login` button.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{RawQuery, State};

use super::{Routes, Verb};
use crate::app::AppState;
use crate::error::Result;
use crate::handlers::oidc::{SANDBOX_MEMBER, sandbox_member};
use crate::session::{Credentials, Flow, Member, MemberSession};

/// The login page.
#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    /// Whether the JSAPI flow is on (its script, framework config and button on the page).
    jsapi: bool,
    /// The JSAPI script to embed.
    jsapi_url: String,
    /// The app's API key, for the framework config.
    api_key: String,
    /// The connected member as the page names them ([`shown_as`]), when the session holds
    /// credentials.
    connected_as: Option<String>,
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
        jsapi: state.jsapi.is_some(),
        jsapi_url,
        api_key,
        connected_as: member.as_ref().map(|m| shown_as(m).to_owned()),
        flow,
        oidc: state.oidc.is_some(),
        oidc_href,
        sandbox: state.sandbox,
    })
}

/// How the page names a member. An OpenID Connect member's id is the provider's pairwise
/// `sub` (`dXTYUmQ1Z8`), which means nothing to a person: their name, else their email, else
/// the id. A JSAPI member by their member id, as the page has always shown them (the
/// exchange learns no name).
fn shown_as(member: &Member) -> &str {
    fn known(value: &Option<String>) -> Option<&str> {
        value.as_deref().filter(|v| !v.trim().is_empty())
    }
    match &member.credentials {
        Credentials::Oidc { name, email, .. } => known(name)
            .or_else(|| known(email))
            .unwrap_or(&member.member_id),
        Credentials::Jsapi { .. } => &member.member_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn oidc(name: Option<&str>, email: Option<&str>) -> Member {
        Member::signed_in(
            "dXTYUmQ1Z8".to_owned(),
            Credentials::Oidc {
                access_token: Secret::new("token"),
                name: name.map(str::to_owned),
                email: email.map(str::to_owned),
                refresh_token: None,
                refresh_expires_at: None,
                issued_at: None,
            },
            60,
            0,
        )
    }

    #[test]
    fn an_openid_connect_member_is_named_by_name_then_email_then_id() {
        let both = oidc(Some("Ada Lovelace"), Some("ada@example.com"));
        assert_eq!(shown_as(&both), "Ada Lovelace");
        assert_eq!(
            shown_as(&oidc(None, Some("ada@example.com"))),
            "ada@example.com"
        );
        assert_eq!(
            shown_as(&oidc(Some("  "), Some("ada@example.com"))),
            "ada@example.com"
        );
        assert_eq!(shown_as(&oidc(None, None)), "dXTYUmQ1Z8");
        assert_eq!(shown_as(&oidc(Some(""), Some(""))), "dXTYUmQ1Z8");
    }

    #[test]
    fn a_jsapi_member_is_named_by_member_id() {
        let member = Member::signed_in(
            "SandboxAda".to_owned(),
            Credentials::Jsapi {
                oauth_token: "t".to_owned(),
                oauth_token_secret: Secret::new("s"),
            },
            60,
            0,
        );
        assert_eq!(shown_as(&member), "SandboxAda");
    }
}
