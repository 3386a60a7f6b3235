//! The application: [`AppState`] and [`build_app`], the routes and layers that `main` serves
//! and the tests drive. No sockets, no TLS, no environment here: `server` does those.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyDeadlineLayer;
use tower_http::trace::TraceLayer;

use crate::config::TrustedProxies;
use crate::csp::csp_source;
use crate::error::{errors, not_found};
use crate::handlers;
use crate::limits::{BODY_DEADLINE, MAX_BODY_BYTES, MAX_DRAINED_BYTES};
use crate::session::{self, SessionBackend};
use crate::sign_in::{self, SignInState};
use crate::telemetry::{self, MakeId};

/// `Strict-Transport-Security` for public origins: a year.
const HSTS: &str = "max-age=31536000";

/// What every handler shares.
#[derive(Clone, Debug)]
pub(crate) struct AppState(Arc<Settings>);

/// The resolved settings behind [`AppState`].
#[derive(Debug)]
pub(crate) struct Settings {
    /// What the sign-in and member routes share (the library's part).
    pub(crate) sign_in: SignInState,
    /// The session store (the session layer's, and readiness's).
    pub(crate) sessions: SessionBackend,
    /// Set once shutdown begins: readiness then answers 503.
    pub(crate) shutting_down: Arc<AtomicBool>,
    /// `TRUSTED_PROXIES`: whose `X-Forwarded-*` headers are believed.
    pub(crate) trusted_proxies: Option<TrustedProxies>,
    /// `SESSION_COOKIE_DOMAIN`, when set.
    pub(crate) cookie_domain: Option<String>,
    /// The session cookie's name (it depends on the domain).
    pub(crate) session_cookie: &'static str,
    /// `/auth/check`'s settings: the default rule, the assertion, the token handed on.
    pub(crate) forward_auth: handlers::auth_check::ForwardAuth,
}

impl AppState {
    /// Shares `settings` between handlers.
    pub(crate) fn new(settings: Settings) -> Self {
        Self(Arc::new(settings))
    }
}

impl std::ops::Deref for AppState {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.0
    }
}

/// Builds the router: the page and the library's sign-in and member routes
/// ([`crate::sign_in`]: same-origin check, rate limit) in this crate's session layer and its
/// guard, answered `Cache-Control: no-store`; the assets and health checks (no session),
/// `extra` routes that bring their own state (the sandbox), per-route metrics, and one stack
/// of layers over all of them: request ids, tracing, security headers, error logging, JSON
/// for framework errors, the body limit and deadline.
pub(crate) fn build_app(state: AppState, extra: Router) -> Router {
    let policy = state.sign_in.policy();
    let member_routes = Router::new()
        .merge(
            handlers::login::router()
                .merge(handlers::account::page_router())
                .layer(Extension(policy))
                .with_state(state.clone()),
        )
        .merge(sign_in::routes(state.sign_in.clone()))
        // One stack, so one more level per route: each level the router adds is a boxed
        // service cloned, with everything inside it, at each request.
        .layer(
            ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                .layer(session::guard(state.sessions.clone()))
                // The layer takes one session cookie: the one `/auth/check` reads too.
                .layer(session::cookie::one_session_cookie(
                    state.sessions.clone(),
                    state.session_cookie,
                ))
                .layer(session::layer(
                    state.sessions.clone(),
                    policy,
                    state.cookie_domain.as_deref(),
                ))
                // The member index behind "sign out everywhere" (`POST /logout`) and the
                // member's own sessions (`/sessions`).
                .layer(Extension(state.sessions.clone())),
        );
    let csp = content_security_policy(
        state
            .sign_in
            .jsapi
            .as_ref()
            .map_or("", |jsapi| jsapi.script_url.as_str()),
    );
    let hsts = state
        .sign_in
        .public_origins
        .iter()
        .any(|origin| !is_loopback_origin(origin))
        .then(|| {
            SetResponseHeaderLayer::overriding(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            )
        });
    let layers = ServiceBuilder::new()
        .map_request(telemetry::drop_insane_request_id)
        .layer(SetRequestIdLayer::x_request_id(MakeId))
        .layer(PropagateRequestIdLayer::x_request_id())
        // `errors` logs each failed request once; the trace layer only spans them.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(telemetry::RequestSpan::new(state.trusted_proxies.clone()))
                .on_response(telemetry::record_status)
                .on_failure(()),
        )
        .option_layer(hsts)
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
        // A page with a policy of its own keeps it (the sandbox's consent page, whose form
        // leads to the registered redirect URI).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            move |response: &Response| is_html(response).then(|| csp.clone()),
        ))
        .layer(middleware::from_fn(errors))
        .layer(middleware::from_fn(refuse_oversized))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(RequestBodyDeadlineLayer::new(BODY_DEADLINE));
    // Per-route metrics only when they are on: no middleware at all otherwise.
    let observer = state.sign_in.telemetry.is_enabled().then(|| {
        middleware::from_fn_with_state(state.sign_in.telemetry.clone(), telemetry::observe)
    });
    let routes = Router::new()
        .merge(member_routes)
        .merge(
            handlers::assets::router()
                .merge(handlers::health::router())
                .merge(handlers::openapi::router())
                .merge(handlers::auth_check::router())
                .with_state(state),
        )
        .merge(extra)
        .fallback(not_found);
    // `record_route` a plain function of the request: no middleware future, no service
    // boxed per request.
    let record_route = tower::util::MapRequestLayer::new(telemetry::record_route);
    let routes = match observer {
        Some(observer) => routes.layer(ServiceBuilder::new().layer(record_route).layer(observer)),
        None => routes.layer(record_route),
    };
    // Around the whole router, not each route: a route's 405 gets its `Allow` header from the
    // router itself, after any layer of the route, and `errors` must see it to name the
    // accepted methods.
    Router::new().fallback_service(routes).layer(layers)
}

