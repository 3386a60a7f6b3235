//! The member's credentials at work (issue 30; SPEC "Credentials at work"), through the real
//! HTTP interfaces: the pass-through `/linkedin/api/<path>` and `GET /me` sign each call with
//! the member's credentials and type LinkedIn's refusals; a 401 ends every session holding the
//! token, in every store, and the browser hears why; `/session` says when the token expires;
//! `PASS_ACCESS_TOKEN` hands an OpenID Connect token to the proxy; a host's own client
//! (`LinkedInSignIn::api`) reports 426 and 429 as typed errors; the page says "LinkedIn
//! access was withdrawn" in Chromium.
//!
//! LinkedIn's side is the fake of `support::linkedin_api` (the API, answering as each test
//! says), the service's sandbox (sign-in, and the OAuth 1.0a signature checked by code that
//! shares nothing with the client), or both. What LinkedIn does, with its sources:
//! - 401 to a token the member withdrew (learn.microsoft.com, "Token Introspection": such a
//!   token is `revoked`; the API refuses it);
//! - 403 `ACCESS_DENIED` "Not enough permissions to access: …" for a call the app's products
//!   do not grant (linkedin-api-python-client PR #60: `/v2/me` with OpenID Connect only);
//! - 426 `NONEXISTENT_VERSION` for a retired `LinkedIn-Version` (n8n #28660, Composio #3231);
//! - 429 when a quota is used up, the daily ones reset at midnight UTC (learn.microsoft.com,
//!   "API Rate Limiting").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use linkedin_token_exchange::Secret;
use linkedin_token_exchange::server::config::Config;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::device::Device;
use crate::support::linkedin_api::{Answer, FakeApi, token_of};
use crate::support::stores::{
    Store, config_on, memory, per_store, postgres, redis, sqlite, unique,
};
use crate::support::{
    API_KEY, FetchJson, SECRET_KEY, TestApp, assert_json_error, assert_withdrawn, error_code,
    json_of, raw_tls, signed_cookie, test_config, withdrawn_session,
};

/// The admin token of the store tests.
const ADMIN: &str = "credentials-test-admin-token-0123456789";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// One browser: a [`Device`] (the sandbox's flows), which also signs in in real mode and
/// reads raw answers.
struct Browser(Device);

impl std::ops::Deref for Browser {
    type Target = Device;

    fn deref(&self) -> &Device {
        &self.0
    }
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser(Device::new(app))
    }

    /// Signs `member` in with a JSAPI cookie signed for `access_token` (real mode: the fake
    /// exchange grants `tok-<access_token>`).
    async fn sign_in_real_jsapi(&self, app: &TestApp, access_token: &str, member: &str) {
        app.set_jsapi_cookie(&self.jar, &signed_cookie(access_token, member, SECRET_KEY));
        self.exchange(app).await;
    }

    /// `GET path`: the status, headers and body.
    async fn get(&self, app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let response = self.client.get(app.url(path)).send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, headers, response.text().await.unwrap())
    }
}

/// The sandbox app (both flows), whose REST base is `api`, with `allow` as
/// `LINKEDIN_API_ALLOW` when given, and `change` made to its configuration.
async fn sandbox_app(
    api: &FakeApi,
    allow: Option<&str>,
    change: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    api.serve_the_api(&mut config);
    if let Some(allow) = allow {
        config.api.api_allow = allow.to_owned();
    }
    change(&mut config);
    TestApp::start(config, dir).await
}

/// The app in real mode: the JSAPI exchange and the REST base are `api`.
async fn jsapi_app(api: &FakeApi, change: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    api.serve_jsapi(&mut config);
    change(&mut config);
    TestApp::start(config, dir).await
}

// ---------------------------------------------------------------------------------------
// The pass-through.

