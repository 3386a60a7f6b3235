//! The library's front door: [`LinkedInSignIn`], configured from code
//! ([`LinkedInSignIn::builder`]) or from the service's own variables
//! ([`LinkedInSignIn::from_env`], [`LinkedInSignIn::from_config`]), gives the sign-in and
//! member routes as one [`Router`] for any axum app, and the session layer to wrap it in
//! ([`LinkedInSignIn::session_layer`], over any store of tower-sessions 0.14).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Extension, Router};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::{SessionManagerLayer, SessionStore};
use url::Url;

use crate::config::{AppCredentials, Config, ConfigError, PkceMode, RateLimit};
use crate::error::AppError;
use crate::handlers;
use crate::linkedin::client::LinkedInClient;
use crate::linkedin::oidc::OidcClient;
use crate::ratelimit::{RateLimits, limit_clients};
use crate::return_to::ReturnPolicy;
use crate::secret::Secret;
use crate::server::wiring;
use crate::session::SessionPolicy;
use crate::telemetry::Telemetry;
use crate::text::escape_text;

/// LinkedIn sign-in for an axum app: OpenID Connect, the JSAPI cookie exchange, or both.
///
/// [`LinkedInSignIn::router`] gives `GET /auth/linkedin`, `GET /auth/linkedin/callback`,
/// `POST /token-exchange` (404 `jsapi_not_configured` unless JSAPI is configured), `GET /session`, `GET /me` and
/// `POST /logout`. Handlers of the host reach the member through
/// [`Connected`](crate::Connected) and [`MemberSession`](crate::MemberSession).
#[derive(Clone, Debug)]
pub struct LinkedInSignIn {
    state: SignInState,
}

/// Configures a [`LinkedInSignIn`]: every setting starts at the service's default, as
/// documented in `docs/configuration.md`.
#[derive(Clone, Debug)]
pub struct SignInBuilder {
    config: Config,
    extra_roots: Vec<Vec<u8>>,
    after_sign_in: String,
}

/// What the sign-in routes share: the resolved settings, behind an `Arc`.
#[derive(Clone, Debug)]
pub(crate) struct SignInState(Arc<SignInSettings>);

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
}

/// The app's JSAPI side.
#[derive(Debug)]
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
        Self(Arc::new(settings))
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
        &self.0
    }
}

impl LinkedInSignIn {
    /// A builder with every setting at its default and nothing configured: give it at least
    /// a public origin and one flow ([`SignInBuilder::oidc`] or [`SignInBuilder::jsapi`]).
    pub fn builder() -> SignInBuilder {
        SignInBuilder {
            config: Config::defaults(),
            extra_roots: Vec::new(),
            after_sign_in: "/".to_owned(),
        }
    }

    /// A builder from the service's variables (`.env` is not read: the host decides), the
    /// same ones as `docs/configuration.md` lists; the command line is not read. As in the
    /// service outside the sandbox, the routes speak to LinkedIn (or `LINKEDIN_OIDC_ISSUER`)
    /// only: `SANDBOX` mounts nothing here (mount `sandbox::Sandbox` yourself), and
    /// a configuration with no credential at all is refused.
    pub fn from_env() -> Result<SignInBuilder, ConfigError> {
        use clap::Parser;
        let config = Config::try_parse_from(["linkedin-token-exchange"]).map_err(|err| {
            ConfigError::new("environment", crate::config::describe_parse_error(&err))
        })?;
        Self::from_config(&config)
    }

    /// A builder from a parsed [`Config`]: its LinkedIn, OpenID Connect, `PUBLIC_ORIGIN`,
    /// session idle, rate limit and upstream settings.
    pub fn from_config(config: &Config) -> Result<SignInBuilder, ConfigError> {
        Ok(SignInBuilder {
            config: config.clone(),
            extra_roots: Vec::new(),
            after_sign_in: "/".to_owned(),
        })
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
}

impl SignInBuilder {
    /// Adds an origin the app is served on (`https://app.example.com`), allowed to send
    /// state-changing requests; the first one also makes the default redirect URL.
    pub fn public_origin(mut self, origin: impl AsRef<str>) -> Self {
        let origin = origin.as_ref().trim().trim_end_matches('/');
        self.config.listen.public_origin = Some(match self.config.listen.public_origin.take() {
            Some(list) if !list.trim().is_empty() => format!("{list},{origin}"),
            _ => origin.to_owned(),
        });
        self
    }

