//! The connected member: `GET /session` (who, until when, whether to renew, or why the
//! session ended), `GET /me` (the profile, through the member's client) and `POST /logout`
//! (this session, or with `everywhere` all of the member's sessions in the store).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Routes, Verb};
use crate::error::{AppError, Result};
use crate::linkedin::api::LinkedInApi;
use crate::session::member::Ended;
use crate::session::{Credentials, Flow, MemberSession, SessionBackend};
use crate::sign_in::SignInState;

/// The connected member's client, for this crate's own handlers (`/me`, the pass-through):
/// 401 `not_connected` without a member. With the server's store (an
/// `Extension<SessionBackend>` over the routes), a withdrawal ends every session holding the
/// token; otherwise this request's session.
pub(crate) struct MemberApi(pub(crate) LinkedInApi);

impl FromRequestParts<SignInState> for MemberApi {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &SignInState) -> Result<Self, AppError> {
        let session = MemberSession::from_request_parts(parts, state).await?;
        let member = session.member().await?.ok_or(AppError::NotConnected)?;
        let sessions = parts.extensions.get::<SessionBackend>().cloned();
        Ok(Self(state.api_for(member, Some(session), sessions)))
    }
}

/// The answer of `GET /session`.
#[derive(Debug, Serialize)]
pub(crate) struct SessionReply {
    /// Whether the session holds unexpired credentials.
    pub connected: bool,
    /// Why the session ended, when it ended without its browser asking
    /// (`linkedin_access_withdrawn`), for as long as its tombstone lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<&'static str>,
    /// The flow that signed the member in (`jsapi` or `oidc`), when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<Flow>,
    /// The member's name (`oidc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The member's email (`oidc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The member, when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    /// When the credentials expire (Unix seconds), when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// When LinkedIn's token expires (Unix seconds), when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<i64>,
    /// Whether a new sign-in is suggested ("Renew LinkedIn access"): the token expires within
    /// [`RENEW_WITHIN`] and the session holds no refresh token, when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_suggested: Option<bool>,
}

/// How close to its token's expiry a session without a refresh token is offered a new
/// sign-in: 7 days (LinkedIn's tokens live 60; a member who consented before is sent
/// straight back, without a consent screen).
pub(crate) const RENEW_WITHIN: i64 = 7 * 24 * 60 * 60;

/// The routes of this module.
pub(crate) fn router() -> Router<SignInState> {
    Router::new()
        .at(Verb::Get, "/session", session_status)
        .at(Verb::Get, "/me", me)
        .at(Verb::Post, "/logout", logout)
}

async fn session_status(session: MemberSession) -> Result<Json<SessionReply>> {
    let member = session.member().await?;
    let ended = match member {
        Some(_) => None,
        None => session.ended().await?.map(Ended::as_str),
    };
    let (name, email) = match member.as_ref().map(|m| &m.credentials) {
        Some(Credentials::Oidc { name, email, .. }) => (name.clone(), email.clone()),
        _ => (None, None),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(Json(SessionReply {
        connected: member.is_some(),
        ended,
        flow: member.as_ref().map(|m| m.credentials.flow()),
        expires_at: member.as_ref().map(|m| m.expires_at),
        token_expires_at: member.as_ref().map(|m| m.expires_at),
        // No session holds a refresh token yet: each is renewed by a new sign-in.
        renew_suggested: member
            .as_ref()
            .map(|m| m.expires_at.saturating_sub(now) <= RENEW_WITHIN),
        member_id: member.map(|m| m.member_id),
        name,
        email,
    }))
}

/// The member's profile, fetched by the member's client with the credentials of their flow.
async fn me(MemberApi(api): MemberApi) -> Result<Json<Value>> {
    Ok(Json(api.profile().await?))
}

/// Ends this session; with `everywhere`, every session of its member in the store too. That
/// needs the member index of this crate's own store, which the server provides; a host with
/// a session layer of its own has none, and is answered 400.
async fn logout(
    sessions: Option<Extension<SessionBackend>>,
    session: MemberSession,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>> {
    if !wants_everywhere(&headers, &body)? {
        session.end().await?;
        return Ok(Json(json!({"status": "logged_out"})));
    }
    let Some(Extension(sessions)) = sessions else {
        return Err(AppError::InvalidParameter(
            "signing out everywhere needs the server's own session store (its member index); this host keeps none",
        ));
    };
    let ended = match session.member().await? {
        Some(member) => {
            let ended = sessions.end_member_sessions(&member.member_id).await?;
            tracing::info!(
                member_id = %member.member_id.escape_debug(),
                sessions_ended = ended,
                "the member signed out everywhere"
            );
            ended
        }
        None => 0,
    };
    session.end().await?;
    Ok(Json(json!({"connected": false, "sessions_ended": ended})))
}

/// Whether a logout asks to end every session: `{"everywhere":true}` as JSON, or
/// `everywhere=1` (or `true`, `on`) as a form. No body is a plain logout.
fn wants_everywhere(headers: &HeaderMap, body: &[u8]) -> Result<bool> {
    #[derive(Deserialize)]
    struct Everywhere {
        #[serde(default)]
        everywhere: bool,
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return serde_json::from_slice::<Everywhere>(body)
            .map(|e| e.everywhere)
            .map_err(|_| {
                AppError::InvalidParameter(
                    r#"the logout body must be JSON like {"everywhere":true}"#,
                )
            });
    }
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        let value = form_urlencoded_value(body, "everywhere");
        return match value.as_deref() {
            None | Some("0" | "false" | "off" | "") => Ok(false),
            Some("1" | "true" | "on") => Ok(true),
            Some(_) => Err(AppError::InvalidParameter(
                "the form field everywhere takes 1 or 0",
            )),
        };
    }
    Err(AppError::InvalidParameter(
        "a logout body must be JSON or a form (everywhere=1)",
    ))
}

/// The value of `name` in a form body.
fn form_urlencoded_value(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        headers
    }

    #[test]
    fn everywhere_comes_as_json_or_as_a_form_and_nothing_else() {
        let json = typed("application/json; charset=utf-8");
        let form = typed("application/x-www-form-urlencoded");
        assert!(!wants_everywhere(&HeaderMap::new(), b"").unwrap());
        assert!(wants_everywhere(&json, br#"{"everywhere":true}"#).unwrap());
        assert!(!wants_everywhere(&json, br#"{"everywhere":false}"#).unwrap());
        assert!(!wants_everywhere(&json, b"{}").unwrap());
        assert!(wants_everywhere(&form, b"everywhere=1").unwrap());
        assert!(!wants_everywhere(&form, b"everywhere=0").unwrap());
        assert!(!wants_everywhere(&form, b"other=1").unwrap());
        for (headers, body) in [
            (&json, &br#"{"everywhere":"yes"}"#[..]),
            (&json, b"not json"),
            (&form, b"everywhere=maybe"),
            (&typed("text/plain"), b"everywhere=1"),
        ] {
            let err = wants_everywhere(headers, body).unwrap_err();
            assert_eq!(err.status_and_code().0, 400, "{err}");
        }
    }
}
