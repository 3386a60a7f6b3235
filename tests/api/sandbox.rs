//! The sandbox as LinkedIn: each `oauth_problem` it answers, for requests signed by the
//! client's code and by deliberately wrong variants.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use linkedin_token_exchange::__private::{LinkedInClient, LinkedInEndpoints};
use linkedin_token_exchange::Secret;
use linkedin_token_exchange::UpstreamError;
use oauth1_request::Credentials;
use oauth1_request::signature_method::HmacSha1;

use crate::support::{API_KEY, SECRET_KEY, TestApp, spawn_app, test_config};

fn client(app: &TestApp, key: &str, secret: &str) -> LinkedInClient {
    let endpoints = LinkedInEndpoints {
        access_token_url: app.url("/sandbox/uas/oauth/accessToken").parse().unwrap(),
        api_url: app.url("/sandbox").parse().unwrap(),
        timeout: std::time::Duration::from_secs(5),
    };
    let pem = std::fs::read(app.dir.path().join("cert.pem")).unwrap();
    let roots = reqwest::Certificate::from_pem_bundle(&pem).unwrap();
    LinkedInClient::new(&endpoints, key, &Secret::new(secret), &roots).unwrap()
}

/// A JSAPI access token issued by the sandbox for `member`.
async fn jsapi_token(app: &TestApp, member: &str) -> String {
    app.authorize_payload(member).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn problem(result: Result<impl std::fmt::Debug, UpstreamError>) -> String {
    match result {
        Err(UpstreamError::Rejected {
            status: 401,
            problem,
        }) => problem,
        other => panic!("expected a 401 oauth_problem, got {other:?}"),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[derive(oauth1_request::Request)]
struct Exchange<'a> {
    xoauth_oauth2_access_token: Option<&'a str>,
}

/// Sends an exchange signed by hand for `token`, with nonce and timestamp pinned; the body
/// sent is `body` when given (a tampered request), else the signed one.
async fn hand_signed_exchange(
    app: &TestApp,
    token: Option<&str>,
    nonce: &str,
    timestamp: u64,
    body: Option<String>,
) -> (u16, String) {
    let url = app.url("/sandbox/uas/oauth/accessToken");
    let params = Exchange {
        xoauth_oauth2_access_token: token,
    };
    let mut builder = oauth1_request::Builder::<_, _>::new(
        Credentials::new(API_KEY, SECRET_KEY),
        HmacSha1::new(),
    );
    builder.nonce(nonce).timestamp(NonZeroU64::new(timestamp));
    let authorization = builder.post(&url, &params);
    let response = app
        .client
        .post(url)
        .header("authorization", authorization)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.unwrap_or_else(|| oauth1_request::to_form(&params)))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_clients_signed_exchange_is_granted_and_the_token_opens_the_profile() {
    let app = spawn_app().await;
    let token = jsapi_token(&app, "SandboxAda").await;
    let linkedin = client(&app, API_KEY, SECRET_KEY);
    let creds = linkedin.exchange_token(&token).await.unwrap();
    assert_eq!(creds.expires_in, 5_183_999);
    assert_eq!(creds.token.len(), 36, "a uuid");
    let profile = linkedin.profile(&creds.token, &creds.secret).await.unwrap();
    assert_eq!(profile["id"], "SandboxAda");
    assert_eq!(
        profile["headline"],
        "Analyst of the Analytical Engine (sandbox member)"
    );
    assert!(
        profile["siteStandardProfileRequest"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
}

#[tokio::test]
async fn a_still_valid_jsapi_token_may_be_exchanged_again() {
    let app = spawn_app().await;
    let token = jsapi_token(&app, "SandboxAda").await;
    let linkedin = client(&app, API_KEY, SECRET_KEY);
    let first = linkedin.exchange_token(&token).await.unwrap();
    let second = linkedin.exchange_token(&token).await.unwrap();
    assert_ne!(first.token, second.token);
}

#[tokio::test]
async fn a_wrong_secret_is_signature_invalid() {
    let app = spawn_app().await;
    let token = jsapi_token(&app, "SandboxAda").await;
    let result = client(&app, API_KEY, "not-the-secret")
        .exchange_token(&token)
        .await;
    assert_eq!(problem(result), "signature_invalid");
}

#[tokio::test]
async fn an_unknown_consumer_key_is_consumer_key_unknown() {
    let app = spawn_app().await;
    let token = jsapi_token(&app, "SandboxAda").await;
    let result = client(&app, "someOtherApp", SECRET_KEY)
        .exchange_token(&token)
        .await;
    assert_eq!(problem(result), "consumer_key_unknown");
}

#[tokio::test]
async fn a_token_the_sandbox_did_not_issue_is_token_rejected() {
    let app = spawn_app().await;
    let result = client(&app, API_KEY, SECRET_KEY)
        .exchange_token("never-issued")
        .await;
    assert_eq!(problem(result), "token_rejected");
}

#[tokio::test]
async fn a_stale_timestamp_is_timestamp_refused() {
    let app = spawn_app().await;
    let token = jsapi_token(&app, "SandboxAda").await;
    let (status, body) =
        hand_signed_exchange(&app, Some(&token), "n-stale", now() - 301, None).await;
    assert_eq!(status, 401);
    assert!(
        body.starts_with("oauth_problem=timestamp_refused&oauth_problem_advice="),
        "{body}"
    );
    let (status, _) = hand_signed_exchange(&app, Some(&token), "n-near", now() - 200, None).await;
    assert_eq!(status, 200, "within the window");
}

#[tokio::test]
async fn a_replayed_nonce_is_nonce_used() {
    let app = spawn_app().await;
    let token = jsapi_token(&app, "SandboxAda").await;
    let timestamp = now();
    let (status, body) =
        hand_signed_exchange(&app, Some(&token), "once-only", timestamp, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("oauth_token_secret="));
    let (status, body) =
        hand_signed_exchange(&app, Some(&token), "once-only", timestamp, None).await;
    assert_eq!(status, 401);
    assert!(body.starts_with("oauth_problem=nonce_used"), "{body}");
}

#[tokio::test]
async fn a_missing_access_token_parameter_is_parameter_absent() {
    let app = spawn_app().await;
    let (status, body) = hand_signed_exchange(&app, None, "n-absent", now(), None).await;
    assert_eq!(status, 401);
    assert!(body.starts_with("oauth_problem=parameter_absent"), "{body}");
    assert!(body.contains("xoauth_oauth2_access_token"), "{body}");
}

#[tokio::test]
async fn a_tampered_body_is_signature_invalid() {
    let app = spawn_app().await;
    let token = jsapi_token(&app, "SandboxAda").await;
    let other = jsapi_token(&app, "someone-else").await;
    // Signed for one JSAPI token, sent with another.
    let tampered = format!("xoauth_oauth2_access_token={other}");
    let (status, body) =
        hand_signed_exchange(&app, Some(&token), "n-tampered", now(), Some(tampered)).await;
    assert_eq!(status, 401);
    assert!(
        body.starts_with("oauth_problem=signature_invalid"),
        "{body}"
    );
}

#[tokio::test]
async fn the_profile_refuses_a_wrong_token_secret_with_linkedins_json_error() {
    let app = spawn_app().await;
    let token = jsapi_token(&app, "SandboxAda").await;
    let linkedin = client(&app, API_KEY, SECRET_KEY);
    let creds = linkedin.exchange_token(&token).await.unwrap();
    let result = linkedin.profile(&creds.token, &Secret::new("wrong")).await;
    let problem = problem(result);
    assert!(problem.contains("signature_invalid"), "{problem}");

    let response = app.get("/sandbox/v1/people/~?format=json").await;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 401);
    assert_eq!(body["errorCode"], 0);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("parameter_absent")
    );
}

#[tokio::test]
async fn authorize_refuses_an_unknown_api_key_and_signs_with_the_apps_secret() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/sandbox/oauth2/authorize"))
        .form(&[("api_key", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let raw = app.authorize("").await;
    let cookie = linkedin_token_exchange::__private::JsapiCookie::parse(&raw)
        .unwrap()
        .verify(SECRET_KEY.as_bytes())
        .unwrap();
    assert_eq!(
        cookie.member_id(),
        linkedin_token_exchange::sandbox::DEFAULT_MEMBER_ID
    );
}

#[tokio::test]
async fn a_sandbox_without_keep_alive_answers_over_http1_closes_each_connection_and_still_exchanges()
 {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.linkedin.sandbox_keep_alive = false;
    let app = TestApp::start(config, dir).await;

    // The test client offers HTTP/2 first; the server offers HTTP/1.1 only, then closes.
    let health = app.get("/healthz").await;
    assert_eq!(health.version(), reqwest::Version::HTTP_11);
    assert_eq!(health.headers()["connection"], "close");

    // The exchange: this server's upstream is its own sandbox, over a connection of its own.
    app.sign_in("SandboxAda").await;
    let (status, body) = app.exchange().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "connected", "{body}");
    assert_eq!(app.session().await["member_id"], "SandboxAda");
    assert_eq!(app.sandbox_stats().await["exchanges_accepted"], 1);
}
