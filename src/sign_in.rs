//! The library's front door: [`LinkedInSignIn`], configured from code
//! ([`LinkedInSignIn::builder`]) or from the service's own variables
//! ([`LinkedInSignIn::from_env`]), gives the sign-in and
//! member routes as one [`Router`] for any axum app, and the session layer to wrap it in
//! ([`LinkedInSignIn::session_layer`], over any store of tower-sessions 0.14).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::{SessionManagerLayer, SessionStore};

use crate::config::AppCredentials;
use crate::config::api_access::{ApiAllow, ApiVersion};
use crate::error::AppError;
use crate::gate::{GateLayer, Verdict};
use crate::handlers;
use crate::linkedin::api::{ApiReach, LinkedInApi};
use crate::linkedin::client::LinkedInClient;
use crate::linkedin::oidc::OidcClient;
use crate::ratelimit::{RateLimits, limit_clients};
use crate::return_to::ReturnPolicy;
use crate::secret::Secret;
use crate::session::upkeep::UpkeepSlot;
use crate::session::{Member, MemberSession, SessionBackend, SessionPolicy};
use crate::telemetry::Telemetry;
use crate::text::escape_text;

mod builder;
mod env;

pub use builder::{BuildError, SignInBuilder};

/// LinkedIn sign-in for an axum app: OpenID Connect, the JSAPI cookie exchange, or both.
///
/// [`LinkedInSignIn::router`] gives `GET /auth/linkedin`, `GET /auth/linkedin/callback`,
/// `POST /token-exchange` (404 `jsapi_not_configured` unless JSAPI is configured), `GET /session`,
/// `GET /me`, `POST /logout`, the pass-through `/linkedin/api/{*path}`
/// ([`SignInBuilder::api_allow`]), and the member's own sessions: `GET /sessions`,
/// `DELETE /sessions/{handle}` and `POST /sessions/end-others`. Those need the member index
/// of this crate's store: add `Extension(store.clone())` of the `stores::SealedStore` in use
/// over the router, or they answer 404 `sessions_not_configured`. Handlers of the host reach
/// the member through [`Connected`](crate::Connected) and
/// [`MemberSession`](crate::MemberSession), and LinkedIn's API as the member through
/// [`LinkedInSignIn::api`].
#[derive(Clone, Debug)]
pub struct LinkedInSignIn {
    pub(crate) state: SignInState,
}

/// What the sign-in routes share: the resolved settings, behind an `Arc`, and what the
/// member's client needs of them.
#[derive(Clone, Debug)]
pub(crate) struct SignInState {
    settings: Arc<SignInSettings>,
    /// The member's client's part of the settings, built once.
    api_reach: Arc<ApiReach>,
}

/// The resolved settings of the sign-in routes.
#[derive(Debug)]
pub(crate) struct SignInSettings {
    /// The app's JSAPI key pair and script, when the JSAPI flow is on.
    pub jsapi: Option<JsapiApp>,
    /// The client for the LinkedIn side (its transport also serves OpenID Connect).
    pub linkedin: LinkedInClient,
    /// The OpenID Connect relying party, when configured.
    pub oidc: Option<OidcClient>,
    /// The origins allowed to send state-changing requests.
    pub public_origins: Vec<String>,
    /// The inactivity limit of a session.
    pub session_idle: Duration,
    /// Whether the emulated LinkedIn is mounted (`sandbox_member` is then honoured).
    pub sandbox: bool,
    /// The metrics.
    pub telemetry: Telemetry,
    /// The rate limits of the sign-in routes.
    pub limits: RateLimits,
    /// Where the browser goes once signed in through OpenID Connect.
    pub after_sign_in: String,
    /// Where `rd` may send a member after signing in.
    pub return_policy: ReturnPolicy,
    /// The member's API: its version and what the pass-through forwards.
    pub api: ApiSettings,
    /// How often each live OpenID Connect session's token is introspected, if ever.
    pub introspect_every: Option<Duration>,
    /// The sessions' upkeep, once [`LinkedInSignIn::keep_sessions`] started it.
    pub upkeep: UpkeepSlot,
}

