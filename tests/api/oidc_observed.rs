//! The sign-in against LinkedIn as it behaves, not as its documentation reads (SPEC.md,
//! "LinkedIn as it is observed"): one test per reported quirk, each citing its public
//! reports, against the test provider's `Observed` profile (fixtures in LinkedIn's published
//! shapes, `tests/fixtures/linkedin/`). Where a quirk can be shown alone, the test also turns
//! just that quirk on in the `Documented` provider, so that it fails for that quirk only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use linkedin_token_exchange::server::config::PkceMode;
use serde_json::{Value, json};

use crate::oidc::{location, query, start, step_by_step_with};
use crate::support::oidc_provider::{
    CLIENT_ID, CLIENT_SECRET, Profile, Provider, Rig, Signing, fixture, unix_now,
};
use crate::support::{API_KEY, SECRET_KEY, json_of};
use crate::support::{Served, binary, sample, scrape};

/// A good round: 303 to `/`, the session now `member`'s.
async fn signs_in(rig: &Rig, member: &str) {
    let response = rig.round().await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()["location"], "/");
    let session = rig.app.session().await;
    assert_eq!(
        (&session["flow"], &session["member_id"]),
        (&json!("oidc"), &json!(member)),
        "{session}"
    );
}

/// Sources: issue 19 (every sign-in against a provider that behaves as reported failed with
/// 502 `upstream_malformed`), and each report cited below.
#[tokio::test]
async fn a_sign_in_against_linkedin_as_observed_succeeds_end_to_end() {
    let rig = Rig::new(Profile::Observed).await;
    let before = rig.app.session_id();
    let authorization = start(&rig.app, &rig.browser).await;
    assert!(
        authorization
            .as_str()
            .starts_with(&format!("{}/v2/authorization?", rig.provider.issuer)),
        "the discovered authorization endpoint: {authorization}"
    );
    let back = rig.consent(&authorization).await;
    let response = rig.callback(&back).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()["location"], "/");
    assert_ne!(rig.app.session_id(), before, "the session id cycles");

    let claims = fixture("id_token_claims.json");
    let session = rig.app.session().await;
    assert_eq!(session["connected"], true, "{session}");
    assert_eq!(session["flow"], "oidc", "{session}");
    assert_eq!(session["member_id"], "member-a", "{session}");
    assert_eq!(session["name"], claims["name"], "{session}");
    assert_eq!(session["email"], claims["email"], "{session}");

    // `/me` answers LinkedIn's userinfo as it came: `locale` an object, `email_verified` a
    // boolean (the id_token had a string and a string).
    let me: Value = rig.app.get("/me").await.json().await.unwrap();
    let mut expected = fixture("userinfo.json");
    expected["sub"] = json!("member-a");
    assert_eq!(me, expected);
    assert_eq!(me["locale"], json!({"country": "US", "language": "en"}));
    assert_eq!(me["email_verified"], true);
}

/// LinkedIn's id_token never carries the `nonce` the request sent:
/// python-social-auth/social-core#833 ("LinkedIn does not send any nonce"),
/// authlib/authlib#763 ("Missing 'nonce' claim"), linkedin-developers/linkedin-api-js-client#34,
/// spring-projects/spring-security#7696 (comment of 2023-01-16), directus/directus#23645.
#[tokio::test]
async fn an_id_token_without_a_nonce_is_accepted_though_one_was_sent() {
    for profile in [Profile::Observed, Profile::Documented] {
        let provider = Provider::start(profile).await;
        provider.set(|k| k.echo_nonce = false);
        let rig = Rig::start(provider, |_| {}).await;
        let authorization = start(&rig.app, &rig.browser).await;
        let nonce = query(&authorization).get("nonce").cloned();
        assert!(
            nonce.is_some_and(|n| n.len() >= 16),
            "a fresh nonce is still sent: {authorization}"
        );
        let back = rig.consent(&authorization).await;
        let response = rig.callback(&back).await;
        assert_eq!(
            response.status(),
            303,
            "{profile:?}: {}",
            response.text().await.unwrap()
        );
        assert_eq!(rig.app.session().await["member_id"], "member-a");
    }
}

