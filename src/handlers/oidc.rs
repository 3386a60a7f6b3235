//! "Sign In with LinkedIn using OpenID Connect": `GET /auth/linkedin` sends the browser to
//! the provider, `GET /auth/linkedin/callback` brings it back signed in, into the same
//! session as the JSAPI flow. Callback errors are a page for a person (JSON when asked for).

use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::header::{ACCEPT, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{Routes, Verb};
use crate::error::{AppError, Result};
use crate::session::{Credentials, Flow, Member, MemberSession};
use crate::sign_in::SignInState;
use crate::text::escape_text;

/// The routes of this module.
pub(crate) fn router() -> Router<SignInState> {
    Router::new().at(Verb::Get, "/auth/linkedin", start).at(
        Verb::Get,
        "/auth/linkedin/callback",
        callback,
    )
}

/// Remembers a fresh `state` and `nonce` in the session and sends the browser to the
/// provider's authorization endpoint. In sandbox mode, `?sandbox_member=` picks the member
/// the sandbox's consent page signs in (as it does for the JSAPI button). `?rd=` names where
/// to return afterwards; it is kept with the pending sign-in when allowed, and dropped
/// otherwise.
async fn start(
    State(state): State<SignInState>,
    session: MemberSession,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let oidc = state.oidc.as_ref().ok_or(AppError::OidcNotConfigured)?;
    let member = sandbox_member(&state, query.as_deref()).map_err(AppError::InvalidParameter)?;
    let mut authorization = oidc.authorize().await?;
    authorization.pending.return_to =
        query_value(query.as_deref(), "rd").and_then(|rd| state.return_policy.check(&rd));
    session.begin_sign_in(&authorization.pending).await?;
    let mut url = authorization.url;
    if let Some(member) = member {
        url.query_pairs_mut().append_pair(SANDBOX_MEMBER, &member);
    }
    Ok((StatusCode::FOUND, [(LOCATION, url.as_str().to_owned())]).into_response())
}

/// The page's and the sign-in's parameter naming a sandbox member.
pub(crate) const SANDBOX_MEMBER: &str = "sandbox_member";

/// The first value of `name` in `query`.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.into_owned())
}

/// `sandbox_member` in `query`, in sandbox mode only (elsewhere it is ignored): `None` when
/// absent or empty, an error when it is not 1 to 64 letters, digits, `-` or `_`.
pub(crate) fn sandbox_member(
    state: &SignInState,
    query: Option<&str>,
) -> Result<Option<String>, &'static str> {
    if !state.sandbox {
        return Ok(None);
    }
    let Some(member) = query_value(query, SANDBOX_MEMBER).filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    let valid = member.len() <= 64
        && member
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(Some(member))
    } else {
        Err("the sandbox member (sandbox_member) must be 1 to 64 letters, digits, '-' or '_'")
    }
}

/// What the provider sends back.
#[derive(Debug, Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Checks `state`, trades the code, verifies the id_token and signs the member in (a new
/// session id); then back to the page, or to the `rd` the sign-in started with. A failure
/// stores nothing.
async fn callback(
    State(state): State<SignInState>,
    session: MemberSession,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let result = finish(&state, &session, callback).await;
    let outcome = match &result {
        Ok(_) => "connected",
        Err(err) => {
            if let Some(reason) = err.refusal_reason() {
                state.telemetry.oidc_refusal(reason);
            }
            err.status_and_code().1
        }
    };
    let member_id = result.as_ref().ok().map(|(m, _)| m.as_str()).unwrap_or("");
    Flow::Oidc.record(&state.telemetry, outcome, member_id);
    match result {
        Ok((_, return_to)) => (
            StatusCode::SEE_OTHER,
            [(
                LOCATION,
                return_to.unwrap_or_else(|| state.after_sign_in.clone()),
            )],
        )
            .into_response(),
        Err(err) if prefers_json(&headers) => err.into_response(),
        Err(err) => err.into_page(),
    }
}

/// Signs the member in: their id, and where the sign-in asked to return.
async fn finish(
    state: &SignInState,
    session: &MemberSession,
    callback: Callback,
) -> Result<(String, Option<String>)> {
    let oidc = state.oidc.as_ref().ok_or(AppError::OidcNotConfigured)?;
    let given = callback
        .state
        .as_deref()
        .ok_or(AppError::OidcStateMismatch("the callback has no state"))?;
    let pending = session
        .take_sign_in(given)
        .await?
        .ok_or(AppError::OidcStateMismatch(
            "its state matches no sign-in of this browser",
        ))?;
    if let Some(error) = callback.error {
        let said = match callback.error_description {
            Some(description) => format!("{error}: {description}"),
            None => error,
        };
        return Err(AppError::OidcDenied(escape_text(&said, 200)));
    }
    let code = callback
        .code
        .ok_or_else(|| AppError::OidcDenied("the provider sent no code".into()))?;
    let signed_in = oidc.finish(&code, &pending).await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    // The refresh token's end is fixed now: a refresh never extends it.
    let refresh_expires_at = signed_in
        .refresh_token
        .as_ref()
        .and(signed_in.refresh_expires_in)
        .map(|seconds| now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX / 2)));
    let member = Member::signed_in(
        signed_in.subject,
        Credentials::Oidc {
            access_token: signed_in.access_token,
            name: signed_in.name,
            email: signed_in.email,
            refresh_token: signed_in.refresh_token,
            refresh_expires_at,
            issued_at: Some(now),
        },
        signed_in.expires_in,
        now,
    );
    session.sign_in(&member).await?;
    Ok((member.member_id, pending.return_to))
}

/// Whether the request's `Accept` prefers JSON to HTML.
fn prefers_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let weight = |kind: &str| {
        accept
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';').map(str::trim);
                let media = pieces.next()?;
                let q = pieces
                    .find_map(|p| p.strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (media == kind).then_some(q)
            })
            .fold(0.0_f32, f32::max)
    };
    weight("application/json") > weight("text/html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_chosen_only_when_preferred() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, value.parse().unwrap());
            prefers_json(&headers)
        };
        assert!(accept("application/json"));
        assert!(accept("application/json, text/html;q=0.5"));
        assert!(!accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!accept("text/html, application/json;q=0.9"));
        assert!(!prefers_json(&HeaderMap::new()));
    }
}
