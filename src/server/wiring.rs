//! What the service derives from its `Config` beside the library: first the [`Mode`] (the
//! app's key pair, the sandbox, keep-alive), which needs no socket, then, once the port is
//! bound, [`Resolved`]: the public origins, the LinkedIn URLs (explicit settings, then the
//! sandbox, then LinkedIn), the checks of a deployment, and [`Resolved::sign_in`], the
//! `Config` converted into the library's [`SignInBuilder`], which resolves the sign-in once,
//! for the service as for a host. `check-provider` resolves its issuer, scopes and roots here
//! too.

use std::net::SocketAddr;

use rand::Rng;
use rand::distr::Alphanumeric;
use url::Url;

use crate::config::TrustedProxies;
use crate::config::proxy::{self, TlsMode};
use crate::config::{
    AppCredentials, Config, ConfigError, DEFAULT_ACCESS_TOKEN_URL, DEFAULT_API_URL,
    DEFAULT_JSAPI_URL, DEFAULT_OIDC_ISSUER, Limits, LinkedIn, Oidc, oidc_scopes,
};
use crate::linkedin::provider_check::CheckSettings;
use crate::secret::Secret;
use crate::sign_in::{BuildError, SignInBuilder};
use crate::tls::{Alpn, TlsMaterial};

/// What the server is, before it binds: the key pair (configured, or made up for a sandbox
/// started without one), whether the JSAPI flow is on, whether the sandbox is mounted, and
/// whether connections stay open.
#[derive(Clone, Debug)]
pub(super) struct Mode {
    /// The app's key pair (made up when none is configured: it then only signs the sandbox's
    /// cookies, or nothing at all).
    pub credentials: AppCredentials,
    /// Whether the JSAPI cookie exchange is on: a configured key pair, or the sandbox's.
    pub jsapi: bool,
    /// Whether the emulated LinkedIn is mounted under `/sandbox/`.
    pub sandbox: bool,
    /// Whether `SANDBOX=true` was set explicitly (not merely the default).
    pub sandbox_explicit: bool,
    /// False only for a sandbox told to close every connection after one answer.
    pub keep_alive: bool,
}

impl Mode {
    /// Checks the key pair, the sandbox (on by default only when no LinkedIn credential is
    /// set, `oidc`'s client included) against this build's features, and keep-alive. A
    /// server with neither the sandbox nor a credential would offer no sign-in at all: that
    /// stops the start, naming `SANDBOX`.
    pub(super) fn of(config: &LinkedIn, oidc: &Oidc) -> Result<Self, ConfigError> {
        let configured = config.app_credentials()?;
        let sandbox = config.sandbox_enabled(oidc);
        if sandbox && !cfg!(feature = "sandbox") {
            return Err(ConfigError::new(
                if config.any_credential(oidc) {
                    "SANDBOX"
                } else {
                    "LINKEDIN_CLIENT_ID"
                },
                "this build has no sandbox (feature \"sandbox\" is off): set LINKEDIN_CLIENT_ID and LINKEDIN_CLIENT_SECRET (or LINKEDIN_API_KEY and LINKEDIN_SECRET_KEY)",
            ));
        }
        if !sandbox && !config.any_credential(oidc) {
            return Err(ConfigError::new(
                "SANDBOX",
                "is false but no LinkedIn credential is set, so no one could sign in: set LINKEDIN_CLIENT_ID and LINKEDIN_CLIENT_SECRET (or LINKEDIN_API_KEY and LINKEDIN_SECRET_KEY), or leave SANDBOX unset for the sandbox",
            ));
        }
        let keep_alive = config.keep_alive(oidc)?;
        let jsapi = sandbox || configured.is_some();
        let credentials = configured.unwrap_or_else(|| AppCredentials {
            api_key: format!("sandbox{}", random(8)),
            secret_key: Secret::new(random(24)),
        });
        Ok(Self {
            credentials,
            jsapi,
            sandbox,
            sandbox_explicit: config.sandbox_explicit(),
            keep_alive,
        })
    }

