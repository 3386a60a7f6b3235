//! Operating the service: metrics on their own listener, request ids, readiness, the
//! plain-HTTP redirect, rate limits (from two loopback addresses, with and without a trusted
//! proxy) and the security headers.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use linkedin_token_exchange::server::config::{Config, RateLimit};
use tempfile::TempDir;

use crate::support::servers::{RedisServer, skip_or_fail};
use crate::support::{
    FakeUpstream, GRANT, SECRET_KEY, TestApp, encode_cookie, json_of, signed_cookie, spawn_app,
    test_config,
};
use crate::support::{sample, scrape};

async fn app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    adjust(&mut config);
    TestApp::start(config, dir).await
}

#[tokio::test]
async fn metrics_count_exchanges_by_outcome_on_their_own_listener_and_never_a_raw_path() {
    let upstream = FakeUpstream::start(GRANT).await;
    let app = app_with(|config| {
        upstream.configure(config);
        config.listen.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = app.metrics.expect("the metrics listener is bound");

    for i in 0..3 {
        let (browser, jar) = app.new_browser();
        app.set_jsapi_cookie(
            &jar,
            &signed_cookie(&format!("token-{i}"), &format!("counted-{i}"), SECRET_KEY),
        );
        let response = app.post_from(&browser, "/token-exchange").await;
        assert_eq!(response.status(), 200);
    }
    for _ in 0..2 {
        let (browser, _) = app.new_browser();
        let response = app.post_from(&browser, "/token-exchange").await;
        assert_eq!(response.status(), 400, "missing_cookie");
    }
    app.set_jsapi_cookie(&app.jar, &encode_cookie("not json"));
    assert_eq!(app.exchange().await.1["error"], "malformed_cookie");
    let random = format!("no-such-path-{}", std::process::id());
    assert_eq!(app.get(&format!("/{random}")).await.status(), 404);
    assert_eq!(
        app.get("/metrics").await.status(),
        404,
        "not on the public HTTPS port"
    );

    let (text, scrape) = scrape(metrics).await;
    let exchanges = |outcome| {
        sample(
            &scrape,
            "lte_exchanges_total",
            &[("flow", "jsapi"), ("outcome", outcome)],
        )
    };
    assert_eq!(exchanges("connected"), Some(3.0), "{text}");
    assert_eq!(exchanges("missing_cookie"), Some(2.0), "{text}");
    assert_eq!(exchanges("malformed_cookie"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &scrape,
            "lte_http_requests_total",
            &[
                ("route", "/token-exchange"),
                ("method", "POST"),
                ("status", "200")
            ]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &scrape,
            "lte_http_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ),
        Some(2.0),
        "the random path and /metrics, both unmatched: {text}"
    );
    assert!(!text.contains(&random), "a raw path became a label");
    assert_eq!(
        sample(
            &scrape,
            "lte_upstream_request_duration_seconds_count",
            &[("endpoint", "access_token"), ("outcome", "ok")]
        ),
        Some(3.0),
        "{text}"
    );
    for name in [
        "lte_connections_open",
        "lte_process_resident_memory_bytes",
        "lte_process_cpu_seconds_total",
        "lte_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} is missing:\n{text}");
    }
}

#[tokio::test]
async fn every_answer_has_a_request_id_sane_ones_are_kept_and_errors_carry_it() {
    let app = spawn_app().await;
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let response = app.get("/healthz").await;
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(!id.is_empty() && id.len() <= 64, "{id}");
        assert!(seen.insert(id), "request ids are unique");
    }
    let echoed = app
        .client
        .get(app.url("/session"))
        .header("x-request-id", "trace-42.a_b-C")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42.a_b-C");
    for insane in ["has space", "slash/y", &"x".repeat(65)] {
        let response = app
            .client
            .get(app.url("/session"))
            .header("x-request-id", insane)
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, insane, "an insane id is replaced");
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    let response = app
        .client
        .post(app.url("/token-exchange"))
        .header("origin", &app.base)
        .header("x-request-id", "error-id-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "error-id-7");
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["request_id"].as_str()),
        (400, Some("error-id-7")),
        "{body}"
    );
}

#[tokio::test]
async fn readyz_follows_the_store_and_healthz_stays_up() {
    let mut redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(reason) => {
            return skip_or_fail(
                "operations::readyz_follows_the_store_and_healthz_stays_up",
                &reason,
            );
        }
    };
    let url = redis.url();
    let app = app_with(|config| config.sessions.store = url.parse().unwrap()).await;
    async fn ready(app: &TestApp) -> (u16, serde_json::Value, Duration) {
        let started = Instant::now();
        let (status, body) = json_of(app.get("/readyz").await).await;
        (status, body, started.elapsed())
    }
    let (status, body, _) = ready(&app).await;
    assert_eq!((status, body), (200, serde_json::json!({"ready": true})));

    redis.kill();
    let (status, body, took) = ready(&app).await;
    assert_eq!(
        (status, body["ready"].as_bool()),
        (503, Some(false)),
        "{body}"
    );
    assert!(body["reason"].as_str().unwrap().contains("store"), "{body}");
    assert!(took < Duration::from_millis(1_500), "answered in {took:?}");
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "liveness is not readiness"
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&app).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "ready again within 10 s of Redis coming back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_is_503_from_the_moment_shutdown_begins() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    // A request whose headers are still arriving when the shutdown begins is answered.
    let mut stream = crate::support::raw_tls(&app.dir, app.addr, b"http/1.1").await;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(b"\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("shutting down"), "{answer}");
    stopping.await.unwrap();
}

