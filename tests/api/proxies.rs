//! Forward auth through the real proxies (SPEC, "Forward auth for every proxy"): Debian's
//! nginx running `deploy/nginx.conf` and Debian's caddy running `deploy/Caddyfile`, each in
//! front of the service (`TLS=off`, `ASSERTION=on`, the proxy trusted) and of an app that
//! trusts only what the proxy tells it and verifies the signed identity itself
//! ([`ProtectedApp`]). Each scenario is one function taking the running [`Front`]; every
//! scenario runs once per proxy (`<scenario>::nginx`, `<scenario>::caddy`), so that both
//! deploy files are held to the same behaviour.
//!
//! The deploy files protect `/app/` (every signed-in member: the default rule) and
//! `/app/staff/` (`allow=flow:oidc`); `/app/ws` and `/app/staff/ws` are WebSocket echoes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use linkedin_token_exchange::server::config::{RateLimit, TlsMode};
use reqwest::RequestBuilder;
use reqwest::cookie::{CookieStore, Jar};
use serde_json::Value;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::oidc::{consent, location, query};
use crate::support::caddy::{Caddy, caddy_binary};
use crate::support::nginx::{Nginx, nginx_binary};
use crate::support::protected::ProtectedApp;
use crate::support::servers::skip_or_fail;
use crate::support::{API_KEY, FetchJson, TestApp, free_port, json_of, test_config};

#[derive(Clone, Copy)]
enum Kind {
    Nginx,
    Caddy,
}

enum Proxy {
    Nginx(Nginx),
    Caddy(Caddy),
}

/// A proxy running its deploy file, the service behind it and the app it protects.
struct Front {
    proxy: Proxy,
    service: TestApp,
    app: ProtectedApp,
}

impl Front {
    /// The proxy of `kind` in front of a fresh service and app; `None` when the proxy is
    /// not installed and skipping is allowed.
    async fn start(kind: Kind, test: &str) -> Option<Front> {
        let binary = match kind {
            Kind::Nginx => nginx_binary(),
            Kind::Caddy => caddy_binary(),
        };
        let binary = match binary {
            Ok(binary) => binary,
            Err(reason) => {
                skip_or_fail(test, &reason);
                return None;
            }
        };
        let app = ProtectedApp::start().await;
        let service: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let proxy = match kind {
            Kind::Nginx => Proxy::Nginx(Nginx::start(&binary, service, app.addr).await),
            Kind::Caddy => Proxy::Caddy(Caddy::start(&binary, service, app.addr).await),
        };
        let (origin, cert) = match &proxy {
            Proxy::Nginx(nginx) => (nginx.origin(), nginx.cert()),
            Proxy::Caddy(caddy) => (caddy.origin(), caddy.cert()),
        };
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config(&dir);
        config.listen.bind = service;
        config.listen.tls = TlsMode::Off;
        config.listen.public_origin = Some(origin.clone());
        config.limits.trusted_proxies = Some("127.0.0.1".parse().unwrap());
        config.limits.rate_limit = RateLimit::Off;
        config.forward_auth.assertion = true;
        config.forward_auth.assertion_key_file = dir.path().join("assertion-key.pem");
        // TestApp's own client wants a certificate to trust, which a TLS=off server makes
        // none of.
        std::fs::copy(&cert, dir.path().join("cert.pem")).unwrap();
        let service = TestApp::start(config, dir).await;
        // The app takes the service's keys from the public origin, through the proxy.
        app.trust(
            &origin,
            &origin,
            crate::support::client::trusting(&cert).build().unwrap(),
        );
        Some(Front {
            proxy,
            service,
            app,
        })
    }

    /// `https://localhost:PORT`, the proxy's origin (the service's `PUBLIC_ORIGIN`).
    fn origin(&self) -> String {
        match &self.proxy {
            Proxy::Nginx(nginx) => nginx.origin(),
            Proxy::Caddy(caddy) => caddy.origin(),
        }
    }

    fn port(&self) -> u16 {
        match &self.proxy {
            Proxy::Nginx(nginx) => nginx.port,
            Proxy::Caddy(caddy) => caddy.port,
        }
    }