    /// Sandbox mode on public origins that are not all loopback: refused unless `SANDBOX=true`
    /// was said out loud, and then warned about (at every start): the sandbox lets anyone who
    /// reaches it sign in as anyone. `explicit_origins` is whether `PUBLIC_ORIGIN` was set.
    pub(super) fn check_exposure(
        &self,
        explicit_origins: bool,
        public_origins: &[String],
    ) -> Result<(), ConfigError> {
        if !self.sandbox || !explicit_origins {
            return Ok(());
        }
        let Some(exposed) = public_origins.iter().find(|o| !is_loopback_origin(o)) else {
            return Ok(());
        };
        if !self.sandbox_explicit {
            return Err(ConfigError::new(
                "SANDBOX",
                format!(
                    "sandbox mode on the public origin {exposed} lets anyone sign in as anyone: set LINKEDIN_CLIENT_ID and LINKEDIN_CLIENT_SECRET for real mode, or SANDBOX=true if this is meant"
                ),
            ));
        }
        tracing::warn!(
            origin = %exposed,
            "SANDBOX=true on a public origin that is not loopback: the sandbox lets anyone who reaches {exposed} sign in as anyone; never run it in production"
        );
        Ok(())
    }

    /// The protocols the TLS listener offers.
    pub(super) fn alpn(&self) -> Alpn {
        if self.keep_alive {
            Alpn::Http2AndHttp1
        } else {
            Alpn::Http1Only
        }
    }
}

/// What depends on the configuration and the bound address, beside the sign-in.
pub(super) struct Resolved {
    /// The key pair, the sandbox, keep-alive.
    pub mode: Mode,
    /// The address actually bound.
    pub addr: SocketAddr,
    /// The origins allowed to send state-changing requests; the first is where a person
    /// opens the page.
    pub public_origins: Vec<String>,
    /// The LinkedIn URLs.
    pub urls: Urls,
    /// Whether the server speaks TLS itself (`TLS=on`), or plain HTTP behind a proxy.
    pub tls: bool,
    /// `TRUSTED_PROXIES`: whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Option<TrustedProxies>,
    /// `SESSION_COOKIE_DOMAIN`, when set.
    pub cookie_domain: Option<String>,
    /// The OpenID Connect client: configured, or (in sandbox mode) made up for the sandbox to
    /// register; `None` when OpenID Connect is off.
    pub oidc_client: Option<(String, Secret)>,
}

impl Resolved {
    /// Resolves `config` for a server in `mode` bound at `addr`, and checks the deployment:
    /// the sandbox on a public origin, the proxy settings, the ports.
    pub(super) fn new(config: &Config, mode: Mode, addr: SocketAddr) -> Result<Self, ConfigError> {
        let tls = config.listen.tls == TlsMode::On;
        let public_origins = config.listen.public_origins(addr)?;
        mode.check_exposure(config.listen.public_origin.is_some(), &public_origins)?;
        proxy::check(
            config.listen.tls,
            config.listen.public_origin.is_some(),
            config.sessions.cookie_domain.as_ref(),
            &public_origins,
        )?;
        for origin in config.listen.origins_off_port(
            addr,
            config.limits.trusted_proxies.is_some(),
            &public_origins,
        ) {
            tracing::warn!(
                %origin,
                bind = %addr,
                "PUBLIC_ORIGIN {origin} is on another port than BIND {addr}, with TLS=on and no proxy in front (TRUSTED_PROXIES unset): browsers sent there will find nothing; make the ports agree, or set TRUSTED_PROXIES for the proxy that forwards them"
            );
        }
        if !tls && config.limits.trusted_proxies.is_none() {
            tracing::warn!(
                "TLS=off but TRUSTED_PROXIES is unset: every request seems to come from the proxy, so rate limits and logs see one client; set TRUSTED_PROXIES to the proxy's address"
            );
        }
        // Checked even with OpenID Connect off: a retired scope is a mistake to say at once.
        oidc_scopes(&config.oidc.scopes)?;
        let oidc_client = match config.oidc.client()? {
            Some(client) => Some(client),
            None if mode.sandbox => Some((
                format!("sandbox-client-{}", random(8)),
                Secret::new(random(32)),
            )),
            None => None,
        };
        Ok(Self {
            urls: Urls::resolve(&config.linkedin, mode.sandbox, addr, tls)?,
            tls,
            trusted_proxies: config.limits.trusted_proxies.clone(),
            cookie_domain: config
                .sessions
                .cookie_domain
                .as_ref()
                .map(|d| d.as_str().to_owned()),
            mode,
            addr,
            public_origins,
            oidc_client,
        })
    }

