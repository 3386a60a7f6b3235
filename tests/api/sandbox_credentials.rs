//! The sandbox's credentials behave as LinkedIn's (issue 30): lifetimes that can be set so
//! that expiry is seen in seconds, refresh tokens with a fixed end, introspection, the
//! permitted-services page that revokes, a consented member sent straight back, the daily
//! quota, `/v2/me` refused to OpenID Connect tokens, `LinkedIn-Version` on `/rest/`, the
//! id_token's hour and picture URLs that expire. Each test talks HTTP to a served sandbox (the
//! server in sandbox mode, or the binary), with no code of the service's client: OAuth 1.0a
//! requests are signed here with `oauth1_request`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use linkedin_token_exchange::server::config::Config;
use oauth1_request::Credentials;
use oauth1_request::signature_method::HmacSha1;
use serde_json::{Value, json};
use url::Url;

use crate::oidc::{location, query, start};
use crate::support::sandbox_rp::{
    CLIENT_SECRET, RelyingParty, SCOPE, access_token, claims_of, unix_now,
};
use crate::support::{API_KEY, FetchJson, SECRET_KEY, Served, assert_error, binary, json_of};

const CLIENT_ID: &str = "credentials-rp";

/// The relying party `CLIENT_ID` of a sandbox with `change` made to its configuration.
async fn rig_with(change: impl FnOnce(&mut Config)) -> RelyingParty {
    RelyingParty::start(CLIENT_ID, change).await
}

/// Waits until the unix second `at` has begun (plus a margin for the server's own clock
/// reading).
async fn wait_until(at: i64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let target = Duration::from_secs(at.try_into().unwrap()) + Duration::from_millis(200);
    if target > now {
        tokio::time::sleep(target - now).await;
    }
}

#[derive(oauth1_request::Request)]
struct Exchange<'a> {
    xoauth_oauth2_access_token: &'a str,
}