    /// Turns on "Sign In with LinkedIn using OpenID Connect" with the app's client.
    pub fn oidc(mut self, client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        self.config.oidc.client_id = Some(client_id.into());
        self.config.oidc.client_secret = Some(Secret::new(client_secret.into()));
        self
    }

    /// The OpenID Connect issuer (default: LinkedIn's). An `http://` issuer is accepted,
    /// for a sandbox on a loopback address in tests.
    pub fn issuer(mut self, issuer: Url) -> Self {
        self.config.oidc.issuer = Some(issuer);
        self
    }

    /// The registered redirect URL (default: the first public origin with
    /// `/auth/linkedin/callback`). Set it when the router is nested under a prefix.
    pub fn redirect_url(mut self, url: Url) -> Self {
        self.config.oidc.redirect_url = Some(url);
        self
    }

    /// The OpenID Connect scopes, space-separated (default: `openid profile email`).
    pub fn scopes(mut self, scopes: impl Into<String>) -> Self {
        self.config.oidc.scopes = scopes.into();
        self
    }

    /// When PKCE is sent (default: when the provider's discovery offers `S256`).
    pub fn pkce(mut self, mode: PkceMode) -> Self {
        self.config.oidc.pkce = mode;
        self
    }

    /// Turns on the JSAPI cookie exchange (`POST /token-exchange`) with the app's key pair.
    pub fn jsapi(mut self, api_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.config.linkedin.api_key = Some(api_key.into());
        self.config.linkedin.secret_key = Some(Secret::new(secret_key.into()));
        self
    }

    /// The JSAPI side's URLs: the OAuth 1.0a exchange endpoint and the REST base (defaults:
    /// LinkedIn's).
    pub fn jsapi_urls(mut self, access_token_url: Url, api_url: Url) -> Self {
        self.config.linkedin.access_token_url = Some(access_token_url);
        self.config.linkedin.api_url = Some(api_url);
        self
    }

    /// Trusts the certificates of a PEM bundle for calls to LinkedIn, besides the system's.
    pub fn upstream_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(pem.into());
        self
    }

    /// The bound on each call to LinkedIn (default: 10 s).
    pub fn upstream_timeout(mut self, timeout: Duration) -> Self {
        self.config.limits.upstream_timeout_ms =
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// The sign-in routes' rate limit per client address (default: `RATE_LIMIT`'s). It
    /// applies when the host serves with `into_make_service_with_connect_info`.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.config.limits.rate_limit = limit;
        self
    }

    /// The inactivity limit of a signed-in session (default: 24 hours).
    pub fn session_idle(mut self, idle: Duration) -> Self {
        self.config.sessions.idle_minutes = (idle.as_secs() / 60).max(1);
        self
    }

    /// Where the browser goes once signed in through OpenID Connect (default: `/`).
    pub fn after_sign_in(mut self, path: impl Into<String>) -> Self {
        self.after_sign_in = path.into();
        self
    }