/// `email_verified` in LinkedIn's id_token is the string `"true"` (userinfo: a boolean):
/// logto-io/logto#6843 ("Expected boolean, received string").
#[tokio::test]
async fn email_verified_as_a_string_or_a_boolean_is_accepted() {
    let rig = Rig::new(Profile::Observed).await;
    assert_eq!(fixture("id_token_claims.json")["email_verified"], "true");
    signs_in(&rig, "member-a").await;

    // The same quirk alone, in an otherwise documented id_token; and the other spellings.
    let rig = Rig::new(Profile::Documented).await;
    for (member, verified) in [
        ("member-a", json!("true")),
        ("member-b", json!("false")),
        ("member-c", json!(true)),
        ("member-d", json!(false)),
    ] {
        rig.provider.set(|k| k.sub = member.into());
        rig.provider.claim("email_verified", verified);
        signs_in(&rig, member).await;
    }
}

/// LinkedIn's discovery lists no `token_endpoint_auth_methods_supported` (which would mean
/// `client_secret_basic`), yet its token endpoint wants the secret in the form:
/// linkedin-developers/linkedin-api-python-client#63, pretix/pretix#4459.
#[tokio::test]
async fn with_no_auth_method_listed_the_secret_goes_in_the_form_and_no_authorization_header() {
    let rig = Rig::new(Profile::Observed).await;
    let discovery: Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        rig.provider.issuer
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        discovery
            .get("token_endpoint_auth_methods_supported")
            .is_none(),
        "{discovery}"
    );
    signs_in(&rig, "member-a").await;
    let request = &rig.provider.token_requests()[0];
    assert_eq!(request["client_id"], CLIENT_ID, "{request:?}");
    assert_eq!(request["client_secret"], CLIENT_SECRET, "{request:?}");
    assert_eq!(request["grant_type"], "authorization_code", "{request:?}");
    assert_eq!(
        rig.provider.token_authorization_headers(),
        vec![None],
        "no Basic authentication beside the form"
    );
}

/// A web app's PKCE `code_verifier` gets 401 `invalid_client` from LinkedIn's token endpoint:
/// nextauthjs/next-auth#8831 (comments of 2024-03-27: removing `code_verifier` fixes the
/// `invalid_client`), directus/directus#23645.
#[tokio::test]
async fn pkce_on_fails_against_linkedin_with_invalid_client_and_auto_or_off_send_none() {
    let rig = Rig::start(Provider::start(Profile::Observed).await, |config| {
        config.oidc.pkce = PkceMode::On;
    })
    .await;
    let authorization = start(&rig.app, &rig.browser).await;
    let asked = query(&authorization);
    assert_eq!(
        asked.get("code_challenge_method").map(String::as_str),
        Some("S256"),
        "{authorization}"
    );
    let back = rig.consent(&authorization).await;
    let (status, body) = json_of(rig.callback(&back).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("upstream_rejected")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("invalid_client"), "{message}");
    assert!(rig.provider.token_requests()[0].contains_key("code_verifier"));
    assert_eq!(rig.app.session().await["connected"], false);

    for mode in [PkceMode::Auto, PkceMode::Off] {
        let rig = Rig::start(Provider::start(Profile::Observed).await, |config| {
            config.oidc.pkce = mode;
        })
        .await;
        let authorization = start(&rig.app, &rig.browser).await;
        let asked = query(&authorization);
        for field in ["code_challenge", "code_challenge_method"] {
            assert!(!asked.contains_key(field), "{mode:?}: {authorization}");
        }
        let back = rig.consent(&authorization).await;
        let response = rig.callback(&back).await;
        assert_eq!(response.status(), 303, "{mode:?}");
        let request = &rig.provider.token_requests()[0];
        assert!(
            !request.contains_key("code_verifier"),
            "{mode:?}: {request:?}"
        );
    }
}

