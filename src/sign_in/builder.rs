//! The library's settings, typed and built in code: [`SignInBuilder`] (every setting at its
//! default, nothing read from the environment, nothing that exits), and the one resolution of
//! those settings into what the routes share ([`SignInBuilder::build`]). The service converts
//! its `Config` into a builder (`server::wiring`) and adds only what it alone has; a host
//! writes the builder by hand or reads it from the variables ([`super::env`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use url::Url;

use super::{ApiSettings, JsapiApp, LinkedInSignIn, SignInSettings, SignInState};
use crate::config::api_access::{ApiAllow, ApiVersion, DEFAULT_API_ALLOW, DEFAULT_API_VERSION};
use crate::config::{
    AllowedHosts, AppCredentials, DEFAULT_ACCESS_TOKEN_URL, DEFAULT_API_URL, DEFAULT_JSAPI_URL,
    DEFAULT_OIDC_ISSUER, PkceMode, RateLimit, TrustedProxies, check_api_key, oidc_scopes,
    parse_origin,
};
use crate::linkedin::client::{LinkedInClient, LinkedInEndpoints};
use crate::linkedin::oidc::{DEFAULT_INTROSPECTION_URL, OidcClient, OidcSettings};
use crate::ratelimit::shared::SharedBudget;
use crate::ratelimit::{ClientKey, RateLimits};
use crate::return_to::ReturnPolicy;
use crate::secret::Secret;
use crate::session::upkeep::UpkeepSlot;
use crate::telemetry::Telemetry;

/// The default bound on each call to LinkedIn.
pub(super) const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// The default inactivity limit of a session.
pub(super) const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(24 * 60 * 60);
/// The default sign-in rate limit per client: a burst of 20, then 2 a second.
pub(super) const DEFAULT_RATE_LIMIT: RateLimit = RateLimit::PerClient {
    burst: std::num::NonZeroU32::new(20).expect("20 is not zero"),
    per_second: std::num::NonZeroU32::new(2).expect("2 is not zero"),
};
/// The default OpenID Connect scopes.
pub(super) const DEFAULT_SCOPES: &str = "openid profile email";

/// Configures a [`LinkedInSignIn`] in code. [`Default`] (the same as
/// [`LinkedInSignIn::builder`]) has every setting at its documented default and no flow: give
/// it at least a public origin and one flow ([`SignInBuilder::oidc`] or
/// [`SignInBuilder::jsapi`]). Nothing here reads the environment or ends the process: a
/// problem comes back from [`SignInBuilder::build`] as a [`BuildError`] naming the method.
#[derive(Clone, Default)]
pub struct SignInBuilder {
    pub(super) settings: Settings,
}

impl std::fmt::Debug for SignInBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInBuilder")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Every setting, as given (checked by [`SignInBuilder::build`]).
#[derive(Clone)]
pub(crate) struct Settings {
    pub public_origins: Vec<String>,
    pub oidc_client: Option<(String, Secret)>,
    pub issuer: Option<Url>,
    pub redirect_url: Option<Url>,
    pub scopes: String,
    pub pkce: PkceMode,
    pub require_nonce: bool,
    pub allowed_redirect_hosts: Option<AllowedHosts>,
    pub jsapi: Option<(String, Secret)>,
    pub access_token_url: Option<Url>,
    pub api_url: Option<Url>,
    pub jsapi_script: Option<String>,
    pub upstream_roots: Vec<Vec<u8>>,
    pub upstream_timeout: Duration,
    pub rate_limit: RateLimit,
    pub trusted_proxies: Option<TrustedProxies>,
    pub client_key: Option<ClientKey>,
    pub session_idle: Duration,
    pub after_sign_in: String,
    /// `LinkedIn-Version`, as given (`YYYYMM`).
    pub api_version: String,
    /// What the pass-through forwards, as given (`METHOD /prefix,…`).
    pub api_allow: String,
    pub introspect_every: Option<Duration>,
    pub introspection_url: Option<Url>,
    /// Where a setting came from: errors then name the variable, not the method.
    pub from_env: bool,
    /// The service's own: its metrics, the fleet's shared budgets, its mounted sandbox.
    pub telemetry: Telemetry,
    pub shared_budget: Option<Arc<SharedBudget>>,
    pub sandbox: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            public_origins: Vec::new(),
            oidc_client: None,
            issuer: None,
            redirect_url: None,
            scopes: DEFAULT_SCOPES.to_owned(),
            pkce: PkceMode::default(),
            require_nonce: false,
            allowed_redirect_hosts: None,
            jsapi: None,
            access_token_url: None,
            api_url: None,
            jsapi_script: None,
            upstream_roots: Vec::new(),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            rate_limit: DEFAULT_RATE_LIMIT,
            trusted_proxies: None,
            client_key: None,
            session_idle: DEFAULT_SESSION_IDLE,
            after_sign_in: "/".to_owned(),
            api_version: DEFAULT_API_VERSION.to_owned(),
            api_allow: DEFAULT_API_ALLOW.to_owned(),
            introspect_every: None,
            introspection_url: None,
            from_env: false,
            telemetry: Telemetry::disabled(),
            shared_budget: None,
            sandbox: false,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets print as `Secret(…)`; the client key is a function.
        f.debug_struct("Settings")
            .field("public_origins", &self.public_origins)
            .field("oidc_client", &self.oidc_client)
            .field("issuer", &self.issuer)
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("pkce", &self.pkce)
            .field("jsapi", &self.jsapi)
            .field("rate_limit", &self.rate_limit)
            .field("client_key", &self.client_key.is_some())
            .field("session_idle", &self.session_idle)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("api_version", &self.api_version)
            .field("api_allow", &self.api_allow)
            .field("introspect_every", &self.introspect_every)
            .finish_non_exhaustive()
    }
}