#[tokio::test]
async fn the_pass_through_calls_linkedin_as_an_openid_connect_member_with_the_rest_li_headers() {
    let api = FakeApi::start().await;
    let app = sandbox_app(
        &api,
        Some("GET /v2/userinfo,GET /rest/posts,POST /rest/posts"),
        |config| config.api.api_version = "202611".into(),
    )
    .await;
    let browser = Browser::new(&app);
    browser.sign_in_oidc(&app, "ada").await;

    // An unversioned API: the bearer token, no version header.
    let (status, headers, body) = browser.get(&app, "/linkedin/api/v2/userinfo").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/v2/userinfo");
    let seen = api.calls().pop().unwrap();
    let token = seen
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("a bearer token")
        .to_owned();
    assert!(!token.is_empty() && token != browser.session_id(&app));
    assert_eq!(seen.header("linkedin-version"), None);
    assert_eq!(seen.header("x-restli-protocol-version"), None);
    // The browser's cookies never reach LinkedIn.
    assert_eq!(seen.header("cookie"), None);

    // A versioned one: LINKEDIN_API_VERSION and Rest.li 2.0.0; the query as sent.
    let query = "q=author&author=urn%3Ali%3Aperson%3A42&count=10";
    let (status, headers, body) = browser
        .get(&app, &format!("/linkedin/api/rest/posts?{query}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        headers["x-restli-id"]
            .to_str()
            .unwrap()
            .starts_with("echo-")
    );
    let seen = api.calls().pop().unwrap();
    assert_eq!(seen.path, "/rest/posts");
    assert_eq!(seen.query.as_deref(), Some(query));
    assert_eq!(seen.header("linkedin-version"), Some("202611"));
    assert_eq!(seen.header("x-restli-protocol-version"), Some("2.0.0"));
    assert_eq!(token_of(&seen.headers).as_deref(), Some(token.as_str()));

    // A POST from the page: its body, type and Rest.li method go on; X-RestLi-Id comes back.
    api.answer(Answer::Status {
        status: 201,
        content_type: "application/json",
        headers: vec![("x-restli-id", "urn:li:share:7".into())],
        body: "{}".into(),
    });
    let post = json!({"author": "urn:li:person:42", "commentary": "Hello"});
    let response = browser
        .request_from_the_page(&app, Method::POST, "/linkedin/api/rest/posts")
        .header("x-restli-method", "CREATE")
        .json(&post)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-restli-id"], "urn:li:share:7");
    let seen = api.calls().pop().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("x-restli-method"), Some("CREATE"));
    assert_eq!(serde_json::from_slice::<Value>(&seen.body).unwrap(), post);

    // Any other answer of LinkedIn's is handed on as it came, even a plain-text 404.
    api.answer(Answer::Status {
        status: 404,
        content_type: "text/plain",
        headers: Vec::new(),
        body: "no such post".into(),
    });
    let (status, headers, body) = browser.get(&app, "/linkedin/api/rest/posts/9").await;
    assert_eq!((status, body.as_str()), (404, "no such post"));
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(browser.session(&app).await["connected"], true);
}

#[tokio::test]
async fn a_call_outside_the_allow_list_is_refused_before_linkedin_sees_anything() {
    let api = FakeApi::start().await;
    // The default allow-list: GET /v2/userinfo and GET /v1/people/~.
    let app = sandbox_app(&api, None, |_| {}).await;
    let browser = Browser::new(&app);
    browser.sign_in_oidc(&app, "ada").await;

    for path in [
        "/linkedin/api/v2/me",
        "/linkedin/api/v2/userinfoX",
        "/linkedin/api/rest/posts",
        "/linkedin/api/v2/memberships",
    ] {
        let (status, body) = browser.get_json(&app, path).await;
        assert_eq!(
            (status, error_code(&body)),
            (403, "api_path_not_allowed"),
            "{path}: {body}"
        );
    }
    let message = browser.get_json(&app, "/linkedin/api/v2/me").await.1["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("LINKEDIN_API_ALLOW"), "{message}");
    // An allowed path with a method the list does not name.
    let response = browser
        .request_from_the_page(&app, Method::POST, "/linkedin/api/v2/userinfo")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "api_path_not_allowed"),
        "{body}"
    );

    // Paths that would leave the API, written by hand (a client library would normalise
    // them): dot segments, encoded or not, an encoded slash, an absolute URL.
    let cookie = format!("__Host-lte_session={}", browser.session_id(&app));
    for path in [
        "/linkedin/api/v2/../admin",
        "/linkedin/api/v2/userinfo/..",
        "/linkedin/api/v2/%2e%2E/userinfo",
        "/linkedin/api/v2%2Fuserinfo",
        "/linkedin/api/v2/userinfo%2f..%2fme",
        "/linkedin/api/https://evil.example/v2/userinfo",
        "/linkedin/api//evil.example/v2/userinfo",
        "/linkedin/api/v2/userinfo%5C..",
    ] {
        let (status, body) = raw_get(&app, path, &cookie).await;
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: {body}"));
        assert_eq!(
            (status, error_code(&body)),
            (403, "api_path_not_allowed"),
            "{path}: {body}"
        );
    }

    assert_eq!(api.calls().len(), 0, "LinkedIn saw nothing");
    assert_eq!(browser.session(&app).await["connected"], true);
    // The one allowed call does go through.
    let (status, _, _) = browser.get(&app, "/linkedin/api/v2/userinfo").await;
    assert_eq!((status, api.calls().len()), (200, 1));
}

/// `GET path` written by hand over TLS with `cookie`: the status and the body.
async fn raw_get(app: &TestApp, path: &str, cookie: &str) -> (u16, String) {
    let mut stream = raw_tls(&app.dir, app.addr, b"http/1.1").await;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .ok();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no status in {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // The body may be chunked: the JSON object within.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.find('{')
            .and_then(|start| body.rfind('}').map(|end| body[start..=end].to_owned()))
            .unwrap_or_default()
    } else {
        body.to_owned()
    };
    (status, body)
}

