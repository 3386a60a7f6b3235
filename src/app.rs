//! The application: [`AppState`] and [`build_app`], the routes and layers that `main` serves
//! and the tests drive. No sockets, no TLS, no environment here: `server` does those.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyDeadlineLayer;
use tower_http::trace::TraceLayer;

use crate::error::{AppError, json_errors, log_errors, not_found};
use crate::handlers;
use crate::linkedin::client::LinkedInClient;
use crate::secret::Secret;
use crate::session::{self, SessionBackend, SessionPolicy};

/// The largest request body accepted (the routes take none, or a small one).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// How long a request body may take to arrive.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Settings>);

/// The resolved settings behind [`AppState`].
#[derive(Debug)]
pub struct Settings {
    /// The app's API key (goes into the page).
    pub api_key: String,
    /// `linkedin_oauth_<API_KEY>`, the JSAPI cookie's name.
    pub cookie_name: String,
    /// The app's secret key (verifies the cookie).
    pub secret_key: Secret,
    /// The client for the LinkedIn side.
    pub linkedin: LinkedInClient,
    /// The JSAPI script the page embeds (absolute, or a path on this server).
    pub jsapi_url: String,
    /// The origins allowed to send state-changing requests.
    pub public_origins: Vec<String>,
    /// The inactivity limit of a session.
    pub session_idle: Duration,
    /// Whether the emulated LinkedIn is mounted (the page says so).
    pub sandbox: bool,
}

impl AppState {
    /// Shares `settings` between handlers.
    pub fn new(settings: Settings) -> Self {
        Self(Arc::new(settings))
    }
}

impl std::ops::Deref for AppState {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.0
    }
}

impl FromRef<AppState> for SessionPolicy {
    fn from_ref(state: &AppState) -> Self {
        SessionPolicy {
            idle: state.session_idle,
        }
    }
}

/// Builds the router: the routes that use the session (behind the same-origin check on
/// state-changing requests), the assets and health check (no session), `extra` routes that
/// bring their own state (the sandbox), and one stack of layers over all of them: tracing,
/// security headers, error logging, JSON for framework errors, the body limit and deadline.
pub fn build_app(state: AppState, sessions: SessionBackend, extra: Router) -> Router {
    let policy = SessionPolicy::from_ref(&state);
    let member_routes = Router::new()
        .merge(handlers::login::router())
        .merge(handlers::exchange::router())
        .merge(handlers::member::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_public_origin,
        ))
        .layer(session::layer(sessions.clone(), policy))
        .layer(middleware::from_fn_with_state(sessions, session::guard));
    let layers = ServiceBuilder::new()
        // `log_errors` logs each failed request once; the trace layer only spans them.
        .layer(TraceLayer::new_for_http().on_failure(()))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(middleware::from_fn(log_errors))
        .layer(middleware::from_fn(json_errors))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(RequestBodyDeadlineLayer::new(BODY_DEADLINE));
    Router::new()
        .merge(member_routes)
        .merge(handlers::assets::router())
        .with_state(state)
        .merge(extra)
        .fallback(not_found)
        .layer(layers)
}

/// Refuses a state-changing request whose `Origin` (or, failing that, `Referer`) is not one
/// of the public origins. A request with neither is refused too: browsers send `Origin` on
/// every cross-site and same-site `POST`.
async fn require_public_origin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return Ok(next.run(request).await);
    }
    let headers = request.headers();
    let origin = match headers.get(header::ORIGIN) {
        Some(origin) => origin.to_str().ok().map(str::to_owned),
        None => headers
            .get(header::REFERER)
            .and_then(|r| r.to_str().ok())
            .and_then(|r| url::Url::parse(r).ok())
            .map(|r| r.origin().ascii_serialization()),
    };
    match origin {
        Some(origin)
            if state
                .public_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(&origin)) =>
        {
            Ok(next.run(request).await)
        }
        Some(origin) => Err(AppError::CrossOrigin(format!(
            "origin {} is not allowed",
            truncate(&origin)
        ))),
        None => Err(AppError::CrossOrigin("no Origin or Referer header".into())),
    }
}

fn truncate(origin: &str) -> String {
    origin
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect()
}
