//! The connected member: `GET /session`, `GET /me` and `POST /logout`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{AppError, Result};
use crate::session::{Connected, Credentials, Flow, MemberSession};
use crate::sign_in::SignInState;

/// The answer of `GET /session`.
#[derive(Debug, Serialize)]
pub struct SessionReply {
    /// Whether the session holds unexpired credentials.
    pub connected: bool,
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
}

/// The routes of this module.
pub(crate) fn router() -> Router<SignInState> {
    Router::new()
        .route("/session", get(session_status))
        .route("/me", get(me))
        .route("/logout", post(logout))
}

async fn session_status(session: MemberSession) -> Result<Json<SessionReply>> {
    let member = session.member().await?;
    let (name, email) = match member.as_ref().map(|m| &m.credentials) {
        Some(Credentials::Oidc { name, email, .. }) => (name.clone(), email.clone()),
        _ => (None, None),
    };
    Ok(Json(SessionReply {
        connected: member.is_some(),
        flow: member.as_ref().map(|m| m.credentials.flow()),
        expires_at: member.as_ref().map(|m| m.expires_at),
        member_id: member.map(|m| m.member_id),
        name,
        email,
    }))
}

/// The member's profile, fetched with the stored credentials of their flow.
async fn me(State(state): State<SignInState>, Connected(member): Connected) -> Result<Json<Value>> {
    let profile = match &member.credentials {
        Credentials::Jsapi {
            oauth_token,
            oauth_token_secret,
        } => {
            // A member of the JSAPI flow on a host that turned it off (a shared store).
            if state.jsapi.is_none() {
                return Err(AppError::NotConnected);
            }
            state
                .linkedin
                .profile(oauth_token, oauth_token_secret)
                .await?
        }
        Credentials::Oidc { access_token, .. } => {
            let oidc = state.oidc.as_ref().ok_or(AppError::OidcNotConfigured)?;
            oidc.userinfo(access_token).await?
        }
    };
    Ok(Json(profile))
}

async fn logout(session: MemberSession) -> Result<Json<Value>> {
    session.end().await?;
    Ok(Json(json!({"status": "logged_out"})))
}
