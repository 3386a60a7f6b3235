//! The member's own sessions, across their devices: `GET /sessions` lists them,
//! `DELETE /sessions/{handle}` ends one, `POST /sessions/end-others` ends all but this one
//! (the library's routes, [`router`]); and `GET /account`, the page that shows them (the
//! service's, [`page_router`], beside the login page).
//!
//! Each session is named by a handle that the member index's store derives from its id
//! (`session::SessionBackend::own_sessions`): the id never leaves the server, and a handle
//! only ever finds a session among the connected member's own, so another member's handle,
//! like an unknown one, is 404 `session_not_found`. The index is the server's own store,
//! reached as an `Extension` (the server adds it; a host that wants these routes adds its
//! `stores::SealedStore` the same way): without it, 404 `sessions_not_configured`. The
//! same-origin rule of state-changing routes (`sign_in::routes`) covers the `DELETE` and the
//! `POST`.

use axum::extract::Path;
use axum::{Extension, Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Routes, Verb};
use crate::error::{AppError, Result};
use crate::session::{Member, MemberSession, OwnSession, SessionBackend};
use crate::sign_in::SignInState;

/// The longest handle looked up (handles are 22 characters; anything longer is none).
const MAX_HANDLE: usize = 64;

/// The answer of `GET /sessions`.
#[derive(Debug, Serialize)]
pub(crate) struct SessionsReply {
    /// The member's unexpired sessions, oldest first.
    pub sessions: Vec<OwnSession>,
}

/// The library's routes of this module.
pub(crate) fn router() -> Router<SignInState> {
    Router::new()
        .at(Verb::Get, "/sessions", list_sessions)
        .at(Verb::Delete, "/sessions/{handle}", end_session)
        .at(Verb::Post, "/sessions/end-others", end_other_sessions)
}

/// The member index, and the connected member; the index is checked first, so that a host
/// without one learns it whoever asks.
async fn member_and_index(
    sessions: Option<Extension<SessionBackend>>,
    session: &MemberSession,
) -> Result<(Member, SessionBackend)> {
    let Some(Extension(sessions)) = sessions else {
        return Err(AppError::SessionsNotConfigured);
    };
    let member = session.member().await?.ok_or(AppError::NotConnected)?;
    Ok((member, sessions))
}

async fn list_sessions(
    sessions: Option<Extension<SessionBackend>>,
    session: MemberSession,
) -> Result<Json<SessionsReply>> {
    let (member, sessions) = member_and_index(sessions, &session).await?;
    let sessions = sessions
        .own_sessions(&member.member_id, session.id())
        .await?;
    Ok(Json(SessionsReply { sessions }))
}

/// Ends the member's session named by `handle`. This device's own session ends as a logout
/// does (its cookie cleared too), answering `"connected": false`.
async fn end_session(
    sessions: Option<Extension<SessionBackend>>,
    session: MemberSession,
    Path(handle): Path<String>,
) -> Result<Json<Value>> {
    let (member, sessions) = member_and_index(sessions, &session).await?;
    if handle.len() > MAX_HANDLE {
        return Err(AppError::SessionNotFound);
    }
    let id = sessions
        .own_session(&member.member_id, &handle)
        .await?
        .ok_or(AppError::SessionNotFound)?;
    let this_one = session.id() == Some(id);
    if this_one {
        session.end().await?;
    } else {
        sessions.end_session(&member.member_id, &id).await?;
    }
    tracing::info!(
        member_id = %member.member_id.escape_debug(),
        this_device = this_one,
        "the member ended one of their sessions"
    );
    Ok(Json(json!({"sessions_ended": 1, "connected": !this_one})))
}

/// Ends every session of the member but this one.
async fn end_other_sessions(
    sessions: Option<Extension<SessionBackend>>,
    session: MemberSession,
) -> Result<Json<Value>> {
    let (member, sessions) = member_and_index(sessions, &session).await?;
    let ended = sessions
        .end_other_sessions(&member.member_id, session.id())
        .await?;
    tracing::info!(
        member_id = %member.member_id.escape_debug(),
        sessions_ended = ended,
        "the member ended their other sessions"
    );
    Ok(Json(json!({"sessions_ended": ended})))
}

#[cfg(feature = "server")]
pub(crate) use page::page_router;

/// `GET /account`, the page (the service's, beside the login page).
#[cfg(feature = "server")]
mod page {
    use askama::Template;
    use askama_web::WebTemplate;
    use axum::Router;
    use axum::extract::State;
    use time::OffsetDateTime;

    use super::super::{Routes, Verb};
    use crate::app::AppState;
    use crate::error::Result;
    use crate::session::{MemberSession, OwnSession};

    /// The page of the member's sessions.
    #[derive(Template, WebTemplate)]
    #[template(path = "account.html")]
    pub(crate) struct AccountPage {
        /// Whether a member is connected (otherwise the page offers the sign-in page).
        connected: bool,
        /// The member's sessions, as the page shows them.
        sessions: Vec<ShownSession>,
        /// Whether any session is not this one ("End all other sessions" is offered then).
        others: bool,
    }

    /// One row of the page.
    pub(crate) struct ShownSession {
        handle: String,
        browser: String,
        /// "OpenID Connect" or "JavaScript API".
        flow: &'static str,
        created_at: i64,
        created: String,
        last_seen: i64,
        seen: String,
        current: bool,
    }

    impl From<OwnSession> for ShownSession {
        fn from(session: OwnSession) -> Self {
            Self {
                flow: flow_label(&session.flow),
                created: shown_time(session.created_at),
                seen: shown_time(session.last_seen),
                created_at: session.created_at,
                last_seen: session.last_seen,
                handle: session.handle,
                browser: session.browser,
                current: session.current,
            }
        }
    }

    /// How the page names a flow (as `static/account.js` does).
    pub(super) fn flow_label(flow: &str) -> &'static str {
        match flow {
            "oidc" => "OpenID Connect",
            "jsapi" => "JavaScript API",
            _ => "Unknown",
        }
    }

    /// A Unix time as the page shows it, `2026-12-01 09:30 UTC` (as `static/account.js` does).
    pub(super) fn shown_time(at: i64) -> String {
        match OffsetDateTime::from_unix_timestamp(at) {
            Ok(t) => format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            ),
            Err(_) => "unknown".to_owned(),
        }
    }

    /// The service's routes of this module.
    pub(crate) fn page_router() -> Router<AppState> {
        Router::new().at(Verb::Get, "/account", account_page)
    }

    async fn account_page(
        State(state): State<AppState>,
        session: MemberSession,
    ) -> Result<AccountPage> {
        let Some(member) = session.member().await? else {
            return Ok(AccountPage {
                connected: false,
                sessions: Vec::new(),
                others: false,
            });
        };
        let sessions: Vec<ShownSession> = state
            .sessions
            .own_sessions(&member.member_id, session.id())
            .await?
            .into_iter()
            .map(ShownSession::from)
            .collect();
        Ok(AccountPage {
            connected: true,
            others: sessions.iter().any(|s| !s.current),
            sessions,
        })
    }
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::page::{flow_label, shown_time};

    #[test]
    fn times_and_flows_read_as_the_script_writes_them() {
        assert_eq!(shown_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(shown_time(1_796_117_400), "2026-12-01 09:30 UTC");
        assert_eq!(shown_time(i64::MAX), "unknown");
        assert_eq!(flow_label("oidc"), "OpenID Connect");
        assert_eq!(flow_label("jsapi"), "JavaScript API");
        assert_eq!(flow_label("x"), "Unknown");
    }
}
