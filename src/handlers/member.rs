//! The connected member: `GET /session`, `GET /me` and `POST /logout`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use tower_sessions::Session;

use crate::app::AppState;
use crate::error::{AppError, Result};
use crate::session::LinkedInSession;

/// The answer of `GET /session`.
#[derive(Debug, Serialize)]
pub struct SessionReply {
    /// Whether the session holds unexpired credentials.
    pub connected: bool,
    /// The member, when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    /// When the credentials expire (Unix seconds), when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/session", get(session_status))
        .route("/me", get(me))
        .route("/logout", post(logout))
}

async fn session_status(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<SessionReply>> {
    let credentials = LinkedInSession::new(&session, state.session_idle)
        .credentials()
        .await?;
    Ok(Json(SessionReply {
        connected: credentials.is_some(),
        expires_at: credentials.as_ref().map(|c| c.expires_at),
        member_id: credentials.map(|c| c.member_id),
    }))
}

/// The member's profile, fetched with the stored token (OAuth 1.0a signed).
async fn me(State(state): State<AppState>, session: Session) -> Result<Json<Value>> {
    let credentials = LinkedInSession::new(&session, state.session_idle)
        .credentials()
        .await?
        .ok_or(AppError::NotConnected)?;
    let profile = state
        .linkedin
        .profile(&credentials.oauth_token, &credentials.oauth_token_secret)
        .await?;
    Ok(Json(profile))
}

async fn logout(State(state): State<AppState>, session: Session) -> Result<Json<Value>> {
    LinkedInSession::new(&session, state.session_idle)
        .end()
        .await?;
    Ok(Json(json!({"status": "logged_out"})))
}