#[tokio::test]
async fn without_a_member_the_pass_through_is_not_connected_and_calls_nothing() {
    let api = FakeApi::start().await;
    let app = sandbox_app(&api, None, |_| {}).await;
    let stranger = Browser::new(&app);
    let (status, body) = stranger.get_json(&app, "/linkedin/api/v2/userinfo").await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "not_connected"),
        "{body}"
    );
    assert_eq!(api.calls().len(), 0);
}

#[tokio::test]
async fn a_state_changing_call_needs_the_page_s_origin() {
    let api = FakeApi::start().await;
    let app = sandbox_app(&api, Some("POST /rest/posts,DELETE /rest/posts/"), |_| {}).await;
    let browser = Browser::new(&app);
    browser.sign_in_oidc(&app, "ada").await;
    let attempts = [
        browser.client.post(app.url("/linkedin/api/rest/posts")),
        browser
            .client
            .post(app.url("/linkedin/api/rest/posts"))
            .header("origin", "https://evil.example"),
        browser
            .client
            .delete(app.url("/linkedin/api/rest/posts/urn%3Ali%3Ashare%3A7"))
            .header("origin", "https://evil.example"),
    ];
    for attempt in attempts {
        let (status, body) = json_of(attempt.json(&json!({})).send().await.unwrap()).await;
        assert_eq!((status, error_code(&body)), (403, "cross_origin"), "{body}");
    }
    assert_eq!(api.calls().len(), 0);
    // From the page, it goes.
    let response = browser
        .request_from_the_page(
            &app,
            Method::DELETE,
            "/linkedin/api/rest/posts/urn%3Ali%3Ashare%3A7",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = api.calls().pop().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("DELETE", "/rest/posts/urn%3Ali%3Ashare%3A7")
    );
}

#[tokio::test]
async fn the_sign_in_rate_limit_applies_to_the_pass_through() {
    let api = FakeApi::start().await;
    let app = sandbox_app(&api, None, |config| {
        config.limits.rate_limit = "4,1".parse().unwrap();
    })
    .await;
    let browser = Browser::new(&app);
    browser.sign_in_oidc(&app, "ada").await;
    let mut answered = Vec::new();
    for _ in 0..10 {
        let response = browser
            .client
            .get(app.url("/linkedin/api/v2/userinfo"))
            .send()
            .await
            .unwrap();
        let retry_after = response.headers().get("retry-after").cloned();
        let (status, body) = json_of(response).await;
        if status == 429 {
            assert_eq!(error_code(&body), "rate_limited", "{body}");
            assert!(retry_after.is_some());
        }
        answered.push(status);
    }
    let passed = answered.iter().filter(|s| **s == 200).count();
    assert!(answered.contains(&429), "{answered:?}");
    assert!(passed <= 6, "{answered:?}");
    assert_eq!(api.calls().len(), passed, "a limited call reaches no one");
}

#[tokio::test]
async fn a_member_s_credentials_go_only_to_the_api_of_their_flow() {
    let api = FakeApi::start().await;
    let app = sandbox_app(&api, Some("GET /v2/userinfo,GET /v1/people/~"), |_| {}).await;
    // OpenID Connect's bearer token is not for LinkedIn's v1 API.
    let oidc = Browser::new(&app);
    oidc.sign_in_oidc(&app, "ada").await;
    let (status, body) = oidc.get_json(&app, "/linkedin/api/v1/people/~").await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "api_path_not_allowed"),
        "{body}"
    );
    // The JSAPI's OAuth 1.0a credentials are for nothing but v1.
    let jsapi = Browser::new(&app);
    jsapi.sign_in_jsapi(&app, "Grace").await;
    let (status, body) = jsapi.get_json(&app, "/linkedin/api/v2/userinfo").await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "api_path_not_allowed"),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("JSAPI"),
        "{body}"
    );
    assert_eq!(api.calls().len(), 0);
    assert_eq!(oidc.session(&app).await["connected"], true);
    assert_eq!(jsapi.session(&app).await["connected"], true);
}

