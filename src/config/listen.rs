//! The listening group: the HTTPS address and its certificate, the origins browsers use, the
//! side listeners and the connection bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use url::Url;

use super::proxy::TlsMode;
use super::{ADMIN_TOKEN_MIN_LEN, ConfigError, parse_listen_addr};
use crate::secret::Secret;

/// `TLS_CERT`'s default: where a development certificate is generated when missing.
pub(super) const DEFAULT_TLS_CERT: &str = "certs/localhost.pem";
/// `TLS_KEY`'s default.
pub(super) const DEFAULT_TLS_KEY: &str = "certs/localhost-key.pem";

/// Where and how the server listens.
#[derive(clap::Args, Clone, Debug)]
pub struct Listen {
    /// HTTPS listen address.
    #[arg(
        long = "bind",
        env = "BIND",
        value_name = "BIND",
        default_value = "127.0.0.1:8443",
        value_parser = parse_listen_addr
    )]
    pub bind: SocketAddr,

    /// `on`: HTTPS on `BIND`. `off`: plain HTTP on `BIND`, for a proxy that terminates TLS
    /// (needs `PUBLIC_ORIGIN` with `https://` origins).
    #[arg(
        long = "tls",
        env = "TLS",
        value_name = "TLS",
        default_value = "on",
        value_enum
    )]
    pub tls: TlsMode,

    /// PEM certificate chain. At the default paths only, a self-signed pair for localhost is
    /// generated when both files are missing (and replaced when it expires within a week); a
    /// path set here must exist.
    #[arg(
        long = "tls-cert",
        env = "TLS_CERT",
        value_name = "TLS_CERT",
        default_value = DEFAULT_TLS_CERT
    )]
    pub tls_cert: PathBuf,

    /// PEM private key.
    #[arg(
        long = "tls-key",
        env = "TLS_KEY",
        value_name = "TLS_KEY",
        default_value = DEFAULT_TLS_KEY
    )]
    pub tls_key: PathBuf,

    /// The origin(s) browsers use, comma-separated. Default: https://localhost:<port> and
    /// https://<bind address>.
    // The text is clap's help as well, where the angle brackets read as placeholders.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(
        long = "public-origin",
        env = "PUBLIC_ORIGIN",
        value_name = "PUBLIC_ORIGIN",
        hide_env_values = true
    )]
    pub public_origin: Option<String>,

    /// Plain-HTTP listener that answers 308 to the same path and query on the HTTPS origin.
    /// Unset: off.
    #[arg(long = "http-redirect-bind", env = "HTTP_REDIRECT_BIND", value_name = "HTTP_REDIRECT_BIND", value_parser = parse_listen_addr)]
    pub http_redirect_bind: Option<SocketAddr>,

    /// Plain-HTTP listener serving `GET /metrics` (Prometheus text format). Unset: off.
    #[arg(long = "metrics-bind", env = "METRICS_BIND", value_name = "METRICS_BIND", value_parser = parse_listen_addr)]
    pub metrics_bind: Option<SocketAddr>,

    /// Bearer token of the admin routes on the `METRICS_BIND` listener (at least
    /// [`ADMIN_TOKEN_MIN_LEN`] characters). Unset: no admin routes.
    #[arg(
        long = "admin-token",
        env = "ADMIN_TOKEN",
        value_name = "ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<Secret>,

    /// Connections held at once; more wait in the listen queue. Default: a safe share of the
    /// open-file limit.
    #[arg(long = "max-connections", env = "MAX_CONNECTIONS", value_name = "MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,
}

impl Listen {
    /// Whether `TLS_CERT` and `TLS_KEY` are both at their defaults, where (only) the service
    /// generates, and renews, a development pair.
    pub fn tls_paths_are_default(&self) -> bool {
        self.tls_cert == std::path::Path::new(DEFAULT_TLS_CERT)
            && self.tls_key == std::path::Path::new(DEFAULT_TLS_KEY)
    }

    /// With `TLS=on` and no proxy in front (`trusted_proxies` unset), the explicit public
    /// origins whose port is not the port bound: the URL they print would not answer.
    pub fn origins_off_port(
        &self,
        bound: SocketAddr,
        trusted_proxies: bool,
        origins: &[String],
    ) -> Vec<String> {
        if self.tls != TlsMode::On || trusted_proxies || self.public_origin.is_none() {
            return Vec::new();
        }
        origins
            .iter()
            .filter(|origin| {
                Url::parse(origin)
                    .ok()
                    .and_then(|url| url.port_or_known_default())
                    .is_some_and(|port| port != bound.port())
            })
            .cloned()
            .collect()
    }

    /// The admin routes' token, when they are on: it must be long enough to resist guessing,
    /// and needs the listener they are served on.
    pub fn admin_token(&self) -> Result<Option<Secret>, ConfigError> {
        let Some(token) = &self.admin_token else {
            return Ok(None);
        };
        if token.expose().chars().count() < ADMIN_TOKEN_MIN_LEN
            || token
                .expose()
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::new(
                "ADMIN_TOKEN",
                format!(
                    "must be at least {ADMIN_TOKEN_MIN_LEN} characters, without spaces (e.g. `openssl rand -hex 32`)"
                ),
            ));
        }
        if self.metrics_bind.is_none() {
            return Err(ConfigError::new(
                "ADMIN_TOKEN",
                "the admin routes are served on the METRICS_BIND listener only: set METRICS_BIND too",
            ));
        }
        Ok(Some(token.clone()))
    }

    /// The origins allowed to POST, given the port actually bound: `PUBLIC_ORIGIN`, or else
    /// `https://localhost:<port>` and the bound address (`127.0.0.1` and `[::1]` for an
    /// unspecified one). Port 443 is left out, as browsers leave it out of `Origin`.
    pub fn public_origins(&self, bound: SocketAddr) -> Result<Vec<String>, ConfigError> {
        let Some(list) = &self.public_origin else {
            let port = bound.port();
            let hosts = if bound.ip().is_unspecified() {
                vec!["localhost".to_owned(), "127.0.0.1".into(), "[::1]".into()]
            } else {
                let ip = SocketAddr::new(bound.ip(), 0).to_string();
                vec!["localhost".to_owned(), ip.trim_end_matches(":0").to_owned()]
            };
            return Ok(hosts
                .into_iter()
                .map(|host| match port {
                    443 => format!("https://{host}"),
                    port => format!("https://{host}:{port}"),
                })
                .collect());
        };
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|origin| {
                super::parse_origin(origin).map_err(|err| ConfigError::new("PUBLIC_ORIGIN", err))
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|origins| {
                if origins.is_empty() {
                    Err(ConfigError::new("PUBLIC_ORIGIN", "names no origin"))
                } else {
                    Ok(origins)
                }
            })
    }
}