    /// Where a person opens the page: the first public origin.
    pub(super) fn page_origin(&self) -> &str {
        self.public_origins.first().map_or("", String::as_str)
    }

    /// `config` converted into the library's settings: the sign-in of this server, whose own
    /// certificate is `own_tls` (`None` with `TLS=off`; trusted by the upstream client when
    /// it calls its own sandbox). [`SignInBuilder::build`] resolves it, as for any host.
    pub(super) fn sign_in(
        &self,
        config: &Config,
        own_tls: Option<&TlsMaterial>,
    ) -> Result<SignInBuilder, ConfigError> {
        let mut builder = self
            .public_origins
            .iter()
            .fold(SignInBuilder::default(), |builder, origin| {
                builder.public_origin(origin)
            })
            .jsapi_urls(self.urls.access_token.clone(), self.urls.api.clone())
            .jsapi_script(self.urls.jsapi.clone())
            .pkce(config.oidc.pkce)
            .require_nonce(config.oidc.require_nonce)
            .scopes(config.oidc.scopes.clone())
            .upstream_timeout(config.limits.upstream_timeout())
            .rate_limit(config.limits.rate_limit)
            .session_idle(config.sessions.idle())
            .sandbox_mounted(self.mode.sandbox)
            .api_version(&config.api.api_version)
            .api_allow(&config.api.api_allow);
        // Outside the sandbox, the JSAPI flow needs the app's own key pair: without one the
        // page offers no JSAPI button and names no key.
        if self.mode.jsapi {
            let credentials = &self.mode.credentials;
            builder = builder.jsapi(&credentials.api_key, credentials.secret_key.expose());
        }
        if let Some((id, secret)) = &self.oidc_client {
            builder = builder.oidc(id, secret.expose());
            let issuer = match &config.oidc.issuer {
                Some(issuer) => issuer.clone(),
                None if self.mode.sandbox => {
                    Url::parse(&format!("{}/oauth", sandbox_base(self.addr, self.tls)))
                        .map_err(|e| ConfigError::new("BIND", e.to_string()))?
                }
                None => Url::parse(DEFAULT_OIDC_ISSUER)
                    .map_err(|e| ConfigError::new("LINKEDIN_OIDC_ISSUER", e.to_string()))?,
            };
            builder = builder.issuer(issuer);
            // Explicit, then the sandbox's, then (the builder's default) LinkedIn's.
            let introspection = match &config.oidc.introspection_url {
                Some(url) => Some(url.clone()),
                None if self.mode.sandbox => Some(
                    Url::parse(&format!(
                        "{}/oauth/v2/introspectToken",
                        sandbox_base(self.addr, self.tls)
                    ))
                    .map_err(|e| ConfigError::new("BIND", e.to_string()))?,
                ),
                None => None,
            };
            if let Some(url) = introspection {
                builder = builder.introspection_url(url);
            }
        }
        if let Some(interval) = config.oidc.introspect_every {
            builder = builder.introspect_every(interval);
        }
        if let Some(url) = &config.oidc.redirect_url {
            builder = builder.redirect_url(url.clone());
        }
        if let Some(hosts) = &config.oidc.allowed_redirect_hosts {
            builder = builder.allowed_redirect_hosts(hosts.clone());
        }
        if let Some(proxies) = &config.limits.trusted_proxies {
            builder = builder.trusted_proxies(proxies.clone());
        }
        if let Some(pem) = upstream_ca_pem(&config.limits)? {
            builder = builder.upstream_ca_pem(pem);
        }
        if let Some(material) = own_tls.filter(|_| self.mode.sandbox) {
            builder = builder.upstream_ca_pem(material.cert_pem.clone());
        }
        Ok(builder)
    }
}

