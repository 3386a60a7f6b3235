//! The LinkedIn JSAPI group: the app's key pair, the three LinkedIn URLs, and the sandbox that
//! can stand in for them.

use url::Url;

use super::oidc::Oidc;
use super::{AppCredentials, ConfigError};
use crate::secret::Secret;

/// The JSAPI side of LinkedIn (the cookie exchange) and the sandbox.
#[derive(clap::Args, Clone, Debug)]
pub struct LinkedIn {
    /// The app's API key; names the `linkedin_oauth_<API_KEY>` cookie. Unset: sandbox mode.
    #[arg(
        long = "linkedin-api-key",
        env = "LINKEDIN_API_KEY",
        value_name = "LINKEDIN_API_KEY"
    )]
    pub api_key: Option<String>,

    /// The app's secret key: verifies the cookie and signs OAuth requests.
    #[arg(
        long = "linkedin-secret-key",
        env = "LINKEDIN_SECRET_KEY",
        value_name = "LINKEDIN_SECRET_KEY",
        hide_env_values = true
    )]
    pub secret_key: Option<Secret>,

    /// The OAuth 1.0a access-token (exchange) endpoint.
    #[arg(
        long = "linkedin-access-token-url",
        env = "LINKEDIN_ACCESS_TOKEN_URL",
        value_name = "LINKEDIN_ACCESS_TOKEN_URL",
        hide_env_values = true,
        value_parser = super::parse_url,
    )]
    pub access_token_url: Option<Url>,

    /// The REST API base (`/v1/people/~` is appended).
    #[arg(
        long = "linkedin-api-url",
        env = "LINKEDIN_API_URL",
        value_name = "LINKEDIN_API_URL",
        hide_env_values = true,
        value_parser = super::parse_url,
    )]
    pub api_url: Option<Url>,

    /// The JSAPI script the login page embeds.
    #[arg(
        long = "linkedin-jsapi-url",
        env = "LINKEDIN_JSAPI_URL",
        value_name = "LINKEDIN_JSAPI_URL",
        hide_env_values = true,
        value_parser = super::parse_url,
    )]
    pub jsapi_url: Option<Url>,

    /// Mount the emulated LinkedIn under /sandbox/ and point the URLs at it. Default: true
    /// only when no LinkedIn credential is set (neither the JSAPI key pair nor the OpenID
    /// Connect client). On a non-loopback PUBLIC_ORIGIN it must be set to true explicitly:
    /// anyone who reaches the sandbox can sign in as anyone.
    #[arg(long = "sandbox", env = "SANDBOX", value_name = "SANDBOX")]
    pub sandbox: Option<bool>,

    /// Sandbox mode only: `false` makes the server speak HTTP/1.1 only and close every
    /// connection after one answer, as an HTTP/1.0-style upstream does (for benchmarks).
    #[arg(
        long = "sandbox-keep-alive",
        env = "SANDBOX_KEEP_ALIVE",
        value_name = "SANDBOX_KEEP_ALIVE",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub sandbox_keep_alive: bool,

    /// Sandbox mode only: seconds an access token of the sandbox lives (both flows; 60 days,
    /// as LinkedIn's), so that tests see expiry in seconds. Then it answers 401.
    #[arg(
        long = "sandbox-token-ttl",
        env = "SANDBOX_TOKEN_TTL",
        value_name = "SANDBOX_TOKEN_TTL",
        default_value_t = 5_184_000,
        value_parser = clap::value_parser!(u64).range(1..=315_360_000)
    )]
    pub sandbox_token_ttl: u64,

    /// Sandbox mode only: `true` makes the sandbox's OpenID Connect token answers carry
    /// `refresh_token` and `refresh_token_expires_in`, as LinkedIn's do for a partner app.
    #[arg(
        long = "sandbox-refresh-tokens",
        env = "SANDBOX_REFRESH_TOKENS",
        value_name = "SANDBOX_REFRESH_TOKENS",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub sandbox_refresh_tokens: bool,

    /// Sandbox mode only: the refresh token's fixed life in seconds (365 days, as
    /// LinkedIn's); refreshing does not extend it.
    #[arg(
        long = "sandbox-refresh-ttl",
        env = "SANDBOX_REFRESH_TTL",
        value_name = "SANDBOX_REFRESH_TTL",
        default_value_t = 31_536_000,
        value_parser = clap::value_parser!(u64).range(1..=315_360_000)
    )]
    pub sandbox_refresh_ttl: u64,

    /// Sandbox mode only: calls per member per UTC day to the sandbox's API routes before it
    /// answers 429 (with `Retry-After` until midnight UTC). Unset: no limit.
    #[arg(
        long = "sandbox-daily-quota",
        env = "SANDBOX_DAILY_QUOTA",
        value_name = "SANDBOX_DAILY_QUOTA",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub sandbox_daily_quota: Option<u64>,
}