    fn cert(&self) -> PathBuf {
        match &self.proxy {
            Proxy::Nginx(nginx) => nginx.cert(),
            Proxy::Caddy(caddy) => caddy.cert(),
        }
    }

    /// The proxy's logs, for failure messages.
    fn logs(&self) -> String {
        match &self.proxy {
            Proxy::Nginx(nginx) => nginx.logs(),
            Proxy::Caddy(caddy) => caddy.logs(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// A browser talking to the proxy, keeping cookies and following no redirects.
    fn browser(&self) -> (reqwest::Client, Arc<Jar>) {
        let jar = Arc::new(Jar::default());
        let browser = crate::support::client::trusting(&self.cert())
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        (browser, jar)
    }

    /// The `Cookie` header `jar` sends to the proxy.
    fn cookies(&self, jar: &Jar) -> String {
        let header = jar.cookies(&url::Url::parse(&self.origin()).unwrap());
        header.expect("cookies").to_str().unwrap().to_owned()
    }

    /// A browser of `member`, signed in with the JSAPI (the sandbox's cookie, exchanged at
    /// `/token-exchange`), every step through the proxy.
    async fn jsapi_member(&self, member: &str) -> (reqwest::Client, Arc<Jar>) {
        let (browser, jar) = self.browser();
        let payload: Value = browser
            .post(self.url("/sandbox/oauth2/authorize"))
            .form(&[("api_key", API_KEY), ("member_id", member)])
            .fetch_json()
            .await;
        let cookie = crate::support::encode_cookie(&payload.to_string());
        jar.add_cookie_str(
            &format!("linkedin_oauth_{API_KEY}={cookie}; Path=/; Secure"),
            &url::Url::parse(&self.origin()).unwrap(),
        );
        let response = browser
            .post(self.url("/token-exchange"))
            .header("origin", self.origin())
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(
            (status, &body["status"]),
            (200, &"connected".into()),
            "{body}"
        );
        (browser, jar)
    }

    /// A browser of `member`, signed in with OpenID Connect through the proxy, and the
    /// member id the service gave them.
    async fn oidc_member(&self, member: &str) -> (reqwest::Client, Arc<Jar>, String) {
        let (browser, jar) = self.browser();
        let response = browser
            .get(self.url("/auth/linkedin"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "{}", self.logs());
        let callback = consent(&browser, &location(&response), "allow", member).await;
        let response = browser.get(callback).send().await.unwrap();
        assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
        let session: Value = browser.get(self.url("/session")).fetch_json().await;
        let id = session["member_id"].as_str().expect("a member").to_owned();
        (browser, jar, id)
    }
}

/// Runs `scenario` through the proxy of `kind`.
async fn run(kind: Kind, test: &str, scenario: impl AsyncFnOnce(&Front)) {
    if let Some(front) = Front::start(kind, test).await {
        scenario(&front).await;
    }
}

/// One test per proxy for each scenario: `<scenario>::nginx` and `<scenario>::caddy`.
macro_rules! through_both_proxies {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn nginx() {
                let test = concat!("proxies::", stringify!($scenario), "::nginx");
                super::run(super::Kind::Nginx, test, super::$scenario).await;
            }

            #[tokio::test]
            async fn caddy() {
                let test = concat!("proxies::", stringify!($scenario), "::caddy");
                super::run(super::Kind::Caddy, test, super::$scenario).await;
            }
        }
    )*};
}

through_both_proxies!(
    a_member_gets_through_with_their_headers_and_an_assertion_the_app_verifies,
    forged_identity_headers_never_reach_the_app,
    a_stranger_navigating_is_sent_to_sign_in_and_comes_back_through_rd,
    an_api_call_without_a_member_gets_401_json_never_a_redirect,
    a_member_outside_the_rule_gets_403_naming_it_and_no_request_changes_the_rule,
    a_websocket_connects_and_echoes_for_a_member_and_is_refused_for_others,
    every_spelling_of_a_protected_path_is_checked_with_its_rule,
);

// ---------------------------------------------------------------------------------------------
// Request shapes
// ---------------------------------------------------------------------------------------------

/// A page navigation, as a browser sends it.
fn navigation(request: RequestBuilder) -> RequestBuilder {
    request
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
}

/// The requests of a page's scripts and of other clients, each by the one header that tells
/// it from a navigation (an `Accept` that prefers HTML where the header alone must decide).
const API_CALLS: [(&str, &[(&str, &str)]); 4] = [
    ("fetch", &[("accept", "*/*"), ("sec-fetch-mode", "cors")]),
    (
        "XMLHttpRequest",
        &[
            ("accept", "text/html,*/*;q=0.8"),
            ("x-requested-with", "XMLHttpRequest"),
        ],
    ),
    ("a JSON Accept", &[("accept", "application/json")]),
    ("a client with no such header", &[]),
];

fn with_headers(mut request: RequestBuilder, headers: &[(&str, &str)]) -> RequestBuilder {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// What the app behind the proxy was told, from a 200.
async fn seen_by_the_app(front: &Front, request: RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}\n{}", front.logs());
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not the app's JSON: {text}"))
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The claims of the verified assertion the app reports in `seen`.
#[track_caller]
fn verified_claims(seen: &Value) -> &Value {
    assert_eq!(seen["assertion"]["verified"], true, "{seen}");
    &seen["assertion"]["claims"]
}

// ---------------------------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------------------------

async fn a_member_gets_through_with_their_headers_and_an_assertion_the_app_verifies(front: &Front) {
    let (browser, jar, id) = front.oidc_member("through-member").await;
    let path = "/app/reports?year=2026&q=x";
    for request in [
        navigation(browser.get(front.url(path))),
        with_headers(browser.get(front.url(path)), API_CALLS[0].1),
    ] {
        let seen = seen_by_the_app(front, request).await;
        assert_eq!(seen["path"], path, "{seen}");
        assert_eq!(seen["user"], id.as_str(), "{seen}");
        assert_eq!(seen["flow"], "oidc");
        assert_eq!(seen["email"], "through-member@sandbox.example");
        assert_eq!(seen["name"], "Sandbox through-member");
        assert_eq!(seen["access_token"], Value::Null, "never handed on");

        let claims = verified_claims(&seen);
        let origin = front.origin();
        assert_eq!(claims["iss"], origin.as_str(), "{claims}");
        assert_eq!(claims["aud"], origin.as_str(), "{claims}");
        assert_eq!(claims["sub"], id.as_str(), "{claims}");
        assert_eq!(claims["email"], "through-member@sandbox.example");
        assert_eq!(claims["name"], "Sandbox through-member");
        assert_eq!(claims["flow"], "oidc");
        let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
        let (iat, exp) = (iat.expect("iat"), exp.expect("exp"));
        assert!((iat - unix_now()).abs() <= 60, "{claims}");
        assert!(exp > iat && exp - iat <= 300, "{claims}");
        assert!(
            claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()),
            "{claims}"
        );
    }

    // A POST goes through too, with its body (nginx's check gets none, and asks with GET).
    let response = browser
        .post(front.url("/app/submit"))
        .header("sec-fetch-mode", "cors")
        .body("a=1")
        .send()
        .await
        .unwrap();
    let (status, seen) = json_of(response).await;
    assert_eq!((status, &seen["method"]), (200, &"POST".into()), "{seen}");
    assert_eq!(seen["body"], "a=1", "{seen}");
    assert_eq!(seen["user"], id.as_str());

    // The app's verifier is no rubber stamp: sent to the app directly, an assertion the
    // service made for another site, or a forged one, does not verify.
    let plain = crate::support::client::trusting(&front.cert())
        .build()
        .unwrap();
    let response = plain
        .get(format!("http://{}/auth/check", front.service.addr))
        .header("cookie", front.cookies(&jar))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "other.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let elsewhere = header(&response, "x-auth-request-assertion").expect("an assertion");
    for (token, why) in [(elsewhere, "InvalidAudience"), ("e30.e30.forged", "header")] {
        let seen: Value = plain
            .get(format!("http://{}/app/direct", front.app.addr))
            .header("x-auth-request-assertion", token)
            .fetch_json()
            .await;
        assert_eq!(seen["assertion"]["verified"], false, "{seen}");
        let error = seen["assertion"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{seen}");
    }
}

async fn forged_identity_headers_never_reach_the_app(front: &Front) {
    // A member the service knows no email or name of: the proxy has nothing of its own to
    // put in those headers, and must still drop the client's.
    let (browser, _) = front.jsapi_member("plain-member").await;
    let forged = [
        ("x-auth-request-user", "admin"),
        ("x-auth-request-email", "ceo@example.com"),
        ("x-auth-request-name", "The CEO"),
        ("x-auth-request-flow", "oidc"),
        ("x-auth-request-assertion", "e30.e30.forged"),
        ("x-auth-request-access-token", "stolen"),
    ];
    for path in ["/app/forged", "/app/staff/forged"] {
        let request = with_headers(navigation(browser.get(front.url(path))), &forged);
        let response = request.send().await.unwrap();
        if path.starts_with("/app/staff/") {
            // The rule reads the member, not the headers: still outside it.
            assert_eq!(response.status(), 403, "{}", front.logs());
            continue;
        }
        assert_eq!(response.status(), 200, "{}", front.logs());
        let seen: Value = response.json().await.unwrap();
        assert_eq!(seen["user"], "plain-member", "{seen}");
        assert_eq!(seen["flow"], "jsapi", "{seen}");
        assert_eq!(seen["email"], Value::Null, "{seen}");
        assert_eq!(seen["name"], Value::Null, "{seen}");
        assert_eq!(seen["access_token"], Value::Null, "{seen}");
        let claims = verified_claims(&seen);
        assert_eq!(claims["sub"], "plain-member", "{claims}");
        assert_eq!(claims["flow"], "jsapi", "{claims}");
        assert_eq!(claims.get("email"), None, "{claims}");
    }

    // Someone signed in as nobody, forging every header: sent to sign in, never let in.
    let (stranger, _) = front.browser();
    let request = with_headers(navigation(stranger.get(front.url("/app/forged"))), &forged);
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 302, "{}", front.logs());
}

async fn a_stranger_navigating_is_sent_to_sign_in_and_comes_back_through_rd(front: &Front) {
    let origin = front.origin();
    let (browser, _) = front.browser();
    let wanted = front.url("/app/reports?year=2026&q=x");

    let response = navigation(browser.get(&wanted)).send().await.unwrap();
    assert_eq!(response.status(), 302, "{}", front.logs());
    let sign_in = location(&response);
    assert_eq!(
        sign_in.as_str().split('?').next(),
        Some(format!("{origin}/auth/linkedin").as_str())
    );
    assert_eq!(query(&sign_in)["rd"], wanted);

    // The OpenID Connect sign-in, every step through the proxy, back to the page asked for.
    let response = navigation(browser.get(sign_in)).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let authorization = location(&response);
    assert!(
        authorization.as_str().starts_with(&origin),
        "{authorization}"
    );
    let callback = consent(&browser, &authorization, "allow", "returning-member").await;
    let response = navigation(browser.get(callback)).send().await.unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(header(&response, "location"), Some(wanted.as_str()));

    let seen = seen_by_the_app(front, navigation(browser.get(&wanted))).await;
    let session: Value = browser.get(front.url("/session")).fetch_json().await;
    assert_eq!(seen["path"], "/app/reports?year=2026&q=x");
    assert_eq!(seen["user"], session["member_id"], "{seen} {session}");
    assert_eq!(seen["email"], "returning-member@sandbox.example");

    // A navigation to the part with a rule: sign-in first too (the rule is for members).
    let (stranger, _) = front.browser();
    let staff = front.url("/app/staff/plan");
    let response = navigation(stranger.get(&staff)).send().await.unwrap();
    assert_eq!(response.status(), 302, "{}", front.logs());
    assert_eq!(query(&location(&response))["rd"], staff);
}

async fn an_api_call_without_a_member_gets_401_json_never_a_redirect(front: &Front) {
    let (stranger, _) = front.browser();
    for (shape, headers) in API_CALLS {
        for path in ["/app/data?x=1", "/app/staff/data"] {
            for post in [false, true] {
                let url = front.url(path);
                let request = if post {
                    stranger.post(url).body("{}")
                } else {
                    stranger.get(url)
                };
                let response = with_headers(request, headers).send().await.unwrap();
                let what = format!("{} {path} from {shape}", if post { "POST" } else { "GET" });
                assert_eq!(header(&response, "location"), None, "{what}");
                let content_type = header(&response, "content-type").unwrap_or_default();
                assert!(
                    content_type.starts_with("application/json"),
                    "{what}: {content_type}"
                );
                let (status, body) = json_of(response).await;
                assert_eq!(
                    (status, body["error"].as_str()),
                    (401, Some("not_connected")),
                    "{what}: {body}\n{}",
                    front.logs()
                );
            }
        }
    }
    // The same stranger's navigation is the one sent to sign in.
    let response = navigation(stranger.get(front.url("/app/data?x=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    // And a member's API call gets through.
    let (member, _) = front.jsapi_member("api-member").await;
    for (shape, headers) in API_CALLS {
        let request = with_headers(member.get(front.url("/app/data")), headers);
        let seen = seen_by_the_app(front, request).await;
        assert_eq!(seen["user"], "api-member", "{shape}: {seen}");
    }
}

async fn a_member_outside_the_rule_gets_403_naming_it_and_no_request_changes_the_rule(
    front: &Front,
) {
    // `/app/staff/` allows `flow:oidc`; a JSAPI member is outside it.
    let (outside, _) = front.jsapi_member("outside-member").await;
    let staff = front.url("/app/staff/plan");

    let response = navigation(outside.get(&staff)).send().await.unwrap();
    assert_eq!(response.status(), 403, "{}", front.logs());
    assert_eq!(
        header(&response, "x-auth-request-denied"),
        Some("flow:oidc")
    );
    let content_type = header(&response, "content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.to_lowercase().contains("<html"), "{page}");

    for (shape, headers) in API_CALLS {
        let response = with_headers(outside.get(&staff), headers)
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&response, "x-auth-request-denied"),
            Some("flow:oidc"),
            "{shape}"
        );
        let (status, body) = json_of(response).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("forbidden")),
            "{shape}: {body}"
        );
    }

    // Nothing in the client's request names another rule: not the URL's query, not a header.
    let tricks: [(&str, &[(&str, &str)]); 6] = [
        ("/app/staff/plan?allow=flow:jsapi", &[]),
        ("/app/staff/plan?allow=&redirect=0", &[]),
        ("/app/staff/plan?a=1&allow=member:outside-member", &[]),
        (
            "/app/staff/plan",
            &[("x-forwarded-uri", "/auth/check?allow=flow:jsapi")],
        ),
        (
            "/app/staff/plan",
            &[("x-original-uri", "/auth/check?allow=flow:jsapi")],
        ),
        (
            "/app/staff/plan",
            &[
                ("x-auth-request-allow", "flow:jsapi"),
                ("allow", "flow:jsapi"),
            ],
        ),
    ];
    for (path, headers) in tricks {
        let request = with_headers(navigation(outside.get(front.url(path))), headers);
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{path} {headers:?}");
        assert_eq!(
            header(&response, "x-auth-request-denied"),
            Some("flow:oidc"),
            "{path} {headers:?}"
        );
    }

    // The same member passes where the default rule applies.
    let seen = seen_by_the_app(front, navigation(outside.get(front.url("/app/plan")))).await;
    assert_eq!(seen["user"], "outside-member");

    // A member inside the rule passes.
    let (inside, _, id) = front.oidc_member("inside-member").await;
    let seen = seen_by_the_app(front, navigation(inside.get(&staff))).await;
    assert_eq!(seen["path"], "/app/staff/plan");
    assert_eq!(seen["user"], id.as_str(), "{seen}");
    assert_eq!(verified_claims(&seen)["flow"], "oidc");
}

/// Spellings of `/app/staff/plan` that a path matcher could take for another path: doubled
/// slashes, an escaped letter, an escaped slash.
const STAFF_SPELLINGS: [&str; 5] = [
    "/app//staff/plan",
    "//app/staff/plan",
    "/app/staff//plan",
    "/app/%73taff/plan",
    "/app%2Fstaff/plan",
];

async fn every_spelling_of_a_protected_path_is_checked_with_its_rule(front: &Front) {
    // Whatever the proxy makes of the path, the app never answers it unchecked: a stranger's
    // navigation is sent to sign in, with the path as asked for in `rd`.
    let (stranger, _) = front.browser();
    for path in STAFF_SPELLINGS {
        let response = navigation(stranger.get(front.url(path)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "{path}\n{}", front.logs());
        assert_eq!(query(&location(&response))["rd"], front.url(path), "{path}");
    }
    // And it is the rule of `/app/staff/` that applies: a member outside it is refused.
    let (outside, _) = front.jsapi_member("spelling-member").await;
    for path in STAFF_SPELLINGS {
        let response = navigation(outside.get(front.url(path)))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 403, "{path}: {text}\n{}", front.logs());
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `path` through the proxy (HTTP/1.1 upgrade over TLS), sending
/// `cookie`, as a browser does (`Sec-Fetch-Mode: websocket`, the page's `Origin`).
async fn websocket(
    front: &Front,
    path: &str,
    cookie: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    let port = front.port();
    let tls =
        crate::support::raw_tls_trusting(&front.cert(), ([127, 0, 0, 1], port).into(), b"http/1.1")
            .await;
    let mut request = format!("wss://localhost:{port}{path}")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("origin", front.origin().parse().unwrap());
    headers.insert("sec-fetch-mode", "websocket".parse().unwrap());
    if let Some(cookie) = cookie {
        headers.insert("cookie", cookie.parse().unwrap());
    }
    let handshake = tokio_tungstenite::client_async(request, tls);
    let (socket, response) = tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
        .expect("the handshake ends in time")?;
    assert_eq!(response.status(), 101);
    Ok(socket)
}

/// The next text message on `socket`.
async fn next_text(socket: &mut Socket) -> String {
    use futures_util::StreamExt;
    let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a message in time")
        .expect("the socket is open")
        .expect("a message");
    message.into_text().expect("a text message").to_string()
}

/// The refusal of a WebSocket handshake: its status and JSON body.
#[track_caller]
fn refusal(result: Result<Socket, tungstenite::Error>) -> (u16, Value) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("not an HTTP refusal: {other}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

async fn a_websocket_connects_and_echoes_for_a_member_and_is_refused_for_others(front: &Front) {
    use futures_util::SinkExt;
    let (_, jar) = front.jsapi_member("socket-member").await;
    let cookie = front.cookies(&jar);
    let mut socket = websocket(front, "/app/ws", Some(&cookie))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", front.logs()));
    let hello: Value = serde_json::from_str(&next_text(&mut socket).await).unwrap();
    assert_eq!(hello["path"], "/app/ws", "{hello}");
    assert_eq!(hello["user"], "socket-member", "{hello}");
    assert_eq!(verified_claims(&hello)["sub"], "socket-member");
    for text in ["first", "second, with more ☃"] {
        socket.send(tungstenite::Message::text(text)).await.unwrap();
        assert_eq!(next_text(&mut socket).await, text);
    }
    socket
        .send(tungstenite::Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    socket.close(None).await.unwrap();

    // No member: 401 JSON, no upgrade.
    let (status, body) = refusal(websocket(front, "/app/ws", None).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("not_connected")),
        "{body}"
    );
    // A member outside the rule of `/app/staff/`: 403, no upgrade.
    let (status, body) = refusal(websocket(front, "/app/staff/ws", Some(&cookie)).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
}