#[tokio::test]
async fn linkedin_s_refusals_come_back_typed_and_end_no_session() {
    let api = FakeApi::start().await;
    let app = sandbox_app(&api, Some("GET /rest/"), |config| {
        config.api.api_version = "202611".into();
    })
    .await;
    let browser = Browser::new(&app);
    browser.sign_in_oidc(&app, "ada").await;
    let call = "/linkedin/api/rest/posts?q=author";

    // 403: the app lacks the product; LinkedIn's words are carried.
    api.answer(Answer::json(
        403,
        json!({"serviceErrorCode": 100, "code": "ACCESS_DENIED",
               "message": "Not enough permissions to access: partnerApiPostsExternal.GET.20261101",
               "status": 403}),
    ));
    let (status, body) = browser.get_json(&app, call).await;
    assert_json_error(
        status,
        &body,
        (403, "linkedin_forbidden"),
        "Not enough permissions to access",
    );

    // 426: a retired version; the answer names the setting and the version sent.
    api.answer(Answer::json(
        426,
        json!({"status": 426, "code": "NONEXISTENT_VERSION",
               "message": "Requested version 20261100 is not active"}),
    ));
    let (status, body) = browser.get_json(&app, call).await;
    assert_eq!(
        (status, error_code(&body)),
        (502, "linkedin_version_retired"),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("LINKEDIN_API_VERSION")
            && message.contains("202611")
            && message.contains("NONEXISTENT_VERSION"),
        "{message}"
    );

    // 429 with LinkedIn's Retry-After, and without (until midnight UTC).
    api.answer(Answer::Status {
        status: 429,
        content_type: "application/json",
        headers: vec![("retry-after", "37".into())],
        body: json!({"status": 429, "message": "Resource level throttle limit reached"})
            .to_string(),
    });
    let response = browser.client.get(app.url(call)).send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "37");
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, error_code(&body)),
        (429, "linkedin_rate_limited"),
        "{body}"
    );
    api.answer(Answer::json(429, json!({"status": 429})));
    let response = browser.client.get(app.url(call)).send().await.unwrap();
    let retry: i64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let midnight = 86_400 - now().rem_euclid(86_400);
    assert!(
        (midnight - 5..=midnight + 1).contains(&retry),
        "{retry} vs {midnight}"
    );

    // 5xx and silence: today's upstream errors.
    api.answer(Answer::json(503, json!({"status": 503})));
    let (status, body) = browser.get_json(&app, call).await;
    assert_eq!(
        (status, error_code(&body)),
        (502, "upstream_unavailable"),
        "{body}"
    );
    api.answer(Answer::Hang);
    let (status, body) = browser.get_json(&app, call).await;
    assert_eq!(
        (status, error_code(&body)),
        (504, "upstream_timeout"),
        "{body}"
    );

    assert_eq!(api.calls().len(), 6);
    assert_eq!(
        browser.session(&app).await["connected"],
        true,
        "no session ended"
    );
}

#[tokio::test]
async fn the_sandbox_verifies_the_pass_through_s_oauth_1_0a_signature_query_included() {
    // The sandbox is LinkedIn here, its API too: its verifier shares no code with the client.
    let app = crate::support::spawn_app().await;
    let browser = Browser::new(&app);
    browser.sign_in_jsapi(&app, "SandboxAda").await;
    for path in [
        "/linkedin/api/v1/people/~",
        "/linkedin/api/v1/people/~?format=json",
        "/linkedin/api/v1/people/~?format=json&note=a%20b%2Bc&note=%E2%9C%93",
    ] {
        let (status, body) = browser.get_json(&app, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["id"], "SandboxAda", "{path}: {body}");
    }
    assert_eq!(app.sandbox_stats().await["profiles_served"], 3);
}

/// RFC 5849's percent-encoding (section 3.6), written here apart from the client's.
fn rfc5849_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Checks the OAuth 1.0a HMAC-SHA1 signature of a call the fake received, from scratch
/// (RFC 5849 sections 3.4.1 to 3.4.2): the `Authorization` header's parameters, the query's
/// and a form body's, signed with the consumer secret and the token secret.
fn verify_oauth1(
    seen: &crate::support::linkedin_api::Seen,
    base_uri: &str,
    consumer_secret: &str,
    token_secret: &str,
) {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let header = seen
        .header("authorization")
        .expect("an Authorization header");
    let header = header.strip_prefix("OAuth ").expect("an OAuth header");
    let decode = |v: &str| {
        percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .unwrap()
            .into_owned()
    };
    let mut params: Vec<(String, String)> = Vec::new();
    let mut signature = None;
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=').unwrap();
        let v = decode(v.trim_matches('"'));
        if k == "oauth_signature" {
            signature = Some(v);
        } else if k != "realm" {
            params.push((decode(k), v));
        }
    }
    let form_pairs = |text: &[u8]| -> Vec<(String, String)> {
        url::form_urlencoded::parse(text).into_owned().collect()
    };
    params.extend(form_pairs(seen.query.as_deref().unwrap_or("").as_bytes()));
    if seen.header("content-type") == Some("application/x-www-form-urlencoded") {
        params.extend(form_pairs(&seen.body));
    }
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (rfc5849_encode(k), rfc5849_encode(v)))
        .collect();
    encoded.sort();
    let normalized = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let base = format!(
        "{}&{}&{}",
        seen.method,
        rfc5849_encode(base_uri),
        rfc5849_encode(&normalized)
    );
    let key = format!(
        "{}&{}",
        rfc5849_encode(consumer_secret),
        rfc5849_encode(token_secret)
    );
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(base.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(
        signature.as_deref(),
        Some(expected.as_str()),
        "base string: {base}"
    );
}