impl LinkedIn {
    /// The configured key pair; a key without a secret (or the reverse) is an error.
    pub fn app_credentials(&self) -> Result<Option<AppCredentials>, ConfigError> {
        match (&self.api_key, &self.secret_key) {
            (None, None) => Ok(None),
            (Some(key), Some(secret)) => {
                super::check_api_key(key)
                    .map_err(|err| ConfigError::new("LINKEDIN_API_KEY", err))?;
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

    /// Whether any LinkedIn credential is set: a part of the JSAPI key pair or of the OpenID
    /// Connect client (`oidc`).
    pub fn any_credential(&self, oidc: &Oidc) -> bool {
        self.api_key.is_some()
            || self.secret_key.is_some()
            || oidc.client_id.is_some()
            || oidc.client_secret.is_some()
    }

    /// Whether the emulated LinkedIn is mounted: `SANDBOX`, or else "no LinkedIn credential
    /// at all" (neither the JSAPI key pair nor the OpenID Connect client of `oidc`).
    pub fn sandbox_enabled(&self, oidc: &Oidc) -> bool {
        self.sandbox.unwrap_or(!self.any_credential(oidc))
    }

    /// Whether `SANDBOX=true` was said out loud (not merely the default).
    pub fn sandbox_explicit(&self) -> bool {
        self.sandbox == Some(true)
    }

    /// Whether connections are kept open between requests: always, unless the sandbox is told
    /// otherwise by `SANDBOX_KEEP_ALIVE=false` (which outside sandbox mode is an error).
    pub fn keep_alive(&self, oidc: &Oidc) -> Result<bool, ConfigError> {
        if !self.sandbox_keep_alive && !self.sandbox_enabled(oidc) {
            return Err(ConfigError::new(
                "SANDBOX_KEEP_ALIVE",
                "applies only in sandbox mode (SANDBOX=true)",
            ));
        }
        Ok(self.sandbox_keep_alive)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::Config;

    fn sandbox(args: &[&str]) -> bool {
        let config = Config::try_parse_from([&["x"][..], args].concat()).unwrap();
        config.linkedin.sandbox_enabled(&config.oidc)
    }

    #[test]
    fn the_sandbox_is_on_by_default_only_without_any_credential() {
        assert!(sandbox(&[]));
        assert!(!sandbox(&[
            "--linkedin-client-id",
            "c",
            "--linkedin-client-secret",
            "s"
        ]));
        assert!(!sandbox(&["--linkedin-client-id", "c"]));
        assert!(!sandbox(&[
            "--linkedin-api-key",
            "k",
            "--linkedin-secret-key",
            "s"
        ]));
        assert!(!sandbox(&["--linkedin-secret-key", "s"]));
        assert!(sandbox(&["--linkedin-client-id", "c", "--sandbox", "true"]));
        assert!(!sandbox(&["--sandbox", "false"]));
    }
}
