//! The sandbox's "Permitted services" page (LinkedIn's is under its settings,
//! `linkedin.com/psettings/permitted-services`): the apps a member allowed, and a form that
//! removes one. Removing the app revokes every credential it holds for the member, in both
//! flows (access and refresh tokens, OAuth 1.0a credentials, codes and JSAPI tokens not yet
//! used), so that introspection says `revoked` and the API answers 401; and it forgets the
//! consent, so that the next sign-in shows the consent page again.
//!
//! The sandbox knows the member as its consent page does: by `sandbox_member` (in the query of
//! `GET`, in the form of `POST`); it has no LinkedIn session of its own. Without one, the page
//! asks for it. Routes, under `/sandbox`:
//! - `GET /permitted-services?sandbox_member=<id>`
//! - `POST /permitted-services` (form `sandbox_member`, `app`): 303 back to the page.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::tokens::{Consent, Ledger};
use super::{DEFAULT_MEMBER_ID, SandboxConfig, valid_member_id};
use crate::handlers::{Routes, Verb};

/// The page's policy: its stylesheet, and its forms to itself.
const POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The app the sandbox serves, as the page names it: one registration, with its OpenID
/// Connect client and its JSAPI key (on LinkedIn, one app's client id is its API key).
#[derive(Clone, Debug)]
pub(crate) struct App {
    /// The OpenID Connect client id, when OpenID Connect is on.
    client_id: Option<String>,
    /// The JSAPI API key.
    api_key: String,
}

impl App {
    /// The app of `config`.
    pub(crate) fn of(config: &SandboxConfig) -> Self {
        Self {
            client_id: config.oidc.as_ref().map(|oidc| oidc.client_id.clone()),
            api_key: config.api_key.clone(),
        }
    }

    /// What identifies it in the form: the client id, else the API key.
    fn id(&self) -> &str {
        self.client_id.as_deref().unwrap_or(&self.api_key)
    }

    /// Its name on the page.
    fn name(&self) -> String {
        match &self.client_id {
            Some(client_id) => format!("{client_id} (API key {})", self.api_key),
            None => format!("API key {}", self.api_key),
        }
    }
}

#[derive(Clone)]
struct PageState(Arc<(App, Arc<Ledger>)>);

/// The routes of this module (paths under `/sandbox`).
pub(crate) fn router(app: App, ledger: Arc<Ledger>) -> Router {
    Router::new()
        .at(Verb::Get, "/permitted-services", page)
        .at(Verb::Post, "/permitted-services", remove)
        .with_state(PageState(Arc::new((app, ledger))))
}

/// One allowed app, as the page lists it.
struct Listed {
    id: String,
    name: String,
    authorized: String,
    scopes: String,
    flows: String,
}

impl Listed {
    fn of(app: &App, consent: &Consent) -> Self {
        let scopes: Vec<&str> = consent.scopes.iter().map(String::as_str).collect();
        let flows: Vec<&str> = consent.flows.iter().map(|flow| flow.label()).collect();
        Self {
            id: app.id().to_owned(),
            name: app.name(),
            authorized: utc(consent.authorized_at),
            scopes: scopes.join(","),
            flows: flows.join(" and "),
        }
    }
}

/// `seconds` as `YYYY-MM-DD HH:MM UTC`.
fn utc(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds).map_or_else(
        |_| seconds.to_string(),
        |t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        },
    )
}

#[derive(Template, WebTemplate)]
#[template(path = "sandbox_permitted_services.html")]
struct PermittedPage {
    member: Option<String>,
    apps: Vec<Listed>,
    removed: Option<String>,
    default_member: &'static str,
}

/// The page's query.
#[derive(Debug, Deserialize)]
struct PageQuery {
    sandbox_member: Option<String>,
    /// The app just removed, to say so.
    removed: Option<String>,
}

async fn page(State(state): State<PageState>, Query(query): Query<PageQuery>) -> Response {
    let (app, ledger) = &*state.0;
    let member = query.sandbox_member.filter(|m| valid_member_id(m));
    let apps = member
        .as_deref()
        .and_then(|member| ledger.consent_of(member))
        .map(|consent| vec![Listed::of(app, &consent)])
        .unwrap_or_default();
    let page = PermittedPage {
        removed: query
            .removed
            .filter(|removed| member.is_some() && removed == app.id()),
        member,
        apps,
        default_member: DEFAULT_MEMBER_ID,
    };
    (
        [
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
        ],
        page,
    )
        .into_response()
}

/// The removal form.
#[derive(Debug, Deserialize)]
struct Removal {
    sandbox_member: String,
    app: String,
}

fn refuse(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_request", "error_description": message})),
    )
        .into_response()
}

async fn remove(State(state): State<PageState>, Form(form): Form<Removal>) -> Response {
    let (app, ledger) = &*state.0;
    if !valid_member_id(&form.sandbox_member) {
        return refuse("sandbox_member must be 1 to 64 letters, digits, '-' or '_'");
    }
    if form.app != app.id() {
        return refuse("app is not an app of this sandbox");
    }
    ledger.remove(&form.sandbox_member);
    let mut back = url::form_urlencoded::Serializer::new(String::new());
    back.append_pair("sandbox_member", &form.sandbox_member);
    back.append_pair("removed", app.id());
    // Relative to this page, wherever the sandbox is mounted.
    let location = format!("permitted-services?{}", back.finish());
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(utc(1_767_225_600), "2026-01-01 00:00 UTC");
        assert_eq!(utc(1_776_340_800 + 59), "2026-04-16 12:00 UTC");
    }

    #[test]
    fn the_app_is_named_by_its_client_id_and_else_its_api_key() {
        let both = App {
            client_id: Some("client-x".into()),
            api_key: "keyX".into(),
        };
        assert_eq!(
            (both.id(), both.name().as_str()),
            ("client-x", "client-x (API key keyX)")
        );
        let jsapi = App {
            client_id: None,
            api_key: "keyX".into(),
        };
        assert_eq!(
            (jsapi.id(), jsapi.name().as_str()),
            ("keyX", "API key keyX")
        );
    }
}
