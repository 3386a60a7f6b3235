//! Hardening: every bad input and every upstream fault gets the answer docs/operations.md's Errors
//! section gives, nothing is stored half-way, nothing reaches upstream that should not.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Behaviour, FakeUpstream, FetchJson, GRANT, SECRET_KEY, TestApp, encode_cookie, json_of,
    signed_cookie, spawn_app, spawn_real_app,
};

/// Sends `cookie` (already encoded) as the JSAPI cookie to a real-mode app and checks the
/// answer, and that nothing reached the upstream.
async fn refused_cookie(cookie: &str, status: u16, code: &str) -> Value {
    let upstream = FakeUpstream::start(GRANT).await;
    let app = spawn_real_app(&upstream).await;
    app.set_jsapi_cookie(&app.jar, cookie);
    let (got_status, body) = app.exchange().await;
    assert_eq!(
        (got_status, body["error"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().len() > 10);
    assert_eq!(upstream.calls(), 0, "nothing reaches upstream");
    assert_eq!(app.session().await, json!({"connected": false}));
    body
}

fn cookie_json(signature: &str, version: Value, method: &str, order: Value) -> String {
    json!({
        "signature_method": method,
        "signature_order": order,
        "access_token": "AD2dpVe1tOclAsNYsCri4nOatfstw7ZnMzWP",
        "signature": signature,
        "member_id": "vvUNSej47H",
        "signature_version": version,
    })
    .to_string()
}

/// The signature of the token and member above under the test app's secret.
fn good_signature() -> String {
    let cookie = signed_cookie(
        "AD2dpVe1tOclAsNYsCri4nOatfstw7ZnMzWP",
        "vvUNSej47H",
        SECRET_KEY,
    );
    let json: Value = serde_json::from_str(
        &percent_encoding::percent_decode_str(&cookie)
            .decode_utf8()
            .unwrap(),
    )
    .unwrap();
    json["signature"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_missing_cookie_is_missing_cookie() {
    let upstream = FakeUpstream::start(GRANT).await;
    let app = spawn_real_app(&upstream).await;
    let (status, body) = app.exchange().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("missing_cookie"))
    );
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test]
async fn broken_percent_encoding_is_malformed_cookie() {
    refused_cookie("%7B%22signature%22%3A%2", 400, "malformed_cookie").await;
}

#[tokio::test]
async fn a_cookie_that_is_not_json_is_malformed_cookie() {
    refused_cookie("hello-world", 400, "malformed_cookie").await;
}

#[tokio::test]
async fn a_json_array_is_malformed_cookie() {
    refused_cookie(
        &encode_cookie(r#"["access_token","member_id"]"#),
        400,
        "malformed_cookie",
    )
    .await;
}

#[tokio::test]
async fn a_json_object_of_the_wrong_shape_is_malformed_cookie() {
    refused_cookie(
        &encode_cookie(r#"{"access_token":42,"member_id":null}"#),
        400,
        "malformed_cookie",
    )
    .await;
}

#[tokio::test]
async fn a_tampered_signature_is_invalid_signature() {
    let mut signature = good_signature();
    signature.replace_range(
        0..2,
        if signature.starts_with("AA") {
            "BB"
        } else {
            "AA"
        },
    );
    let cookie = cookie_json(
        &signature,
        json!(1),
        "HMAC-SHA1",
        json!(["access_token", "member_id"]),
    );
    refused_cookie(&encode_cookie(&cookie), 401, "invalid_signature").await;
}

#[tokio::test]
async fn a_cookie_signed_with_another_secret_is_invalid_signature() {
    let cookie = signed_cookie(
        "AD2dpVe1tOclAsNYsCri4nOatfstw7ZnMzWP",
        "vvUNSej47H",
        "another-apps-secret",
    );
    refused_cookie(&cookie, 401, "invalid_signature").await;
}

#[tokio::test]
async fn a_hex_signature_is_invalid_signature() {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(good_signature())
        .unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let cookie = cookie_json(
        &hex,
        json!(1),
        "HMAC-SHA1",
        json!(["access_token", "member_id"]),
    );
    refused_cookie(&encode_cookie(&cookie), 401, "invalid_signature").await;
}

/// A cookie for `member` signed the way the issue's forgery was: HMAC over the values of
/// every field in `order`, with `extra` fields added to the JSON.
fn cookie_signed_over(order: &[&str], member: &str, extra: &[(&str, &str)]) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut json = json!({
        "signature_method": "HMAC-SHA1",
        "signature_order": order,
        "access_token": "AD2dpVe1tOclAsNYsCri4nOatfstw7ZnMzWP",
        "member_id": member,
        "signature_version": 1,
    });
    for (name, value) in extra {
        json[*name] = json!(value);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET_KEY.as_bytes()).unwrap();
    for name in order {
        mac.update(json[*name].as_str().unwrap().as_bytes());
    }
    json["signature"] =
        json!(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    encode_cookie(&json.to_string())
}

#[tokio::test]
async fn an_extra_signed_field_cannot_move_the_member_id_boundary() {
    // Signed bytes: token + "Sandbox" + "Ada", the same as for member "SandboxAda".
    let forged = cookie_signed_over(
        &["access_token", "member_id", "zz"],
        "Sandbox",
        &[("zz", "Ada")],
    );
    let body = refused_cookie(&forged, 400, "malformed_cookie").await;
    assert!(
        body["message"].as_str().unwrap().contains("each once"),
        "{body}"
    );
}

#[tokio::test]
async fn a_field_signed_twice_is_malformed_cookie() {
    let cookie = cookie_signed_over(&["access_token", "member_id", "member_id"], "twice", &[]);
    refused_cookie(&cookie, 400, "malformed_cookie").await;
}

#[tokio::test]
async fn a_signature_order_leaving_out_the_member_is_malformed_cookie() {
    let cookie = cookie_signed_over(&["access_token"], "unsigned-member", &[]);
    refused_cookie(&cookie, 400, "malformed_cookie").await;
}

#[tokio::test]
async fn a_signature_over_a_missing_field_is_malformed_cookie() {
    let cookie = cookie_json(
        &good_signature(),
        json!(1),
        "HMAC-SHA1",
        json!(["access_token", "member_id", "email_address"]),
    );
    let body = refused_cookie(&encode_cookie(&cookie), 400, "malformed_cookie").await;
    assert!(body["message"].as_str().unwrap().contains("email_address"));
}

#[tokio::test]
async fn the_reverse_signature_order_is_accepted_when_signed_that_way() {
    let upstream = FakeUpstream::start(GRANT).await;
    let app = spawn_real_app(&upstream).await;
    let cookie = cookie_signed_over(&["member_id", "access_token"], "reverse-member", &[]);
    app.set_jsapi_cookie(&app.jar, &cookie);
    let (status, body) = app.exchange().await;
    assert_eq!(
        (status, body["member_id"].as_str()),
        (200, Some("reverse-member")),
        "{body}"
    );
}

#[tokio::test]
async fn an_unsupported_signature_version_is_refused() {
    let cookie = cookie_json(
        &good_signature(),
        json!(2),
        "HMAC-SHA1",
        json!(["access_token", "member_id"]),
    );
    refused_cookie(&encode_cookie(&cookie), 400, "malformed_cookie").await;
}

#[tokio::test]
async fn an_unsupported_signature_method_is_refused() {
    let cookie = cookie_json(
        &good_signature(),
        json!(1),
        "HMAC-SHA256",
        json!(["access_token", "member_id"]),
    );
    refused_cookie(&encode_cookie(&cookie), 400, "malformed_cookie").await;
}

#[tokio::test]
async fn the_published_cookie_shape_with_a_string_version_is_accepted() {
    let upstream = FakeUpstream::start(GRANT).await;
    let app = spawn_real_app(&upstream).await;
    let cookie = cookie_json(
        &good_signature().replace('/', "\\/"),
        json!("1"),
        "HMAC-SHA1",
        json!(["access_token", "member_id"]),
    );
    app.set_jsapi_cookie(&app.jar, &encode_cookie(&cookie));
    let (status, body) = app.exchange().await;
    assert_eq!(
        (status, body["member_id"].as_str()),
        (200, Some("vvUNSej47H")),
        "{body}"
    );
    assert_eq!(upstream.calls(), 1);
}

/// Answers a raw request; `None` when the server closed the connection without an answer.
async fn raw_status(request: reqwest::RequestBuilder) -> Option<u16> {
    match request.send().await {
        Ok(response) => Some(response.status().as_u16()),
        Err(_) => None,
    }
}

async fn still_serving(app: &TestApp) {
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the server keeps serving"
    );
}

#[tokio::test]
async fn a_20_kb_cookie_gets_a_4xx_over_http1_and_http2() {
    let app = spawn_app().await;
    let huge = format!("linkedin_oauth_testAppKey={}", "a".repeat(20 * 1024));
    let (browser, _) = app.new_browser();
    let status = raw_status(
        browser
            .post(app.url("/token-exchange"))
            .header("origin", &app.base)
            .header("cookie", &huge),
    )
    .await;
    assert!(matches!(status, Some(400..=499)), "http/2: {status:?}");

    let http1 = crate::support::http1_client(&app.dir);
    let status = raw_status(
        http1
            .post(app.url("/token-exchange"))
            .header("origin", &app.base)
            .header("cookie", &huge),
    )
    .await;
    assert!(matches!(status, Some(431 | 400)), "http/1.1: {status:?}");
    still_serving(&app).await;
}

#[tokio::test]
async fn a_cookie_just_over_the_browser_limit_is_malformed_not_a_crash() {
    let app = spawn_app().await;
    app.set_jsapi_cookie(&app.jar, &"a".repeat(5000));
    let (status, body) = app.exchange().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("malformed_cookie"))
    );
}

#[tokio::test]
async fn a_header_flood_gets_a_4xx() {
    let app = spawn_app().await;
    for client in [app.new_browser().0, crate::support::http1_client(&app.dir)] {
        let mut request = client.get(app.url("/session"));
        for i in 0..400 {
            request = request.header(format!("x-flood-{i}"), "x".repeat(64));
        }
        let status = raw_status(request).await;
        assert!(matches!(status, Some(400..=499)), "{status:?}");
    }
    still_serving(&app).await;
}

#[tokio::test]
async fn a_huge_body_gets_413() {
    let app = spawn_app().await;
    app.sign_in("SandboxAda").await;
    let response = app
        .client
        .post(app.url("/token-exchange"))
        .header("origin", &app.base)
        .body(vec![b'x'; 4 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_eq!(
        app.session().await,
        json!({"connected": false}),
        "nothing stored"
    );
    still_serving(&app).await;
}

/// The security headers every answer carries, errors and the sandbox included.
fn assert_security_headers(response: &reqwest::Response) {
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ] {
        assert_eq!(
            response.headers().get(name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{name} on {}",
            response.url()
        );
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_method_not_allowed_json_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (reqwest::Method::GET, "/token-exchange", "POST"),
        (reqwest::Method::DELETE, "/session", "GET,HEAD"),
        (reqwest::Method::PUT, "/logout", "POST"),
        (reqwest::Method::POST, "/healthz", "GET,HEAD"),
        (
            reqwest::Method::GET,
            "/sandbox/uas/oauth/accessToken",
            "POST",
        ),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .header("origin", &app.base)
            .send()
            .await
            .unwrap();
        assert_security_headers(&response);
        let allowed = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, body) = json_of(response).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (405, Some("method_not_allowed")),
            "{method} {path}: {body}"
        );
        assert_eq!(allowed.as_deref(), Some(allow), "{method} {path}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(method.as_str()), "{body}");
        assert!(
            message.ends_with(&format!("it accepts {allow}.")),
            "the message names the accepted methods: {body}"
        );
    }
}

#[tokio::test]
async fn the_sandbox_answers_errors_in_json_under_the_same_layers() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/sandbox/oauth2/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_security_headers(&response);
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );

    let response = app.get("/sandbox/no-such-thing").await;
    assert_security_headers(&response);
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
}

