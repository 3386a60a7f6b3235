//! One browser of a member, for the tests that drive several at once (sign out everywhere,
//! the member's own sessions): an HTTPS client with a cookie jar of its own that follows no
//! redirect, signing in through the sandbox with either flow.

use std::sync::Arc;

use reqwest::cookie::Jar;
use serde_json::{Value, json};

use super::{API_KEY, FetchJson, TestApp, encode_cookie, json_of, session_id_in};
use crate::oidc::{consent, start};

/// A client with its own cookie jar (and `User-Agent`, when given), following no redirects.
pub struct Device {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
}

impl Device {
    /// A device that sends no `User-Agent`.
    pub fn new(app: &TestApp) -> Self {
        Self::build(app, None)
    }

    /// A device that announces itself as `user_agent`.
    pub fn with_user_agent(app: &TestApp, user_agent: &str) -> Self {
        Self::build(app, Some(user_agent))
    }

    fn build(app: &TestApp, user_agent: Option<&str>) -> Self {
        let jar = Arc::new(Jar::default());
        let mut builder = super::client::trusting(&app.dir.path().join("cert.pem"))
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none());
        if let Some(user_agent) = user_agent {
            builder = builder.user_agent(user_agent);
        }
        Self {
            client: builder.build().unwrap(),
            jar,
        }
    }

    /// `GET /session` from this device.
    pub async fn session(&self, app: &TestApp) -> Value {
        self.client.get(app.url("/session")).fetch_json().await
    }

    /// This device's session id, from its cookie jar.
    pub fn session_id(&self, app: &TestApp) -> String {
        session_id_in(&self.jar, &app.base).expect("a session cookie")
    }

    /// Signs `member` in through the sandbox's OpenID Connect provider; the member id the
    /// app gives them (the provider's pairwise subject).
    pub async fn sign_in_oidc(&self, app: &TestApp, member: &str) -> String {
        let authorization = start(app, &self.client).await;
        let callback = consent(&self.client, &authorization, "allow", member).await;
        let response = self.client.get(callback).send().await.unwrap();
        assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
        let session = self.session(app).await;
        assert_eq!(session["flow"], "oidc", "{session}");
        session["member_id"].as_str().unwrap().to_owned()
    }

    /// Signs `member_id` in through the sandbox's JSAPI cookie and the exchange.
    pub async fn sign_in_jsapi(&self, app: &TestApp, member_id: &str) {
        let payload: Value = self
            .client
            .post(app.url("/sandbox/oauth2/authorize"))
            .form(&[("api_key", API_KEY), ("member_id", member_id)])
            .fetch_json()
            .await;
        app.set_jsapi_cookie(&self.jar, &encode_cookie(&payload.to_string()));
        self.exchange(app).await;
    }

    /// `GET path` from this device: the status and the JSON body.
    pub async fn get_json(&self, app: &TestApp, path: &str) -> (u16, Value) {
        json_of(self.client.get(app.url(path)).send().await.unwrap()).await
    }

    /// `GET /auth/check` from this device (what the proxy asks).
    pub async fn auth_check(&self, app: &TestApp) -> reqwest::Response {
        self.client
            .get(app.url("/auth/check"))
            .send()
            .await
            .unwrap()
    }

    /// A `method` request for `path` from this device, sent from the page's origin (as the
    /// page's own script sends a state-changing call).
    pub fn request_from_the_page(
        &self,
        app: &TestApp,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, app.url(path))
            .header("origin", &app.base)
    }

    /// `POST /token-exchange` from the page's origin with the JSAPI cookie this device holds,
    /// which must connect.
    pub async fn exchange(&self, app: &TestApp) {
        let response = self
            .request_from_the_page(app, reqwest::Method::POST, "/token-exchange")
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("connected")),
            "{body}"
        );
    }
}
