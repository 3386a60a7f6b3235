//! A relying party of the sandbox's OpenID Connect provider, as another app would be one: the
//! server in sandbox mode with the party's client registered, a browser that follows no
//! redirect, and the provider's endpoints called over HTTP with none of the service's client
//! code (the authorization request, Allow on the consent form, the token endpoint, userinfo).
//! `sandbox_oidc` checks the provider with it, `sandbox_credentials` the credentials it grants.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use linkedin_token_exchange::Secret;
use linkedin_token_exchange::server::config::Config;
use serde_json::Value;
use url::Url;

use super::{TestApp, json_of, test_config};
use crate::oidc::{location, query, step_by_step};

/// The scope of an OpenID Connect sign-in.
pub const SCOPE: &str = "openid profile email";
/// The client secret of every relying party here.
pub const CLIENT_SECRET: &str = "sandbox-rp-secret-Zt4";
/// The `state` of every authorization request.
const STATE: &str = "sandbox-state";

/// A server in sandbox mode with an OpenID Connect client, and a browser that follows no
/// redirect.
pub struct RelyingParty {
    /// The server, in sandbox mode.
    pub app: TestApp,
    /// A browser that follows no redirect, with the app's cookie jar.
    pub browser: reqwest::Client,
    /// The client registered.
    pub client_id: &'static str,
}

impl RelyingParty {
    /// The server with `client_id` registered (its secret [`CLIENT_SECRET`]), and `change`
    /// made to its configuration.
    pub async fn start(client_id: &'static str, change: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config(&dir);
        config.oidc.client_id = Some(client_id.into());
        config.oidc.client_secret = Some(Secret::new(CLIENT_SECRET));
        change(&mut config);
        let app = TestApp::start(config, dir).await;
        let browser = step_by_step(&app);
        Self {
            app,
            browser,
            client_id,
        }
    }

    /// The app's callback, the redirect URI registered for the client.
    pub fn redirect_uri(&self) -> String {
        self.app.url("/auth/linkedin/callback")
    }

    /// The authorization request's parameters for `scope` (with a `nonce`, which the provider
    /// never echoes), plus `extra`.
    pub fn asked(&self, scope: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri().as_str()),
            ("scope", scope),
            ("state", STATE),
            ("nonce", "sandbox-nonce"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// `GET` the authorization endpoint for `scope`, with `extra` parameters: the consent
    /// page, or straight back to the app for a member who consented.
    pub async fn authorization(&self, scope: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut url = Url::parse(&self.app.url("/sandbox/oauth/v2/authorization")).unwrap();
        url.query_pairs_mut().extend_pairs(self.asked(scope, extra));
        self.browser.get(url).send().await.unwrap()
    }

    /// Allow on the consent form for `member` and `scope`, `extra` in the request: the code.
    pub async fn allow(&self, member: &str, scope: &str, extra: &[(&str, &str)]) -> String {
        let mut form = self.asked(scope, extra);
        form.push(("decision".into(), "allow".into()));
        form.push(("sandbox_member".into(), member.into()));
        let response = self
            .browser
            .post(self.app.url("/sandbox/oauth/v2/authorization"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
        self.code_in(&response)
    }

    /// The code of a redirect back to the app, which must carry the request's `state`.
    pub fn code_in(&self, response: &reqwest::Response) -> String {
        let back = location(response);
        assert!(back.as_str().starts_with(&self.redirect_uri()), "{back}");
        assert_eq!(query(&back)["state"], STATE);
        query(&back)["code"].clone()
    }

    /// `POST path` with the client's `client_id` and `client_secret` and `form`, whose
    /// fields replace those of the same name.
    pub async fn post_as_client(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let mut full = vec![
            ("client_id", self.client_id),
            ("client_secret", CLIENT_SECRET),
        ];
        for (name, value) in form {
            full.retain(|(field, _)| field != name);
            full.push((name, value));
        }
        let response = self
            .browser
            .post(self.app.url(path))
            .form(&full)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    /// The token endpoint, as the client, with `form`.
    pub async fn token_endpoint(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.post_as_client("/sandbox/oauth/v2/accessToken", form)
            .await
    }

    /// `code` traded at the token endpoint, with `changes` to the good form.
    pub async fn trade(&self, code: &str, changes: &[(&str, &str)]) -> (u16, Value) {
        let redirect_uri = self.redirect_uri();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri),
        ];
        form.extend_from_slice(changes);
        self.token_endpoint(&form).await
    }

    /// A good token answer for `member` and `scope`.
    pub async fn tokens(&self, member: &str, scope: &str) -> Value {
        let code = self.allow(member, scope, &[]).await;
        let (status, answer) = self.trade(&code, &[]).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// `GET path` with the bearer `token` and `headers`.
    pub async fn get_bearer(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.browser.get(self.app.url(path)).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// `GET /sandbox/v2/userinfo` with the bearer `token`.
    pub async fn userinfo(&self, token: &str) -> (u16, Value) {
        json_of(self.get_bearer("/sandbox/v2/userinfo", token, &[]).await).await
    }
}

/// The `access_token` of an answer (a token answer, the JSAPI's payload).
pub fn access_token(answer: &Value) -> &str {
    answer["access_token"].as_str().expect("an access_token")
}

/// The claims of a token answer's id_token, unverified (`sandbox_oidc` verifies them).
pub fn claims_of(answer: &Value) -> Value {
    use base64::Engine;
    let id_token = answer["id_token"].as_str().expect("an id_token");
    let payload = id_token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// The unix time, in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}