/// The setting a [`BuildError`] is about: the builder method, or (for a builder from
/// [`LinkedInSignIn::from_env`]) the variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Setting {
    PublicOrigin,
    Oidc,
    Issuer,
    RedirectUrl,
    Scopes,
    Jsapi,
    UpstreamCa,
    SessionIdle,
    AfterSignIn,
    ApiVersion,
    ApiAllow,
    IntrospectEvery,
}

impl Setting {
    /// The builder method that sets it.
    pub(crate) fn method(self) -> &'static str {
        match self {
            Self::PublicOrigin => ".public_origin(…)",
            Self::Oidc => ".oidc(…)",
            Self::Issuer => ".issuer(…)",
            Self::RedirectUrl => ".redirect_url(…)",
            Self::Scopes => ".scopes(…)",
            Self::Jsapi => ".jsapi(…)",
            Self::UpstreamCa => ".upstream_ca_pem(…)",
            Self::SessionIdle => ".session_idle(…)",
            Self::AfterSignIn => ".after_sign_in(…)",
            Self::ApiVersion => ".api_version(…)",
            Self::ApiAllow => ".api_allow(…)",
            Self::IntrospectEvery => ".introspect_every(…)",
        }
    }

    /// The variable of the service (and of [`LinkedInSignIn::from_env`]) that sets it.
    pub(crate) fn variable(self) -> &'static str {
        match self {
            Self::PublicOrigin => "PUBLIC_ORIGIN",
            Self::Oidc => "LINKEDIN_CLIENT_ID",
            Self::Issuer => "LINKEDIN_OIDC_ISSUER",
            Self::RedirectUrl => "LINKEDIN_OIDC_REDIRECT_URL",
            Self::Scopes => "LINKEDIN_OIDC_SCOPES",
            Self::Jsapi => "LINKEDIN_API_KEY",
            Self::UpstreamCa => "UPSTREAM_CA_CERT",
            Self::SessionIdle => "SESSION_IDLE_MINUTES",
            Self::AfterSignIn => "after_sign_in",
            Self::ApiVersion => "LINKEDIN_API_VERSION",
            Self::ApiAllow => "LINKEDIN_API_ALLOW",
            Self::IntrospectEvery => "LINKEDIN_INTROSPECT_EVERY",
        }
    }
}

/// Why [`SignInBuilder::build`] (or [`LinkedInSignIn::from_env`]) refused the settings: the
/// setting at fault (the builder method, as `.public_origin(…)`, or the variable for a
/// builder from [`LinkedInSignIn::from_env`]) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct BuildError {
    setting: &'static str,
    variable: &'static str,
    message: String,
}

impl BuildError {
    fn new(setting: Setting, from_env: bool, message: impl Into<String>) -> Self {
        Self {
            setting: if from_env {
                setting.variable()
            } else {
                setting.method()
            },
            variable: setting.variable(),
            message: message.into(),
        }
    }