#[tokio::test]
async fn a_jsapi_member_s_form_post_is_signed_with_its_query_and_body() {
    let api = FakeApi::start().await;
    let app = jsapi_app(&api, |config| {
        config.api.api_allow = "POST /v1/people/~/shares".into();
    })
    .await;
    let browser = Browser::new(&app);
    let access = unique("form");
    browser.sign_in_real_jsapi(&app, &access, "Ada").await;
    let response = browser
        .request_from_the_page(
            &app,
            Method::POST,
            "/linkedin/api/v1/people/~/shares?format=json&tag=a%20b",
        )
        .form(&[("comment", "Hello & welcome ✓"), ("visibility", "anyone")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = api.calls().pop().unwrap();
    assert_eq!(
        token_of(&seen.headers).as_deref(),
        Some(format!("tok-{access}").as_str())
    );
    assert!(
        seen.header("authorization")
            .unwrap()
            .contains(&format!("oauth_consumer_key=\"{API_KEY}\""))
    );
    // What LinkedIn receives still says what the page sent.
    let body: HashMap<String, String> = url::form_urlencoded::parse(&seen.body)
        .into_owned()
        .collect();
    assert_eq!(body["comment"], "Hello & welcome ✓");
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(seen.query.as_deref().unwrap().as_bytes())
            .into_owned()
            .collect();
    assert_eq!(
        (query["format"].as_str(), query["tag"].as_str()),
        ("json", "a b")
    );
    verify_oauth1(
        &seen,
        api.url("/v1/people/~/shares").as_str(),
        SECRET_KEY,
        &format!("sec-{access}"),
    );
}

// ---------------------------------------------------------------------------------------
// Withdrawal: a 401 ends every session holding the token.

/// How many sessions the admin routes list for `member`.
async fn listed(app: &TestApp, member: &str) -> usize {
    let metrics = app.metrics.expect("the metrics listener");
    let listed: Value = reqwest::Client::new()
        .get(format!("http://{metrics}/admin/members/{member}/sessions"))
        .bearer_auth(ADMIN)
        .fetch_json()
        .await;
    listed["sessions"].as_array().unwrap().len()
}

/// Two browsers holding one token, a third with another token of the same member, a
/// bystander; LinkedIn withdraws the first token; `/me` in the first browser finds out.
async fn a_401_ends_every_session_holding_the_token(test: &str, store: Store) {
    let api = FakeApi::start().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let Some(mut config) = config_on(test, store, &dir) else {
        return;
    };
    config.listen.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    config.listen.admin_token = Some(Secret::new(ADMIN));
    api.serve_jsapi(&mut config);
    let app = TestApp::start(config, dir).await;

    let member = unique("withdrawn");
    let shared = unique("shared");
    let [first, second, third, bystander] = [(); 4].map(|()| Browser::new(&app));
    first.sign_in_real_jsapi(&app, &shared, &member).await;
    second.sign_in_real_jsapi(&app, &shared, &member).await;
    third
        .sign_in_real_jsapi(&app, &unique("other"), &member)
        .await;
    let other = unique("bystander");
    bystander
        .sign_in_real_jsapi(&app, &unique("theirs"), &other)
        .await;
    assert_eq!(api.exchanges(), 4);
    assert_eq!(listed(&app, &member).await, 3);
    let (status, _) = first.get_json(&app, "/me").await;
    assert_eq!(status, 200);

    // The member removes the app: LinkedIn no longer takes the token.
    api.revoke(&format!("tok-{shared}"));
    let before = first.session_id(&app);
    let (status, body) = first.get_json(&app, "/me").await;
    assert_withdrawn(status, &body);

    // Both sessions that held the token have ended, and say why, to the browsers that held
    // them: the second made no call at all.
    let withdrawn = withdrawn_session();
    assert_eq!(first.session(&app).await, withdrawn);
    // The second's tombstone waits apart from its deleted session (so that a save in flight
    // writes nothing back), and is moved back under its id when the browser asks: asked
    // again, it still says why.
    assert_eq!(second.session(&app).await, withdrawn);
    assert_eq!(second.session(&app).await, withdrawn);
    assert_eq!(
        first.session_id(&app),
        before,
        "the tombstone keeps the browser's id"
    );
    for browser in [&first, &second] {
        let (status, body) = browser.get_json(&app, "/me").await;
        assert_eq!((status, error_code(&body)), (401, "not_connected"));
        let check = browser.auth_check(&app).await;
        assert_eq!(check.status(), 401);
    }
    // The member's other token, and another member, are untouched; the index lists only the
    // live session.
    assert_eq!(third.session(&app).await["connected"], true);
    assert_eq!(third.get_json(&app, "/me").await.0, 200);
    assert_eq!(bystander.session(&app).await["member_id"], other.as_str());
    assert_eq!(listed(&app, &member).await, 1);
    assert_eq!(listed(&app, &other).await, 1);

    // A new sign-in in the first browser: connected, and the reason is gone.
    first
        .sign_in_real_jsapi(&app, &unique("fresh"), &member)
        .await;
    let session = first.session(&app).await;
    assert_eq!(session["connected"], true, "{session}");
    assert!(session.get("ended").is_none(), "{session}");
    assert_eq!(listed(&app, &member).await, 2);
}

per_store!([memory, sqlite, redis, postgres], {
    a_401_ends_every_session_holding_the_token => a_401_ends_every_session_holding_the_token,
});

#[tokio::test]
async fn a_401_to_the_pass_through_withdraws_an_openid_connect_member() {
    let api = FakeApi::start().await;
    let app = sandbox_app(&api, None, |_| {}).await;
    let [first, second] = [(); 2].map(|()| Browser::new(&app));
    let member = first.sign_in_oidc(&app, "ada").await;
    assert_eq!(second.sign_in_oidc(&app, "ada").await, member);
    assert_eq!(first.get(&app, "/linkedin/api/v2/userinfo").await.0, 200);
    let token = token_of(&api.calls()[0].headers).unwrap();

    api.revoke(&token);
    let (status, body) = first.get_json(&app, "/linkedin/api/v2/userinfo").await;
    assert_withdrawn(status, &body);
    assert_eq!(first.session(&app).await, withdrawn_session());
    // The second sign-in holds another token: it stays.
    assert_eq!(second.session(&app).await["connected"], true);
    assert_eq!(second.get(&app, "/linkedin/api/v2/userinfo").await.0, 200);
}

#[tokio::test]
async fn a_signing_fault_of_the_app_is_no_withdrawal() {
    let api = FakeApi::start().await;
    let app = jsapi_app(&api, |_| {}).await;
    let browser = Browser::new(&app);
    browser
        .sign_in_real_jsapi(&app, &unique("token"), "Ada")
        .await;
    // LinkedIn's OAuth 1.0a refusal of a bad signature (the "OAuth Problem Reporting" name).
    api.answer(Answer::Status {
        status: 401,
        content_type: "application/x-www-form-urlencoded",
        headers: Vec::new(),
        body: "oauth_problem=signature_invalid&oauth_problem_advice=check%20the%20secret".into(),
    });
    let (status, body) = browser.get_json(&app, "/me").await;
    assert_json_error(
        status,
        &body,
        (502, "upstream_rejected"),
        "signature_invalid",
    );
    assert_eq!(browser.session(&app).await["connected"], true);
}

// ---------------------------------------------------------------------------------------
// /session and the proxy.

#[tokio::test]
async fn session_says_when_the_token_expires_and_suggests_renewing_in_its_last_week() {
    let api = FakeApi::start().await;
    let app = jsapi_app(&api, |_| {}).await;
    let fresh = Browser::new(&app);
    fresh
        .sign_in_real_jsapi(&app, &unique("fresh"), "Ada")
        .await;
    let session = fresh.session(&app).await;
    let expires = session["token_expires_at"].as_i64().unwrap();
    assert!(
        (now() + 5_183_990..=now() + 5_184_000).contains(&expires),
        "{session}"
    );
    assert_eq!(session["renew_suggested"], false, "{session}");

    // A token with six days left (and no refresh token): a new sign-in is suggested.
    api.set_expires_in(6 * 86_400);
    let ageing = Browser::new(&app);
    ageing
        .sign_in_real_jsapi(&app, &unique("ageing"), "Ada")
        .await;
    let session = ageing.session(&app).await;
    assert_eq!(session["renew_suggested"], true, "{session}");
    let expires = session["token_expires_at"].as_i64().unwrap();
    assert!(
        (now() + 6 * 86_400 - 10..=now() + 6 * 86_400).contains(&expires),
        "{session}"
    );
    // Not connected: neither field.
    let stranger = Browser::new(&app);
    assert_eq!(stranger.session(&app).await, json!({"connected": false}));
}

#[tokio::test]
async fn pass_access_token_hands_an_openid_connect_token_to_the_proxy_and_never_a_jsapi_one() {
    let api = FakeApi::start().await;
    let app = sandbox_app(&api, None, |config| config.api.pass_access_token = true).await;
    let oidc = Browser::new(&app);
    let member = oidc.sign_in_oidc(&app, "ada").await;
    let check = oidc.auth_check(&app).await;
    assert_eq!(check.status(), 200);
    let token = check.headers()["x-auth-request-access-token"]
        .to_str()
        .unwrap()
        .to_owned();
    // It is the member's own token: the sandbox's userinfo takes it.
    let info: Value = oidc
        .client
        .get(app.url("/sandbox/v2/userinfo"))
        .bearer_auth(&token)
        .fetch_json()
        .await;
    assert_eq!(info["sub"], member.as_str(), "{info}");

    let jsapi = Browser::new(&app);
    jsapi.sign_in_jsapi(&app, "Grace").await;
    let check = jsapi.auth_check(&app).await;
    assert_eq!(check.status(), 200);
    assert!(check.headers().get("x-auth-request-access-token").is_none());

    // Off (the default): never.
    let app = sandbox_app(&api, None, |_| {}).await;
    let oidc = Browser::new(&app);
    oidc.sign_in_oidc(&app, "ada").await;
    let check = oidc.auth_check(&app).await;
    assert_eq!(check.status(), 200);
    assert!(check.headers().get("x-auth-request-access-token").is_none());
}

// ---------------------------------------------------------------------------------------
// A host's own client.

mod host {
    //! A host app built with the library (the sandbox mounted under `/sandbox`, the REST base
    //! the fake API), whose handler calls LinkedIn through `LinkedInSignIn::api` and reports
    //! what the client typed.

    use axum::extract::State;
    use axum::routing::get;
    use axum::{Json, Router};
    use linkedin_token_exchange::sandbox::Sandbox;
    use linkedin_token_exchange::tower_sessions::MemoryStore;
    use linkedin_token_exchange::{Error, LinkedInSignIn, MemberSession, RateLimit};
    use serde_json::{Value, json};

    use super::*;

    /// `GET /posts`: LinkedIn's `/rest/posts` as the member, or the typed refusal as JSON.
    async fn posts(
        State(sign_in): State<LinkedInSignIn>,
        session: MemberSession,
    ) -> Result<Json<Value>, Error> {
        let api = sign_in.api(&session).await?;
        match api.get_json("/rest/posts?q=author").await {
            Ok(answer) => Ok(Json(json!({"answer": answer}))),
            Err(Error::LinkedInVersionRetired { version, said }) => Ok(Json(
                json!({"typed": "version_retired", "version": version, "said": said}),
            )),
            Err(Error::LinkedInRateLimited(seconds)) => Ok(Json(
                json!({"typed": "rate_limited", "retry_after": seconds}),
            )),
            Err(other) => Err(other),
        }
    }

    /// A plain-HTTP client that keeps the host's session cookie by hand (a `Secure` cookie,
    /// which reqwest's jar sends to `https://` only).
    struct Visitor {
        client: reqwest::Client,
        cookie: std::sync::Mutex<Option<String>>,
    }

    impl Visitor {
        async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
            let cookie = self.cookie.lock().unwrap().clone();
            let request = match cookie {
                Some(cookie) => request.header("cookie", cookie),
                None => request,
            };
            let response = request.send().await.unwrap();
            if let Some(set) = response
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| v.starts_with("__Host-lte_session="))
            {
                *self.cookie.lock().unwrap() = set.split(';').next().map(str::to_owned);
            }
            response
        }
    }

    #[tokio::test]
    async fn a_host_s_client_types_426_and_429_and_ends_the_session_on_401() {
        let api = FakeApi::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let sandbox = Sandbox::new(url::Url::parse(&format!("{base}/sandbox")).unwrap());
        let (access_token_url, _) = sandbox.jsapi_urls();
        let sign_in = LinkedInSignIn::builder()
            .public_origin(&base)
            .oidc(sandbox.client_id(), sandbox.client_secret())
            .issuer(sandbox.issuer())
            .jsapi_urls(access_token_url, api.url(""))
            .api_version("202611")
            .rate_limit(RateLimit::Off)
            .upstream_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let app = Router::new()
            .route("/posts", get(posts))
            .with_state(sign_in.clone())
            .merge(sign_in.router())
            .nest("/sandbox", sandbox.router())
            .layer(sign_in.session_layer(MemoryStore::default()));
        tokio::spawn(async move { axum::serve(listener, app).await });

        // Sign in through the sandbox's consent, by hand.
        let visitor = Visitor {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: std::sync::Mutex::new(None),
        };
        let started = visitor
            .send(visitor.client.get(format!("{base}/auth/linkedin")))
            .await;
        assert_eq!(started.status(), 302);
        let authorization =
            url::Url::parse(started.headers()["location"].to_str().unwrap()).unwrap();
        let mut form: HashMap<String, String> = authorization.query_pairs().into_owned().collect();
        form.insert("decision".into(), "allow".into());
        form.insert("sandbox_member".into(), "ada".into());
        let mut endpoint = authorization.clone();
        endpoint.set_query(None);
        let decided = visitor
            .send(visitor.client.post(endpoint).form(&form))
            .await;
        assert_eq!(decided.status(), 302);
        let callback = decided.headers()["location"].to_str().unwrap().to_owned();
        let back = visitor.send(visitor.client.get(callback)).await;
        assert_eq!(back.status(), 303, "{}", back.text().await.unwrap());

        let posts = || async {
            visitor
                .send(visitor.client.get(format!("{base}/posts")))
                .await
        };
        let answer: Value = posts().await.json().await.unwrap();
        assert_eq!(answer["answer"]["linkedin_version"], "202611", "{answer}");

        api.answer(Answer::json(
            426,
            json!({"status": 426, "code": "NONEXISTENT_VERSION",
                   "message": "Requested version 20261100 is not active"}),
        ));
        let answer: Value = posts().await.json().await.unwrap();
        assert_eq!(answer["typed"], "version_retired", "{answer}");
        assert_eq!(answer["version"], "202611");
        assert!(
            answer["said"]
                .as_str()
                .unwrap()
                .contains("NONEXISTENT_VERSION")
        );

        api.answer(Answer::Status {
            status: 429,
            content_type: "application/json",
            headers: vec![("retry-after", "90".into())],
            body: "{}".into(),
        });
        let answer: Value = posts().await.json().await.unwrap();
        assert_eq!(answer, json!({"typed": "rate_limited", "retry_after": 90}));

        // Withdrawn: the host's answer is the error, and its session ends, saying why.
        let token = token_of(&api.calls()[0].headers).unwrap();
        api.revoke(&token);
        let (status, body) = json_of(posts().await).await;
        assert_withdrawn(status, &body);
        let session: Value = visitor
            .send(visitor.client.get(format!("{base}/session")))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(session, withdrawn_session());
        assert_eq!(posts().await.status(), 401);
        assert_eq!(api.calls().len(), 4, "no call once the session ended");
    }
}