    /// Checks and resolves the settings, with the same functions as the server's start.
    /// Nothing is fetched yet (discovery happens on the first sign-in). Installs rustls' `ring`
    /// provider unless the process has one. Needs a Tokio runtime (the rate limits start a
    /// task).
    pub fn build(self) -> Result<LinkedInSignIn, ConfigError> {
        // The upstream client needs a process-wide provider; one the host installed stays.
        crate::tls::install_crypto_provider();
        let config = &self.config;
        if config.listen.public_origin.is_none() {
            return Err(ConfigError::new(
                "PUBLIC_ORIGIN",
                "names no origin: give the origin(s) the app is served on",
            ));
        }
        // Without a bound address of its own, nothing here depends on one.
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let public_origins = config.listen.public_origins(addr)?;
        let credentials = config.linkedin.app_credentials()?;
        let oidc = wiring::oidc_settings(&config.oidc, false, addr, true, &public_origins)?;
        if credentials.is_none() && oidc.is_none() {
            return Err(ConfigError::new(
                "LINKEDIN_CLIENT_ID",
                "no sign-in flow is configured: set the OpenID Connect client or the JSAPI key pair",
            ));
        }
        let urls = wiring::Urls::resolve(&config.linkedin, false, addr, true)?;
        let mut roots = Vec::new();
        for pem in &self.extra_roots {
            roots.extend(wiring::pem_roots(pem, "UPSTREAM_CA_CERT")?);
        }
        // Without a key pair the client only lends its transport to OpenID Connect.
        let signing = credentials.clone().unwrap_or_else(|| AppCredentials {
            api_key: String::new(),
            secret_key: Secret::new(String::new()),
        });
        let linkedin = wiring::upstream_client(&config.limits, &urls, &signing, &roots)?;
        let oidc = oidc.map(|settings| OidcClient::new(linkedin.transport().clone(), settings));
        let return_policy =
            ReturnPolicy::new(&public_origins, config.oidc.allowed_redirect_hosts.clone());
        let state = SignInState::new(SignInSettings {
            jsapi: credentials.map(|credentials| JsapiApp::new(credentials, urls.jsapi)),
            linkedin,
            oidc,
            public_origins,
            session_idle: config.sessions.idle(),
            sandbox: false,
            telemetry: Telemetry::disabled(),
            limits: RateLimits::new(
                config.limits.rate_limit,
                config.limits.trusted_proxies.clone(),
            ),
            after_sign_in: self.after_sign_in,
            return_policy,
        });
        Ok(LinkedInSignIn { state })
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
            .route_layer(tower::util::option_layer(client_limit));
        Router::new()
            .merge(sign_in)
            .merge(handlers::member::router())
    });
    let checked = Arc::new(OriginCheck {
        state: state.clone(),
        state_changing: taken
            .into_iter()
            .filter(|(verb, _)| verb.changes_state())
            .collect(),
    });
    routes
        .route_layer(middleware::from_fn_with_state(
            checked,
            require_public_origin,
        ))
        .layer(Extension(state.policy()))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
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
/// router's 405.
async fn require_public_origin(
    State(check): State<Arc<OriginCheck>>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    if !origin_check_applies(&check.state_changing, request.method(), matched) {
        return Ok(next.run(request).await);
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
            Ok(next.run(request).await)
        }
        Some(origin) => Err(AppError::CrossOrigin(format!(
            "origin \"{}\" is not allowed",
            escape_text(&origin, 100)
        ))),
        None => Err(AppError::CrossOrigin("no Origin or Referer header".into())),
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
        // No matched path: checked.
        assert!(applies(Method::POST, None));
        // A route that takes no POST, and methods no route takes: the router's 405.
        assert!(!applies(Method::POST, Some("/session")));
        assert!(!applies(Method::PUT, Some("/logout")));
        assert!(!applies(Method::DELETE, None));
        assert!(!applies(Method::GET, Some("/logout")));
        assert!(!applies(Method::HEAD, Some("/logout")));
    }

    #[tokio::test]
    async fn a_builder_without_an_origin_or_a_flow_names_what_is_missing() {
        let err = LinkedInSignIn::builder()
            .oidc("id", "secret")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("PUBLIC_ORIGIN"), "{err}");
        let err = LinkedInSignIn::builder()
            .public_origin("https://app.example.com")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("LINKEDIN_CLIENT_ID"), "{err}");
    }

    #[tokio::test]
    async fn origins_accumulate_and_the_redirect_url_follows_the_first() {
        let sign_in = LinkedInSignIn::builder()
            .public_origin("https://app.example.com/")
            .public_origin("https://www.example.com")
            .oidc("id", "secret")
            .build()
            .unwrap();
        assert_eq!(
            sign_in.public_origins(),
            ["https://app.example.com", "https://www.example.com"]
        );
        let oidc = format!("{:?}", sign_in.state.oidc);
        assert!(
            oidc.contains("https://app.example.com/auth/linkedin/callback"),
            "{oidc}"
        );
        assert!(sign_in.state.jsapi.is_none());
    }
}