    /// An error about the variable `variable`, read by [`LinkedInSignIn::from_env`].
    pub(crate) fn of_variable(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            setting: variable,
            variable,
            message: message.into(),
        }
    }

    /// The setting at fault: the builder method (`.public_origin(…)`), or the variable
    /// (`PUBLIC_ORIGIN`) when the builder came from [`LinkedInSignIn::from_env`].
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The variable that sets the setting at fault (the service reports its errors by it).
    #[cfg(feature = "server")]
    pub(crate) fn variable(&self) -> &'static str {
        self.variable
    }
}

impl SignInBuilder {
    /// Adds an origin the app is served on (`https://app.example.com`), allowed to send
    /// state-changing requests; the first one also makes the default redirect URL.
    pub fn public_origin(mut self, origin: impl AsRef<str>) -> Self {
        let origin = origin.as_ref().trim().trim_end_matches('/');
        self.settings.public_origins.push(origin.to_owned());
        self
    }

    /// Turns on "Sign In with LinkedIn using OpenID Connect" with the app's client.
    pub fn oidc(mut self, client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        self.settings.oidc_client = Some((client_id.into(), Secret::new(client_secret.into())));
        self
    }

    /// The OpenID Connect issuer (default: LinkedIn's, `https://www.linkedin.com/oauth`). An
    /// `http://` issuer is accepted, for a sandbox on a loopback address in tests.
    pub fn issuer(mut self, issuer: Url) -> Self {
        self.settings.issuer = Some(issuer);
        self
    }

    /// The registered redirect URL (default: the first public origin with
    /// `/auth/linkedin/callback`). Set it when the router is nested under a prefix.
    pub fn redirect_url(mut self, url: Url) -> Self {
        self.settings.redirect_url = Some(url);
        self
    }

    /// The OpenID Connect scopes, space-separated (default: `openid profile email`).
    pub fn scopes(mut self, scopes: impl Into<String>) -> Self {
        self.settings.scopes = scopes.into();
        self
    }

    /// When PKCE is sent (default: when the provider's discovery offers `S256`).
    pub fn pkce(mut self, mode: PkceMode) -> Self {
        self.settings.pkce = mode;
        self
    }

    /// Refuses an id_token without `nonce` (default: accepted, since LinkedIn never echoes
    /// one; a present nonce must always match).
    pub fn require_nonce(mut self, require: bool) -> Self {
        self.settings.require_nonce = require;
        self
    }

    /// Hosts (or `.example.com` suffixes) that `rd` may send a member to after signing in,
    /// besides the public origins.
    pub fn allowed_redirect_hosts(mut self, hosts: AllowedHosts) -> Self {
        self.settings.allowed_redirect_hosts = Some(hosts);
        self
    }

    /// Turns on the JSAPI cookie exchange (`POST /token-exchange`) with the app's key pair.
    pub fn jsapi(mut self, api_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.settings.jsapi = Some((api_key.into(), Secret::new(secret_key.into())));
        self
    }

    /// The JSAPI side's URLs: the OAuth 1.0a exchange endpoint and the REST base (defaults:
    /// LinkedIn's).
    pub fn jsapi_urls(mut self, access_token_url: Url, api_url: Url) -> Self {
        self.settings.access_token_url = Some(access_token_url);
        self.settings.api_url = Some(api_url);
        self
    }

    /// The JSAPI script a page embeds: absolute, or a path on the app's origin (default:
    /// LinkedIn's `https://platform.linkedin.com/in.js`).
    pub fn jsapi_script(mut self, url: impl Into<String>) -> Self {
        self.settings.jsapi_script = Some(url.into());
        self
    }

