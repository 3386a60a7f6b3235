//! Configuration: the only place that reads the environment (and `.env`, and the command line).
//!
//! [`Config`] is what a person writes; [`Config::validate`] turns it into typed values and
//! fails fast with one line naming the variable. Turning the configuration into URLs that
//! depend on the bound port is left to `server`, which knows that port.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use url::Url;

use crate::session::StoreUrl;

/// The production LinkedIn endpoints, used when neither a URL nor the sandbox says otherwise.
pub const DEFAULT_ACCESS_TOKEN_URL: &str = "https://api.linkedin.com/uas/oauth/accessToken";
/// The production REST base.
pub const DEFAULT_API_URL: &str = "https://api.linkedin.com";
/// The production JSAPI script.
pub const DEFAULT_JSAPI_URL: &str = "https://platform.linkedin.com/in.js";

/// Everything the service can be told, from the environment or from flags of the same names.
#[derive(Parser, Clone)]
#[command(version, about)]
pub struct Config {
    /// The app's API key; names the `linkedin_oauth_<API_KEY>` cookie. Unset: sandbox mode.
    #[arg(long, env = "LINKEDIN_API_KEY", value_name = "LINKEDIN_API_KEY")]
    pub linkedin_api_key: Option<String>,

    /// The app's secret key: verifies the cookie and signs OAuth requests.
    #[arg(
        long,
        env = "LINKEDIN_SECRET_KEY",
        value_name = "LINKEDIN_SECRET_KEY",
        hide_env_values = true
    )]
    pub linkedin_secret_key: Option<Secret>,

    /// The OAuth 1.0a access-token (exchange) endpoint.
    #[arg(
        long,
        env = "LINKEDIN_ACCESS_TOKEN_URL",
        value_name = "LINKEDIN_ACCESS_TOKEN_URL"
    )]
    pub linkedin_access_token_url: Option<Url>,

    /// The REST API base (`/v1/people/~` is appended).
    #[arg(long, env = "LINKEDIN_API_URL", value_name = "LINKEDIN_API_URL")]
    pub linkedin_api_url: Option<Url>,

    /// The JSAPI script the login page embeds.
    #[arg(long, env = "LINKEDIN_JSAPI_URL", value_name = "LINKEDIN_JSAPI_URL")]
    pub linkedin_jsapi_url: Option<Url>,

    /// Mount the emulated LinkedIn under /sandbox/ and point the URLs at it.
    /// Default: true when no API key is set.
    #[arg(long, env = "SANDBOX", value_name = "SANDBOX")]
    pub sandbox: Option<bool>,

    /// HTTPS listen address.
    #[arg(
        long,
        env = "BIND",
        value_name = "BIND",
        default_value = "127.0.0.1:8443"
    )]
    pub bind: SocketAddr,

    /// PEM certificate chain; generated (self-signed) together with the key when both are missing.
    #[arg(
        long,
        env = "TLS_CERT",
        value_name = "TLS_CERT",
        default_value = "certs/localhost.pem"
    )]
    pub tls_cert: PathBuf,

    /// PEM private key.
    #[arg(
        long,
        env = "TLS_KEY",
        value_name = "TLS_KEY",
        default_value = "certs/localhost-key.pem"
    )]
    pub tls_key: PathBuf,

    /// The origin(s) browsers use, comma-separated. Default: https://localhost:<port> and
    /// https://<bind address>.
    #[arg(long, env = "PUBLIC_ORIGIN", value_name = "PUBLIC_ORIGIN")]
    pub public_origin: Option<String>,

    /// `memory`, `sqlite://PATH`, `redis://HOST:PORT[/DB]` or `postgres://…`.
    #[arg(
        long,
        env = "SESSION_STORE",
        value_name = "SESSION_STORE",
        default_value = "sqlite://data/sessions.db"
    )]
    pub session_store: StoreUrl,

    /// A session ends after this much inactivity, or when its credentials expire.
    #[arg(long, env = "SESSION_IDLE_MINUTES", value_name = "SESSION_IDLE_MINUTES", default_value_t = 1440,
          value_parser = clap::value_parser!(u64).range(1..=525_600))]
    pub session_idle_minutes: u64,

    /// Bound on each call to LinkedIn, in milliseconds.
    #[arg(long, env = "UPSTREAM_TIMEOUT_MS", value_name = "UPSTREAM_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub upstream_timeout_ms: u64,

    /// An extra PEM root to trust for the LinkedIn URLs.
    #[arg(long, env = "UPSTREAM_CA_CERT", value_name = "UPSTREAM_CA_CERT")]
    pub upstream_ca_cert: Option<PathBuf>,

    /// The tracing filter.
    #[arg(
        long,
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info"
    )]
    pub rust_log: String,
}

/// A configuration error: one line that names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable (and flag) at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// An error about `variable`.
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

/// The app's key pair, when one was configured.
#[derive(Clone, Debug)]
pub struct AppCredentials {
    /// The API key (public: it names a cookie).
    pub api_key: String,
    /// The secret key.
    pub secret_key: Secret,
}

impl Config {
    /// Reads `.env` (when present), the environment and the command line.
    pub fn load() -> Result<Self, clap::Error> {
        // A missing .env is normal; a broken one is reported by the values it fails to provide.
        let _ = dotenvy::dotenv();
        Self::try_parse()
    }

    /// A configuration with every default and no environment: the base that tests adjust.
    pub fn defaults() -> Self {
        Self::parse_from(["linkedin-token-exchange"])
    }

