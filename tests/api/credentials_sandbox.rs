//! Issue 30's "Done means", against the sandbox: the service in sandbox mode, its member's
//! credentials granted and refused by the service's own emulation of LinkedIn, with nothing
//! faked. `credentials` and `refresh` check the same behaviours against fake providers, and
//! `sandbox_credentials` the sandbox's side alone; here the two meet:
//! - a member who removes the app on `/sandbox/permitted-services` is signed out at the next
//!   API call (`/me`, the pass-through), and within one introspection interval with no call;
//! - a refreshed token (`SANDBOX_REFRESH_TOKENS`) keeps the session alive past the first
//!   token's expiry (`SANDBOX_TOKEN_TTL` of seconds);
//! - the member's client reports the sandbox's 426 (`LINKEDIN_API_VERSION` retired) and 429
//!   (`SANDBOX_DAILY_QUOTA` used up) typed;
//! - `/v2/me` through the pass-through is 403 `linkedin_forbidden` to an OpenID Connect member,
//!   as LinkedIn answers (linkedin-api-python-client PR #60);
//! - the pass-through refuses a path outside `LINKEDIN_API_ALLOW` before the sandbox sees it
//!   (its daily quota, unspent, is the witness).

use std::time::{Duration, Instant};

use linkedin_token_exchange::server::config::Config;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::device::Device;
use crate::support::sandbox_rp::{RelyingParty, unix_now};
use crate::support::{
    assert_json_error, assert_withdrawn, error_code, eventually, json_of, sample, scrape,
    sleep_until, withdrawn_session,
};

/// The OpenID Connect client registered with the sandbox (the app the member removes).
const CLIENT_ID: &str = "done30-app";

/// The service in sandbox mode with [`CLIENT_ID`] registered and `change` made to its
/// configuration.
async fn sandbox(change: impl FnOnce(&mut Config)) -> RelyingParty {
    RelyingParty::start(CLIENT_ID, change).await
}