/// The member's API settings, resolved.
#[derive(Debug)]
pub(crate) struct ApiSettings {
    /// `LinkedIn-Version` on `/rest/` calls.
    pub version: ApiVersion,
    /// What `/linkedin/api/…` forwards.
    pub allow: ApiAllow,
}

/// The app's JSAPI side.
#[derive(Debug)]
#[cfg_attr(not(feature = "server"), allow(dead_code))] // the key and script: the login page's
pub(crate) struct JsapiApp {
    /// The app's API key (goes into the page).
    pub api_key: String,
    /// `linkedin_oauth_<API_KEY>`, the JSAPI cookie's name.
    pub cookie_name: String,
    /// The app's secret key (verifies the cookie).
    pub secret_key: Secret,
    /// The JSAPI script the page embeds (absolute, or a path on this server).
    pub script_url: String,
}

impl SignInState {
    /// Shares `settings` between handlers.
    pub(crate) fn new(settings: SignInSettings) -> Self {
        let api_reach = Arc::new(ApiReach {
            linkedin: settings.linkedin.clone(),
            oidc: settings.oidc.clone(),
            jsapi: settings.jsapi.is_some(),
            version: settings.api.version.clone(),
        });
        Self {
            settings: Arc::new(settings),
            api_reach,
        }
    }

    /// The client for LinkedIn's API as `member`, signed in in `session` (ended when
    /// LinkedIn withdraws access), with `sessions` the store whose index finds the member's
    /// other sessions.
    pub(crate) fn api_for(
        &self,
        member: Member,
        session: Option<MemberSession>,
        sessions: Option<SessionBackend>,
    ) -> LinkedInApi {
        LinkedInApi::new(self.api_reach.clone(), member, session, sessions)
    }

    /// The session rules of these routes.
    pub(crate) fn policy(&self) -> SessionPolicy {
        SessionPolicy {
            idle: self.session_idle,
        }
    }
}

impl std::ops::Deref for SignInState {
    type Target = SignInSettings;
    fn deref(&self) -> &SignInSettings {
        &self.settings
    }
}

impl LinkedInSignIn {
    /// A builder with every setting at its default and no flow (the same as
    /// [`SignInBuilder::default`]): give it at least a public origin and one flow
    /// ([`SignInBuilder::oidc`] or [`SignInBuilder::jsapi`]). It reads no environment.
    pub fn builder() -> SignInBuilder {
        SignInBuilder::default()
    }

    /// A builder from the service's sign-in variables (those of `docs/configuration.md` that
    /// configure the sign-in: `PUBLIC_ORIGIN`, `LINKEDIN_CLIENT_ID`, `RATE_LIMIT`, …; not
    /// `BIND`, `TLS`, `SESSION_STORE` or `SANDBOX`, which belong to the service). `.env` is
    /// not read: the host decides. The one place the library reads the environment; a value
    /// that does not parse is an error naming the variable, never an exit.
    pub fn from_env() -> Result<SignInBuilder, BuildError> {
        env::from_vars(|name| std::env::var(name).ok())
    }

    /// The sign-in and member routes, with the same-origin check on state-changing requests,
    /// the sign-in rate limit and `Cache-Control: no-store`. Merge it into the host's router
    /// or nest it under a prefix (then set [`SignInBuilder::redirect_url`] to the nested
    /// callback). A session layer must wrap it and the host's own routes that extract
    /// [`Connected`](crate::Connected): [`LinkedInSignIn::session_layer`]. Without one, every
    /// route answers 503 `session_layer_missing`, naming the cause.
    pub fn router(&self) -> Router {
        routes(self.state.clone())
    }

    /// The session layer to wrap the app in (the router and the host's own routes), over
    /// `store` (any store of tower-sessions 0.14, re-exported as [`tower_sessions`]): the
    /// cookie `__Host-lte_session`, `Secure`, `HttpOnly`, `SameSite=Lax`, `Path=/`, ended
    /// after [`SignInBuilder::session_idle`] of inactivity. `Lax`, not tower-sessions' default `Strict`: the browser comes back from
    /// LinkedIn, another site, and must bring the cookie that holds the pending sign-in, or
    /// the callback ends in `oidc_state_mismatch`. Browsers keep a `Secure` cookie over
    /// HTTPS, and over plain HTTP on `localhost` or a loopback address only. The host's own
    /// handlers then apply the same idle limit, with nothing added by hand.
    pub fn session_layer<S: SessionStore>(&self, store: S) -> SessionManagerLayer<S> {
        crate::session::layer(store, self.state.policy(), None)
    }

