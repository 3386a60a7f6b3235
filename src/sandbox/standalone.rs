//! `linkedin-token-exchange sandbox`: the emulated LinkedIn alone, for apps in any language to
//! test against. [`app`] serves the sandbox's routes (with its stylesheet and health checks)
//! and lets pages of other origins call the JSAPI side; [`Registration`] is what it
//! registered, printed for the app under test.

use std::path::PathBuf;

use axum::Router;
use axum::http::Method;
use tower_http::cors::{Any, CorsLayer};

use super::oidc::RedirectUris;
use crate::secret::Secret;

/// What the standalone sandbox registered: the values an app under test configures.
#[derive(Debug)]
pub struct Registration {
    /// The sandbox's base URL (`https://localhost:PORT/sandbox`).
    pub base: String,
    /// The OpenID Connect issuer.
    pub issuer: String,
    /// The OpenID Connect client id.
    pub client_id: String,
    /// The client secret: printed only when the sandbox made it up.
    pub client_secret: Option<Secret>,
    /// The redirect URIs the provider sends codes to.
    pub redirect_uris: RedirectUris,
    /// The JSAPI API key.
    pub api_key: String,
    /// The JSAPI secret key: printed only when the sandbox made it up.
    pub secret_key: Option<Secret>,
    /// The certificate the sandbox serves (the app under test trusts it).
    pub ca_cert: PathBuf,
}

impl Registration {
    /// `KEY=VALUE` lines, named as this service's own variables, so that the output can be
    /// read as a `.env` file by the app under test. Secrets that came from the environment are
    /// not repeated.
    pub fn env_lines(&self) -> Vec<String> {
        let from_env = |name: &str| format!("# {name}: as set in the environment");
        let mut lines = vec![
            format!("LINKEDIN_OIDC_ISSUER={}", self.issuer),
            format!("LINKEDIN_CLIENT_ID={}", self.client_id),
            match &self.client_secret {
                Some(secret) => format!("LINKEDIN_CLIENT_SECRET={}", secret.expose()),
                None => from_env("LINKEDIN_CLIENT_SECRET"),
            },
        ];
        lines.push(match &self.redirect_uris {
            RedirectUris::Registered(uri) => format!("LINKEDIN_OIDC_REDIRECT_URL={uri}"),
            RedirectUris::AnyLoopback => {
                "# LINKEDIN_OIDC_REDIRECT_URL: any http(s) URL on localhost, 127.0.0.1 or [::1]"
                    .to_owned()
            }
        });
        lines.extend([
            format!("LINKEDIN_API_KEY={}", self.api_key),
            match &self.secret_key {
                Some(secret) => format!("LINKEDIN_SECRET_KEY={}", secret.expose()),
                None => from_env("LINKEDIN_SECRET_KEY"),
            },
            format!("LINKEDIN_JSAPI_URL={}/in.js", self.base),
            format!(
                "LINKEDIN_ACCESS_TOKEN_URL={}/uas/oauth/accessToken",
                self.base
            ),
            format!("LINKEDIN_API_URL={}", self.base),
            format!("UPSTREAM_CA_CERT={}", self.ca_cert.display()),
        ]);
        lines
    }
}

/// The standalone sandbox: `routes` (the sandbox under `/sandbox`) plus `others` (the
/// stylesheet its consent page links, the health checks), open to cross-origin calls so that
/// the JSAPI script works on the pages of the app under test.
pub fn app(routes: Router, others: Router) -> Router {
    routes.merge(others).layer(
        CorsLayer::new()
            .allow_origin(Any)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(Any),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(generated: bool) -> Registration {
        Registration {
            base: "https://localhost:9443/sandbox".to_owned(),
            issuer: "https://localhost:9443/sandbox/oauth".to_owned(),
            client_id: "sandbox-client-x".to_owned(),
            client_secret: generated.then(|| Secret::new("client-secret".to_owned())),
            redirect_uris: RedirectUris::AnyLoopback,
            api_key: "sandboxkey".to_owned(),
            secret_key: generated.then(|| Secret::new("jsapi-secret".to_owned())),
            ca_cert: PathBuf::from("/tmp/cert.pem"),
        }
    }

    #[test]
    fn made_up_secrets_are_printed_as_env_lines() {
        let lines = registration(true).env_lines();
        for expected in [
            "LINKEDIN_OIDC_ISSUER=https://localhost:9443/sandbox/oauth",
            "LINKEDIN_CLIENT_ID=sandbox-client-x",
            "LINKEDIN_CLIENT_SECRET=client-secret",
            "LINKEDIN_API_KEY=sandboxkey",
            "LINKEDIN_SECRET_KEY=jsapi-secret",
            "LINKEDIN_ACCESS_TOKEN_URL=https://localhost:9443/sandbox/uas/oauth/accessToken",
            "UPSTREAM_CA_CERT=/tmp/cert.pem",
        ] {
            assert!(
                lines.iter().any(|l| l == expected),
                "{expected} in {lines:?}"
            );
        }
    }

    #[test]
    fn secrets_from_the_environment_are_not_repeated() {
        let text = registration(false).env_lines().join("\n");
        assert!(!text.contains("client-secret") && !text.contains("jsapi-secret"));
        assert!(text.contains("# LINKEDIN_CLIENT_SECRET: as set in the environment"));
        assert!(text.contains("# LINKEDIN_SECRET_KEY: as set in the environment"));
    }
}
