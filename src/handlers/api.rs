//! `GET|POST|PUT|PATCH|DELETE /linkedin/api/{*path}`: the pass-through. It sends
//! `<LINKEDIN_API_URL>/<path>` (query and body too, the body at most 16 KiB) as the connected
//! member, through the member's client ([`LinkedInApi`](crate::linkedin::api::LinkedInApi)), when `METHOD /<path>` is in
//! `LINKEDIN_API_ALLOW`; otherwise, and for a path that is not clean (`..`, an encoded slash,
//! an absolute URL), 403 `api_path_not_allowed` before LinkedIn is called. The library's
//! router serves it, so state-changing methods need the page's origin, and the sign-in rate
//! limit applies (`sign_in::routes`).
//!
//! LinkedIn's answer comes back as it came (status, `Content-Type`, `X-RestLi-Id`, body),
//! but for those the client types: 401 `linkedin_access_withdrawn` (every session holding the
//! token has ended), 403 `linkedin_forbidden`, 502 `linkedin_version_retired` (426 upstream),
//! 429 `linkedin_rate_limited` with `Retry-After`, 502/504 for 5xx and timeouts.

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Request, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};

use super::{Routes, Verb};
use crate::error::{AppError, PassedOn, Result};
use crate::limits::MAX_BODY_BYTES;
use crate::linkedin::api::{RESTLI_METHOD, api_path};
use crate::session::{MemberSession, SessionBackend};
use crate::sign_in::SignInState;
use crate::text::escape_text;

/// Where the pass-through is mounted.
const PREFIX: &str = "/linkedin/api";

/// The routes of this module.
pub(crate) fn router() -> Router<SignInState> {
    const PATH: &str = "/linkedin/api/{*path}";
    Router::new()
        .at(Verb::Get, PATH, forward)
        .at(Verb::Post, PATH, forward)
        .at(Verb::Put, PATH, forward)
        .at(Verb::Patch, PATH, forward)
        .at(Verb::Delete, PATH, forward)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Checks the path against the allow-list, then sends it as the member.
async fn forward(
    State(state): State<SignInState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    session: MemberSession,
    sessions: Option<Extension<SessionBackend>>,
    body: Bytes,
) -> Result<Response> {
    let relative = uri
        .path_and_query()
        .map_or(uri.path(), |p| p.as_str())
        .strip_prefix(PREFIX)
        .unwrap_or("/");
    let (path, _) = api_path(relative)?;
    if !state.api.allow.allows(method.as_str(), &path) {
        return Err(AppError::ApiPathNotAllowed(format!(
            "{method} {} is not forwarded to LinkedIn: LINKEDIN_API_ALLOW allows {}",
            escape_text(&path, 100),
            match state.api.allow.to_string() {
                list if list.is_empty() => "nothing".to_owned(),
                list => list,
            }
        )));
    }
    let member = session.member().await?.ok_or(AppError::NotConnected)?;
    let api = state.api_for(
        member,
        Some(session),
        sessions.map(|Extension(sessions)| sessions),
    );
    let mut request = Request::builder().method(method).uri(relative);
    for name in [
        axum::http::header::CONTENT_TYPE,
        axum::http::header::ACCEPT,
        RESTLI_METHOD,
    ] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(body)
        .map_err(|_| AppError::ApiPathNotAllowed("the request could not be rebuilt".into()))?;
    let answer = api.send(request).await?;
    let mut response = answer.map(Body::from).into_response();
    response.extensions_mut().insert(PassedOn);
    Ok(response)
}