    /// The session rules (the idle limit) the extractors apply. Not needed with
    /// [`LinkedInSignIn::session_layer`], whose inactivity expiry the extractors read: an
    /// `Extension(sign_in.session_policy())` over routes overrides it (without either, the
    /// default of 24 hours).
    pub fn session_policy(&self) -> SessionPolicy {
        self.state.policy()
    }

    /// The origins allowed to send state-changing requests, the first one where a person
    /// opens the app.
    pub fn public_origins(&self) -> &[String] {
        &self.state.public_origins
    }

    /// The connected member's client for LinkedIn's API, in a handler of the host:
    /// 401 `not_connected` when `session` holds no member. Each call is signed with the
    /// member's credentials; see [`LinkedInApi`] for what comes back. When LinkedIn withdraws
    /// the member's access (401), this session ends and says why (`/session` answers
    /// `"ended":"linkedin_access_withdrawn"`); the member's sessions elsewhere end at their
    /// own next call (the server's store, which keeps a member index, ends them all at once).
    pub async fn api(&self, session: &MemberSession) -> Result<LinkedInApi, AppError> {
        let member = session.member().await?.ok_or(AppError::NotConnected)?;
        Ok(self.state.api_for(member, Some(session.handle()), None))
    }

    /// Keeps the OpenID Connect sessions of `store` (this crate's sealed store) alive and
    /// honest, from a background task (it needs a Tokio runtime): a session whose response
    /// carried a refresh token is refreshed before its access token expires (in its last
    /// quarter, at most its last day), at a request to [`LinkedInSignIn::router`]'s routes or
    /// by the task, once across every instance sharing the store; with
    /// [`SignInBuilder::introspect_every`], each session's token is introspected once per
    /// interval, and a revoked or expired one ends its sessions. Call it once, with the store
    /// of the session layer; a second call, or a sign-in without OpenID Connect, does
    /// nothing. The task ends when the last clone of this sign-in is dropped.
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
    pub fn keep_sessions(&self, store: &crate::stores::SealedStore) {
        let state = &self.state;
        let Some(oidc) = &state.oidc else {
            return;
        };
        let settings = crate::session::upkeep::UpkeepSettings {
            oidc: oidc.clone(),
            telemetry: state.telemetry.clone(),
            idle: state.session_idle,
            introspect_every: state.introspect_every,
            upstream_timeout: state.linkedin.transport().timeout(),
            slot: state.upkeep.clone(),
        };
        crate::session::upkeep::start(settings, store);
    }
}

impl JsapiApp {
    /// The JSAPI side of the app with `credentials`, its page embedding `script_url`.
    pub(crate) fn new(credentials: AppCredentials, script_url: String) -> Self {
        Self {
            cookie_name: crate::linkedin::cookie::cookie_name(&credentials.api_key),
            api_key: credentials.api_key,
            secret_key: credentials.secret_key,
            script_url,
        }
    }
}

/// The sign-in and member routes over `state`: the server's app and [`LinkedInSignIn`]
/// both serve these.
pub(crate) fn routes(state: SignInState) -> Router {
    // With `RATE_LIMIT=off`, no middleware at all (the per-token check is in the handler).
    let client_limit = state
        .limits
        .is_enabled()
        .then(|| middleware::from_fn_with_state(state.limits.clone(), limit_clients));
    // The routes, and which (verb, path) they take: the same-origin check leaves a method
    // that a path does not take to the router's 405. `POST /token-exchange` is mounted with or
    // without the JSAPI key pair: without it, the answer is 404 `jsapi_not_configured`, as
    // OpenID Connect's is `oidc_not_configured`.
    let (routes, taken) = handlers::record(|| {
        let sign_in = handlers::exchange::router()
            .merge(handlers::oidc::router())
            .merge(handlers::api::router());
        // No layer at all when off: each level is a boxed service cloned per request.
        let sign_in = match client_limit {
            Some(limit) => sign_in.route_layer(limit),
            None => sign_in,
        };
        Router::new()
            .merge(sign_in)
            .merge(handlers::member::router())
            .merge(handlers::account::router())
    });
    let checked = Arc::new(OriginCheck {
        state: state.clone(),
        state_changing: taken
            .into_iter()
            .filter(|(verb, _)| verb.changes_state())
            .collect(),
    });
    routes
        .route_layer(GateLayer::new(checked, require_public_origin))
        // One stack: one level per route instead of three.
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                // Lets the extractors refresh a member's token when it is due.
                .layer(Extension(state.upkeep.clone()))
                .layer(Extension(state.policy())),
        )
        .with_state(state)
}

