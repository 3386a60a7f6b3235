//! The plain-HTTP side listeners: `METRICS_BIND` (`GET /metrics`, Prometheus text) and
//! `HTTP_REDIRECT_BIND` (308 to the same path and query on the HTTPS origin). Both stop with
//! the server.

use std::future::Future;

use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::telemetry::Telemetry;

/// Serves `GET /metrics` from `telemetry` on `listener` until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(telemetry);
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(%err, "the metrics listener stopped");
    }
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

/// Answers every request on `listener` with 308 to `origin` plus its path and query.
pub async fn serve_redirect(
    listener: TcpListener,
    origin: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new().fallback(redirect).with_state(origin);
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(%err, "the redirect listener stopped");
    }
}

async fn redirect(State(origin): State<String>, OriginalUri(uri): OriginalUri) -> Response {
    let target = format!(
        "{origin}{}",
        uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    match HeaderValue::from_str(&target) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}