/// The error of the library's builder, as the service reports its own: naming the variable.
pub(super) fn config_error(err: &BuildError) -> ConfigError {
    ConfigError::new(err.variable(), err.message())
}

/// The three LinkedIn URLs, resolved.
pub(super) struct Urls {
    /// The OAuth 1.0a exchange endpoint.
    pub access_token: Url,
    /// The REST base.
    pub api: Url,
    /// The JSAPI script the page embeds (absolute, or a path on this server).
    pub jsapi: String,
}

impl Urls {
    /// Explicit settings win, then the sandbox (reached through the name its certificate
    /// carries, or over plain HTTP on loopback with `TLS=off`), then LinkedIn's own.
    pub(super) fn resolve(
        config: &LinkedIn,
        sandbox: bool,
        addr: SocketAddr,
        tls: bool,
    ) -> Result<Self, ConfigError> {
        let parse = |variable, url: &str| {
            Url::parse(url).map_err(|e| ConfigError::new(variable, e.to_string()))
        };
        let (access_token, api, jsapi) = if sandbox {
            let base = sandbox_base(addr, tls);
            (
                parse("BIND", &format!("{base}/uas/oauth/accessToken"))?,
                parse("BIND", &base)?,
                // The page loads the sandbox's script from whatever origin the browser uses.
                "/sandbox/in.js".to_owned(),
            )
        } else {
            (
                parse("LINKEDIN_ACCESS_TOKEN_URL", DEFAULT_ACCESS_TOKEN_URL)?,
                parse("LINKEDIN_API_URL", DEFAULT_API_URL)?,
                DEFAULT_JSAPI_URL.to_owned(),
            )
        };
        Ok(Self {
            access_token: config.access_token_url.clone().unwrap_or(access_token),
            api: config.api_url.clone().unwrap_or(api),
            jsapi: config.jsapi_url.as_ref().map_or(jsapi, Url::to_string),
        })
    }

    /// The upstream URLs that travel in plain text.
    pub(super) fn plain_http(&self) -> Vec<&Url> {
        [&self.access_token, &self.api]
            .into_iter()
            .filter(|url| url.scheme() == "http")
            .collect()
    }
}

/// The sandbox's base URL as the server reaches it: over HTTPS through a name its
/// certificate carries; with `TLS=off`, over plain HTTP to the bound address itself (on
/// loopback for an unspecified one), so that the server-to-server calls never leave the
/// machine nor go back out through the proxy.
pub(super) fn sandbox_base(addr: SocketAddr, tls: bool) -> String {
    if tls {
        return format!("https://{}:{}/sandbox", sandbox_host(addr), addr.port());
    }
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}/sandbox", SocketAddr::new(ip, addr.port()))
}