    /// The configured key pair; a key without a secret (or the reverse) is an error.
    pub fn app_credentials(&self) -> Result<Option<AppCredentials>, ConfigError> {
        match (&self.linkedin_api_key, &self.linkedin_secret_key) {
            (None, None) => Ok(None),
            (Some(key), Some(secret)) => {
                if key.is_empty()
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(ConfigError::new(
                        "LINKEDIN_API_KEY",
                        "must be a non-empty key of letters, digits, '_' or '-'",
                    ));
                }
                if secret.expose().is_empty() {
                    return Err(ConfigError::new("LINKEDIN_SECRET_KEY", "must not be empty"));
                }
                Ok(Some(AppCredentials {
                    api_key: key.clone(),
                    secret_key: secret.clone(),
                }))
            }
            (Some(_), None) => Err(ConfigError::new(
                "LINKEDIN_SECRET_KEY",
                "is required when LINKEDIN_API_KEY is set",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "LINKEDIN_API_KEY",
                "is required when LINKEDIN_SECRET_KEY is set",
            )),
        }
    }

    /// Whether the emulated LinkedIn is mounted: `SANDBOX`, or else "no API key".
    pub fn sandbox_enabled(&self) -> bool {
        self.sandbox.unwrap_or(self.linkedin_api_key.is_none())
    }

    /// The inactivity limit of a session.
    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(self.session_idle_minutes * 60)
    }

    /// The bound on each upstream call.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    /// The origins allowed to POST, given the port actually bound.
    pub fn public_origins(&self, bound: SocketAddr) -> Result<Vec<String>, ConfigError> {
        let Some(list) = &self.public_origin else {
            let mut origins = vec![format!("https://localhost:{}", bound.port())];
            let ip = bound.ip();
            if ip.is_unspecified() {
                origins.push(format!("https://127.0.0.1:{}", bound.port()));
                origins.push(format!("https://[::1]:{}", bound.port()));
            } else {
                origins.push(format!("https://{bound}"));
            }
            return Ok(origins);
        };
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|origin| {
                let url = Url::parse(origin).map_err(|err| {
                    ConfigError::new(
                        "PUBLIC_ORIGIN",
                        format!("{origin:?} is not an origin: {err}"),
                    )
                })?;
                if url.host().is_none() || !matches!(url.scheme(), "https" | "http") {
                    return Err(ConfigError::new(
                        "PUBLIC_ORIGIN",
                        format!("{origin:?} is not an http(s) origin"),
                    ));
                }
                Ok(url.origin().ascii_serialization())
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

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("linkedin_api_key", &self.linkedin_api_key)
            .field("linkedin_secret_key", &self.linkedin_secret_key)
            .field("linkedin_access_token_url", &self.linkedin_access_token_url)
            .field("linkedin_api_url", &self.linkedin_api_url)
            .field("linkedin_jsapi_url", &self.linkedin_jsapi_url)
            .field("sandbox", &self.sandbox)
            .field("bind", &self.bind)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("public_origin", &self.public_origin)
            .field("session_store", &self.session_store)
            .field("session_idle_minutes", &self.session_idle_minutes)
            .field("upstream_timeout_ms", &self.upstream_timeout_ms)
            .field("upstream_ca_cert", &self.upstream_ca_cert)
            .finish_non_exhaustive()
    }
}

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for signing and verifying only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"[redacted]\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["linkedin-token-exchange"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).unwrap()
    }

    #[test]
    fn no_configuration_means_sandbox_mode_with_the_documented_defaults() {
        let config = Config::defaults();
        assert!(config.sandbox_enabled());
        assert_eq!(config.bind.to_string(), "127.0.0.1:8443");
        assert_eq!(config.session_idle(), Duration::from_secs(1440 * 60));
        assert_eq!(config.app_credentials().unwrap().map(|c| c.api_key), None);
    }

    #[test]
    fn a_key_without_a_secret_is_refused_naming_the_secret() {
        let err = parse(&["--linkedin-api-key", "abc"])
            .app_credentials()
            .unwrap_err();
        assert_eq!(err.variable, "LINKEDIN_SECRET_KEY");
        assert!(!parse(&["--linkedin-api-key", "abc"]).sandbox_enabled());
    }

    #[test]
    fn an_unparsable_address_or_url_names_the_variable() {
        let argv = ["x", "--bind", "nowhere"];
        let message = Config::try_parse_from(argv).err().unwrap().to_string();
        assert!(message.contains("BIND"), "{message}");
        let argv = ["x", "--linkedin-api-url", "not a url"];
        let message = Config::try_parse_from(argv).err().unwrap().to_string();
        assert!(message.contains("LINKEDIN_API_URL"), "{message}");
    }

    #[test]
    fn public_origins_default_to_localhost_and_the_bind_address() {
        let config = Config::defaults();
        let origins = config
            .public_origins("127.0.0.1:9000".parse().unwrap())
            .unwrap();
        assert_eq!(
            origins,
            ["https://localhost:9000", "https://127.0.0.1:9000"]
        );
        let config = parse(&[
            "--public-origin",
            "https://example.com/, https://a.example:8443",
        ]);
        let origins = config
            .public_origins("127.0.0.1:9000".parse().unwrap())
            .unwrap();
        assert_eq!(origins, ["https://example.com", "https://a.example:8443"]);
    }

    #[test]
    fn debug_output_redacts_the_secret() {
        let config = parse(&[
            "--linkedin-api-key",
            "k",
            "--linkedin-secret-key",
            "hunter2",
        ]);
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
