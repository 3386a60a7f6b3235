//! Forward auth for every proxy (SPEC, "Forward auth for every proxy"): rules per location,
//! 401 for API calls and the sign-in for page loads, the signed identity checked by an
//! independent verifier (PyJWT, and the `jsonwebtoken` crate), and the requests that
//! `deploy/traefik.yml` and `deploy/envoy.yaml` make Traefik and Envoy send, answered as each
//! proxy reads the answer. (Traefik and Envoy are not installable here: their request shapes
//! follow their documentation: Traefik's `forwardAuth` and Envoy's HTTP `ext_authz`. Real
//! nginx and Caddy run in `proxy.rs` and `caddy.rs`.)

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use linkedin_token_exchange::server::config::Config;
use reqwest::Method;
use reqwest::cookie::{CookieStore, Jar};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::oidc::{consent, location, query, step_by_step_with};
use crate::support::servers::skip_or_fail;
use crate::support::{FetchJson, TestApp, assert_error, json_of, test_config};

/// The protected site's origin, as the proxies in deploy/ name it.
const SITE: &str = "https://app.example.com";

/// A service with assertions on (a generated key), every peer on loopback a trusted proxy,
/// and `rd` allowed back to the protected site; `change` adjusts it.
async fn app_with(change: impl FnOnce(&mut Config, &TempDir)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.limits.trusted_proxies = Some("127.0.0.1".parse().unwrap());
    config.oidc.allowed_redirect_hosts = Some("app.example.com".parse().unwrap());
    config.forward_auth.assertion = true;
    config.forward_auth.assertion_key_file = dir.path().join("assertion-key.pem");
    change(&mut config, &dir);
    TestApp::start(config, dir).await
}

/// A member signed in through the sandbox's OpenID Connect provider (email
/// `<name>@sandbox.example`) in a browser of their own: the `Cookie` header their browser
/// sends the service, and their member id.
async fn oidc_member(app: &TestApp, name: &str) -> (String, String) {
    let jar = Arc::new(Jar::default());
    let browser = step_by_step_with(app, jar.clone());
    let response = browser.get(app.url("/auth/linkedin")).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let callback = consent(&browser, &location(&response), "allow", name).await;
    assert_eq!(browser.get(callback).send().await.unwrap().status(), 303);
    cookie_and_member(app, &jar).await
}

/// A member signed in with a JSAPI cookie (no email): their `Cookie` header and member id.
async fn jsapi_member(app: &TestApp, name: &str) -> (String, String) {
    let (browser, jar) = app.new_browser();
    let cookie = app.authorize(name).await;
    app.set_jsapi_cookie(&jar, &cookie);
    let response = app.post_from(&browser, "/token-exchange").await;
    assert_eq!(response.status(), 200);
    cookie_and_member(app, &jar).await
}

async fn cookie_and_member(app: &TestApp, jar: &Jar) -> (String, String) {
    let url = url::Url::parse(&app.base).unwrap();
    let cookie = jar.cookies(&url).unwrap().to_str().unwrap().to_owned();
    let session: Value = app
        .client
        .get(app.url("/session"))
        .header("cookie", &cookie)
        .fetch_json()
        .await;
    let member = session["member_id"].as_str().unwrap().to_owned();
    (cookie, member)
}

