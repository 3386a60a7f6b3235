//! Behind a proxy (SPEC, "Behind a proxy"): `GET /auth/check` for forward authentication,
//! `rd` after an OpenID Connect sign-in (and every open-redirect trick refused), the session
//! cookie with `SESSION_COOKIE_DOMAIN`, `TLS=off`, and the repository's `deploy/nginx.conf`
//! run with Debian's nginx in front of the service.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use linkedin_token_exchange::server::Server;
use linkedin_token_exchange::server::config::TlsMode;
use linkedin_token_exchange::server::config::{Config, RateLimit, StoreUrl};
use reqwest::cookie::Jar;
use serde_json::Value;
use tempfile::TempDir;

use crate::oidc::{consent, location, query, step_by_step, step_by_step_with};
use crate::support::nginx::{Nginx, nginx_binary};
use crate::support::protected::ProtectedApp;
use crate::support::servers::skip_or_fail;
use crate::support::{API_KEY, FetchJson, TestApp, assert_error, free_port, json_of, test_config};

/// A test app from `config` (adjusted by `change`) in a fresh directory.
async fn app_with(change: impl FnOnce(&mut Config, &TempDir)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    change(&mut config, &dir);
    TestApp::start(config, dir).await
}

/// Exchanges a sandbox JSAPI cookie for `member` in the app's default browser.
async fn jsapi_sign_in(app: &TestApp, member: &str) {
    app.sign_in(member).await;
    let (status, body) = app.exchange().await;
    assert_eq!(status, 200, "{body}");
}

/// `GET /auth/check` from `browser`.
async fn auth_check(app: &TestApp, browser: &reqwest::Client, query: &str) -> reqwest::Response {
    browser
        .get(app.url(&format!("/auth/check{query}")))
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// A whole OpenID Connect sign-in in `browser`, started at `start` (a path with its query):
/// the callback's answer.
async fn oidc_sign_in(
    app: &TestApp,
    browser: &reqwest::Client,
    start: &str,
    member: &str,
) -> reqwest::Response {
    let response = browser.get(app.url(start)).send().await.unwrap();
    assert_eq!(response.status(), 302, "{start}");
    let callback = consent(browser, &location(&response), "allow", member).await;
    browser.get(callback).send().await.unwrap()
}

/// `/auth/linkedin?rd=<rd>`, encoded as a browser would send it.
fn start_with_rd(rd: &str) -> String {
    let mut url = url::Url::parse("https://x/auth/linkedin").unwrap();
    url.query_pairs_mut().append_pair("rd", rd);
    format!("/auth/linkedin?{}", url.query().unwrap())
}

#[tokio::test]
async fn auth_check_answers_401_not_connected_until_a_member_signs_in_then_200_with_who_they_are() {
    let app = app_with(|_, _| {}).await;
    let response = auth_check(&app, &app.client, "").await;
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert!(response.headers().get("set-cookie").is_none());
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("not_connected"))
    );

    jsapi_sign_in(&app, "proxied-jsapi").await;
    let response = auth_check(&app, &app.client, "").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-auth-request-user"),
        Some("proxied-jsapi")
    );
    assert_eq!(header(&response, "x-auth-request-flow"), Some("jsapi"));
    assert_eq!(header(&response, "x-auth-request-email"), None);
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert!(response.headers().get("set-cookie").is_none());
    assert_eq!(response.text().await.unwrap(), "", "no body");

    // Signed out: 401 again, and a session id nobody holds is no member either.
    assert_eq!(app.post("/logout").await.status(), 200);
    assert_eq!(auth_check(&app, &app.client, "").await.status(), 401);
    let (stranger, jar) = app.new_browser();
    jar.add_cookie_str(
        "__Host-lte_session=AAAAAAAAAAAAAAAAAAAAAA; Path=/; Secure",
        &url::Url::parse(&app.base).unwrap(),
    );
    assert_eq!(auth_check(&app, &stranger, "").await.status(), 401);
}

#[tokio::test]
async fn auth_check_names_an_openid_connect_member_with_their_email_and_name() {
    let app = app_with(|_, _| {}).await;
    let browser = step_by_step(&app);
    let response = oidc_sign_in(&app, &browser, "/auth/linkedin", "checked-member").await;
    assert_eq!(response.status(), 303);
    let session = app.session().await;
    let response = auth_check(&app, &app.client, "").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-auth-request-user"),
        session["member_id"].as_str()
    );
    assert_eq!(header(&response, "x-auth-request-flow"), Some("oidc"));
    assert_eq!(
        header(&response, "x-auth-request-email"),
        Some("checked-member@sandbox.example")
    );
    assert_eq!(
        header(&response, "x-auth-request-name"),
        Some("Sandbox checked-member")
    );
}