/// `LINKEDIN_OIDC_PKCE=off` leaves PKCE out even when discovery lists `S256`.
#[tokio::test]
async fn pkce_off_sends_none_even_when_discovery_lists_s256() {
    let provider = Provider::start(Profile::Documented).await;
    provider.set(|k| k.pkce = true);
    let rig = Rig::start(provider, |config| {
        config.oidc.pkce = PkceMode::Off;
    })
    .await;
    let authorization = start(&rig.app, &rig.browser).await;
    assert!(
        !query(&authorization).contains_key("code_challenge"),
        "{authorization}"
    );
    signs_in(&rig, "member-a").await;
    let requests = rig.provider.token_requests();
    assert!(requests.iter().all(|r| !r.contains_key("code_verifier")));
}

/// JWKS keys may come without `alg` and `use` (SPEC.md: older published key sets): the key
/// is found by `kty` and `kid`.
#[tokio::test]
async fn a_bare_jwks_key_without_alg_or_use_is_accepted() {
    let provider = Provider::start(Profile::Documented).await;
    provider.set(|k| k.bare_jwks = true);
    let jwks: Value = reqwest::get(format!("{}/openid/jwks", provider.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = jwks["keys"][0].as_object().unwrap();
    let mut fields: Vec<&str> = key.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["e", "kid", "kty", "n"], "{jwks}");
    let rig = Rig::start(provider, |_| {}).await;
    signs_in(&rig, "member-a").await;

    // And a key rotated in bare.
    rig.provider.set(|k| {
        k.sub = "member-b".into();
        k.signing = Signing::Rotated;
        k.rotated_from_fetch = Some(2);
    });
    signs_in(&rig, "member-b").await;
}

/// The authorization request named `openid` twice (issue 19: the consent page showed it):
/// the `scope` names each scope once, in the configured order.
#[tokio::test]
async fn the_authorization_scope_is_openid_profile_email_each_once() {
    let rig = Rig::new(Profile::Observed).await;
    let authorization = start(&rig.app, &rig.browser).await;
    assert_eq!(query(&authorization)["scope"], "openid profile email");
    let scope_pairs = authorization
        .query_pairs()
        .filter(|(k, _)| k == "scope")
        .count();
    assert_eq!(scope_pairs, 1, "{authorization}");

    // A configuration that repeats a scope still asks for it once.
    let rig = Rig::start(Provider::start(Profile::Observed).await, |config| {
        config.oidc.scopes = "openid profile openid email profile".into();
    })
    .await;
    let authorization = start(&rig.app, &rig.browser).await;
    assert_eq!(query(&authorization)["scope"], "openid profile email");
}

/// A forged `kid` must not make the service fetch the key set on every callback (SPEC.md: at
/// most one JWKS refetch per 60 s across all requests).
#[tokio::test]
async fn two_callbacks_with_an_unknown_kid_within_a_minute_refetch_the_jwks_once() {
    let rig = Rig::signed_in(Profile::Observed).await;
    let fetched = rig.provider.jwks_fetches();
    rig.provider.set(|k| k.signing = Signing::Rotated);
    rig.id_token_refused("kid").await;
    assert_eq!(
        rig.provider.jwks_fetches(),
        fetched + 1,
        "the first refetches"
    );
    rig.id_token_refused("kid").await;
    assert_eq!(
        rig.provider.jwks_fetches(),
        fetched + 1,
        "the second, within 60 s, does not"
    );

    // Another browser's forged kid in the same minute: no fetch either.
    let other = step_by_step_with(&rig.app, Arc::default());
    let authorization = start(&rig.app, &other).await;
    let back = rig.consent(&authorization).await;
    let (status, body) = crate::oidc::callback_json(&other, back).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("oidc_invalid_id_token")),
        "{body}"
    );
    assert_eq!(rig.provider.jwks_fetches(), fetched + 1, "{body}");
}