/// A client with no cookie store of its own (each request names its `Cookie`), no redirects.
fn bare_client(app: &TestApp) -> reqwest::Client {
    crate::support::client::trusting(&app.dir.path().join("cert.pem"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The headers a browser sends with a page load.
const PAGE_LOAD: [(&str, &str); 2] = [
    ("sec-fetch-mode", "navigate"),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
];
/// The headers of a `fetch()` from a page.
const FETCH: [(&str, &str); 2] = [("sec-fetch-mode", "cors"), ("accept", "application/json")];
/// The headers of jQuery's `$.ajax`, from a browser without Fetch metadata.
const XHR: [(&str, &str); 2] = [("x-requested-with", "XMLHttpRequest"), ("accept", "*/*")];

/// `GET /auth/check<query>` as a trusted proxy asks for `SITE` + `uri`, with `cookie` and
/// `extra` headers of the original request.
async fn check(
    app: &TestApp,
    query: &str,
    uri: &str,
    cookie: Option<&str>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = bare_client(app)
        .get(app.url(&format!("/auth/check{query}")))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", uri);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_rule_in_the_auth_url_admits_the_members_it_names_and_refuses_others_with_403_naming_it()
{
    let app = app_with(|_, _| {}).await;
    let (ann, ann_id) = oidc_member(&app, "ann").await;
    let (jay, jay_id) = jsapi_member(&app, "jay").await;

    // Each kind of term admits whom it names.
    for (rule, admits_ann, admits_jay) in [
        ("email:@sandbox.example", true, false),
        ("email:ann@SANDBOX.example", true, false),
        ("email:@example.com", false, false),
        (&format!("member:{jay_id}") as &str, false, true),
        ("flow:oidc", true, false),
        ("flow:jsapi", false, true),
        (&format!("flow:jsapi,member:{ann_id}"), true, true),
    ] {
        let query = format!("?allow={}", urlencoding(rule));
        for (cookie, admitted, who) in [(&ann, admits_ann, "ann"), (&jay, admits_jay, "jay")] {
            let response = check(&app, &query, "/admin/", Some(cookie), &FETCH).await;
            if admitted {
                assert_eq!(response.status(), 200, "{rule} should admit {who}");
                assert!(header(&response, "x-auth-request-denied").is_none());
                continue;
            }
            assert_eq!(
                header(&response, "x-auth-request-denied"),
                Some(rule),
                "{rule} {who}"
            );
            let (status, body) = json_of(response).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (403, Some("forbidden")),
                "{rule} should refuse {who}: {body}"
            );
        }
    }

    // A navigation outside the rule gets a short page, with the rule in the header too.
    let response = check(
        &app,
        "?allow=email:@example.com",
        "/admin/",
        Some(&ann),
        &PAGE_LOAD,
    )
    .await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        header(&response, "x-auth-request-denied"),
        Some("email:@example.com")
    );
    assert!(
        header(&response, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("Not for this account"), "{page}");
    assert!(page.contains("email:@example.com"), "{page}");
    assert!(page.contains(&format!("href=\"{}/\"", app.base)), "{page}");

    // A rule that does not parse, or a parameter the check does not take, is the proxy
    // configuration's mistake: 400, never a pass.
    for query in [
        "?allow=group:admins",
        "?allow=member:",
        "?rd=https://evil.example",
    ] {
        let (status, body) = json_of(check(&app, query, "/", Some(&ann), &FETCH).await).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_auth_url")),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn the_default_rule_applies_where_the_auth_url_names_none_and_nothing_the_client_sends_changes_it()
 {
    let app = app_with(|config, _| {
        config.forward_auth.allow = Some("flow:jsapi".parse().unwrap());
    })
    .await;
    let (ann, ann_id) = oidc_member(&app, "ann").await;
    let (jay, _) = jsapi_member(&app, "jay").await;

    assert_eq!(check(&app, "", "/", Some(&jay), &FETCH).await.status(), 200);
    let refused = check(&app, "", "/", Some(&ann), &FETCH).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        header(&refused, "x-auth-request-denied"),
        Some("flow:jsapi")
    );
    // An empty allow= is no rule: the default again.
    assert_eq!(
        check(&app, "?allow=&redirect=1", "/", Some(&ann), &FETCH)
            .await
            .status(),
        403
    );
    // The auth URL's own rule replaces the default.
    assert_eq!(
        check(&app, "?allow=flow:oidc", "/", Some(&ann), &FETCH)
            .await
            .status(),
        200
    );

    // What the client controls: its URL (forwarded as X-Forwarded-Uri), its headers. None
    // of them names a rule.
    let own_rule = format!("member:{ann_id}");
    let uri = format!("/?allow={own_rule}&redirect=1");
    let response = check(
        &app,
        "",
        &uri,
        Some(&ann),
        &[
            ("x-auth-request-allow", &own_rule as &str),
            ("x-forwarded-query", &format!("allow={own_rule}")),
            ("sec-fetch-mode", "cors"),
        ],
    )
    .await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        header(&response, "x-auth-request-denied"),
        Some("flow:jsapi")
    );
}

#[tokio::test]
async fn a_stranger_s_page_load_is_sent_to_sign_in_and_an_api_call_gets_401_json() {
    let app = app_with(|_, _| {}).await;
    let wanted = "/reports?year=2026&q=a b";
    let response = check(&app, "?redirect=1", wanted, None, &PAGE_LOAD).await;
    assert_eq!(response.status(), 302);
    let to = location(&response);
    assert_eq!(query(&to)["rd"], format!("{SITE}{wanted}"));
    // Chromium without Fetch metadata (an older browser): the Accept decides.
    let response = check(&app, "?redirect=1", wanted, None, &PAGE_LOAD[1..]).await;
    assert_eq!(response.status(), 302);

    for (what, headers) in [
        ("fetch()", &FETCH[..]),
        ("XMLHttpRequest", &XHR[..]),
        ("a script with no Accept", &[][..]),
        ("a WebSocket", &[("sec-fetch-mode", "websocket")][..]),
        (
            "a navigation that says it is XMLHttpRequest",
            &[
                ("sec-fetch-mode", "navigate"),
                ("x-requested-with", "XMLHttpRequest"),
            ][..],
        ),
    ] {
        let response = check(&app, "?redirect=1", wanted, None, headers).await;
        assert!(response.headers().get("location").is_none(), "{what}");
        let (status, body) = json_of(response).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("not_connected")),
            "{what}"
        );
    }
}

/// Runs the PyJWT verifier (tests/clients/verify_assertion.py) on `token`; `None` when PyJWT
/// is missing and skipping is allowed.
fn pyjwt(
    test: &str,
    jwks: &Value,
    token: &str,
    audience: &str,
    issuer: &str,
    later: u64,
) -> Option<Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/verify_assertion.py"
    );
    let probe = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        skip_or_fail(test, "python3 with PyJWT and cryptography is not installed");
        return None;
    }
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ask = json!({"jwks": jwks, "token": token, "audience": audience, "issuer": issuer, "later": later});
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), ask.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