/// `member` removes the app [`CLIENT_ID`] on the sandbox's permitted-services page, as its
/// form posts it (303 back to the page).
async fn remove_the_app(rig: &RelyingParty, member: &str) {
    let response = rig
        .browser
        .post(rig.app.url("/sandbox/permitted-services"))
        .form(&[("sandbox_member", member), ("app", CLIENT_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn removing_the_app_at_the_sandbox_signs_the_member_out_at_the_next_api_call() {
    let rig = sandbox(|config| config.api.api_allow = "GET /v2/userinfo".into()).await;
    let app = &rig.app;
    let member = "leaving";
    // Three browsers of the member: OpenID Connect twice (two tokens), the JSAPI once; and
    // another member, who stays.
    let [laptop, phone, jsapi, bystander] = [(); 4].map(|()| Device::new(app));
    let member_id = laptop.sign_in_oidc(app, member).await;
    assert_eq!(phone.sign_in_oidc(app, member).await, member_id);
    jsapi.sign_in_jsapi(app, member).await;
    bystander.sign_in_oidc(app, "staying").await;
    for device in [&laptop, &jsapi] {
        let (status, me) = device.get_json(app, "/me").await;
        assert_eq!(status, 200, "{me}");
    }
    let (status, info) = phone.get_json(app, "/linkedin/api/v2/userinfo").await;
    assert_eq!((status, &info["sub"]), (200, &json!(member_id)), "{info}");

    remove_the_app(&rig, member).await;

    // `/me`, the OpenID Connect flow: 401 linkedin_access_withdrawn, and /session says why.
    let (status, body) = laptop.get_json(app, "/me").await;
    assert_withdrawn(status, &body);
    assert_eq!(laptop.session(app).await, withdrawn_session());
    // The pass-through, with the phone's own token.
    let (status, body) = phone.get_json(app, "/linkedin/api/v2/userinfo").await;
    assert_withdrawn(status, &body);
    assert_eq!(phone.session(app).await, withdrawn_session());
    // `/me`, the JSAPI flow: the sandbox revoked its OAuth 1.0a credentials too.
    let (status, body) = jsapi.get_json(app, "/me").await;
    assert_withdrawn(status, &body);
    assert_eq!(jsapi.session(app).await, withdrawn_session());

    // Another member is untouched.
    assert_eq!(bystander.get_json(app, "/me").await.0, 200);
    assert_eq!(bystander.session(app).await["connected"], true);
}

#[tokio::test]
async fn removing_the_app_ends_the_session_within_one_introspection_interval_without_a_call() {
    const EVERY: Duration = Duration::from_secs(2);
    let rig = sandbox(|config| {
        config.oidc.introspect_every = Some(EVERY);
        config.listen.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let app = &rig.app;
    let metrics = app.metrics.unwrap();
    let introspected = async |outcome: &str| {
        let (_, scrape) = scrape(metrics).await;
        sample(&scrape, "lte_introspections_total", &[("outcome", outcome)]).unwrap_or(0.0)
    };
    let [laptop, phone] = [(); 2].map(|()| Device::new(app));
    laptop.sign_in_oidc(app, "introspected").await;
    phone.sign_in_oidc(app, "introspected").await;

    // The sandbox's introspection says active: nothing ends.
    eventually(EVERY * 3, "two active introspections", async || {
        introspected("active").await >= 2.0
    })
    .await;
    assert_eq!(laptop.session(app).await["connected"], true);
    assert_eq!(phone.session(app).await["connected"], true);

    remove_the_app(&rig, "introspected").await;
    let removed = Instant::now();
    // No call to LinkedIn from either browser: only /session, which calls nothing.
    eventually(EVERY * 3, "the laptop's session ended", async || {
        laptop.session(app).await["connected"] == false
    })
    .await;
    eventually(EVERY * 3, "the phone's session ended", async || {
        phone.session(app).await["connected"] == false
    })
    .await;
    let took = removed.elapsed();
    assert!(
        took <= EVERY + Duration::from_secs(1),
        "ended within one interval (and a tick): {took:?}"
    );
    assert_eq!(laptop.session(app).await, withdrawn_session());
    assert_eq!(phone.session(app).await, withdrawn_session());
    assert!(introspected("revoked").await >= 1.0);
}

#[tokio::test]
async fn a_refreshed_sandbox_token_keeps_the_session_alive_past_the_first_tokens_expiry() {
    // Refreshed in the last quarter of its life: 2 s of 8.
    const TTL: i64 = 8;
    let rig = sandbox(|config| {
        config.linkedin.sandbox_token_ttl = TTL.try_into().unwrap();
        config.linkedin.sandbox_refresh_tokens = true;
    })
    .await;
    let app = &rig.app;
    let device = Device::new(app);
    let member_id = device.sign_in_oidc(app, "partner").await;
    let session = device.session(app).await;
    let first_end = session["token_expires_at"].as_i64().unwrap();
    assert!(
        (unix_now() + TTL - 3..=unix_now() + TTL).contains(&first_end),
        "{session}"
    );

    // In the last quarter, a request starts the refresh.
    sleep_until(first_end - 2, Duration::ZERO).await;
    assert_eq!(device.session(app).await["connected"], true);
    eventually(Duration::from_secs(3), "the token refreshed", async || {
        device.session(app).await["token_expires_at"].as_i64() > Some(first_end)
    })
    .await;

    // Past the first token's expiry, `/me` answers on the new token.
    sleep_until(first_end, Duration::from_millis(500)).await;
    let (status, me) = device.get_json(app, "/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["sub"], member_id.as_str(), "{me}");
    let session = device.session(app).await;
    assert_eq!(session["connected"], true, "{session}");
    let new_end = session["token_expires_at"].as_i64().unwrap();
    assert!(new_end > first_end, "{new_end} after {first_end}");
}

/// A post by `member_id`, as `/rest/posts` takes it.
fn post_by(member_id: &str) -> Value {
    json!({
        "author": format!("urn:li:person:{member_id}"),
        "commentary": "Hello from issue 30",
        "visibility": "PUBLIC",
        "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [],
                         "thirdPartyDistributionChannels": []},
        "lifecycleState": "PUBLISHED",
    })
}

/// A member allowed to post (`w_member_social`), signed in to a sandbox whose pass-through
/// allows `POST /rest/posts`, with `version` as `LINKEDIN_API_VERSION`: `POST
/// /linkedin/api/rest/posts` from the page's origin, answered.
async fn post_with_version(version: Option<&str>) -> (u16, Value) {
    let rig = sandbox(|config| {
        config.api.api_allow = "POST /rest/posts".into();
        config.oidc.scopes = "openid profile email w_member_social".into();
        if let Some(version) = version {
            config.api.api_version = version.into();
        }
    })
    .await;
    let app = &rig.app;
    let device = Device::new(app);
    let member_id = device.sign_in_oidc(app, "poster").await;
    let response = device
        .request_from_the_page(app, Method::POST, "/linkedin/api/rest/posts")
        .json(&post_by(&member_id))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

#[tokio::test]
async fn a_retired_linkedin_api_version_comes_back_as_linkedin_version_retired() {
    // The default version is current: the sandbox makes the post.
    let (status, body) = post_with_version(None).await;
    assert_eq!(status, 201, "{body}");
    // 202301 is long retired: the sandbox answers 426 NONEXISTENT_VERSION, the member's
    // client 502 naming the setting.
    let (status, body) = post_with_version(Some("202301")).await;
    assert_eq!(
        (status, error_code(&body)),
        (502, "linkedin_version_retired"),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("LINKEDIN_API_VERSION") && message.contains("202301"),
        "{message}"
    );
}

#[tokio::test]
async fn the_sandboxs_daily_quota_comes_back_as_linkedin_rate_limited_with_retry_after() {
    let rig = sandbox(|config| {
        config.linkedin.sandbox_daily_quota = Some(2);
        config.api.api_allow = "GET /v2/userinfo".into();
    })
    .await;
    let app = &rig.app;
    let device = Device::new(app);
    device.sign_in_oidc(app, "busy").await;
    // Two calls, one by `/me` and one through the pass-through.
    let (status, body) = device.get_json(app, "/me").await;
    assert_eq!(status, 200, "the first call: {body}");
    let (status, body) = device.get_json(app, "/linkedin/api/v2/userinfo").await;
    assert_eq!(status, 200, "the second call: {body}");

    // The third, either way: 429, until midnight UTC.
    for path in ["/me", "/linkedin/api/v2/userinfo"] {
        let response = device.client.get(app.url(path)).send().await.unwrap();
        let retry_after: i64 = response
            .headers()
            .get("retry-after")
            .unwrap_or_else(|| panic!("{path}: no Retry-After"))
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(
            (status, error_code(&body)),
            (429, "linkedin_rate_limited"),
            "{path}: {body}"
        );
        let to_midnight = 86_400 - unix_now().rem_euclid(86_400);
        assert!(
            (retry_after - to_midnight).abs() <= 5,
            "{path}: {retry_after} vs {to_midnight}"
        );
    }
    assert_eq!(
        device.session(app).await["connected"],
        true,
        "a quota ends no session"
    );
}

#[tokio::test]
async fn v2_me_through_the_pass_through_is_linkedin_forbidden_to_an_openid_connect_member() {
    let rig = sandbox(|config| config.api.api_allow = "GET /v2/me".into()).await;
    let app = &rig.app;
    let device = Device::new(app);
    device.sign_in_oidc(app, "oidc-only").await;
    let (status, body) = device.get_json(app, "/linkedin/api/v2/me").await;
    assert_json_error(
        status,
        &body,
        (403, "linkedin_forbidden"),
        "Not enough permissions to access",
    );
    assert_eq!(
        device.session(app).await["connected"],
        true,
        "a 403 ends no session"
    );
}

#[tokio::test]
async fn the_pass_through_refuses_a_path_outside_the_allow_list_before_the_sandbox_sees_it() {
    // A daily quota of one call is the witness: a refused call must not spend it.
    let rig = sandbox(|config| config.linkedin.sandbox_daily_quota = Some(1)).await;
    let app = &rig.app;
    let device = Device::new(app);
    device.sign_in_oidc(app, "fenced").await;
    // The default allow-list is the member's own profile: `/v2/me` and posting are outside.
    let (status, body) = device.get_json(app, "/linkedin/api/v2/me").await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "api_path_not_allowed"),
        "{body}"
    );
    let response = device
        .request_from_the_page(app, Method::POST, "/linkedin/api/rest/posts")
        .json(&post_by("fenced"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "api_path_not_allowed"),
        "{body}"
    );
    // The quota is whole: the allowed path answers once, then the sandbox says 429.
    let (status, body) = device.get_json(app, "/linkedin/api/v2/userinfo").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = device.get_json(app, "/linkedin/api/v2/userinfo").await;
    assert_eq!(
        (status, error_code(&body)),
        (429, "linkedin_rate_limited"),
        "{body}"
    );
}