// ---------------------------------------------------------------------------------------
// The page, in Chromium.

mod page {
    //! The login page in headless Chromium (`support::chromium`, as `tests/api/browser.rs`
    //! drives it): "Renew LinkedIn access" in a token's last week, and "LinkedIn access was
    //! withdrawn" once LinkedIn refuses the token, whether the page learns it from `/me` or,
    //! after a reload, from `/session`.

    use crate::support::chromium::start_or_skip_with;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_page_offers_renewal_then_says_linkedin_access_was_withdrawn() {
        const TEST: &str =
            "credentials::page::the_page_offers_renewal_then_says_linkedin_access_was_withdrawn";
        // The sandbox app on its loopback origin, the exchange and the API the fake's.
        let api = FakeApi::start().await;
        let Some((app, chromium)) = start_or_skip_with(TEST, |config| {
            config.linkedin.access_token_url = Some(api.url("/uas/oauth/accessToken"));
            api.serve_the_api(config);
        })
        .await
        else {
            return;
        };

        // A member whose token has six days left, signed in by a client; Chromium takes over
        // the session cookie.
        api.set_expires_in(6 * 86_400);
        let access = unique("page");
        let member = Browser::new(&app);
        member.sign_in_real_jsapi(&app, &access, "Ada").await;
        let session_id = member.session_id(&app);

        chromium.goto("open /healthz", &app.url("/healthz")).await;
        // (WebDriver's "add cookie" refuses a host-only cookie on an IP address: the page's
        // own script sets it.)
        chromium
            .step(
                "set the session cookie",
                chromium
                    .client
                    .execute(
                        "document.cookie = '__Host-lte_session=' + arguments[0] + '; Path=/; Secure';",
                        vec![json!(session_id)],
                    )
                    .await,
            )
            .await;
        chromium.goto("open the page", &app.url("/")).await;
        chromium
            .wait_for(
                "the page to offer “Renew LinkedIn access”",
                "const r = document.getElementById('renew'), b = document.getElementById('renew-jsapi');
                 return !!r && !r.hidden && !!b && !b.hidden && b.textContent === 'Renew LinkedIn access'
                   && document.getElementById('status').dataset.state === 'connected';",
            )
            .await;

        // LinkedIn withdraws the token: the page's own call to /me finds out.
        api.revoke(&format!("tok-{access}"));
        chromium.goto("open the page again", &app.url("/")).await;
        let withdrawn = "const s = document.getElementById('status');
             return !!s && s.dataset.state === 'disconnected'
               && s.textContent.includes('LinkedIn access was withdrawn')
               && document.getElementById('renew').hidden
               && !document.getElementById('sign-in').hidden;";
        chromium
            .wait_for("“LinkedIn access was withdrawn” after /me", withdrawn)
            .await;
        // A reload: the session is a tombstone, and /session says why.
        chromium.goto("reload the page", &app.url("/")).await;
        chromium
            .wait_for("“LinkedIn access was withdrawn” after a reload", withdrawn)
            .await;
        assert_eq!(
            member.session(&app).await,
            withdrawn_session(),
            "the client that signed in shares the session: it hears the same"
        );
        chromium
            .close("the_page_offers_renewal_then_says_linkedin_access_was_withdrawn")
            .await;
    }
}
