//! The admin routes, served on the `METRICS_BIND` listener only (never on the public port)
//! and only when `ADMIN_TOKEN` is set: a member's sessions listed (never their ids) and
//! ended, in every instance that shares the store. Every request carries
//! `Authorization: Bearer <ADMIN_TOKEN>` (the scheme in any case, RFC 7235), compared in
//! constant time; the store and its index are `session`'s. Every request is logged once at
//! `info` (a refusal, a listing, an end), in a span with its request id (`X-Request-Id`,
//! answered too) and client address; the token never is.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;

use crate::error::{AppError, Result};
use crate::secret::Secret;
use crate::session::{SessionBackend, SessionSummary};
use crate::telemetry::{self, MakeId};

/// The longest member id the routes take.
const MAX_MEMBER_ID: usize = 256;

/// The answer of `GET /admin/members/{member_id}/sessions`.
#[derive(Debug, Serialize)]
pub(crate) struct MemberSessions {
    /// The member asked about.
    pub member_id: String,
    /// Their unexpired sessions, oldest first.
    pub sessions: Vec<SessionSummary>,
}

/// The admin routes over `sessions`, behind `token`, with their request ids, span and error
/// answers. They are the fallback of the router they are merged into (the metrics one):
/// around the routes rather than on each, `errors` sees the `Allow` header the router adds to
/// a 405, and names the methods it lists.
pub(crate) fn router(sessions: SessionBackend, token: Secret) -> Router {
    let routes = Router::new()
        .route(
            "/admin/members/{member_id}/sessions",
            get(list_sessions).delete(end_sessions),
        )
        .route_layer(middleware::from_fn_with_state(
            std::sync::Arc::new(token),
            require_token,
        ))
        .with_state(sessions);
    let layers = ServiceBuilder::new()
        .map_request(telemetry::drop_insane_request_id)
        .layer(SetRequestIdLayer::x_request_id(MakeId))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(middleware::from_fn(in_span))
        .layer(middleware::from_fn(crate::error::errors));
    Router::new().fallback_service(routes).layer(layers)
}

/// Runs the request in a span naming its request id, client address (the peer: the admin
/// listener believes no proxy), method and path, so every line it logs names them.
async fn in_span(request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let span = tracing::info_span!(
        "admin",
        request_id = telemetry::request_id(&request).as_deref().unwrap_or(""),
        client = client.map(tracing::field::display),
        method = %request.method(),
        path = %request.uri().path(),
    );
    next.run(request).instrument(span).await
}

/// The token of an `Authorization` header in the `Bearer` scheme, whose name is matched in
/// any case (RFC 7235); `None` for another scheme or no token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Refuses a request without the right bearer token: 401 with `WWW-Authenticate: Bearer`.
async fn require_token(
    State(token): State<std::sync::Arc<Secret>>,
    request: Request,
    next: Next,
) -> Result<Response> {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    match given {
        Some(given) if same_token(token.expose(), given) => Ok(next.run(request).await),
        Some(_) => Err(AppError::AdminUnauthorized(
            "the bearer token is not the admin token",
        )),
        None => Err(AppError::AdminUnauthorized(
            "send Authorization: Bearer <ADMIN_TOKEN>",
        )),
    }
}

/// Whether `given` is `expected`, in a time that tells neither where they differ nor (both
/// are hashed first) how long `expected` is.
fn same_token(expected: &str, given: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let (expected, given) = (digest(expected), digest(given));
    expected.as_ref().ct_eq(given.as_ref()).into()
}

fn checked(member_id: &str) -> Result<&str> {
    if member_id.is_empty() || member_id.len() > MAX_MEMBER_ID {
        return Err(AppError::InvalidParameter(
            "the member id must have 1 to 256 characters",
        ));
    }
    Ok(member_id)
}

async fn list_sessions(
    State(sessions): State<SessionBackend>,
    Path(member_id): Path<String>,
) -> Result<Json<MemberSessions>> {
    let found = sessions.member_sessions(checked(&member_id)?).await?;
    tracing::info!(
        member_id = %member_id.escape_debug(),
        sessions = found.len(),
        "an administrator listed the member's sessions"
    );
    Ok(Json(MemberSessions {
        member_id,
        sessions: found,
    }))
}

async fn end_sessions(
    State(sessions): State<SessionBackend>,
    Path(member_id): Path<String>,
) -> Result<Json<Value>> {
    let ended = sessions.end_member_sessions(checked(&member_id)?).await?;
    tracing::info!(
        member_id = %member_id.escape_debug(),
        sessions_ended = ended,
        "an administrator ended the member's sessions"
    );
    Ok(Json(json!({ "sessions_ended": ended })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case_and_nothing_else_is() {
        for value in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "bEaReR  abc ",
            " Bearer abc",
        ] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        for value in [
            "Basic abc",
            "Bearerabc",
            "Bearer",
            "Bearer ",
            "Bearers abc",
            "abc",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn only_the_same_token_matches() {
        let token = "0123456789abcdef0123456789abcdef";
        assert!(same_token(token, token));
        assert!(!same_token(token, "0123456789abcdef0123456789abcdeF"));
        assert!(!same_token(token, &token[..31]));
        assert!(!same_token(token, ""));
    }
}