    /// Trusts the certificates of a PEM bundle for calls to LinkedIn, besides the system's.
    pub fn upstream_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.upstream_roots.push(pem.into());
        self
    }

    /// The bound on each call to LinkedIn (default: 10 s).
    pub fn upstream_timeout(mut self, timeout: Duration) -> Self {
        self.settings.upstream_timeout = timeout;
        self
    }

    /// The sign-in routes' rate limit per client address (default: a burst of 20, then 2 a
    /// second), or [`RateLimit::Off`]. The client's address is the peer's: serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`, or give
    /// [`SignInBuilder::client_address`]. With neither, a limited route answers 500
    /// `client_address_unknown`, naming these fixes, rather than run without a limit.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.settings.rate_limit = limit;
        self
    }

    /// Proxies whose `X-Forwarded-For` names the client, for the rate limit.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.settings.trusted_proxies = Some(proxies);
        self
    }

    /// How the rate limit tells clients apart, in place of the peer's address: `key` reads a
    /// request (a header the host's own proxy sets, say) and names its client.
    pub fn client_address(
        mut self,
        key: impl Fn(&Request) -> IpAddr + Send + Sync + 'static,
    ) -> Self {
        self.settings.client_key = Some(Arc::new(key));
        self
    }

    /// The inactivity limit of a signed-in session (default: 24 hours), kept to the second.
    pub fn session_idle(mut self, idle: Duration) -> Self {
        self.settings.session_idle = idle;
        self
    }

    /// Where the browser goes once signed in through OpenID Connect (default: `/`).
    pub fn after_sign_in(mut self, path: impl Into<String>) -> Self {
        self.settings.after_sign_in = path.into();
        self
    }

    /// The `LinkedIn-Version` the member's client ([`LinkedInApi`](crate::LinkedInApi)) and
    /// the pass-through send on `/rest/` calls, as `YYYYMM` (default: a version at most six
    /// months old at this release). LinkedIn serves a version for about a year, then answers
    /// 426 `NONEXISTENT_VERSION`, which comes back as `linkedin_version_retired`.
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.settings.api_version = version.into();
        self
    }

    /// What the pass-through (`/linkedin/api/<path>`) forwards with the member's
    /// credentials: a comma list of `METHOD /path-prefix` (default: `GET /v2/userinfo,GET
    /// /v1/people/~`). A prefix ends where a path segment or a field selector does
    /// (`GET /v2/me` allows `/v2/me/x`, not `/v2/memberships`). Anything else is refused
    /// with 403 `api_path_not_allowed` before LinkedIn is called; an empty list forwards
    /// nothing.
    pub fn api_allow(mut self, list: impl Into<String>) -> Self {
        self.settings.api_allow = list.into();
        self
    }

    /// Introspects each live OpenID Connect session's access token once per `interval`
    /// (default: never), by one instance of those sharing a store, at most 10 a second: a
    /// token the provider says is revoked ends every session holding it, an expired or
    /// inactive one its own session. Needs OpenID Connect, and
    /// [`LinkedInSignIn::keep_sessions`] over the sealed store.
    pub fn introspect_every(mut self, interval: Duration) -> Self {
        self.settings.introspect_every = Some(interval);
        self
    }

    /// The token introspection endpoint (default: LinkedIn's,
    /// `https://www.linkedin.com/oauth/v2/introspectToken`).
    pub fn introspection_url(mut self, url: Url) -> Self {
        self.settings.introspection_url = Some(url);
        self
    }

    /// The service's metrics.
    #[cfg(feature = "server")]
    pub(crate) fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.settings.telemetry = telemetry;
        self
    }

    /// The fleet's shared rate-limit budgets, after this instance's own.
    #[cfg(feature = "server")]
    pub(crate) fn shared_budget(mut self, shared: Option<SharedBudget>) -> Self {
        self.settings.shared_budget = shared.map(Arc::new);
        self
    }

    /// The service mounts its sandbox beside these routes (the sign-in then honours
    /// `sandbox_member`).
    #[cfg(feature = "server")]
    pub(crate) fn sandbox_mounted(mut self, mounted: bool) -> Self {
        self.settings.sandbox = mounted;
        self
    }

    /// Checks and resolves the settings: the one place where they become the routes' state,
    /// for a host as for the service. Nothing is fetched yet (discovery happens on the first
    /// sign-in). Installs rustls' `ring` provider unless the process has one. Needs a Tokio
    /// runtime (the rate limits start a task).
    pub fn build(self) -> Result<LinkedInSignIn, BuildError> {
        // The upstream client needs a process-wide provider; one the host installed stays.
        crate::tls::install_crypto_provider();
        let settings = self.settings;
        let fail = |setting, message: String| BuildError::new(setting, settings.from_env, message);
        if settings.public_origins.is_empty() {
            return Err(fail(
                Setting::PublicOrigin,
                "names no origin: give the origin(s) the app is served on".into(),
            ));
        }
        let public_origins = settings
            .public_origins
            .iter()
            .map(|origin| parse_origin(origin).map_err(|e| fail(Setting::PublicOrigin, e)))
            .collect::<Result<Vec<_>, _>>()?;
        if settings.session_idle < Duration::from_secs(1) {
            return Err(fail(
                Setting::SessionIdle,
                "must be at least a second".into(),
            ));
        }
        if !settings.after_sign_in.starts_with('/') || settings.after_sign_in.starts_with("//") {
            return Err(fail(
                Setting::AfterSignIn,
                "must be a path on this origin, as /home".into(),
            ));
        }
        let api = ApiSettings {
            version: settings
                .api_version
                .parse::<ApiVersion>()
                .map_err(|e| fail(Setting::ApiVersion, e))?,
            allow: settings
                .api_allow
                .parse::<ApiAllow>()
                .map_err(|e| fail(Setting::ApiAllow, e))?,
        };
        let jsapi = match &settings.jsapi {
            Some((key, secret)) => {
                check_api_key(key).map_err(|e| fail(Setting::Jsapi, e.into()))?;
                if secret.expose().is_empty() {
                    return Err(fail(
                        Setting::Jsapi,
                        "the secret key must not be empty".into(),
                    ));
                }
                Some(AppCredentials {
                    api_key: key.clone(),
                    secret_key: secret.clone(),
                })
            }
            None => None,
        };
        let oidc = match &settings.oidc_client {
            Some((id, secret)) => {
                if id.trim().is_empty() || secret.expose().is_empty() {
                    return Err(fail(
                        Setting::Oidc,
                        "the client id and secret must not be empty".into(),
                    ));
                }
                let scopes =
                    oidc_scopes(&settings.scopes).map_err(|e| fail(Setting::Scopes, e.message))?;
                let issuer = match &settings.issuer {
                    Some(issuer) => issuer.clone(),
                    None => Url::parse(DEFAULT_OIDC_ISSUER)
                        .map_err(|e| fail(Setting::Issuer, e.to_string()))?,
                };
                let redirect_url = match &settings.redirect_url {
                    Some(url) => url.clone(),
                    None => Url::parse(&format!("{}/auth/linkedin/callback", public_origins[0]))
                        .map_err(|e| fail(Setting::RedirectUrl, e.to_string()))?,
                };
                Some(OidcSettings {
                    issuer,
                    client_id: id.trim().to_owned(),
                    client_secret: secret.clone(),
                    redirect_url,
                    scopes,
                    pkce: settings.pkce,
                    require_nonce: settings.require_nonce,
                    introspection_url: match &settings.introspection_url {
                        Some(url) => url.clone(),
                        None => default_url(DEFAULT_INTROSPECTION_URL),
                    },
                })
            }
            None => None,
        };
        if let Some(interval) = settings.introspect_every {
            if interval < Duration::from_secs(1) {
                return Err(fail(
                    Setting::IntrospectEvery,
                    "must be at least a second".into(),
                ));
            }
            if oidc.is_none() {
                return Err(fail(
                    Setting::IntrospectEvery,
                    "introspects OpenID Connect tokens, but OpenID Connect is off: give the client (.oidc), or leave it unset".into(),
                ));
            }
        }
        if jsapi.is_none() && oidc.is_none() {
            return Err(fail(
                Setting::Oidc,
                "no sign-in flow is configured: give the OpenID Connect client (.oidc) or the JSAPI key pair (.jsapi)".into(),
            ));
        }
        let mut roots = Vec::new();
        for pem in &settings.upstream_roots {
            roots.extend(
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                    fail(Setting::UpstreamCa, format!("not a PEM certificate: {e}"))
                })?,
            );
        }
        let endpoints = LinkedInEndpoints {
            access_token_url: match &settings.access_token_url {
                Some(url) => url.clone(),
                None => default_url(DEFAULT_ACCESS_TOKEN_URL),
            },
            api_url: match &settings.api_url {
                Some(url) => url.clone(),
                None => default_url(DEFAULT_API_URL),
            },
            timeout: settings.upstream_timeout,
        };
        // Without a key pair the client only lends its transport to OpenID Connect.
        let (api_key, secret_key) = match &jsapi {
            Some(app) => (app.api_key.as_str(), app.secret_key.clone()),
            None => ("", Secret::new(String::new())),
        };
        let linkedin = LinkedInClient::new(&endpoints, api_key, &secret_key, &roots)
            .map_err(|e| {
                fail(
                    Setting::UpstreamCa,
                    format!("cannot build the HTTPS client: {e}"),
                )
            })?
            .with_telemetry(settings.telemetry.clone());
        let oidc = oidc.map(|oidc| OidcClient::new(linkedin.transport().clone(), oidc));
        let script_url = settings
            .jsapi_script
            .clone()
            .unwrap_or_else(|| DEFAULT_JSAPI_URL.to_owned());
        let return_policy =
            ReturnPolicy::new(&public_origins, settings.allowed_redirect_hosts.clone());
        let limits = RateLimits::new(settings.rate_limit, settings.trusted_proxies.clone())
            .with_shared(settings.shared_budget)
            .with_client_key(settings.client_key);
        let state = SignInState::new(SignInSettings {
            jsapi: jsapi.map(|credentials| JsapiApp::new(credentials, script_url)),
            linkedin,
            oidc,
            public_origins,
            session_idle: settings.session_idle,
            sandbox: settings.sandbox,
            telemetry: settings.telemetry,
            limits,
            after_sign_in: settings.after_sign_in,
            return_policy,
            api,
            introspect_every: settings.introspect_every,
            upkeep: UpkeepSlot::default(),
        });
        Ok(LinkedInSignIn { state })
    }
}