/// The session row as the SQLite store holds it: (sealed data, expiry).
async fn stored_rows(path: &std::path::Path) -> Vec<(Vec<u8>, String)> {
    use tower_sessions_sqlx_store::sqlx::{self, Row};
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap();
    let rows =
        sqlx::query("select data, cast(expiry_date as text) from tower_sessions order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.iter()
        .map(|row| (row.get::<Vec<u8>, _>(0), row.get::<String, _>(1)))
        .collect()
}

#[tokio::test]
async fn auth_check_reads_the_session_record_and_never_writes_it() {
    let app = app_with(|config, dir| {
        config.sessions.store = StoreUrl::Sqlite(dir.path().join("sessions.db"));
    })
    .await;
    let db = app.dir.path().join("sessions.db");
    jsapi_sign_in(&app, "read-only").await;
    let before = stored_rows(&db).await;
    assert_eq!(before.len(), 1);
    // A second later an idle refresh would store a later expiry; every save seals the record
    // with a fresh nonce, so any write at all changes the row.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for _ in 0..5 {
        let response = auth_check(&app, &app.client, "").await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("set-cookie").is_none());
    }
    assert_eq!(
        stored_rows(&db).await,
        before,
        "/auth/check wrote the session"
    );

    // The same session read through `/session` is refreshed: the comparison above can fail.
    assert_eq!(app.session().await["connected"], true);
    assert_ne!(
        stored_rows(&db).await,
        before,
        "/session refreshes the session"
    );
}

