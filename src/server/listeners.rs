//! The plain-HTTP side listeners: `METRICS_BIND` (`GET /metrics`, Prometheus text) and
//! `HTTP_REDIRECT_BIND` (308 to the same path and query on the HTTPS origin). The server
//! runs both under the same connection bounds as the main port, each with its own cap.

use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::telemetry::Telemetry;

/// `GET /metrics` from `telemetry`.
pub(super) fn metrics_app(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(telemetry)
}

async fn metrics(State(telemetry): State<Telemetry>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry.render(),
    )
}

/// Answers every request with 308 to `origin` plus its path and query; a request for no
/// path (`OPTIONS *`) gets 400.
pub(super) fn redirect_app(origin: String) -> Router {
    Router::new().fallback(redirect).with_state(origin)
}

async fn redirect(State(origin): State<String>, OriginalUri(uri): OriginalUri) -> Response {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if !path.starts_with('/') {
        return (
            StatusCode::BAD_REQUEST,
            "This address redirects paths to HTTPS; the request names no path.\n",
        )
            .into_response();
    }
    let target = format!("{origin}{path}");
    match HeaderValue::from_str(&target) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}