/// Answers 413 to a request whose declared length is over [`MAX_BODY_BYTES`], after reading
/// and discarding its body when it is at most [`MAX_DRAINED_BYTES`] (within
/// [`BODY_DEADLINE`]): answering while the client still uploads would end in a connection
/// reset (HTTP/1) or a stream reset (HTTP/2) that many clients report instead of the 413.
async fn refuse_oversized(request: Request, next: Next) -> Response {
    use axum::body::HttpBody;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(length) = declared.filter(|&n| n > MAX_BODY_BYTES as u64) else {
        return next.run(request).await;
    };
    if length <= MAX_DRAINED_BYTES {
        let mut body = request.into_body();
        let drain = async {
            while let Some(frame) =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
            {
                if frame.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(BODY_DEADLINE, drain).await;
    }
    axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response()
}

/// The policy of HTML pages: scripts from this server and the JSAPI script's origin only,
/// no inline script or style, no framing.
fn content_security_policy(jsapi_url: &str) -> HeaderValue {
    let jsapi = csp_source(jsapi_url);
    let policy = format!(
        "default-src 'self'; script-src 'self'{jsapi}; connect-src 'self'{jsapi}; \
         frame-src 'self'{jsapi}; img-src 'self' data:{jsapi}; style-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'self'"))
}

fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/html"))
}

/// Whether an origin names this machine (`localhost`, a loopback address).
fn is_loopback_origin(origin: &str) -> bool {
    match url::Url::parse(origin)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(name)) => name == "localhost" || name.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_origins_are_told_apart_from_public_ones() {
        for origin in [
            "https://localhost:8443",
            "https://127.0.0.1",
            "https://[::1]:9",
        ] {
            assert!(is_loopback_origin(origin), "{origin}");
        }
        for origin in ["https://login.example.com", "https://10.0.0.5:8443"] {
            assert!(!is_loopback_origin(origin), "{origin}");
        }
    }

    #[test]
    fn the_policy_admits_the_jsapi_origin_and_no_inline_code() {
        let policy = content_security_policy("https://platform.linkedin.com/in.js");
        let policy = policy.to_str().unwrap();
        assert!(
            policy.contains("script-src 'self' https://platform.linkedin.com;"),
            "{policy}"
        );
        assert!(!policy.contains("unsafe-inline"));
        let sandbox = content_security_policy("/sandbox/in.js");
        assert!(sandbox.to_str().unwrap().contains("script-src 'self';"));
    }
}