/// The value of `name{labels}` in a Prometheus scrape of `addr`, and the whole scrape.
async fn metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> (Option<f64>, String) {
    let (text, scrape) = scrape(addr).await;
    (sample(&scrape, name, labels), text)
}

/// A rig against the observed provider, metrics on, after one good round: the rig and the
/// metrics listener's address.
async fn signed_in_with_metrics() -> (Rig, SocketAddr) {
    let rig = Rig::start(Provider::start(Profile::Observed).await, |config| {
        config.listen.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
    .after_a_good_round()
    .await;
    let metrics = rig.app.metrics.expect("the metrics listener is bound");
    (rig, metrics)
}

/// LinkedIn changed its issuer without notice (`https://www.linkedin.com` → `…/oauth`, 2024):
/// supabase/auth#1536, keycloak/keycloak#28686. The exact match stays; the refusal is counted
/// so that an operator sees it.
#[tokio::test]
async fn an_issuer_refusal_is_counted_in_lte_oidc_refusals_total() {
    let (rig, metrics) = signed_in_with_metrics().await;
    let issuer = [("reason", "issuer")];
    let (before, _) = metric(metrics, "lte_oidc_refusals_total", &issuer).await;
    assert!(before.unwrap_or(0.0) == 0.0, "{before:?}");

    // LinkedIn's old, path-less issuer.
    rig.provider.claim("iss", json!(rig.provider.origin()));
    rig.id_token_refused("issuer").await;
    let (after, text) = metric(metrics, "lte_oidc_refusals_total", &issuer).await;
    assert_eq!(after, Some(1.0), "{text}");
    let (audience, text) = metric(
        metrics,
        "lte_oidc_refusals_total",
        &[("reason", "audience")],
    )
    .await;
    assert!(audience.unwrap_or(0.0) == 0.0, "only the issuer: {text}");

    rig.id_token_refused("issuer").await;
    let (after, text) = metric(metrics, "lte_oidc_refusals_total", &issuer).await;
    assert_eq!(after, Some(2.0), "{text}");
}

/// Every refused callback counts once, under the reason that refused it (the interface's
/// labels), so that a dashboard tells an issuer change from forged callbacks.
#[tokio::test]
async fn each_refused_callback_counts_once_under_its_reason() {
    let (rig, metrics) = signed_in_with_metrics().await;
    let now = unix_now();
    let claim_cases = [
        ("issuer", "iss", json!("https://www.linkedin.com")),
        ("audience", "aud", json!("another-client")),
        ("nonce", "nonce", json!("not-the-nonce")),
    ];
    for (reason, claim, value) in claim_cases {
        rig.provider.claim(claim, value);
        rig.id_token_refused(reason).await;
        rig.provider.set(|k| k.claims.clear());
    }
    rig.provider.claim("exp", json!(now - 120));
    rig.provider.claim("iat", json!(now - 3_720));
    rig.id_token_refused("expired").await;
    rig.provider.claim("iat", json!(now + 600));
    rig.provider.claim("exp", json!(now + 4_200));
    rig.id_token_refused("issued in the future").await;
    rig.provider.set(|k| {
        k.claims.clear();
        k.signing = Signing::OtherKey;
    });
    rig.id_token_refused("signature").await;
    rig.provider.set(|k| k.signing = Signing::Rotated);
    rig.id_token_refused("kid").await;
    rig.provider.set(|k| k.signing = Signing::Current);
    let forged = rig.tampered_round(|q| {
        q.insert("state".into(), "forged-state".into());
    });
    rig.refused(400, "oidc_state_mismatch", forged).await;
    let cancelled = rig.tampered_round(|q| {
        q.remove("code");
        q.insert("error".into(), "user_cancelled_login".into());
    });
    rig.refused(400, "oidc_denied", cancelled).await;

    let reasons = [
        "issuer",
        "audience",
        "nonce",
        "expired",
        "issued_in_future",
        "signature",
        "unknown_kid",
        "state",
        "denied",
    ];
    for reason in reasons {
        let (count, text) = metric(metrics, "lte_oidc_refusals_total", &[("reason", reason)]).await;
        assert_eq!(count, Some(1.0), "{reason}: {text}");
    }
    let (_, text) = metric(metrics, "lte_oidc_refusals_total", &[]).await;
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("lte_oidc_refusals_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, 9.0, "nine refusals, no other reason counted: {text}");
}

/// The same change, seen in the log: the refusal is a warning naming the issuer the id_token
/// claimed and the one discovery named (supabase/auth#1536, keycloak/keycloak#28686 show
/// operators reading exactly this from their logs).
#[tokio::test]
async fn an_issuer_refusal_logs_a_warning_naming_the_issuer_seen_and_expected() {
    let provider = Provider::start(Profile::Observed).await;
    let pathless = provider.origin();
    provider.claim("iss", json!(pathless));
    let issuer = provider.issuer.to_string();
    let server = Served::start(
        "localhost",
        &[
            ("SANDBOX", "false"),
            ("LINKEDIN_API_KEY", API_KEY),
            ("LINKEDIN_SECRET_KEY", SECRET_KEY),
            ("LINKEDIN_CLIENT_ID", CLIENT_ID),
            ("LINKEDIN_CLIENT_SECRET", CLIENT_SECRET),
            ("LINKEDIN_OIDC_ISSUER", issuer.as_str()),
            ("LOG_FORMAT", "json"),
        ],
        "/",
    )
    .await;
    let browser = server.client(Some(Arc::default()));
    let response = browser
        .get(server.url("/auth/linkedin"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302, "{}", server.output());
    let authorization = location(&response);
    let consented = provider.browser.get(authorization).send().await.unwrap();
    let back = location(&consented);
    let (status, body) = crate::oidc::callback_json(&browser, back).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("oidc_invalid_id_token")),
        "{body}"
    );

    let started = Instant::now();
    let warning = loop {
        let output = server.output();
        let found = output
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("id_token refused"))
            });
        match found {
            Some(line) => break line,
            None if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None => panic!("no refusal in the log:\n{output}"),
        }
    };
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["reason"], "issuer", "{warning}");
    assert_eq!(warning["issuer_seen"], pathless.as_str(), "{warning}");
    assert_eq!(warning["issuer_expected"], issuer.as_str(), "{warning}");
}