/// `token` signed again, unchanged, with a P-256 key of its own (the published key id kept).
fn signed_by_another_key(token: &str) -> String {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let signed = token.rsplit_once('.').unwrap().0;
    let signature = key.sign(&rng, signed.as_bytes()).unwrap();
    format!("{signed}.{}", B64URL.encode(signature.as_ref()))
}

/// The `kid` in `token`'s header.
fn kid_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice::<Value>(&B64URL.decode(header).unwrap()).unwrap()["kid"].clone()
}

fn claims_of(token: &str) -> Value {
    let claims = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64URL.decode(claims).unwrap()).unwrap()
}

#[tokio::test]
async fn the_assertion_is_accepted_by_pyjwt_and_jsonwebtoken_and_refused_expired_forged_or_for_another_site()
 {
    let test = "the_assertion_is_accepted_by_pyjwt_and_jsonwebtoken";
    let app = app_with(|_, _| {}).await;
    let (ann, ann_id) = oidc_member(&app, "ann").await;
    let response = check(&app, "", "/", Some(&ann), &PAGE_LOAD).await;
    assert_eq!(response.status(), 200);
    let token = header(&response, "x-auth-request-assertion")
        .unwrap()
        .to_owned();
    let jwks: Value = bare_client(&app)
        .get(app.url("/.well-known/jwks.json"))
        .fetch_json()
        .await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ES256"),
            &json!("sig")
        )
    );

    let claims = claims_of(&token);
    assert_eq!(claims["iss"], app.base.as_str());
    assert_eq!(claims["aud"], SITE);
    assert_eq!(claims["sub"], ann_id.as_str());
    assert_eq!(claims["email"], "ann@sandbox.example");
    assert_eq!(claims["name"], "Sandbox ann");
    assert_eq!(claims["flow"], "oidc");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(exp > iat && exp - iat <= 300, "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));

    // The `jsonwebtoken` crate, as a Rust app would verify it.
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(
        key["x"].as_str().unwrap(),
        key["y"].as_str().unwrap(),
    )
    .unwrap();
    let validation = |audience: &str| {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&[audience]);
        v.set_issuer(&[app.base.as_str()]);
        v.leeway = 0;
        v
    };
    let verified = jsonwebtoken::decode::<Value>(&token, &decoding, &validation(SITE)).unwrap();
    assert_eq!(verified.claims["sub"], ann_id.as_str());
    assert!(
        jsonwebtoken::decode::<Value>(&token, &decoding, &validation("https://other.example.com"))
            .is_err()
    );
    assert!(
        jsonwebtoken::decode::<Value>(&signed_by_another_key(&token), &decoding, &validation(SITE))
            .is_err()
    );

    // PyJWT, with the published key set, as another app would: accepts it now and for as
    // long as it lives, refuses it once expired, for another site, or signed by another key.
    let issuer = app.base.as_str();
    let Some(answer) = pyjwt(test, &jwks, &token, SITE, issuer, 0) else {
        return;
    };
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["claims"]["sub"], ann_id.as_str());
    let answer = pyjwt(test, &jwks, &token, SITE, issuer, 200).unwrap();
    assert_eq!(answer["ok"], true, "still alive 200 s later: {answer}");
    for (what, token, audience, later, error) in [
        ("expired", token.clone(), SITE, 301, "ExpiredSignatureError"),
        (
            "another site's",
            token.clone(),
            "https://other.example.com",
            0,
            "InvalidAudienceError",
        ),
        (
            "signed by another key",
            signed_by_another_key(&token),
            SITE,
            0,
            "InvalidSignatureError",
        ),
    ] {
        let answer = pyjwt(test, &jwks, &token, audience, issuer, later).unwrap();
        assert_eq!(
            (&answer["ok"], answer["error"].as_str()),
            (&json!(false), Some(error)),
            "{what}: {answer}"
        );
    }
}

