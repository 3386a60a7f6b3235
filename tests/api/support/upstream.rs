//! A plain-HTTP stand-in for LinkedIn's OAuth 1.0a side that answers as told (credentials,
//! an error, a hang, a dropped connection) and counts the calls it gets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use linkedin_token_exchange::server::config::Config;
use tokio::sync::Mutex;
use url::Url;

/// Credentials at once, valid for 60 days.
pub const GRANT: Behaviour = Behaviour::Grant {
    delay: Duration::ZERO,
    expires_in: 5_183_999,
};

/// How the fake upstream answers the exchange.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Credentials valid for `expires_in` seconds, after `delay`.
    Grant { delay: Duration, expires_in: u64 },
    /// This status and body.
    Answer(u16, &'static str),
    /// Never answers.
    Hang,
    /// Closes the connection without an answer.
    Drop,
}

/// A plain-HTTP upstream on 127.0.0.1 that answers as told and counts calls.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub calls: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct FakeState {
    behaviour: Arc<Mutex<Behaviour>>,
    calls: Arc<AtomicUsize>,
}

impl FakeUpstream {
    pub async fn start(behaviour: Behaviour) -> FakeUpstream {
        let state = FakeState {
            behaviour: Arc::new(Mutex::new(behaviour)),
            calls: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route("/uas/oauth/accessToken", post(fake_exchange))
            .route("/v1/people/~", get(fake_profile))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeUpstream {
            addr,
            behaviour: state.behaviour,
            calls: state.calls,
        }
    }

    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    /// Real mode against this upstream, with a short timeout.
    pub fn configure(&self, config: &mut Config) {
        config.linkedin.sandbox = Some(false);
        config.linkedin.access_token_url = Some(self.url("/uas/oauth/accessToken"));
        config.linkedin.api_url = Some(self.url(""));
        config.limits.upstream_timeout_ms = 1_000;
    }

    pub async fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().await = behaviour;
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn fake_exchange(
    State(state): State<FakeState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    assert!(
        headers
            .get("authorization")
            .is_some_and(|h| h.to_str().unwrap().starts_with("OAuth "))
    );
    let token = String::from_utf8_lossy(&body).to_string();
    let behaviour = state.behaviour.lock().await.clone();
    match behaviour {
        Behaviour::Grant { delay, expires_in } => {
            tokio::time::sleep(delay).await;
            let n = state.calls.load(Ordering::SeqCst);
            (
                StatusCode::OK,
                format!("oauth_token=tok-{n}-{}&oauth_token_secret=fake-secret-{n}&oauth_expires_in={expires_in}&oauth_authorization_expires_in={expires_in}", token.len()),
            )
                .into_response()
        }
        Behaviour::Answer(status, body) => {
            (StatusCode::from_u16(status).unwrap(), body).into_response()
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Behaviour::Drop => {
            // Panicking in the handler makes hyper drop the connection without an answer.
            std::panic::resume_unwind(Box::new("dropping the connection on purpose"))
        }
    }
}

async fn fake_profile() -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"id": "fake"})),
    )
        .into_response()
}