/// An app with a session for `member-a`; then the upstream turns to `fault`, `member-b`
/// tries to connect in the same browser, and the answer must be `status`/`code` with the
/// session exactly as it was.
async fn upstream_fault(fault: Behaviour, status: u16, code: &str) -> Value {
    let upstream = FakeUpstream::start(GRANT).await;
    let app = spawn_real_app(&upstream).await;
    app.set_jsapi_cookie(&app.jar, &signed_cookie("token-a", "member-a", SECRET_KEY));
    assert_eq!(app.exchange().await.0, 200);
    let before_id = app.session_id().unwrap();
    let before = app.session().await;

    upstream.set(fault).await;
    app.set_jsapi_cookie(&app.jar, &signed_cookie("token-b", "member-b", SECRET_KEY));
    let started = Instant::now();
    let (got, body) = app.exchange().await;
    assert_eq!(
        (got, body["error"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered within the bound"
    );

    assert_eq!(
        app.session_id().unwrap(),
        before_id,
        "the session id is unchanged"
    );
    assert_eq!(
        app.session().await,
        before,
        "the session is exactly as it was"
    );
    assert_eq!(app.session().await["member_id"], "member-a");
    body
}

#[tokio::test]
async fn linkedin_refusing_the_token_is_upstream_rejected_naming_the_problem() {
    let body = upstream_fault(
        Behaviour::Answer(
            401,
            "oauth_problem=token_rejected&oauth_problem_advice=expired",
        ),
        502,
        "upstream_rejected",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("token_rejected"),
        "{body}"
    );
}

#[tokio::test]
async fn a_5xx_upstream_is_upstream_unavailable() {
    upstream_fault(
        Behaviour::Answer(503, "maintenance"),
        502,
        "upstream_unavailable",
    )
    .await;
}

#[tokio::test]
async fn a_200_without_token_and_secret_is_upstream_malformed() {
    upstream_fault(
        Behaviour::Answer(200, "oauth_expires_in=5183999"),
        502,
        "upstream_malformed",
    )
    .await;
}

#[tokio::test]
async fn a_200_that_is_not_form_encoded_is_upstream_malformed() {
    upstream_fault(
        Behaviour::Answer(200, "{\"oauth_token\": \"t\"}"),
        502,
        "upstream_malformed",
    )
    .await;
}

#[tokio::test]
async fn a_dropped_connection_is_upstream_unavailable() {
    upstream_fault(Behaviour::Drop, 502, "upstream_unavailable").await;
}

#[tokio::test]
async fn no_answer_in_time_is_upstream_timeout() {
    upstream_fault(Behaviour::Hang, 504, "upstream_timeout").await;
}

#[tokio::test]
async fn a_refused_connection_is_upstream_unavailable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let upstream = FakeUpstream::start(GRANT).await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = crate::support::test_config(&dir);
    config.linkedin.sandbox = Some(false);
    config.linkedin.access_token_url = Some(
        format!("http://127.0.0.1:{port}/uas/oauth/accessToken")
            .parse()
            .unwrap(),
    );
    config.linkedin.api_url = Some(upstream.url(""));
    let app = TestApp::start(config, dir).await;
    app.set_jsapi_cookie(&app.jar, &signed_cookie("token-a", "member-a", SECRET_KEY));
    let (status, body) = app.exchange().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("upstream_unavailable")),
        "{body}"
    );
    assert_eq!(app.session().await, json!({"connected": false}));
}