/// What [`require_public_origin`] needs: the public origins, and the state-changing routes.
#[derive(Debug)]
struct OriginCheck {
    state: SignInState,
    /// `(verb, path)` of each route that takes a state-changing method.
    state_changing: Vec<handlers::RouteEntry>,
}

/// Whether the route at `matched` (its path as the app matched it, under any prefix the host
/// nests these routes at) takes `method` and it changes state, by `state_changing`. Without
/// a matched path, every state-changing method is checked.
fn origin_check_applies(
    state_changing: &[handlers::RouteEntry],
    method: &Method,
    matched: Option<&str>,
) -> bool {
    let Some(verb) = handlers::Verb::of(method).filter(|verb| verb.changes_state()) else {
        return false;
    };
    matched.is_none_or(|matched| {
        state_changing
            .iter()
            .any(|(v, path)| *v == verb && matched.ends_with(path.as_str()))
    })
}

/// Refuses a state-changing request whose `Origin` (or, failing that, `Referer`) is not one
/// of the public origins. A request with neither is refused too: browsers send `Origin` on
/// every cross-site and same-site `POST`. A method the route does not take passes, to the
/// router's 405. A [`Gate`](crate::gate::Gate): decided from the request alone.
fn require_public_origin(check: &Arc<OriginCheck>, request: Request) -> Verdict {
    match origin_refusal(check, &request) {
        None => Verdict::Pass(request),
        Some(err) => Verdict::Answer(err.into_response()),
    }
}

/// Why [`require_public_origin`] refuses `request`, if it does.
fn origin_refusal(check: &OriginCheck, request: &Request) -> Option<AppError> {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    if !origin_check_applies(&check.state_changing, request.method(), matched) {
        return None;
    }
    let state = &check.state;
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
            None
        }
        Some(origin) => Some(AppError::CrossOrigin(format!(
            "origin \"{}\" is not allowed",
            escape_text(&origin, 100)
        ))),
        None => Some(AppError::CrossOrigin("no Origin or Referer header".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_check_is_for_the_state_changing_methods_a_route_takes() {
        let post = |path: &str| (handlers::Verb::Post, path.to_owned());
        let routes = [post("/logout"), post("/token-exchange")];
        let applies = |method, matched| origin_check_applies(&routes, &method, matched);
        assert!(applies(Method::POST, Some("/logout")));
        // Nested under a prefix by a host app.
        assert!(applies(Method::POST, Some("/linkedin/logout")));
        // No matched path: checked, for every state-changing verb.
        assert!(applies(Method::POST, None));
        assert!(applies(Method::DELETE, None));
        // A route that takes no POST, and methods no route takes: the router's 405.
        assert!(!applies(Method::POST, Some("/session")));
        assert!(!applies(Method::PUT, Some("/logout")));
        assert!(!applies(Method::DELETE, Some("/logout")));
        // A DELETE route (the member's sessions) is checked, and so is a DELETE unmatched.
        let sessions = [(handlers::Verb::Delete, "/sessions/{handle}".to_owned())];
        assert!(origin_check_applies(
            &sessions,
            &Method::DELETE,
            Some("/sessions/{handle}")
        ));
        assert!(applies(Method::PUT, None));
        assert!(applies(Method::PATCH, None));
        assert!(!applies(Method::TRACE, None));
        assert!(!applies(Method::GET, Some("/logout")));
        assert!(!applies(Method::HEAD, Some("/logout")));
    }
}
