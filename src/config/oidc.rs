//! The OpenID Connect group: the app's OAuth 2.0 client at LinkedIn and how the sign-in talks
//! to the provider.

use std::time::Duration;

use url::Url;

use super::proxy::AllowedHosts;
use super::{ConfigError, PkceMode};
use crate::secret::Secret;

/// "Sign In with LinkedIn using OpenID Connect".
#[derive(clap::Args, Clone, Debug)]
pub struct Oidc {
    /// The OAuth 2.0 client of "Sign In with LinkedIn using OpenID Connect". Unset: OpenID
    /// Connect is off (in sandbox mode: the sandbox's own client).
    #[arg(
        long = "linkedin-client-id",
        env = "LINKEDIN_CLIENT_ID",
        value_name = "LINKEDIN_CLIENT_ID"
    )]
    pub client_id: Option<String>,

    /// The OAuth 2.0 client's secret (sent to the token endpoint, `client_secret_post`).
    #[arg(
        long = "linkedin-client-secret",
        env = "LINKEDIN_CLIENT_SECRET",
        value_name = "LINKEDIN_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<Secret>,

    /// The OpenID Connect issuer; discovery is `<issuer>/.well-known/openid-configuration`.
    /// Default: LinkedIn's (`https://www.linkedin.com/oauth`), or the sandbox's.
    #[arg(
        long = "linkedin-oidc-issuer",
        env = "LINKEDIN_OIDC_ISSUER",
        value_name = "LINKEDIN_OIDC_ISSUER",
        hide_env_values = true,
        value_parser = super::parse_url,
    )]
    pub issuer: Option<Url>,

    /// The redirect URI registered with the provider. Default: the first public origin's
    /// `/auth/linkedin/callback`.
    #[arg(
        long = "linkedin-oidc-redirect-url",
        env = "LINKEDIN_OIDC_REDIRECT_URL",
        value_name = "LINKEDIN_OIDC_REDIRECT_URL",
        hide_env_values = true,
        value_parser = super::parse_url,
    )]
    pub redirect_url: Option<Url>,

    /// The scopes asked for, space-separated.
    #[arg(
        long = "linkedin-oidc-scopes",
        env = "LINKEDIN_OIDC_SCOPES",
        value_name = "LINKEDIN_OIDC_SCOPES",
        default_value = "openid profile email"
    )]
    pub scopes: String,

    /// PKCE (S256) on the sign-in: `auto` sends it only when discovery lists `S256`
    /// (LinkedIn's lists nothing, and its token endpoint refuses a web app's `code_verifier`
    /// with 401 `invalid_client`); `on` always; `off` never.
    #[arg(
        long = "linkedin-oidc-pkce",
        env = "LINKEDIN_OIDC_PKCE",
        value_name = "LINKEDIN_OIDC_PKCE",
        default_value = "auto"
    )]
    pub pkce: PkceMode,

    /// Refuse an id_token that carries no `nonce`. LinkedIn never echoes the nonce, so the
    /// default accepts its absence (a present nonce must still match); `true` is for
    /// providers that do echo it.
    #[arg(
        long = "linkedin-oidc-require-nonce",
        env = "LINKEDIN_OIDC_REQUIRE_NONCE",
        value_name = "LINKEDIN_OIDC_REQUIRE_NONCE",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub require_nonce: bool,

    /// Comma list of hosts, or `.example.com` suffixes, that `rd` may return to after a
    /// sign-in (`https://` on port 443), besides the `PUBLIC_ORIGIN` origins (on their ports).
    #[arg(
        long = "allowed-redirect-hosts",
        env = "ALLOWED_REDIRECT_HOSTS",
        value_name = "ALLOWED_REDIRECT_HOSTS"
    )]
    pub allowed_redirect_hosts: Option<AllowedHosts>,

    /// How often each live OpenID Connect session's access token is introspected (`30s`,
    /// `15m`, `6h`, `1d`), by one instance of a fleet, at most 10 a second: a token LinkedIn
    /// says is revoked ends every session holding it (the page says LinkedIn access was
    /// withdrawn), an expired or inactive one its session. Unset: never.
    #[arg(
        long = "linkedin-introspect-every",
        env = "LINKEDIN_INTROSPECT_EVERY",
        value_name = "LINKEDIN_INTROSPECT_EVERY",
        value_parser = super::parse_interval,
    )]
    pub introspect_every: Option<Duration>,

    /// The token introspection endpoint. Default: LinkedIn's
    /// (`https://www.linkedin.com/oauth/v2/introspectToken`), or the sandbox's.
    #[arg(
        long = "linkedin-introspection-url",
        env = "LINKEDIN_INTROSPECTION_URL",
        value_name = "LINKEDIN_INTROSPECTION_URL",
        hide_env_values = true,
        value_parser = super::parse_url,
    )]
    pub introspection_url: Option<Url>,
}

impl Oidc {
    /// The OpenID Connect client, when one was configured; an id without a secret (or the
    /// reverse) is an error.
    pub fn client(&self) -> Result<Option<(String, Secret)>, ConfigError> {
        match (&self.client_id, &self.client_secret) {
            (None, None) => Ok(None),
            (Some(id), Some(secret)) if !id.trim().is_empty() && !secret.expose().is_empty() => {
                Ok(Some((id.trim().to_owned(), secret.clone())))
            }
            (Some(id), Some(_)) if id.trim().is_empty() => {
                Err(ConfigError::new("LINKEDIN_CLIENT_ID", "must not be empty"))
            }
            (Some(_), Some(_)) => Err(ConfigError::new(
                "LINKEDIN_CLIENT_SECRET",
                "must not be empty",
            )),
            (Some(_), None) => Err(ConfigError::new(
                "LINKEDIN_CLIENT_SECRET",
                "is required when LINKEDIN_CLIENT_ID is set",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "LINKEDIN_CLIENT_ID",
                "is required when LINKEDIN_CLIENT_SECRET is set",
            )),
        }
    }
}