#[tokio::test]
async fn plain_http_is_redirected_to_the_https_origin_with_path_and_query() {
    let app =
        app_with(|config| config.listen.http_redirect_bind = Some("127.0.0.1:0".parse().unwrap()))
            .await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = app.redirect.expect("the redirect listener is bound");
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let response = plain
            .request(
                method.clone(),
                format!("http://{redirect}/session?x=1&y=%20z"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 308, "{method}");
        assert_eq!(
            response.headers()["location"],
            format!("{}/session?x=1&y=%20z", app.base)
        );
    }
}

/// A client that connects from `local` (any 127.0.0.0/8 address is this machine).
fn client_from(dir: &TempDir, local: &str) -> reqwest::Client {
    crate::support::client::trusting(&dir.path().join("cert.pem"))
        .local_address(local.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// `POST /token-exchange` with no cookie (a 400, counted by the limiter all the same).
async fn attempt(
    app: &TestApp,
    client: &reqwest::Client,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .post(app.url("/token-exchange"))
        .header("origin", &app.base);
    if let Some(forwarded) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.unwrap()
}

fn three_a_second() -> RateLimit {
    "3,1".parse().unwrap()
}

#[tokio::test]
async fn each_client_address_has_its_own_budget_then_429_with_retry_after() {
    let app = app_with(|config| config.limits.rate_limit = three_a_second()).await;
    let (first, second) = (
        client_from(&app.dir, "127.0.0.1"),
        client_from(&app.dir, "127.0.0.2"),
    );
    for _ in 0..3 {
        assert_eq!(
            attempt(&app, &first, Some("203.0.113.1")).await.status(),
            400
        );
    }
    // X-Forwarded-For from an untrusted peer changes nothing.
    let limited = attempt(&app, &first, Some("203.0.113.2")).await;
    assert_eq!(limited.headers()["retry-after"], "1");
    let (status, body) = json_of(limited).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert_eq!(
        attempt(&app, &second, None).await.status(),
        400,
        "another address is not limited"
    );
    assert_eq!(
        app.get("/session").await.status(),
        200,
        "other routes are not limited"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        attempt(&app, &first, None).await.status(),
        400,
        "the budget refills"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let app = app_with(|config| {
        config.limits.rate_limit = three_a_second();
        config.limits.trusted_proxies = Some("127.0.0.2".parse().unwrap());
    })
    .await;
    let proxy = client_from(&app.dir, "127.0.0.2");
    for _ in 0..3 {
        assert_eq!(
            attempt(&app, &proxy, Some("203.0.113.7")).await.status(),
            400
        );
    }
    assert_eq!(
        attempt(&app, &proxy, Some("203.0.113.7")).await.status(),
        429
    );
    assert_eq!(
        attempt(&app, &proxy, Some("198.51.100.1, 203.0.113.8"))
            .await
            .status(),
        400,
        "another client behind the proxy"
    );
}

#[tokio::test]
async fn replaying_one_cookie_without_a_session_does_not_buy_unlimited_exchanges() {
    let upstream = FakeUpstream::start(GRANT).await;
    let app = app_with(|config| {
        upstream.configure(config);
        config.limits.rate_limit = three_a_second();
    })
    .await;
    let cookie = signed_cookie("replayed-token", "replayed-member", SECRET_KEY);
    let mut statuses = Vec::new();
    for i in 0..4 {
        // A fresh browser (no session), from a fresh address each time.
        let client = client_from(&app.dir, &format!("127.0.0.{}", 10 + i));
        let response = client
            .post(app.url("/token-exchange"))
            .header("origin", &app.base)
            .header(
                "cookie",
                format!("linkedin_oauth_{}={cookie}", crate::support::API_KEY),
            )
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(upstream.calls(), 3, "the fourth never reached upstream");
}

#[tokio::test]
async fn member_data_is_never_cached_and_pages_carry_a_strict_policy() {
    let app = spawn_app().await;
    app.sign_in("cached-member").await;
    assert_eq!(app.exchange().await.0, 200);
    for path in ["/", "/session", "/me"] {
        let response = app.get(path).await;
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
    assert_eq!(
        app.post("/token-exchange").await.headers()["cache-control"],
        "no-store"
    );
    let page = app.get("/").await;
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(
        page.headers().get("strict-transport-security").is_none(),
        "not on a loopback origin"
    );
    assert!(
        app.get("/session")
            .await
            .headers()
            .get("content-security-policy")
            .is_none(),
        "JSON is not a page"
    );
}

#[tokio::test]
async fn a_public_origin_gets_strict_transport_security() {
    let app =
        app_with(|config| config.listen.public_origin = Some("https://login.example.com".into()))
            .await;
    for path in ["/", "/healthz", "/no-such-thing"] {
        let response = app.get(path).await;
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
    }
}
