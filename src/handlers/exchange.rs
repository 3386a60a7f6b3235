//! `POST /token-exchange`: the JSAPI cookie in, OAuth 1.0a REST credentials into the session.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use axum::{Json, Router};
use serde::Serialize;
use time::OffsetDateTime;

use super::{Routes, Verb};
use crate::error::{AppError, Result};
use crate::linkedin::cookie::{CookieError, JsapiCookie, find_cookie};
use crate::session::{Credentials, Flow, Member, MemberSession};
use crate::sign_in::SignInState;

/// The answer to a successful exchange.
#[derive(Debug, Serialize)]
pub(crate) struct ExchangeReply {
    /// `connected`, or `already_connected` when the session already held this member through
    /// the JSAPI flow.
    pub status: &'static str,
    /// The member.
    pub member_id: String,
    /// Seconds until the credentials expire.
    pub expires_in: i64,
}

/// The routes of this module.
pub(crate) fn router() -> Router<SignInState> {
    Router::new().at(Verb::Post, "/token-exchange", token_exchange)
}

/// Verifies the cookie, exchanges its token (unless the session already holds this member
/// through the JSAPI flow)
/// and stores the credentials. A failure anywhere stores nothing. Every outcome is counted
/// and logged at info, with the member and (through the request's span) its id.
async fn token_exchange(
    State(state): State<SignInState>,
    session: MemberSession,
    headers: HeaderMap,
) -> Result<Json<ExchangeReply>> {
    let result = exchange(&state, &session, &headers).await;
    let (outcome, member_id) = match &result {
        Ok(reply) => (reply.status, Some(reply.member_id.as_str())),
        Err(err) => (err.status_and_code().1, None),
    };
    Flow::Jsapi.record(&state.telemetry, outcome, member_id.unwrap_or(""));
    result.map(Json)
}

async fn exchange(
    state: &SignInState,
    session: &MemberSession,
    headers: &HeaderMap,
) -> Result<ExchangeReply> {
    let cookie_headers = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let jsapi = state.jsapi.as_ref().ok_or(AppError::JsapiNotConfigured)?;
    let raw = find_cookie(cookie_headers, &jsapi.cookie_name)
        .ok_or_else(|| CookieError::Missing(jsapi.cookie_name.clone()))?;
    let cookie = JsapiCookie::parse(raw)?.verify(jsapi.secret_key.expose().as_bytes())?;

    let previous = session.member().await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    // "Already connected" means this member through this flow: a member signed in with
    // OpenID Connect holds no OAuth 1.0a credentials, so the exchange goes through.
    if let Some(previous) = previous.as_ref().filter(|p| {
        p.member_id == cookie.member_id() && matches!(p.credentials, Credentials::Jsapi { .. })
    }) {
        return Ok(ExchangeReply {
            status: "already_connected",
            member_id: previous.member_id.clone(),
            expires_in: previous.expires_at - now,
        });
    }

    // One cookie replayed without a session must not buy unlimited upstream exchanges.
    state.limits.admit_token(cookie.access_token()).await?;
    let token = state.linkedin.exchange_token(cookie.access_token()).await?;
    let member = Member::signed_in(
        cookie.member_id().to_owned(),
        Credentials::Jsapi {
            oauth_token: token.token,
            oauth_token_secret: token.secret,
        },
        token.expires_in,
        now,
    );
    session.sign_in(&member).await?;
    Ok(ExchangeReply {
        status: "connected",
        expires_in: member.expires_at - now,
        member_id: member.member_id,
    })
}