#[tokio::test]
async fn a_session_s_assertion_is_kept_per_site_and_a_stranger_or_an_untrusted_peer_gets_none_for_another_site()
 {
    let app = app_with(|_, _| {}).await;
    let (ann, _) = oidc_member(&app, "ann").await;
    let first = check(&app, "", "/a", Some(&ann), &FETCH).await;
    let again = check(&app, "", "/b", Some(&ann), &FETCH).await;
    let first = header(&first, "x-auth-request-assertion")
        .unwrap()
        .to_owned();
    assert_eq!(
        Some(first.as_str()),
        header(&again, "x-auth-request-assertion"),
        "the same session and site get the assertion kept"
    );
    // Another site behind the same proxy gets one of its own.
    let other = bare_client(&app)
        .get(app.url("/auth/check"))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "wiki.example.com")
        .header("cookie", &ann)
        .send()
        .await
        .unwrap();
    let other = header(&other, "x-auth-request-assertion").unwrap();
    assert_eq!(claims_of(other)["aud"], "https://wiki.example.com");
    assert_ne!(claims_of(other)["jti"], claims_of(&first)["jti"]);

    // A peer that is not a trusted proxy cannot name the audience: the service's own origin.
    let untrusted = app_with(|config, _| {
        config.limits.trusted_proxies = Some("10.0.0.0/8".parse().unwrap());
    })
    .await;
    let (ann, _) = oidc_member(&untrusted, "ann").await;
    let response = check(&untrusted, "", "/", Some(&ann), &FETCH).await;
    let token = header(&response, "x-auth-request-assertion").unwrap();
    assert_eq!(claims_of(token)["aud"], untrusted.base.as_str());
    // No assertion for a stranger, and none with ASSERTION=off (whose key set is not served).
    let response = check(&app, "", "/", None, &FETCH).await;
    assert!(header(&response, "x-auth-request-assertion").is_none());
    let off = crate::support::spawn_app().await;
    assert_error(
        json_of(off.get("/.well-known/jwks.json").await).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn rotated_keys_are_all_published_and_an_assertion_of_the_previous_key_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.pem"), dir.path().join("new.pem"));
    for path in [&old, &new] {
        let status = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success());
    }
    // SEC1 too, as `openssl ecparam -genkey` writes it.
    let sec1 = dir.path().join("sec1.pem");
    let status = Command::new("openssl")
        .args(["ec", "-in"])
        .arg(&old)
        .arg("-out")
        .arg(&sec1)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    assert!(
        std::fs::read_to_string(&sec1)
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );

    let before = app_with(|config, _| {
        config.forward_auth.assertion_keys = vec![sec1.clone()];
    })
    .await;
    let (ann, _) = oidc_member(&before, "ann").await;
    let response = check(&before, "", "/", Some(&ann), &FETCH).await;
    let signed_by_old = header(&response, "x-auth-request-assertion")
        .unwrap()
        .to_owned();

    let after = app_with(|config, _| {
        config.forward_auth.assertion_keys = vec![new.clone(), old.clone()];
    })
    .await;
    let jwks: Value = after
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(
        kids[1],
        kid_of(&signed_by_old),
        "the previous key stays published, second"
    );

    // The new key signs; the old key's assertion still verifies against the new key set.
    let (ann, _) = oidc_member(&after, "ann").await;
    let response = check(&after, "", "/", Some(&ann), &FETCH).await;
    let signed_by_new = header(&response, "x-auth-request-assertion").unwrap();
    assert_eq!(kids[0], kid_of(signed_by_new));
    for token in [signed_by_old.as_str(), signed_by_new] {
        let kid = kid_of(token);
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(
            key["x"].as_str().unwrap(),
            key["y"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&[SITE]);
        validation.validate_aud = true;
        validation.iss = None;
        jsonwebtoken::decode::<Value>(token, &decoding, &validation).unwrap();
    }
}

