//! The one error type of the HTTP interface, its status and error-code mapping, and its JSON
//! rendering (`{"error": code, "message": sentence}`).
//!
//! Handlers return `Result<T>` and use `?`; they never build an error response by hand.
//! Logging is not done here: the response carries the error in an extension and
//! [`log_errors`] writes one line per failed request.

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::linkedin::client::UpstreamError;
use crate::linkedin::cookie::CookieError;

/// The handlers' result.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400 `missing_cookie`, 400 `malformed_cookie` or 401 `invalid_signature`.
    #[error(transparent)]
    Cookie(#[from] CookieError),
    /// 403 `cross_origin`: a state-changing request from a page of another origin.
    #[error("this request did not come from this site's page ({0})")]
    CrossOrigin(String),
    /// 401 `not_connected`: the session holds no LinkedIn credentials.
    #[error("no LinkedIn member is connected in this session: sign in first")]
    NotConnected,
    /// 502 `upstream_rejected`, 502 `upstream_unavailable`, 502 `upstream_malformed` or
    /// 504 `upstream_timeout`.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// 503 `session_store_unavailable`: the session store failed.
    #[error("the session store is unavailable; try again shortly")]
    SessionStore(#[from] tower_sessions::session_store::Error),
    /// 404 `not_found`.
    #[error("there is nothing at this address")]
    NotFound,
    /// 413 `payload_too_large`: a body over the limit.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
}

impl AppError {
    /// The HTTP status and the stable error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Cookie(CookieError::Missing(_)) => (StatusCode::BAD_REQUEST, "missing_cookie"),
            Self::Cookie(CookieError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, "malformed_cookie")
            }
            Self::Cookie(CookieError::InvalidSignature(_)) => {
                (StatusCode::UNAUTHORIZED, "invalid_signature")
            }
            Self::CrossOrigin(_) => (StatusCode::FORBIDDEN, "cross_origin"),
            Self::NotConnected => (StatusCode::UNAUTHORIZED, "not_connected"),
            Self::Upstream(UpstreamError::Rejected { .. }) => {
                (StatusCode::BAD_GATEWAY, "upstream_rejected")
            }
            Self::Upstream(UpstreamError::Unavailable(_)) => {
                (StatusCode::BAD_GATEWAY, "upstream_unavailable")
            }
            Self::Upstream(UpstreamError::Malformed(_)) => {
                (StatusCode::BAD_GATEWAY, "upstream_malformed")
            }
            Self::Upstream(UpstreamError::Timeout(_)) => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            }
            Self::SessionStore(_) => (StatusCode::SERVICE_UNAVAILABLE, "session_store_unavailable"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        }
    }

    /// The sentence for a person. Store errors are summarised: their detail goes to the log.
    fn message(&self) -> String {
        let mut message = self.to_string();
        if !message.ends_with('.') {
            message.push('.');
        }
        let mut chars = message.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => message,
        }
    }
}

/// The JSON body of every error.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// The stable code.
    pub error: &'static str,
    /// One sentence for a person.
    pub message: String,
}

/// What [`log_errors`] finds on a failed response.
#[derive(Clone, Debug)]
pub struct LoggedError {
    code: &'static str,
    status: StatusCode,
    detail: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let detail = match &self {
            Self::SessionStore(err) => err.to_string(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: code,
            message: self.message(),
        };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(LoggedError {
            code,
            status,
            detail,
        });
        response
    }
}

/// Writes one log line per failed request: server and upstream faults at `warn`, the
/// caller's mistakes at `info`. Messages never hold secrets, so they can be logged whole.
pub async fn log_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if let Some(err) = response.extensions().get::<LoggedError>() {
        if err.status.is_server_error() {
            tracing::warn!(%method, %path, status = err.status.as_u16(), code = err.code, "{}", err.detail);
        } else {
            tracing::info!(%method, %path, status = err.status.as_u16(), code = err.code, "{}", err.detail);
        }
    }
    response
}

/// The fallback for unknown routes.
pub async fn not_found() -> AppError {
    AppError::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_upstream_fault_is_a_502_or_504() {
        let cases = [
            (
                UpstreamError::Rejected {
                    status: 401,
                    problem: "token_rejected".into(),
                },
                502,
                "upstream_rejected",
            ),
            (
                UpstreamError::Unavailable("x".into()),
                502,
                "upstream_unavailable",
            ),
            (
                UpstreamError::Malformed("x".into()),
                502,
                "upstream_malformed",
            ),
            (UpstreamError::Timeout(10), 504, "upstream_timeout"),
        ];
        for (err, status, code) in cases {
            let (s, c) = AppError::from(err).status_and_code();
            assert_eq!((s.as_u16(), c), (status, code));
        }
    }

    #[test]
    fn messages_are_sentences_and_name_the_problem() {
        let err = AppError::from(UpstreamError::Rejected {
            status: 401,
            problem: "token_rejected".into(),
        });
        assert_eq!(
            err.message(),
            "LinkedIn refused the request (token_rejected)."
        );
        assert_eq!(
            AppError::NotConnected.message(),
            "No LinkedIn member is connected in this session: sign in first."
        );
    }
}