/// One of LinkedIn's own URLs (constants that parse).
fn default_url(url: &str) -> Url {
    Url::parse(url).unwrap_or_else(|_| unreachable!("{url} is a URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_builder_without_an_origin_or_a_flow_names_the_method() {
        let err = LinkedInSignIn::builder()
            .oidc("id", "secret")
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), ".public_origin(…)", "{err}");
        assert!(err.to_string().starts_with(".public_origin(…): "), "{err}");
        let err = LinkedInSignIn::builder()
            .public_origin("https://app.example.com")
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), ".oidc(…)", "{err}");
        let err = LinkedInSignIn::builder()
            .public_origin("ftp://app.example.com")
            .oidc("id", "secret")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("not an http(s) origin"), "{err}");
        let err = LinkedInSignIn::builder()
            .public_origin("https://app.example.com")
            .jsapi("bad key!", "secret")
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), ".jsapi(…)", "{err}");
        let err = LinkedInSignIn::builder()
            .public_origin("https://app.example.com")
            .oidc("id", "secret")
            .scopes("r_liteprofile")
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), ".scopes(…)", "{err}");
    }

    #[tokio::test]
    async fn introspection_needs_openid_connect_and_an_interval_of_a_second_or_more() {
        let builder = || {
            LinkedInSignIn::builder()
                .public_origin("https://app.example.com")
                .oidc("id", "secret")
        };
        let err = builder()
            .introspect_every(Duration::from_millis(500))
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), ".introspect_every(…)", "{err}");
        let err = LinkedInSignIn::builder()
            .public_origin("https://app.example.com")
            .jsapi("key", "secret")
            .introspect_every(Duration::from_secs(60))
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), ".introspect_every(…)", "{err}");
        assert!(err.message().contains("OpenID Connect is off"), "{err}");
        let url: Url = "https://introspect.example/v2/introspectToken"
            .parse()
            .unwrap();
        let sign_in = builder()
            .introspect_every(Duration::from_secs(60))
            .introspection_url(url.clone())
            .build()
            .unwrap();
        assert_eq!(
            sign_in.state.introspect_every,
            Some(Duration::from_secs(60))
        );
        let oidc = sign_in.state.oidc.as_ref().unwrap();
        assert_eq!(oidc.settings().introspection_url, url);
        // By default: off, at LinkedIn's endpoint.
        let sign_in = builder().build().unwrap();
        assert_eq!(sign_in.state.introspect_every, None);
        assert_eq!(
            sign_in
                .state
                .oidc
                .as_ref()
                .unwrap()
                .settings()
                .introspection_url
                .as_str(),
            "https://www.linkedin.com/oauth/v2/introspectToken"
        );
    }

    #[tokio::test]
    async fn durations_keep_their_precision() {
        let sign_in = LinkedInSignIn::builder()
            .public_origin("https://app.example.com")
            .oidc("id", "secret")
            .session_idle(Duration::from_secs(90))
            .build()
            .unwrap();
        assert_eq!(sign_in.session_policy().idle, Duration::from_secs(90));
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