/// `s` percent-encoded for a query.
fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// Traefik and Envoy, by the requests deploy/ makes them send.

/// A deploy/ YAML file as JSON (PyYAML, which schemathesis brings); `None` when it is missing
/// and skipping is allowed.
fn deploy_yaml(test: &str, file: &str) -> Option<Value> {
    let path = format!("{}/deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            &path,
        ])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            Some(serde_json::from_slice(&output.stdout).unwrap())
        }
        other => {
            skip_or_fail(
                test,
                &format!("python3 with PyYAML cannot read {file}: {other:?}"),
            );
            None
        }
    }
}

/// The client's request to the protected site.
struct Original {
    method: Method,
    /// Path and query.
    uri: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
}

impl Original {
    fn new(method: Method, uri: &str, cookie: Option<&str>, kind: &[(&str, &str)]) -> Self {
        let mut headers: Vec<(String, String)> = kind
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(cookie) = cookie {
            headers.push(("cookie".into(), cookie.to_owned()));
        }
        // What a client may forge: the identity headers the app reads.
        headers.push(("x-auth-request-user".into(), "forged".into()));
        headers.push(("x-auth-request-email".into(), "ceo@example.com".into()));
        Self {
            method,
            uri: uri.to_owned(),
            headers,
        }
    }
}

/// What the proxy does with the check's answer.
#[derive(Debug)]
enum Outcome {
    /// The request goes on to the app, with these headers (lower-case names).
    Allowed(BTreeMap<String, String>),
    /// The client gets this answer.
    Answered {
        status: u16,
        headers: BTreeMap<String, String>,
        body: String,
    },
}

impl Outcome {
    fn allowed(self) -> BTreeMap<String, String> {
        match self {
            Self::Allowed(headers) => headers,
            other => panic!("expected the request let through, got {other:?}"),
        }
    }

    fn answered(self) -> (u16, BTreeMap<String, String>, String) {
        match self {
            Self::Answered {
                status,
                headers,
                body,
            } => (status, headers, body),
            other => panic!("expected an answer to the client, got {other:?}"),
        }
    }
}