#[tokio::test]
async fn a_post_from_another_origin_is_refused_on_exchange_and_logout() {
    let app = spawn_app().await;
    app.sign_in("SandboxAda").await;
    for path in ["/token-exchange", "/logout"] {
        let response = app
            .client
            .post(app.url(path))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("cross_origin")),
            "{path}"
        );
    }
    assert_eq!(app.sandbox_stats().await["exchanges_accepted"], 0);

    // Without Origin, the Referer decides.
    let response = app
        .client
        .post(app.url("/token-exchange"))
        .header("referer", "https://evil.example/page")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = app
        .client
        .post(app.url("/token-exchange"))
        .header("referer", format!("{}/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // A cross-origin logout leaves the session alone.
    let response = app
        .client
        .post(app.url("/logout"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(app.session().await["connected"], true);
    // With neither header, a POST is refused too.
    assert_eq!(
        app.client
            .post(app.url("/logout"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn a_session_id_planted_before_sign_in_is_not_kept() {
    let app = spawn_app().await;
    let planted = "AAAAAAAAAAAAAAAAAAAAAA";
    app.jar.add_cookie_str(
        &format!("__Host-lte_session={planted}; Path=/; Secure"),
        &app.base.parse().unwrap(),
    );
    app.sign_in("SandboxAda").await;
    assert_eq!(app.exchange().await.0, 200);
    let id = app.session_id().unwrap();
    assert_ne!(id, planted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_exchanges_each_make_one_upstream_call_and_keep_their_member() {
    // Volume from one address is the point here: no rate limit.
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = crate::support::test_config(&dir);
    config.limits.rate_limit = linkedin_token_exchange::server::config::RateLimit::Off;
    let app = std::sync::Arc::new(TestApp::start(config, dir).await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let member = format!("concurrent-{i:02}");
            let cookie = app.authorize(&member).await;
            let (browser, jar) = app.new_browser();
            app.set_jsapi_cookie(&jar, &cookie);
            (member, browser, cookie)
        }));
    }
    let mut browsers = Vec::new();
    for task in tasks {
        browsers.push(task.await.unwrap());
    }
    let before = app.sandbox_stats().await["exchanges_accepted"]
        .as_u64()
        .unwrap();
    let exchanges = browsers.iter().map(|(member, browser, _)| {
        let (app, member, browser) = (app.clone(), member.clone(), browser.clone());
        async move {
            let response = app.post_from(&browser, "/token-exchange").await;
            let (status, body) = json_of(response).await;
            assert_eq!(
                (status, body["member_id"].as_str()),
                (200, Some(member.as_str())),
                "{body}"
            );
        }
    });
    futures_join_all(exchanges).await;
    let after = app.sandbox_stats().await["exchanges_accepted"]
        .as_u64()
        .unwrap();
    assert_eq!(after - before, 64, "exactly one upstream call each");
    for (member, browser, _) in &browsers {
        let session: Value = browser.get(app.url("/session")).fetch_json().await;
        assert_eq!(session["member_id"], member.as_str());
    }
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    for handle in handles {
        handle.await.unwrap();
    }
}
