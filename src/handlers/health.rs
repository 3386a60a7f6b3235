//! The probes: `GET /healthz` (liveness: the process answers) and `GET /readyz` (readiness:
//! the session store answers within 1 s, and the server is not shutting down). No session.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Routes, Verb};
use crate::app::AppState;

/// How long the store may take to answer the readiness probe.
const READY_WITHIN: Duration = Duration::from_secs(1);

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .at(Verb::Get, "/healthz", healthz)
        .at(Verb::Get, "/readyz", readyz)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let not_ready = |reason: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": reason})),
        )
    };
    if state.shutting_down.load(Ordering::Acquire) {
        return not_ready("shutting down");
    }
    match tokio::time::timeout(READY_WITHIN, state.sessions.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({"ready": true}))),
        Ok(Err(_)) | Err(_) => not_ready("the session store does not answer"),
    }
}