fn header_map(response: &reqwest::Response) -> BTreeMap<String, String> {
    response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Traefik's `forwardAuth` (its documentation): a GET to `address` with the original
/// request's headers and X-Forwarded-Method, -Proto, -Host, -Uri and -For (set by Traefik,
/// `trustForwardHeader: false`); a 2xx lets the request through with `authResponseHeaders`
/// copied onto it (the client's own copies removed first); anything else goes back as it is.
async fn traefik(app: &TestApp, middleware: &Value, original: &Original) -> Outcome {
    let forward_auth = &middleware["forwardAuth"];
    let address = url::Url::parse(forward_auth["address"].as_str().unwrap()).unwrap();
    let target = match address.query() {
        Some(query) => format!("{}?{query}", address.path()),
        None => address.path().to_owned(),
    };
    let mut request = bare_client(app).get(app.url(&target));
    for (name, value) in &original.headers {
        request = request.header(name, value);
    }
    let request = request
        .header("x-forwarded-method", original.method.as_str())
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", &original.uri)
        .header("x-forwarded-for", "203.0.113.7");
    let response = request.send().await.unwrap();
    let status = response.status();
    let answer = header_map(&response);
    if status.is_success() {
        let mut upstream: BTreeMap<String, String> = original.headers.iter().cloned().collect();
        for name in forward_auth["authResponseHeaders"].as_array().unwrap() {
            let name = name.as_str().unwrap().to_ascii_lowercase();
            upstream.remove(&name);
            if let Some(value) = answer.get(&name) {
                upstream.insert(name, value.clone());
            }
        }
        return Outcome::Allowed(upstream);
    }
    Outcome::Answered {
        status: status.as_u16(),
        headers: answer,
        body: response.text().await.unwrap(),
    }
}

/// Whether Envoy's string matcher `patterns` (exact ones, as deploy/ writes them) match
/// `name`.
fn envoy_matches(patterns: &Value, name: &str) -> bool {
    patterns["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["exact"].as_str() == Some(name))
}

/// Envoy's HTTP `ext_authz` (its documentation): the original method, `path_prefix` + the
/// original path and query, the original Host, and the headers `allowed_headers` matches
/// (X-Forwarded-Proto and -For set by Envoy itself, `use_remote_address: true`). Only a 200
/// lets the request through, with `allowed_upstream_headers` copied onto it; anything else
/// goes back with `allowed_client_headers` and the body.
async fn envoy(app: &TestApp, filter: &Value, original: &Original) -> Outcome {
    let config = &filter["typed_config"];
    let service = &config["http_service"];
    let prefix = service["path_prefix"].as_str().unwrap();
    let mut headers = original.headers.clone();
    headers.retain(|(name, _)| !name.starts_with("x-forwarded-"));
    headers.push(("x-forwarded-proto".into(), "https".into()));
    headers.push(("x-forwarded-for".into(), "203.0.113.7".into()));
    let mut request = bare_client(app)
        .request(
            original.method.clone(),
            app.url(&format!("{prefix}{}", original.uri)),
        )
        .header("host", "app.example.com");
    for (name, value) in &headers {
        if envoy_matches(&config["allowed_headers"], name) {
            request = request.header(name, value);
        }
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let answer = header_map(&response);
    let replies = &service["authorization_response"];
    if status == 200 {
        let mut upstream: BTreeMap<String, String> = original.headers.iter().cloned().collect();
        for (name, value) in &answer {
            if envoy_matches(&replies["allowed_upstream_headers"], name) {
                upstream.insert(name.clone(), value.clone());
            }
        }
        return Outcome::Allowed(upstream);
    }
    let headers = answer
        .into_iter()
        .filter(|(name, _)| envoy_matches(&replies["allowed_client_headers"], name))
        .collect();
    Outcome::Answered {
        status,
        headers,
        body: response.text().await.unwrap(),
    }
}

/// The same scenarios through either proxy: `ask(original, located)` runs the check the
/// proxy would for `original`, at the location with a rule when `located`.
async fn scenarios<F, Fut>(proxy: &str, app: &TestApp, rule: &str, ask: F)
where
    F: Fn(Original, bool) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let (ann, ann_id) = oidc_member(app, "ann").await;
    let ann = ann.as_str();

    // A member gets through with who they are; the forged headers are replaced or removed.
    let through = ask(
        Original::new(Method::POST, "/reports?year=2026", Some(ann), &FETCH),
        false,
    )
    .await
    .allowed();
    assert_eq!(through["x-auth-request-user"], ann_id, "{proxy}");
    assert_eq!(
        through["x-auth-request-email"], "ann@sandbox.example",
        "{proxy}"
    );
    assert_eq!(through["x-auth-request-flow"], "oidc", "{proxy}");
    let token = &through["x-auth-request-assertion"];
    assert_eq!(claims_of(token)["aud"], SITE, "{proxy}");
    assert_eq!(claims_of(token)["sub"], ann_id.as_str(), "{proxy}");

    // A stranger's page load is sent to sign in, and comes back to the page asked for.
    let (status, headers, _) = ask(
        Original::new(Method::GET, "/reports?year=2026", None, &PAGE_LOAD),
        false,
    )
    .await
    .answered();
    assert_eq!(status, 302, "{proxy}");
    let sign_in = url::Url::parse(&headers["location"]).unwrap();
    assert_eq!(
        query(&sign_in)["rd"],
        format!("{SITE}/reports?year=2026"),
        "{proxy}"
    );
    let jar = Arc::new(Jar::default());
    let browser = step_by_step_with(app, jar);
    let response = browser.get(sign_in).send().await.unwrap();
    assert_eq!(response.status(), 302, "{proxy}");
    let callback = consent(&browser, &location(&response), "allow", "stranger").await;
    let response = browser.get(callback).send().await.unwrap();
    assert_eq!(response.status(), 303, "{proxy}");
    assert_eq!(
        header(&response, "location"),
        Some(format!("{SITE}/reports?year=2026").as_str()),
        "{proxy}"
    );

    // A stranger's API call gets 401 JSON, never a redirect.
    for kind in [&FETCH, &XHR] {
        let (status, headers, body) =
            ask(Original::new(Method::GET, "/api/items", None, kind), false)
                .await
                .answered();
        assert_eq!(status, 401, "{proxy}: {body}");
        assert!(!headers.contains_key("location"), "{proxy}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "not_connected", "{proxy}");
    }

    // At the location with a rule, a member outside it gets 403 naming the rule (a page for
    // a navigation), whatever their own URL says.
    let (status, headers, body) = ask(
        Original::new(
            Method::GET,
            &format!("/admin/?allow=member:{ann_id}"),
            Some(ann),
            &PAGE_LOAD,
        ),
        true,
    )
    .await
    .answered();
    assert_eq!(status, 403, "{proxy}: {body}");
    assert_eq!(headers["x-auth-request-denied"], rule, "{proxy}");
    assert!(headers["content-type"].starts_with("text/html"), "{proxy}");
    let (status, _, body) = ask(
        Original::new(Method::GET, "/admin/users", Some(ann), &FETCH),
        true,
    )
    .await
    .answered();
    assert_eq!(status, 403, "{proxy}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "forbidden"
    );
}

#[tokio::test]
async fn traefik_s_forward_auth_requests_from_deploy_traefik_yml_get_the_answers_traefik_acts_on() {
    let test = "traefik_s_forward_auth_requests_from_deploy_traefik_yml";
    let Some(file) = deploy_yaml(test, "traefik.yml") else {
        return;
    };
    let middlewares = &file["http"]["middlewares"];
    // The routers send the site through `signed-in`, its /admin/ through `company-only`.
    let routers = &file["http"]["routers"];
    assert_eq!(routers["app"]["middlewares"], json!(["signed-in"]));
    assert_eq!(routers["app-admin"]["middlewares"], json!(["company-only"]));
    let address = middlewares["company-only"]["forwardAuth"]["address"]
        .as_str()
        .unwrap();
    let rule = query(&url::Url::parse(address).unwrap())["allow"].clone();
    let app = app_with(|_, _| {}).await;
    scenarios("traefik", &app, &rule, |original, located| {
        let middleware = if located {
            &middlewares["company-only"]
        } else {
            &middlewares["signed-in"]
        };
        let app = &app;
        async move { traefik(app, middleware, &original).await }
    })
    .await;
}

#[tokio::test]
async fn envoy_s_ext_authz_requests_from_deploy_envoy_yaml_get_the_answers_envoy_acts_on() {
    let test = "envoy_s_ext_authz_requests_from_deploy_envoy_yaml";
    let Some(file) = deploy_yaml(test, "envoy.yaml") else {
        return;
    };
    let listener = &file["static_resources"]["listeners"][0];
    let manager = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = manager["http_filters"].as_array().unwrap();
    let named = |name: &str| filters.iter().find(|f| f["name"] == name).unwrap().clone();
    let everyone = named("envoy.filters.http.ext_authz");
    let company = named("ext_authz_company_only");
    // WebSockets pass, and the routes turn on the filter of their location.
    assert_eq!(manager["upgrade_configs"][0]["upgrade_type"], "websocket");
    let prefix = company["typed_config"]["http_service"]["path_prefix"]
        .as_str()
        .unwrap();
    let rule = prefix
        .split(';')
        .find_map(|p| p.strip_prefix("allow="))
        .unwrap()
        .to_owned();
    let app = app_with(|_, _| {}).await;
    scenarios("envoy", &app, &rule, |original, located| {
        let filter = if located {
            company.clone()
        } else {
            everyone.clone()
        };
        let app = &app;
        async move { envoy(app, &filter, &original).await }
    })
    .await;

    // The client's path comes after the prefix's own segment: it cannot name a rule there.
    let (bea, bea_id) = oidc_member(&app, "bea").await;
    let sneaky = format!("/;allow=member:{bea_id}/admin/");
    let (status, _, _) = envoy(
        &app,
        &company,
        &Original::new(Method::GET, &sneaky, Some(&bea), &FETCH),
    )
    .await
    .answered();
    assert_eq!(status, 403);
    // The original path "/" (the site's root) is checked too.
    let root = envoy(
        &app,
        &everyone,
        &Original::new(Method::DELETE, "/", Some(&bea), &FETCH),
    )
    .await
    .allowed();
    assert_eq!(root["x-auth-request-user"], bea_id);
}
