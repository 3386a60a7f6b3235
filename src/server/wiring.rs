//! What `Server::build` resolves from the configuration besides sockets: the app's key pair,
//! the LinkedIn URLs (explicit settings, then the sandbox, then LinkedIn), and the one
//! upstream HTTPS client with its roots.

use std::net::SocketAddr;

use rand::Rng;
use rand::distr::Alphanumeric;
use url::Url;

use crate::config::{
    AppCredentials, Config, ConfigError, DEFAULT_ACCESS_TOKEN_URL, DEFAULT_API_URL,
    DEFAULT_JSAPI_URL, DEFAULT_OIDC_ISSUER, oidc_scopes,
};
use crate::linkedin::client::{LinkedInClient, LinkedInEndpoints};
use crate::linkedin::oidc::OidcSettings;
use crate::linkedin::provider_check::CheckSettings;
use crate::secret::Secret;
use crate::tls::TlsMaterial;

/// The three LinkedIn URLs, resolved.
pub struct Urls {
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
    pub fn resolve(
        config: &Config,
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
            access_token: config
                .linkedin_access_token_url
                .clone()
                .unwrap_or(access_token),
            api: config.linkedin_api_url.clone().unwrap_or(api),
            jsapi: config
                .linkedin_jsapi_url
                .as_ref()
                .map_or(jsapi, Url::to_string),
        })
    }

    /// The upstream URLs that travel in plain text.
    pub fn plain_http(&self) -> Vec<&Url> {
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
pub fn sandbox_base(addr: SocketAddr, tls: bool) -> String {
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

/// The OpenID Connect relying party's settings: configured, or (in sandbox mode) the
/// sandbox's own client at the sandbox's issuer; `None` when OpenID Connect is off.
pub fn oidc_settings(
    config: &Config,
    sandbox: bool,
    addr: SocketAddr,
    tls: bool,
    public_origins: &[String],
) -> Result<Option<OidcSettings>, ConfigError> {
    let scopes = oidc_scopes(&config.linkedin_oidc_scopes)?;
    let configured = config.oidc_client()?;
    let (client_id, client_secret) = match configured {
        Some(client) => client,
        None if sandbox => (
            format!("sandbox-client-{}", random(8)),
            Secret::new(random(32)),
        ),
        None => return Ok(None),
    };
    let default_issuer = if sandbox {
        format!("{}/oauth", sandbox_base(addr, tls))
    } else {
        DEFAULT_OIDC_ISSUER.to_owned()
    };
    let issuer = match &config.linkedin_oidc_issuer {
        Some(issuer) => issuer.clone(),
        None => Url::parse(&default_issuer)
            .map_err(|e| ConfigError::new("LINKEDIN_OIDC_ISSUER", e.to_string()))?,
    };
    let redirect_url = match &config.linkedin_oidc_redirect_url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("{}/auth/linkedin/callback", public_origins[0]))
            .map_err(|e| ConfigError::new("LINKEDIN_OIDC_REDIRECT_URL", e.to_string()))?,
    };
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        client_secret,
        redirect_url,
        scopes,
        pkce: config.linkedin_oidc_pkce,
        require_nonce: config.linkedin_oidc_require_nonce,
    }))
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

/// The configured key pair, or one made up for a sandbox started without one.
pub fn app_credentials(config: &Config) -> Result<AppCredentials, ConfigError> {
    Ok(config.app_credentials()?.unwrap_or_else(|| AppCredentials {
        api_key: format!("sandbox{}", random(8)),
        secret_key: Secret::new(random(24)),
    }))
}

/// The one upstream client: the system's roots, plus `UPSTREAM_CA_CERT`, plus the server's
/// own certificate when it calls its own sandbox.
pub fn upstream_client(
    config: &Config,
    urls: &Urls,
    credentials: &AppCredentials,
    own_tls: Option<&TlsMaterial>,
) -> Result<LinkedInClient, ConfigError> {
    let mut roots = upstream_roots(config)?;
    if let Some(material) = own_tls {
        roots.extend(pem_roots(&material.cert_pem, "TLS_CERT")?);
    }
    let endpoints = LinkedInEndpoints {
        access_token_url: urls.access_token.clone(),
        api_url: urls.api.clone(),
        timeout: config.upstream_timeout(),
    };
    LinkedInClient::new(
        &endpoints,
        &credentials.api_key,
        &credentials.secret_key,
        &roots,
    )
    .map_err(|e| {
        ConfigError::new(
            "UPSTREAM_CA_CERT",
            format!("cannot build the HTTPS client: {e}"),
        )
    })
}

/// The extra roots of `UPSTREAM_CA_CERT`, if any.
fn upstream_roots(config: &Config) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let Some(path) = &config.upstream_ca_cert else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(path).map_err(|e| {
        ConfigError::new(
            "UPSTREAM_CA_CERT",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    pem_roots(&pem, "UPSTREAM_CA_CERT")
}

/// What `check-provider` checks, and the client it fetches with: the configured issuer (or
/// LinkedIn's), the upstream roots and timeout, no redirects.
pub fn provider_check(config: &Config) -> Result<(reqwest::Client, CheckSettings), ConfigError> {
    let scopes = oidc_scopes(&config.linkedin_oidc_scopes)?;
    let issuer = match &config.linkedin_oidc_issuer {
        Some(issuer) => issuer.clone(),
        None => Url::parse(DEFAULT_OIDC_ISSUER)
            .map_err(|e| ConfigError::new("LINKEDIN_OIDC_ISSUER", e.to_string()))?,
    };
    crate::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(config.upstream_timeout())
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge(upstream_roots(config)?)
        .build()
        .map_err(|e| {
            ConfigError::new(
                "UPSTREAM_CA_CERT",
                format!("cannot build the HTTPS client: {e}"),
            )
        })?;
    let settings = CheckSettings {
        issuer,
        scopes,
        pkce: config.linkedin_oidc_pkce,
        require_nonce: config.linkedin_oidc_require_nonce,
    };
    Ok((http, settings))
}

/// The certificates of a PEM bundle, as roots for the upstream client.
fn pem_roots(pem: &[u8], variable: &'static str) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| ConfigError::new(variable, format!("not a PEM certificate: {e}")))
}
