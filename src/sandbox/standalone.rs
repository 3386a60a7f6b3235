//! `linkedin-token-exchange sandbox`: the emulated LinkedIn alone, for apps in any language to
//! test against. [`app`] serves the sandbox's routes (with its stylesheet and health checks)
//! and lets pages of other origins call the JSAPI side; [`Registration`] is what it
//! registered, printed for the app under test; [`index`] is the page at `/` that names its
//! endpoints and registration (never a secret) for the person who opens the URL it logs.

use std::path::PathBuf;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::http::Method;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::response::Html;
use axum::routing::get;
use tower_http::cors::{Any, CorsLayer};

use super::DEFAULT_MEMBER_ID;
use super::oidc::RedirectUris;
use crate::secret::Secret;

/// The index page's policy: its stylesheet, nothing else (no script, no form).
const INDEX_POLICY: &str = "default-src 'none'; style-src 'self'; img-src data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the standalone sandbox registered: the values an app under test configures.
#[derive(Debug)]
pub(crate) struct Registration {
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
    /// The authorization endpoint (the consent page), where browsers are sent: on the first
    /// public origin.
    pub authorization_endpoint: String,
}

impl Registration {
    /// `KEY=VALUE` lines, named as this service's own variables, so that the output can be
    /// read as a `.env` file by the app under test. Secrets that came from the environment are
    /// not repeated.
    pub(crate) fn env_lines(&self) -> Vec<String> {
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

/// The page at `/`: what [`Registration::env_lines`] prints, but for a person, without the
/// secrets, and with how to pick a member and drive the consent form from a test.
#[derive(Template)]
#[template(path = "sandbox_index.html")]
struct IndexPage<'a> {
    reg: &'a Registration,
    /// The one redirect URI registered, or none when any loopback one is admitted.
    registered_redirect: Option<&'a str>,
    ca_cert: String,
    default_member: &'static str,
}

/// `GET /`: the index page of `registration`, rendered once.
pub(crate) fn index(registration: &Registration) -> Router {
    let page = Bytes::from(index_page(registration));
    Router::new().route(
        "/",
        get(move || {
            let page = page.clone();
            async move {
                (
                    [
                        (CONTENT_SECURITY_POLICY, INDEX_POLICY),
                        (CACHE_CONTROL, "no-cache"),
                        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    Html(page),
                )
            }
        }),
    )
}

fn index_page(registration: &Registration) -> String {
    IndexPage {
        reg: registration,
        registered_redirect: match &registration.redirect_uris {
            RedirectUris::Registered(uri) => Some(uri),
            RedirectUris::AnyLoopback => None,
        },
        ca_cert: registration.ca_cert.display().to_string(),
        default_member: DEFAULT_MEMBER_ID,
    }
    .render()
    .unwrap_or_else(|err| format!("the sandbox's index page could not be rendered: {err}"))
}

/// The standalone sandbox: `routes` (the sandbox under `/sandbox`) plus `others` (the
/// stylesheet its consent page links, the health checks), open to cross-origin calls so that
/// the JSAPI script works on the pages of the app under test.
pub(crate) fn app(routes: Router, others: Router) -> Router {
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
            authorization_endpoint: "https://localhost:9443/sandbox/oauth/v2/authorization"
                .to_owned(),
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
    fn the_index_page_names_the_registration_but_never_a_secret() {
        let page = index_page(&registration(true));
        for named in [
            "sandbox-client-x",
            "sandboxkey",
            "https://localhost:9443/sandbox/oauth/.well-known/openid-configuration",
            "https://localhost:9443/sandbox/oauth/v2/authorization",
            "https://localhost:9443/sandbox/oauth/v2/accessToken",
            "https://localhost:9443/sandbox/oauth/openid/jwks",
            "https://localhost:9443/sandbox/v2/userinfo",
            "https://localhost:9443/sandbox/in.js",
            "any http(s) URL on localhost",
            "/tmp/cert.pem",
        ] {
            assert!(page.contains(named), "{named} in {page}");
        }
        assert!(!page.contains("client-secret") && !page.contains("jsapi-secret"));
        let mut one = registration(false);
        one.redirect_uris = RedirectUris::Registered("http://localhost:3000/cb?a=1&b=<2>".into());
        let page = index_page(&one);
        assert!(
            page.contains("exactly <code>http://localhost:3000/cb?a=1&#38;b=&#60;2&#62;</code>"),
            "escaped: {page}"
        );
    }

    #[test]
    fn secrets_from_the_environment_are_not_repeated() {
        let text = registration(false).env_lines().join("\n");
        assert!(!text.contains("client-secret") && !text.contains("jsapi-secret"));
        assert!(text.contains("# LINKEDIN_CLIENT_SECRET: as set in the environment"));
        assert!(text.contains("# LINKEDIN_SECRET_KEY: as set in the environment"));
    }
}