/// Whether `origin` (`scheme://host[:port]`) names this machine: `localhost`, `127.0.0.0/8`
/// or `::1`.
pub(super) fn is_loopback_origin(origin: &str) -> bool {
    match Url::parse(origin)
        .ok()
        .and_then(|url| url.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn random(n: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// The host the server reaches its own sandbox by: a name its certificate carries.
fn sandbox_host(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
        ip if ip.is_ipv6() => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}

/// The PEM bundle of `UPSTREAM_CA_CERT`, if any.
fn upstream_ca_pem(config: &Limits) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = &config.upstream_ca_cert else {
        return Ok(None);
    };
    std::fs::read(path).map(Some).map_err(|e| {
        ConfigError::new(
            "UPSTREAM_CA_CERT",
            format!("cannot read {}: {e}", path.display()),
        )
    })
}

/// The extra roots of `UPSTREAM_CA_CERT`, if any.
fn upstream_roots(config: &Limits) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    match upstream_ca_pem(config)? {
        Some(pem) => pem_roots(&pem, "UPSTREAM_CA_CERT"),
        None => Ok(Vec::new()),
    }
}

/// What `check-provider` checks, and the transport it fetches with: the configured issuer
/// (or LinkedIn's), and the service's own upstream transport (its roots, timeout, cap on an
/// answer's size, no redirects).
pub(super) fn provider_check(
    config: &Config,
) -> Result<(crate::linkedin::transport::Transport, CheckSettings), ConfigError> {
    let scopes = oidc_scopes(&config.oidc.scopes)?;
    let issuer = match &config.oidc.issuer {
        Some(issuer) => issuer.clone(),
        None => Url::parse(DEFAULT_OIDC_ISSUER)
            .map_err(|e| ConfigError::new("LINKEDIN_OIDC_ISSUER", e.to_string()))?,
    };
    crate::tls::install_crypto_provider();
    let upstream = crate::linkedin::transport::Transport::new(
        config.limits.upstream_timeout(),
        &upstream_roots(&config.limits)?,
    )
    .map_err(|e| {
        ConfigError::new(
            "UPSTREAM_CA_CERT",
            format!("cannot build the HTTPS client: {e}"),
        )
    })?;
    let settings = CheckSettings {
        issuer,
        scopes,
        pkce: config.oidc.pkce,
        require_nonce: config.oidc.require_nonce,
    };
    Ok((upstream, settings))
}

/// The certificates of a PEM bundle, as roots for the upstream client.
fn pem_roots(pem: &[u8], variable: &'static str) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| ConfigError::new(variable, format!("not a PEM certificate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The introspection endpoint of a server's sign-in: the explicit one, else the
    /// sandbox's in sandbox mode, else LinkedIn's.
    async fn introspection_url(adjust: impl FnOnce(&mut Config)) -> String {
        let mut config = Config::defaults();
        adjust(&mut config);
        let mode = Mode::of(&config.linkedin, &config.oidc).unwrap();
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let resolved = Resolved::new(&config, mode, addr).unwrap();
        let sign_in = resolved.sign_in(&config, None).unwrap().build().unwrap();
        let oidc = sign_in.state.oidc.as_ref().unwrap();
        oidc.settings().introspection_url.to_string()
    }

    #[tokio::test]
    async fn the_introspection_endpoint_is_the_explicit_one_then_the_sandboxs_then_linkedins() {
        assert_eq!(
            introspection_url(|_| {}).await,
            "https://localhost:8443/sandbox/oauth/v2/introspectToken"
        );
        let real = |config: &mut Config| {
            config.linkedin.sandbox = Some(false);
            config.oidc.client_id = Some("client".into());
            config.oidc.client_secret = Some(Secret::new("secret"));
        };
        assert_eq!(
            introspection_url(real).await,
            "https://www.linkedin.com/oauth/v2/introspectToken"
        );
        let explicit = |config: &mut Config| {
            real(config);
            config.oidc.introspection_url = Some("https://idp.example/introspect".parse().unwrap());
            config.oidc.introspect_every = Some(std::time::Duration::from_secs(60));
        };
        assert_eq!(
            introspection_url(explicit).await,
            "https://idp.example/introspect"
        );
    }

    #[test]
    fn loopback_origins_are_localhost_127_8_and_ipv6_loopback_only() {
        for origin in [
            "https://localhost:8443",
            "https://LOCALHOST",
            "https://127.0.0.1:1",
            "https://127.255.0.9",
            "https://[::1]:8443",
        ] {
            assert!(is_loopback_origin(origin), "{origin}");
        }
        for origin in [
            "https://login.example.com",
            "https://localhost.example.com",
            "https://10.0.0.1",
            "https://0.0.0.0",
            "https://[::]",
            "not an origin",
        ] {
            assert!(!is_loopback_origin(origin), "{origin}");
        }
    }
}