/// LinkedIn retired `r_liteprofile`, `r_emailaddress` and `r_basicprofile` for new apps
/// (nextauthjs/next-auth#8831: `unauthorized_scope_error` for `r_emailaddress`): the start
/// stops with one line naming the variable and what to ask for instead.
#[test]
fn a_retired_scope_stops_the_start_naming_linkedin_oidc_scopes() {
    for scopes in [
        "openid r_liteprofile",
        "openid profile r_emailaddress",
        "r_basicprofile openid",
    ] {
        let dir = tempfile::tempdir().unwrap();
        crate::support::dev_pair(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
        let output = binary(dir.path())
            .env("BIND", "127.0.0.1:0")
            .env("SESSION_STORE", "memory")
            .env("TLS_CERT", dir.path().join("cert.pem"))
            .env("TLS_KEY", dir.path().join("key.pem"))
            .env("LINKEDIN_OIDC_SCOPES", scopes)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{scopes}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains("LINKEDIN_OIDC_SCOPES"), "{stderr}");
        assert!(stderr.contains("openid profile email"), "{stderr}");
        let retired = scopes
            .split(' ')
            .find(|s| s.starts_with("r_"))
            .unwrap_or_default();
        assert!(stderr.contains(retired), "names {retired}: {stderr}");
    }
}