#[tokio::test]
async fn auth_check_redirects_to_the_sign_in_only_for_a_trusted_proxy_that_asks() {
    let forwarded = |request: reqwest::RequestBuilder| {
        request
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.test")
            .header("x-forwarded-uri", "/reports?year=2026&q=a b")
    };
    // A page load: what a browser's navigation sends.
    let page_load = |request: reqwest::RequestBuilder| {
        forwarded(request)
            .header("sec-fetch-mode", "navigate")
            .header("accept", "text/html")
    };
    let trusted = app_with(|config, _| {
        config.limits.trusted_proxies = Some("127.0.0.1".parse().unwrap());
    })
    .await;
    let browser = step_by_step(&trusted);
    let response = page_load(browser.get(trusted.url("/auth/check?redirect=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    let to = location(&response);
    assert_eq!(
        to.as_str().split('?').next(),
        Some(trusted.url("/auth/linkedin").as_str())
    );
    assert_eq!(
        query(&to)["rd"],
        "https://app.example.test/reports?year=2026&q=a b"
    );
    // Without `redirect=1`, the plain 401.
    let response = page_load(browser.get(trusted.url("/auth/check")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Nor for an API call: a fetch from a page gets 401 JSON, which it can act on.
    let response = forwarded(browser.get(trusted.url("/auth/check?redirect=1")))
        .header("sec-fetch-mode", "cors")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_error(json_of(response).await, 401, "not_connected");

    // From a peer that is not a trusted proxy, `redirect=1` changes nothing.
    let untrusted = app_with(|config, _| {
        config.limits.trusted_proxies = Some("10.0.0.0/8".parse().unwrap());
    })
    .await;
    let response = page_load(step_by_step(&untrusted).get(untrusted.url("/auth/check?redirect=1")))
        .send()
        .await
        .unwrap();
    assert_error(json_of(response).await, 401, "not_connected");
}

#[tokio::test]
async fn auth_check_is_not_rate_limited_while_the_sign_in_routes_are() {
    let app = app_with(|config, _| {
        config.limits.rate_limit = "2,1".parse().unwrap();
    })
    .await;
    for _ in 0..12 {
        assert_eq!(auth_check(&app, &app.client, "").await.status(), 401);
    }
    let browser = step_by_step(&app);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            browser
                .get(app.url("/auth/linkedin"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// What `/session`, `/auth/check` and the page say about the member of `cookie` (a raw
/// `Cookie` header): the member id of each, `None` when not connected.
async fn members_seen_with(
    app: &TestApp,
    cookie: &str,
) -> (Option<String>, Option<String>, Option<String>) {
    let raw = crate::support::client::trusting(&app.dir.path().join("cert.pem"))
        .build()
        .unwrap();
    let session: Value = raw
        .get(app.url("/session"))
        .header("cookie", cookie)
        .fetch_json()
        .await;
    let session = session["member_id"].as_str().map(str::to_owned);
    let response = raw
        .get(app.url("/auth/check"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let check = match response.status().as_u16() {
        200 => header(&response, "x-auth-request-user").map(str::to_owned),
        401 => None,
        other => panic!("/auth/check answered {other}"),
    };
    let page = raw
        .get(app.url("/"))
        .header("cookie", cookie)
        .fetch_text()
        .await;
    let page = page
        .split(r#"<strong id="member">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .map(str::to_owned);
    (session, check, page)
}

/// The value of the cookie `name` that `jar` sends to `base`.
fn cookie_in(jar: &Jar, base: &str, name: &str) -> Option<String> {
    use reqwest::cookie::CookieStore;
    let header = jar.cookies(&url::Url::parse(base).unwrap())?;
    let prefix = format!("{name}=");
    header
        .to_str()
        .unwrap()
        .split("; ")
        .find_map(|c| c.strip_prefix(&prefix).map(str::to_owned))
}

/// Two members signed in, in two browsers, then their session cookies (named `name`) sent
/// together in one `Cookie` header, in either order: `/session`, `/auth/check` and the page
/// name the same member, before and after `POST /logout` with the pair.
async fn two_session_cookies_name_one_member(app: &TestApp, name: &str) {
    jsapi_sign_in(app, "twin-first").await;
    let first = cookie_in(&app.jar, &app.base, name).expect("the first session cookie");
    let (second_browser, second_jar) = app.new_browser();
    let value = app.authorize("twin-second").await;
    app.set_jsapi_cookie(&second_jar, &value);
    let response = app.post_from(&second_browser, "/token-exchange").await;
    assert_eq!(response.status(), 200);
    let second = cookie_in(&second_jar, &app.base, name).expect("the second session cookie");

    for (a, b) in [(&first, &second), (&second, &first)] {
        let pair = format!("{name}={a}; {name}={b}");
        let (session, check, page) = members_seen_with(app, &pair).await;
        assert!(session.is_some(), "{pair}: signed in");
        assert_eq!(check, session, "{pair}: /auth/check and /session");
        assert_eq!(page, session, "{pair}: the page and /session");
    }

    // POST /logout with the pair ends the member the pair names; after it, /auth/check
    // lets nobody in that /session does not name.
    let pair = format!("{name}={first}; {name}={second}");
    let (before, _, _) = members_seen_with(app, &pair).await;
    let raw = crate::support::client::trusting(&app.dir.path().join("cert.pem"))
        .build()
        .unwrap();
    let response = raw
        .post(app.url("/logout"))
        .header("origin", &app.base)
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (session, check, page) = members_seen_with(app, &pair).await;
    assert_ne!(session, before, "the member named before is signed out");
    assert_eq!(check, session, "after the logout, /auth/check and /session");
    assert_eq!(page, session, "after the logout, the page and /session");
    // Each cookie alone: the ended one is nobody, the other still its member.
    for (id, member) in [(&first, "twin-first"), (&second, "twin-second")] {
        let alone = format!("{name}={id}");
        let (session, check, _) = members_seen_with(app, &alone).await;
        assert_eq!(check, session, "{alone}");
        let ended = before.as_deref() == Some(member);
        assert_eq!(session.is_none(), ended, "{alone}: {session:?}");
    }
}

#[tokio::test]
async fn with_two_session_cookies_every_route_names_the_same_member_before_and_after_a_logout() {
    let app = app_with(|config, _| config.limits.rate_limit = RateLimit::Off).await;
    two_session_cookies_name_one_member(&app, "__Host-lte_session").await;
}

#[tokio::test]
async fn with_a_cookie_domain_two_session_cookies_name_one_member_everywhere() {
    let port = free_port();
    let app = app_with(|config, _| {
        config.limits.rate_limit = RateLimit::Off;
        config.listen.bind = format!("127.0.0.1:{port}").parse().unwrap();
        config.listen.public_origin = Some(format!("https://localhost:{port}"));
        config.sessions.cookie_domain = Some("localhost".parse().unwrap());
    })
    .await;
    two_session_cookies_name_one_member(&app, "__Secure-lte_session").await;
}

/// The hosts `rd` may name besides the public origin's, in the `rd` tests.
const ALLOWED: &str = "allowed.example, .apps.example";

async fn rd_app() -> TestApp {
    app_with(|config, _| {
        config.limits.rate_limit = RateLimit::Off;
        config.oidc.allowed_redirect_hosts = Some(ALLOWED.parse().unwrap());
    })
    .await
}

#[tokio::test]
async fn the_sign_in_returns_to_a_path_an_allowed_host_or_a_suffix_match_named_by_rd() {
    let app = rd_app().await;
    let own = app.url("/after?x=1");
    for (rd, expected) in [
        ("/app/reports?year=2026#top", "/app/reports?year=2026#top"),
        (
            "https://allowed.example/welcome",
            "https://allowed.example/welcome",
        ),
        (
            "https://wiki.apps.example/page?a=b",
            "https://wiki.apps.example/page?a=b",
        ),
        (own.as_str(), own.as_str()),
    ] {
        let browser = step_by_step_with(&app, Arc::new(Jar::default()));
        let response = oidc_sign_in(&app, &browser, &start_with_rd(rd), "returning").await;
        assert_eq!(response.status(), 303, "{rd}");
        assert_eq!(header(&response, "location"), Some(expected), "{rd}");
    }
    // Without `rd`, the page.
    let browser = step_by_step(&app);
    let response = oidc_sign_in(&app, &browser, "/auth/linkedin", "returning").await;
    assert_eq!(header(&response, "location"), Some("/"));
}

#[tokio::test]
async fn every_open_redirect_trick_in_rd_lands_on_the_page() {
    let app = rd_app().await;
    let browser = step_by_step(&app);
    let long = format!("https://allowed.example/{}", "a".repeat(10 * 1024));
    let tricks = [
        "//evil.example",
        "///evil.example",
        "https://evil.example.com.attacker",
        "https://allowed.example.attacker/",
        "https:evil",
        "/\\evil",
        "\\\\evil",
        "https://a@evil.example",
        "https://allowed.example@evil.example",
        "https://user:pw@allowed.example/",
        "/%2F%2Fevil",
        "/%5Cevil",
        "http://allowed.example/",
        "javascript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        long.as_str(),
        " https://evil.example",
        "/app\r\nLocation: https://evil.example",
        "\t//evil.example",
        "/app\u{0}",
        "evil.example",
    ];
    for trick in tricks {
        let response = oidc_sign_in(&app, &browser, &start_with_rd(trick), "tricked").await;
        assert_eq!(response.status(), 303, "{trick:?}");
        assert_eq!(header(&response, "location"), Some("/"), "{trick:?}");
    }
}

#[tokio::test]
async fn an_absolute_rd_gets_the_path_checks_the_origins_port_and_the_limit_once_encoded() {
    let app = rd_app().await;
    let browser = step_by_step(&app);
    let other_port = format!("https://localhost:{}/x", app.addr.port() + 1);
    let own_slashes = app.url("//evil.example");
    let own_encoded = app.url("/%2F%2Fevil.example");
    let own_backslashes = app.url("/%5C%5Cevil.example");
    // 2,045 bytes, about 6,100 characters once the parser has encoded them.
    let prefix = "https://allowed.example/";
    let wide = format!("{prefix}{}", "é".repeat((2045 - prefix.len()) / 2));
    let tricks = [
        "https://allowed.example//evil.example",
        "https://allowed.example/%2F%2Fevil.example",
        "https://allowed.example/%5C%5Cevil.example",
        "https://wiki.apps.example/%2f%2fevil.example",
        own_slashes.as_str(),
        own_encoded.as_str(),
        own_backslashes.as_str(),
        "https://allowed.example:8443/x",
        other_port.as_str(),
        wide.as_str(),
    ];
    for trick in tricks {
        let response = oidc_sign_in(&app, &browser, &start_with_rd(trick), "tricked").await;
        assert_eq!(response.status(), 303, "{trick:?}");
        assert_eq!(header(&response, "location"), Some("/"), "{trick:?}");
    }
}

/// Follows `/auth/check?redirect=1`, asked by a trusted proxy for `forwarded_uri` on the app's
/// own host, through the sign-in: where the callback sends the browser.
async fn sign_in_through_auth_check(app: &TestApp, forwarded_uri: &str) -> Option<String> {
    let browser = step_by_step_with(app, Arc::new(Jar::default()));
    let response = browser
        .get(app.url("/auth/check?redirect=1"))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", format!("localhost:{}", app.addr.port()))
        .header("x-forwarded-uri", forwarded_uri)
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302, "{forwarded_uri}");
    let sign_in = location(&response);
    let response = browser.get(sign_in).send().await.unwrap();
    assert_eq!(response.status(), 302, "{forwarded_uri}");
    let callback = consent(&browser, &location(&response), "allow", "forwarded").await;
    let response = browser.get(callback).send().await.unwrap();
    assert_eq!(response.status(), 303, "{forwarded_uri}");
    header(&response, "location").map(str::to_owned)
}

#[tokio::test]
async fn auth_check_with_a_hostile_forwarded_uri_ends_the_sign_in_on_the_page() {
    let app = app_with(|config, _| {
        config.limits.rate_limit = RateLimit::Off;
        config.limits.trusted_proxies = Some("127.0.0.1".parse().unwrap());
    })
    .await;
    let own = app.url("/reports?year=2026");
    assert_eq!(
        sign_in_through_auth_check(&app, "/reports?year=2026").await,
        Some(own),
        "a plain page is returned to"
    );
    for hostile in [
        "//evil.example",
        "/%2F%2Fevil.example",
        "/%5C%5Cevil.example",
        "/%2f/evil.example",
    ] {
        assert_eq!(
            sign_in_through_auth_check(&app, hostile).await.as_deref(),
            Some("/"),
            "{hostile}"
        );
    }
}

#[tokio::test]
async fn with_a_cookie_domain_the_session_cookie_is_secure_prefixed_carries_the_domain_and_both_flows_work()
 {
    let port = free_port();
    let app = app_with(|config, _| {
        config.listen.bind = format!("127.0.0.1:{port}").parse().unwrap();
        config.listen.public_origin = Some(format!("https://localhost:{port}"));
        config.sessions.cookie_domain = Some("localhost".parse().unwrap());
    })
    .await;
    app.sign_in("domain-member").await;
    let response = app.post("/token-exchange").await;
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Secure-lte_session="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    for flag in [
        "Domain=localhost",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    assert!(
        !cookies.iter().any(|c| c.starts_with("__Host-")),
        "{cookies:?}"
    );
    assert_eq!(response.status(), 200);
    let session = app.session().await;
    assert_eq!(
        (session["connected"].as_bool(), session["flow"].as_str()),
        (Some(true), Some("jsapi")),
        "{session}"
    );
    assert_eq!(auth_check(&app, &app.client, "").await.status(), 200);

    let (_, jar) = app.new_browser();
    let browser = step_by_step_with(&app, jar.clone());
    let response = oidc_sign_in(&app, &browser, "/auth/linkedin", "domain-oidc").await;
    assert_eq!(response.status(), 303);
    let session: Value = browser.get(app.url("/session")).fetch_json().await;
    assert_eq!(session["flow"], "oidc", "{session}");
}

#[tokio::test]
async fn tls_off_refuses_to_start_without_https_public_origins() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    config.listen.tls = TlsMode::Off;
    let err = Server::build(&config).await.err().expect("refused");
    assert_eq!(err.variable, "PUBLIC_ORIGIN", "{err}");
    config.listen.public_origin = Some("http://login.example.test".into());
    let err = Server::build(&config).await.err().expect("refused");
    assert_eq!(err.variable, "TLS", "{err}");
    assert!(err.to_string().contains("https://"), "{err}");
}

/// A self-signed certificate written where [`TestApp::start`] looks for one (a server with
/// `TLS=off` makes none, and the harness's default client wants one to trust).
fn write_unused_certificate(dir: &TempDir) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
}

#[tokio::test]
async fn tls_off_serves_plain_http_with_secure_cookies_and_a_sandbox_reached_in_plain_http() {
    let origin = "https://login.example.test";
    let app = app_with(|config, dir| {
        config.listen.tls = TlsMode::Off;
        config.listen.public_origin = Some(origin.into());
        write_unused_certificate(dir);
    })
    .await;
    let base = format!("http://{}", app.addr);
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let health = plain.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        header(&health, "strict-transport-security"),
        Some("max-age=31536000"),
        "the public origin is HTTPS"
    );
    // The JSAPI exchange, whose server-to-server call goes to the sandbox in plain HTTP.
    let payload: Value = plain
        .post(format!("{base}/sandbox/oauth2/authorize"))
        .form(&[("api_key", API_KEY), ("member_id", "plain-member")])
        .fetch_json()
        .await;
    let cookie = crate::support::encode_cookie(&payload.to_string());
    let response = plain
        .post(format!("{base}/token-exchange"))
        .header("origin", origin)
        .header("cookie", format!("linkedin_oauth_{API_KEY}={cookie}"))
        .send()
        .await
        .unwrap();
    let set_cookie = header(&response, "set-cookie")
        .unwrap_or_default()
        .to_owned();
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("connected")),
        "{body}"
    );
    assert!(
        set_cookie.starts_with("__Host-lte_session=") && set_cookie.contains("Secure"),
        "{set_cookie}"
    );
    // The OpenID Connect sign-in starts on the public origin.
    let start = plain
        .get(format!("{base}/auth/linkedin"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    assert!(
        header(&start, "location")
            .unwrap()
            .starts_with(&format!("{origin}/sandbox/oauth/v2/authorization?")),
        "{:?}",
        header(&start, "location")
    );
}

// ---------------------------------------------------------------------------------------------
// nginx in front
// ---------------------------------------------------------------------------------------------

/// nginx with `deploy/nginx.conf` in front of the service (`TLS=off`, nginx trusted as a
/// proxy) and of the protected app (which answers what it was told about the member); `None`
/// when nginx is missing and skipping is allowed.
async fn behind_nginx(test: &str, rate_limit: RateLimit) -> Option<(Nginx, TestApp, ProtectedApp)> {
    let binary = match nginx_binary() {
        Ok(binary) => binary,
        Err(reason) => {
            skip_or_fail(test, &reason);
            return None;
        }
    };
    let service_port = free_port();
    let service: SocketAddr = format!("127.0.0.1:{service_port}").parse().unwrap();
    let protected = ProtectedApp::start().await;
    let nginx = Nginx::start(&binary, service, protected.addr).await;
    let origin = nginx.origin();
    let app = app_with(|config, dir| {
        config.listen.bind = service;
        config.listen.tls = TlsMode::Off;
        config.listen.public_origin = Some(origin);
        config.limits.trusted_proxies = Some("127.0.0.1".parse().unwrap());
        config.limits.rate_limit = rate_limit;
        write_unused_certificate(dir);
    })
    .await;
    Some((nginx, app, protected))
}

/// A browser loading pages (`Sec-Fetch-Mode: navigate`, HTML preferred) from nginx at
/// `source` (a loopback address), keeping cookies and following no redirects.
fn browser_at(nginx: &Nginx, source: IpAddr) -> reqwest::Client {
    let page_load: reqwest::header::HeaderMap = [
        ("sec-fetch-mode", "navigate"),
        ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
    ]
    .into_iter()
    .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
    .collect();
    crate::support::client::trusting(&nginx.cert())
        .default_headers(page_load)
        .cookie_provider(Arc::new(Jar::default()))
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source)
        .build()
        .unwrap()
}

#[tokio::test]
async fn behind_nginx_a_protected_app_lets_members_through_with_their_headers_and_sends_others_to_sign_in_and_back()
 {
    let test = "behind_nginx_a_protected_app_lets_members_through";
    let Some((nginx, _app, _protected)) = behind_nginx(test, RateLimit::Off).await else {
        return;
    };
    let origin = nginx.origin();
    let browser = browser_at(&nginx, [127, 0, 0, 1].into());
    let wanted = format!("{origin}/app/reports?year=2026&q=x");

    // Not signed in: nginx's auth_request gets 401, and the service's redirect goes to the
    // sign-in with `rd` naming the page asked for.
    let response = browser.get(&wanted).send().await.unwrap();
    assert_eq!(response.status(), 302, "{}", nginx.logs());
    let sign_in = location(&response);
    assert_eq!(
        sign_in.as_str().split('?').next(),
        Some(format!("{origin}/auth/linkedin").as_str())
    );
    assert_eq!(query(&sign_in)["rd"], wanted);

    // The OpenID Connect sign-in, every step through nginx, back to the page asked for.
    let response = browser.get(sign_in).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let authorization = location(&response);
    assert!(
        authorization.as_str().starts_with(&origin),
        "{authorization}"
    );
    let callback = consent(&browser, &authorization, "allow", "proxied-member").await;
    let response = browser.get(callback).send().await.unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(header(&response, "location"), Some(wanted.as_str()));
    let set_cookie = header(&response, "set-cookie").unwrap_or_default();
    assert!(set_cookie.contains("Secure"), "{set_cookie}");

    // Signed in: the app behind nginx gets the request and the member's headers.
    let response = browser.get(&wanted).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", nginx.logs());
    let seen: Value = response.json().await.unwrap();
    let session: Value = browser.get(format!("{origin}/session")).fetch_json().await;
    assert_eq!(seen["path"], "/app/reports?year=2026&q=x");
    assert_eq!(seen["user"], session["member_id"], "{seen} {session}");
    assert_eq!(seen["flow"], "oidc");
    assert_eq!(seen["email"], "proxied-member@sandbox.example");
    assert_eq!(seen["name"], "Sandbox proxied-member");

    // Someone else, even one who forges the headers, is sent to sign in.
    let stranger = browser_at(&nginx, [127, 0, 0, 1].into());
    let response = stranger
        .get(&wanted)
        .header("x-auth-request-user", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
}

#[tokio::test]
async fn behind_nginx_a_protected_page_asked_for_with_a_doubled_slash_ends_the_sign_in_on_the_page()
{
    let test = "behind_nginx_a_protected_page_asked_for_with_a_doubled_slash";
    let Some((nginx, _app, _protected)) = behind_nginx(test, RateLimit::Off).await else {
        return;
    };
    let origin = nginx.origin();
    for hostile in ["//app/reports", "//app/%2F%2Fevil.example"] {
        let browser = browser_at(&nginx, [127, 0, 0, 1].into());
        // nginx matches `/app/` on the merged path and forwards the raw one.
        let response = browser
            .get(format!("{origin}{hostile}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "{hostile}: {}", nginx.logs());
        let sign_in = location(&response);
        assert_eq!(
            query(&sign_in)["rd"],
            format!("{origin}{hostile}"),
            "the rd nginx made"
        );
        let response = browser.get(sign_in).send().await.unwrap();
        assert_eq!(response.status(), 302, "{hostile}");
        let callback = consent(&browser, &location(&response), "allow", "slashed").await;
        let response = browser.get(callback).send().await.unwrap();
        assert_eq!(response.status(), 303, "{hostile}");
        assert_eq!(header(&response, "location"), Some("/"), "{hostile}");
    }
}

#[tokio::test]
async fn behind_nginx_each_client_address_draws_on_its_own_rate_limit_budget() {
    let test = "behind_nginx_each_client_address_draws_on_its_own_rate_limit_budget";
    let Some((nginx, app, _protected)) = behind_nginx(test, "3,1".parse().unwrap()).await else {
        return;
    };
    let url = format!("{}/auth/linkedin", nginx.origin());
    let first = browser_at(&nginx, [127, 0, 0, 2].into());
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(first.get(&url).send().await.unwrap().status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(statuses[0], 302, "{statuses:?}");
    // Another address through the same nginx still has its whole budget.
    let second = browser_at(&nginx, [127, 0, 0, 3].into());
    let status = second.get(&url).send().await.unwrap().status();
    assert_eq!(
        status, 302,
        "the second client shares the first one's budget"
    );
    drop(app);
}

/// The service's binary with `env`, its log read until a line holding `needle` appears.
async fn log_line_with(env: &[(&str, &str)], forwarded_for: &str, needle: &str) -> String {
    let mut all = vec![
        ("LINKEDIN_API_KEY", API_KEY),
        ("LINKEDIN_SECRET_KEY", crate::support::SECRET_KEY),
        ("SANDBOX", "true"),
    ];
    all.extend_from_slice(env);
    let server = crate::support::Served::start("localhost", &all, "/healthz").await;
    let response = server
        .client(None)
        .post(server.url("/token-exchange"))
        .header("origin", &server.origin)
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let started = std::time::Instant::now();
    loop {
        if let Some(line) = server.output().lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no line with {needle}: {}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn log_lines_name_the_client_a_trusted_proxy_forwarded_and_the_peer_otherwise() {
    let behind = log_line_with(
        &[("TRUSTED_PROXIES", "127.0.0.1")],
        "203.0.113.9",
        "missing_cookie",
    )
    .await;
    assert!(behind.contains("client=203.0.113.9"), "{behind}");
    let direct = log_line_with(&[], "203.0.113.9", "missing_cookie").await;
    assert!(direct.contains("client=127.0.0.1"), "{direct}");
    assert!(!direct.contains("203.0.113.9"), "{direct}");
}