/// What this file asks of the sandbox besides a sign-in.
impl RelyingParty {
    /// The refresh token grant.
    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token_endpoint(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// `POST /sandbox/oauth/v2/introspectToken` as the client, with `form`.
    async fn introspection(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.post_as_client("/sandbox/oauth/v2/introspectToken", form)
            .await
    }

    /// The introspection of `token`, which must be answered 200.
    async fn introspect(&self, token: &str) -> Value {
        let (status, body) = self.introspection(&[("token", token)]).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The JSAPI flow, as the JSAPI and the service do it: a JSAPI token for `member`, then
    /// the OAuth 1.0a exchange signed here. The answer's pairs.
    async fn jsapi_credentials(&self, member: &str) -> HashMap<String, String> {
        let payload = self.app.authorize_payload(member).await;
        let jsapi_token = access_token(&payload).to_owned();
        let (status, body) = self.exchange(&jsapi_token).await;
        assert_eq!(status, 200, "{body}");
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }

    /// The OAuth 1.0a exchange of `jsapi_token`, signed here: the status and the body.
    async fn exchange(&self, jsapi_token: &str) -> (u16, String) {
        let url = self.app.url("/sandbox/uas/oauth/accessToken");
        let params = Exchange {
            xoauth_oauth2_access_token: jsapi_token,
        };
        let builder = oauth1_request::Builder::<_, _>::new(
            Credentials::new(API_KEY, SECRET_KEY),
            HmacSha1::new(),
        );
        let response = self
            .browser
            .post(&url)
            .header("authorization", builder.post(&url, &params))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(oauth1_request::to_form(&params))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// `GET /sandbox/v1/people/~` signed here with the OAuth 1.0a `credentials`.
    async fn profile_v1(&self, credentials: &HashMap<String, String>) -> (u16, Value) {
        self.signed_get("/sandbox/v1/people/~", credentials).await
    }

    /// `GET path` signed here with the OAuth 1.0a `credentials`.
    async fn signed_get(&self, path: &str, credentials: &HashMap<String, String>) -> (u16, Value) {
        let url = self.app.url(path);
        let mut builder = oauth1_request::Builder::<_, _>::new(
            Credentials::new(API_KEY, SECRET_KEY),
            HmacSha1::new(),
        );
        builder.token(Credentials::new(
            credentials["oauth_token"].as_str(),
            credentials["oauth_token_secret"].as_str(),
        ));
        let authorization = builder.get(&url, &());
        let response = self
            .browser
            .get(&url)
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    /// `GET` the permitted-services page of `member`.
    async fn permitted(&self, member: &str) -> reqwest::Response {
        let path = format!("/sandbox/permitted-services?sandbox_member={member}");
        self.browser.get(self.app.url(&path)).send().await.unwrap()
    }

    /// The permitted-services page of `member`, which must be answered 200.
    async fn permitted_page(&self, member: &str) -> String {
        let response = self.permitted(member).await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// The permitted-services page's form, posted with `form` to the page's address plus
    /// `query`.
    async fn remove(&self, query: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let path = format!("/sandbox/permitted-services{query}");
        self.browser
            .post(self.app.url(&path))
            .form(form)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn access_tokens_of_both_flows_live_sandbox_token_ttl_then_answer_401() {
    let rig = rig_with(|config| config.linkedin.sandbox_token_ttl = 3).await;
    let issued = unix_now();
    let answer = rig.tokens("short-lived", SCOPE).await;
    assert_eq!(answer["expires_in"], 3, "{answer}");
    assert!(answer.get("refresh_token").is_none(), "{answer}");
    let token = access_token(&answer);
    let credentials = rig.jsapi_credentials("short-lived-jsapi").await;
    let jsapi_issued = unix_now();
    // LinkedIn answered its 60-day credentials `oauth_expires_in=5183999`: a second less.
    assert_eq!(credentials["oauth_expires_in"], "2", "{credentials:?}");
    assert_eq!(credentials["oauth_authorization_expires_in"], "2");

    let (status, me) = rig.userinfo(token).await;
    assert_eq!(status, 200, "{me}");
    let (status, profile) = rig.profile_v1(&credentials).await;
    assert_eq!((status, &profile["id"]), (200, &json!("short-lived-jsapi")));
    let inspected = rig.introspect(token).await;
    assert_eq!(inspected["status"], "active", "{inspected}");
    let expires_at = inspected["expires_at"].as_i64().unwrap();
    assert_eq!(expires_at - inspected["created_at"].as_i64().unwrap(), 3);

    // The tokens really stop working at their end, as LinkedIn's (learn.microsoft.com,
    // "Error Handling": "The token used in the request has expired").
    wait_until(expires_at.max(issued + 3).max(jsapi_issued + 3)).await;
    let (status, refused) = rig.userinfo(token).await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(
        refused,
        json!({"status": 401, "serviceErrorCode": 65602, "message": "The token used in the request has expired"})
    );
    let (status, refused) = rig.profile_v1(&credentials).await;
    assert_eq!(status, 401, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("has expired"),
        "{refused}"
    );
    let inspected = rig.introspect(token).await;
    assert_eq!(inspected["active"], false, "{inspected}");
    assert_eq!(inspected["status"], "expired", "{inspected}");
    assert_eq!(inspected["expires_at"], expires_at);
}

#[tokio::test]
async fn the_id_token_lives_an_hour_whatever_the_access_tokens_lifetime() {
    // LinkedIn's id_token: exp - iat = 3600 (tests/fixtures/linkedin, the observed answer).
    for ttl in [5_184_000, 3] {
        let rig = rig_with(|config| config.linkedin.sandbox_token_ttl = ttl).await;
        let answer = rig.tokens("hour-member", SCOPE).await;
        assert_eq!(answer["expires_in"], ttl, "{answer}");
        let claims = claims_of(&answer);
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        );
        assert_eq!(exp - iat, 3_600, "{claims}");
        assert!((iat - unix_now()).abs() < 60, "{claims}");
    }
}

#[tokio::test]
async fn refresh_tokens_keep_the_end_of_their_first_issue_then_answer_invalid_grant() {
    // learn.microsoft.com, "Programmatic Refresh Tokens": refreshing gives a new access token
    // and the same refresh token, whose TTL "remains the same as specified in the initial
    // OAuth flow"; an access token never outlives it.
    let rig = rig_with(|config| {
        config.linkedin.sandbox_token_ttl = 3;
        config.linkedin.sandbox_refresh_tokens = true;
        config.linkedin.sandbox_refresh_ttl = 6;
    })
    .await;
    let answer = rig.tokens("partner-member", SCOPE).await;
    assert_eq!(answer["expires_in"], 3, "{answer}");
    assert_eq!(answer["refresh_token_expires_in"], 6, "{answer}");
    assert!(answer["id_token"].is_string());
    let first = access_token(&answer).to_owned();
    let refresh_token = answer["refresh_token"].as_str().unwrap().to_owned();
    let inspected = rig.introspect(&refresh_token).await;
    assert_eq!(inspected["status"], "active", "{inspected}");
    let refresh_end = inspected["expires_at"].as_i64().unwrap();
    assert_eq!(refresh_end - inspected["created_at"].as_i64().unwrap(), 6);

    // The first access token expires; the refresh token gets a new one.
    let first_end = rig.introspect(&first).await["expires_at"].as_i64().unwrap();
    wait_until(first_end).await;
    assert_eq!(rig.userinfo(&first).await.0, 401);
    let (status, renewed) = rig.refresh(&refresh_token).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["refresh_token"], refresh_token.as_str(), "the same");
    let second = access_token(&renewed).to_owned();
    assert_ne!(second, first);
    let left = renewed["refresh_token_expires_in"].as_i64().unwrap();
    assert!((1..=3).contains(&left), "the end did not move: {renewed}");
    assert_eq!(
        renewed["expires_in"], left,
        "the access token ends with the refresh token: {renewed}"
    );
    assert_eq!(renewed["token_type"], "Bearer");
    assert_eq!(renewed["scope"], "openid,profile,email");
    assert_eq!(rig.userinfo(&second).await.0, 200);
    let inspected = rig.introspect(&refresh_token).await;
    assert_eq!(inspected["expires_at"], refresh_end, "{inspected}");
    assert_eq!(rig.introspect(&second).await["expires_at"], refresh_end);

    // At the refresh token's end, it and its last access token are done.
    wait_until(refresh_end).await;
    assert_error(rig.refresh(&refresh_token).await, 400, "invalid_grant");
    assert_eq!(rig.userinfo(&second).await.0, 401);
    assert_eq!(rig.introspect(&refresh_token).await["status"], "expired");
    // A token the sandbox never issued is refused the same way.
    assert_error(
        rig.refresh("not-a-refresh-token").await,
        400,
        "invalid_grant",
    );
}

#[tokio::test]
async fn without_refresh_tokens_the_answer_carries_none_and_the_grant_is_unsupported() {
    let rig = rig_with(|_| {}).await;
    let answer = rig.tokens("no-partner", SCOPE).await;
    assert_eq!(answer["expires_in"], 5_184_000, "{answer}");
    assert!(answer.get("refresh_token").is_none(), "{answer}");
    assert!(answer.get("refresh_token_expires_in").is_none(), "{answer}");
    assert_error(
        rig.refresh(access_token(&answer)).await,
        400,
        "unsupported_grant_type",
    );
}

#[tokio::test]
async fn introspection_answers_linkedins_fields_and_refuses_another_client() {
    // learn.microsoft.com, "Token Introspection": active, client_id, authorized_at,
    // created_at, status, expires_at, scope, auth_type.
    let rig = rig_with(|_| {}).await;
    let before = unix_now();
    let answer = rig
        .tokens("inspected", "openid profile email w_member_social")
        .await;
    let token = access_token(&answer);
    let inspected = rig.introspect(token).await;
    let created = inspected["created_at"].as_i64().unwrap();
    assert!((before..before + 30).contains(&created), "{inspected}");
    assert_eq!(
        inspected,
        json!({
            "active": true,
            "client_id": CLIENT_ID,
            "authorized_at": inspected["authorized_at"],
            "created_at": created,
            "status": "active",
            "expires_at": created + 5_184_000,
            "scope": "openid,profile,email,w_member_social",
            "auth_type": "3L",
        })
    );
    assert!(inspected["authorized_at"].as_i64().unwrap() <= created);

    // A token it never issued is not active; no token at all is a bad request.
    assert_eq!(
        rig.introspect("never-issued").await,
        json!({"active": false})
    );
    assert_error(rig.introspection(&[]).await, 400, "invalid_request");

    // Another client, or the right one with a wrong secret: 401 invalid_client.
    for (client_id, client_secret) in [("another-client", CLIENT_SECRET), (CLIENT_ID, "wrong")] {
        let form = [
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("token", token),
        ];
        assert_error(rig.introspection(&form).await, 401, "invalid_client");
    }
}

#[tokio::test]
async fn removing_the_app_on_permitted_services_revokes_every_token_of_both_flows() {
    let rig = rig_with(|config| config.linkedin.sandbox_refresh_tokens = true).await;
    let member = "withdrawing";
    // Nothing allowed yet.
    let page = rig.permitted_page(member).await;
    assert!(page.contains(r#"id="no-apps""#), "{page}");

    let answer = rig.tokens(member, SCOPE).await;
    let access = access_token(&answer).to_owned();
    let refresh_token = answer["refresh_token"].as_str().unwrap().to_owned();
    let credentials = rig.jsapi_credentials(member).await;
    let unused_jsapi = rig.app.authorize_payload(member).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let unused_code = rig.allow(member, SCOPE, &[]).await;
    // Another member's tokens are theirs.
    let other = rig.tokens("staying", SCOPE).await;
    let other = access_token(&other);

    // The page lists the app, with both flows and the scopes, and a form that removes it.
    let response = rig.permitted(member).await;
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("form-action 'self'"), "{policy}");
    let page = response.text().await.unwrap();
    for expected in [
        format!(r#"data-app="{CLIENT_ID}""#),
        format!("{CLIENT_ID} (API key {API_KEY})"),
        "Sign In with LinkedIn using OpenID Connect".to_owned(),
        "JavaScript API (OAuth 1.0a)".to_owned(),
        "<code>email,openid,profile,r_basicprofile</code>".to_owned(),
        format!(r#"name="sandbox_member" value="{member}""#),
        r#"<form method="post" action="">"#.to_owned(),
    ] {
        assert!(page.contains(&expected), "{expected} in {page}");
    }

    // Remove, as the page's form posts it.
    let response = rig
        .remove(
            &format!("?sandbox_member={member}"),
            &[("sandbox_member", member), ("app", CLIENT_ID)],
        )
        .await;
    assert_eq!(response.status(), 303);
    let back = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        back,
        format!("permitted-services?sandbox_member={member}&removed={CLIENT_ID}")
    );
    let page = rig
        .browser
        .get(
            Url::parse(&rig.app.url("/sandbox/permitted-services"))
                .unwrap()
                .join(&back)
                .unwrap(),
        )
        .fetch_text()
        .await;
    assert!(page.contains(r#"id="removed""#), "{page}");
    assert!(page.contains(r#"id="no-apps""#), "{page}");

    // Every credential of the member, in both flows, is revoked.
    for token in [&access, &refresh_token] {
        let inspected = rig.introspect(token).await;
        assert_eq!(
            (&inspected["active"], &inspected["status"]),
            (&json!(false), &json!("revoked")),
            "{inspected}"
        );
    }
    let (status, refused) = rig.userinfo(&access).await;
    assert_eq!(
        (status, refused["serviceErrorCode"].as_i64()),
        (401, Some(65601)),
        "{refused}"
    );
    assert_error(rig.refresh(&refresh_token).await, 400, "invalid_grant");
    let (status, refused) = rig.profile_v1(&credentials).await;
    assert_eq!(status, 401, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("revoked"),
        "{refused}"
    );
    let (status, refused) = rig.exchange(&unused_jsapi).await;
    assert_eq!(status, 401, "{refused}");
    assert!(
        refused.contains("oauth_problem=token_rejected"),
        "{refused}"
    );
    assert_error(rig.trade(&unused_code, &[]).await, 400, "invalid_grant");
    assert_eq!(rig.userinfo(other).await.0, 200, "another member's token");

    // The consent is forgotten: the next sign-in shows the consent page; a new consent
    // brings working tokens.
    let page = rig
        .authorization(SCOPE, &[("sandbox_member", member)])
        .await;
    assert_eq!(page.status(), 200);
    let again = rig.tokens(member, SCOPE).await;
    assert_eq!(rig.userinfo(access_token(&again)).await.0, 200);

    // Only this sandbox's app can be removed, by a member named as the consent page names them.
    for form in [
        [("sandbox_member", member), ("app", "another-app")],
        [("sandbox_member", "not a member"), ("app", CLIENT_ID)],
    ] {
        assert_eq!(rig.remove("", &form).await.status(), 400, "{form:?}");
    }
    // Without a member, the page asks for one.
    let page = rig
        .browser
        .get(rig.app.url("/sandbox/permitted-services"))
        .fetch_text()
        .await;
    assert!(page.contains(r#"<form method="get" action="">"#), "{page}");
}

#[tokio::test]
async fn a_member_who_consented_is_sent_straight_back_unless_the_request_prompts() {
    let rig = rig_with(|_| {}).await;
    // The first time, the consent page (the sandbox knows the member by `sandbox_member`).
    let first = rig
        .authorization(SCOPE, &[("sandbox_member", "returning")])
        .await;
    assert_eq!(first.status(), 200);
    rig.allow("returning", SCOPE, &[]).await;

    // Then straight back with a code, no page: LinkedIn shows no consent screen again.
    let again = rig
        .authorization(SCOPE, &[("sandbox_member", "returning")])
        .await;
    assert_eq!(again.status(), 302);
    let code = rig.code_in(&again);
    let (status, answer) = rig.trade(&code, &[]).await;
    assert_eq!(status, 200, "{answer}");
    let claims = claims_of(&answer);
    assert_eq!(claims["name"], "Sandbox returning");

    // The page again: to switch member (`prompt=login`), for a member who never allowed the
    // app, for a scope not allowed yet, or without a member named.
    for (scope, extra) in [
        (
            SCOPE,
            vec![("sandbox_member", "returning"), ("prompt", "login")],
        ),
        (
            SCOPE,
            vec![("sandbox_member", "returning"), ("prompt", "consent")],
        ),
        (SCOPE, vec![("sandbox_member", "newcomer")]),
        (
            "openid profile email w_member_social",
            vec![("sandbox_member", "returning")],
        ),
        (SCOPE, vec![]),
    ] {
        let page = rig.authorization(scope, &extra).await;
        assert_eq!(page.status(), 200, "{scope} {extra:?}");
        let text = page.text().await.unwrap();
        assert!(text.contains(r#"id="allow""#), "{text}");
    }

    // Through the service's own sign-in ("Renew LinkedIn access"): no page, a new session.
    let browser = &rig.browser;
    let authorization = {
        let response = browser
            .get(rig.app.url("/auth/linkedin?sandbox_member=returning"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
        location(&response)
    };
    let response = browser.get(authorization).send().await.unwrap();
    assert_eq!(response.status(), 302, "straight back to the app");
    let callback = location(&response);
    assert!(
        callback.as_str().starts_with(&rig.redirect_uri()),
        "{callback}"
    );
    let response = browser.get(callback).send().await.unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let session: Value = browser.get(rig.app.url("/session")).fetch_json().await;
    assert_eq!(session["connected"], true, "{session}");
    assert_eq!(session["name"], "Sandbox returning", "{session}");
    // And the service's sign-in without a member still shows the page.
    let authorization = start(&rig.app, browser).await;
    assert_eq!(
        browser.get(authorization).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn the_daily_quota_answers_429_with_retry_after_until_midnight_utc() {
    let rig = rig_with(|config| config.linkedin.sandbox_daily_quota = Some(3)).await;
    let answer = rig.tokens("busy", SCOPE).await;
    let token = access_token(&answer);
    let credentials = rig.jsapi_credentials("busy").await;
    // Three calls, across the API routes and both flows: userinfo, /v2/me, /v1/people/~.
    assert_eq!(rig.userinfo(token).await.0, 200);
    assert_eq!(
        rig.get_bearer("/sandbox/v2/me", token, &[]).await.status(),
        403
    );
    assert_eq!(rig.profile_v1(&credentials).await.0, 200);

    let response = rig.get_bearer("/sandbox/v2/userinfo", token, &[]).await;
    assert_eq!(response.status(), 429);
    let retry_after: i64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let to_midnight = 86_400 - unix_now().rem_euclid(86_400);
    assert!(
        (retry_after - to_midnight).abs() <= 5,
        "{retry_after} vs {to_midnight}"
    );
    // LinkedIn's shape and words (wp-calypso#32007).
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": 429, "serviceErrorCode": 101,
               "message": "Resource level throttle limit for calls to this resource is reached."})
    );
    let (status, refused) = rig.profile_v1(&credentials).await;
    assert_eq!(status, 429, "{refused}");
    let response = rig
        .get_bearer("/sandbox/rest/posts/urn%3Ali%3Ashare%3A1", token, &[])
        .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));

    // Another member has a quota of their own.
    let other = rig.tokens("idle", SCOPE).await;
    assert_eq!(rig.userinfo(access_token(&other)).await.0, 200);
}

#[tokio::test]
async fn v2_me_is_forbidden_to_openid_connect_tokens_and_v1_stays_with_jsapi_credentials() {
    // linkedin-api-python-client#49 and PR #60, linkedin-api-js-client#35: an app with only
    // "Sign In with LinkedIn using OpenID Connect" gets 403 ACCESS_DENIED on /v2/me.
    let rig = rig_with(|_| {}).await;
    let answer = rig.tokens("oidc-only", SCOPE).await;
    let token = access_token(&answer);
    let response = rig.get_bearer("/sandbox/v2/me", token, &[]).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": 403, "serviceErrorCode": 100, "code": "ACCESS_DENIED",
               "message": "Not enough permissions to access: me.GET.NO_VERSION"})
    );
    // No token, or not a bearer one: 401 (learn.microsoft.com, "Error Handling").
    let (status, body) = json_of(
        rig.browser
            .get(rig.app.url("/sandbox/v2/me"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Empty oauth2_access_token"))
    );
    let credentials = rig.jsapi_credentials("jsapi-era").await;
    let (status, body) = rig.signed_get("/sandbox/v2/me", &credentials).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Unknown authentication schema"))
    );
    let (status, body) = json_of(rig.get_bearer("/sandbox/v2/me", "made-up", &[]).await).await;
    assert_eq!(
        (status, body["serviceErrorCode"].as_i64()),
        (401, Some(65600))
    );
    // The JSAPI era's profile still answers its credentials.
    let (status, profile) = rig.profile_v1(&credentials).await;
    assert_eq!((status, &profile["id"]), (200, &json!("jsapi-era")));
}

/// `YYYYMM` of the UTC month `months` from now (negative: before).
fn version(months: i32) -> String {
    let now = time::OffsetDateTime::now_utc();
    let index = now.year() * 12 + i32::from(u8::from(now.month())) - 1 + months;
    format!("{:04}{:02}", index.div_euclid(12), index.rem_euclid(12) + 1)
}

#[tokio::test]
async fn rest_posts_need_an_active_version_the_restli_header_and_w_member_social() {
    let rig = rig_with(|_| {}).await;
    let answer = rig
        .tokens("poster", "openid profile email w_member_social")
        .await;
    let token = access_token(&answer).to_owned();
    let sub = rig.userinfo(&token).await.1["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let author = format!("urn:li:person:{sub}");
    let post = json!({
        "author": author,
        "commentary": "Hello from the sandbox",
        "visibility": "PUBLIC",
        "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [],
                         "thirdPartyDistributionChannels": []},
        "lifecycleState": "PUBLISHED",
    });
    let current = version(0);
    let send = |token: String, headers: Vec<(&'static str, String)>, body: Value| {
        let mut request = rig
            .browser
            .post(rig.app.url("/sandbox/rest/posts"))
            .bearer_auth(token)
            .json(&body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { request.send().await.unwrap() }
    };
    let restli = ("X-Restli-Protocol-Version", "2.0.0".to_owned());

    // No version: 400 (n8n #28660 shows the header is required on /rest/).
    let (status, body) =
        json_of(send(token.clone(), vec![restli.clone()], post.clone()).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("VERSION_MISSING")),
        "{body}"
    );
    // Twelve months old, or next month: 426 NONEXISTENT_VERSION, in LinkedIn's words.
    for months in [-12, -13, 1] {
        let asked = version(months);
        let (status, body) = json_of(
            send(
                token.clone(),
                vec![("LinkedIn-Version", asked.clone()), restli.clone()],
                post.clone(),
            )
            .await,
        )
        .await;
        assert_eq!(status, 426, "{asked}: {body}");
        assert_eq!(
            body,
            json!({"status": 426, "code": "NONEXISTENT_VERSION",
                   "message": format!("Requested version {asked}01 is not active")})
        );
    }
    // The current version without the Rest.li protocol header: 400.
    let response = send(
        token.clone(),
        vec![("LinkedIn-Version", current.clone())],
        post.clone(),
    )
    .await;
    assert_eq!(response.status(), 400);
    // Eleven months old is still served; the post is made.
    let response = send(
        token.clone(),
        vec![("LinkedIn-Version", version(-11)), restli.clone()],
        post.clone(),
    )
    .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let id = response.headers()["x-restli-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("urn:li:share:"), "{id}");

    // Read back, its URN percent-encoded in the path.
    let encoded: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let path = format!("/sandbox/rest/posts/{encoded}");
    let headers = [
        ("LinkedIn-Version", current.as_str()),
        ("X-Restli-Protocol-Version", "2.0.0"),
    ];
    let (status, read) = json_of(rig.get_bearer(&path, &token, &headers).await).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["id"], id.as_str());
    assert_eq!(read["author"], author.as_str());
    assert_eq!(read["commentary"], "Hello from the sandbox");
    assert!(read["publishedAt"].is_i64(), "{read}");
    let (status, _) = json_of(rig.get_bearer(&path, &token, &headers[1..]).await).await;
    assert_eq!(status, 400, "GET needs the version too");
    let missing = "/sandbox/rest/posts/urn%3Ali%3Ashare%3A42";
    assert_eq!(
        rig.get_bearer(missing, &token, &headers).await.status(),
        404
    );

    let versioned = || vec![("LinkedIn-Version", current.clone()), restli.clone()];
    // Without `w_member_social`: 403 ACCESS_DENIED.
    let plain = rig.tokens("reader", SCOPE).await;
    let plain = access_token(&plain).to_owned();
    let (status, body) = json_of(send(plain, versioned(), post.clone()).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("ACCESS_DENIED")),
        "{body}"
    );
    // Someone else as the author: 403; a required field missing: 422.
    let mut theirs = post.clone();
    theirs["author"] = json!("urn:li:person:someoneElse");
    let (status, _) = json_of(send(token.clone(), versioned(), theirs).await).await;
    assert_eq!(status, 403);
    let mut bare = post.clone();
    bare.as_object_mut().unwrap().remove("commentary");
    let (status, body) = json_of(send(token.clone(), versioned(), bare).await).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("/commentary"),
        "{body}"
    );
    // Bearer tokens only.
    let credentials = rig.jsapi_credentials("poster").await;
    let (status, _) = rig.signed_get(&path, &credentials).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn picture_urls_carry_their_expiry_and_are_served_until_then() {
    // LinkedIn's picture URLs are signed and carry `e=<expiry>` (tomquirk/linkedin-api#93,
    // joshuatz/linkedin-to-jsonresume#75); here they expire with the access token that came
    // with them: SANDBOX_TOKEN_TTL, 60 days by default ("about two months").
    let rig = rig_with(|config| config.linkedin.sandbox_token_ttl = 3).await;
    let answer = rig.tokens("pictured", SCOPE).await;
    let token = access_token(&answer);
    let (_, me) = rig.userinfo(token).await;
    let picture = Url::parse(me["picture"].as_str().unwrap()).unwrap();
    assert_eq!(
        claims_of(&answer)["picture"],
        me["picture"],
        "the id_token's and userinfo's picture agree"
    );
    assert!(
        picture.as_str().starts_with(
            &rig.app
                .url("/sandbox/media/dms/image/pictured/profile-displayphoto-shrink_100_100/0?e=")
        ),
        "{picture}"
    );
    let asked = query(&picture);
    let expires: i64 = asked["e"].parse().unwrap();
    assert_eq!(expires, rig.introspect(token).await["expires_at"]);
    assert_eq!(asked["v"], "beta");

    let response = rig.browser.get(picture.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    assert!(response.text().await.unwrap().contains(">SP</text>"));
    // A later `e` is not signed: 403.
    let mut extended = picture.clone();
    extended
        .query_pairs_mut()
        .clear()
        .append_pair("e", &(expires + 86_400).to_string())
        .append_pair("v", "beta")
        .append_pair("t", &asked["t"]);
    assert_eq!(
        rig.browser.get(extended).send().await.unwrap().status(),
        403
    );
    // After `e`: 403, "URL signature expired".
    wait_until(expires).await;
    let response = rig.browser.get(picture).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("URL signature expired")
    );
}

/// A sandbox served elsewhere than by a [`RelyingParty`]'s app (the binary, a host's router),
/// at `url`, reached with `http` as `client` (its id and secret).
struct Elsewhere<'a> {
    http: &'a reqwest::Client,
    url: String,
    client: (&'a str, &'a str),
    redirect_uri: &'a str,
}

impl Elsewhere<'_> {
    /// Allow for `member`, and the code traded: the token answer, which must be 200.
    async fn tokens(&self, member: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/oauth/v2/authorization", self.url))
            .form(&[
                ("response_type", "code"),
                ("client_id", self.client.0),
                ("redirect_uri", self.redirect_uri),
                ("scope", SCOPE),
                ("state", "elsewhere"),
                ("sandbox_member", member),
                ("decision", "allow"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "{}", response.text().await.unwrap());
        let code = query(&location(&response))["code"].clone();
        let response = self
            .http
            .post(format!("{}/oauth/v2/accessToken", self.url))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", self.redirect_uri),
                ("client_id", self.client.0),
                ("client_secret", self.client.1),
            ])
            .send()
            .await
            .unwrap();
        let (status, answer) = json_of(response).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// With a daily quota of one call: userinfo answers `token` once, then 429.
    async fn quota_of_one(&self, token: &str) {
        for status in [200, 429] {
            let response = self
                .http
                .get(format!("{}/v2/userinfo", self.url))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status);
        }
    }
}

#[tokio::test]
async fn the_binary_reads_the_sandbox_variables_and_refuses_a_bad_one() {
    let served = Served::start(
        "localhost",
        &[
            ("SANDBOX", "true"),
            ("LINKEDIN_CLIENT_ID", CLIENT_ID),
            ("LINKEDIN_CLIENT_SECRET", CLIENT_SECRET),
            ("SANDBOX_TOKEN_TTL", "70"),
            ("SANDBOX_REFRESH_TOKENS", "true"),
            ("SANDBOX_REFRESH_TTL", "90"),
            ("SANDBOX_DAILY_QUOTA", "1"),
        ],
        "/healthz",
    )
    .await;
    let browser = served.client(None);
    let sandbox = Elsewhere {
        http: &browser,
        url: served.url("/sandbox"),
        client: (CLIENT_ID, CLIENT_SECRET),
        redirect_uri: &served.url("/auth/linkedin/callback"),
    };
    let answer = sandbox.tokens("from-env").await;
    assert_eq!(answer["expires_in"], 70, "{answer}");
    assert_eq!(answer["refresh_token_expires_in"], 90, "{answer}");
    sandbox.quota_of_one(access_token(&answer)).await;

    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("SANDBOX_TOKEN_TTL", "0"),
        ("SANDBOX_REFRESH_TTL", "ten"),
        ("SANDBOX_DAILY_QUOTA", "0"),
        ("SANDBOX_REFRESH_TOKENS", "maybe"),
    ] {
        let output = binary(dir.path()).env(name, value).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}={value}: {stderr}");
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
    }
}

#[tokio::test]
async fn a_host_mounting_the_sandbox_sets_the_same_rules_through_its_builder() {
    use linkedin_token_exchange::sandbox::Sandbox;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new(format!("{origin}/sandbox").parse().unwrap())
        .token_lifetime(Duration::from_secs(5))
        .refresh_tokens(Duration::from_secs(9))
        .daily_quota(1);
    let app = axum::Router::new().nest("/sandbox", sandbox.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    linkedin_token_exchange::server::install_crypto_provider();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (client_id, client_secret) = (sandbox.client_id(), sandbox.client_secret());
    let sandbox = Elsewhere {
        http: &http,
        url: format!("{origin}/sandbox"),
        client: (&client_id, &client_secret),
        // Any loopback redirect URI: a host's sandbox does not know the app in advance.
        redirect_uri: "http://127.0.0.1:1/callback",
    };
    let answer = sandbox.tokens("hosted").await;
    assert_eq!(answer["expires_in"], 5, "{answer}");
    assert_eq!(answer["refresh_token_expires_in"], 9, "{answer}");
    sandbox.quota_of_one(access_token(&answer)).await;
}
