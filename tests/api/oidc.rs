//! "Sign In with LinkedIn using OpenID Connect" over HTTPS, end to end against the sandbox's
//! provider: the redirect, the consent, the callback, the session, `/me`, sign-out.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::cookie::Jar;
use serde_json::{Value, json};

use crate::support::{TestApp, json_of, spawn_app};

/// A browser that does not follow redirects (to look at each one), sharing `app`'s jar.
pub(crate) fn step_by_step(app: &TestApp) -> reqwest::Client {
    step_by_step_with(app, app.jar.clone())
}

/// A browser that does not follow redirects, with the cookie jar `jar`.
pub(crate) fn step_by_step_with(app: &TestApp, jar: Arc<Jar>) -> reqwest::Client {
    crate::support::client::trusting(&app.dir.path().join("cert.pem"))
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The app's callback at `url` in `browser`, asking for JSON: the status and the body.
pub(crate) async fn callback_json(browser: &reqwest::Client, url: url::Url) -> (u16, Value) {
    json_of(
        browser
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub(crate) fn location(response: &reqwest::Response) -> url::Url {
    url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
}

pub(crate) fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// `GET /auth/linkedin`: the authorization URL the browser is sent to.
pub async fn start(app: &TestApp, browser: &reqwest::Client) -> url::Url {
    let response = browser.get(app.url("/auth/linkedin")).send().await.unwrap();
    let status = response.status();
    if status != 302 {
        panic!("{status}: {}", response.text().await.unwrap());
    }
    location(&response)
}

/// Answers the sandbox's consent page with `decision` for `member`: where it sends the browser.
pub async fn consent(
    browser: &reqwest::Client,
    authorization: &url::Url,
    decision: &str,
    member: &str,
) -> url::Url {
    let page = browser.get(authorization.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200, "the consent page");
    let mut form = query(authorization);
    form.insert("decision".into(), decision.into());
    form.insert("sandbox_member".into(), member.into());
    let mut endpoint = authorization.clone();
    endpoint.set_query(None);
    let response = browser.post(endpoint).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 302);
    location(&response)
}

#[tokio::test]
async fn a_member_signs_in_with_openid_connect_into_the_same_session_and_out_again() {
    let app = spawn_app().await;
    let browser = step_by_step(&app);
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        page.contains(r#"href="/auth/linkedin""#),
        "the page offers the link"
    );

    let authorization = start(&app, &browser).await;
    let asked = query(&authorization);
    assert!(
        authorization
            .path()
            .ends_with("/sandbox/oauth/v2/authorization"),
        "{authorization}"
    );
    for field in ["state", "nonce", "client_id", "redirect_uri"] {
        assert!(
            asked.get(field).is_some_and(|v| !v.is_empty()),
            "{field} in {authorization}"
        );
    }
    assert_eq!(asked["response_type"], "code");
    assert!(asked["scope"].split(' ').any(|s| s == "openid"));
    assert!(
        !asked.contains_key("code_challenge"),
        "no PKCE: the sandbox lists none, as LinkedIn"
    );

    let callback = consent(&browser, &authorization, "allow", "oidc-member").await;
    assert_eq!(query(&callback)["state"], asked["state"]);
    let before = app.session_id();
    let response = browser.get(callback.clone()).send().await.unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()["location"], "/");
    assert_ne!(app.session_id(), before, "the session id cycles");

    let session = app.session().await;
    assert_eq!(session["connected"], true, "{session}");
    assert_eq!(session["flow"], "oidc");
    assert_eq!(session["name"], "Sandbox oidc-member");
    assert_eq!(session["email"], "oidc-member@sandbox.example");
    let me: Value = app.get("/me").await.json().await.unwrap();
    assert_eq!(me["email_verified"], true);
    // The member id is the provider's pairwise `sub` for this client, not the member's name.
    let sub = me["sub"].as_str().expect("a sub").to_owned();
    assert_eq!(session["member_id"], sub.as_str(), "{session} {me}");
    assert_ne!(sub, "oidc-member");
    // The page names the member, not the sub (which means nothing to a person).
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        page.contains(r#"<strong id="member">Sandbox oidc-member</strong>"#)
            && !page.contains(&sub)
            && page.contains("OpenID Connect"),
        "{page}"
    );

    // The code is single use: the same callback again is refused, and the session stays.
    let again = browser
        .get(callback)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(again).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("oidc_state_mismatch")),
        "{body}"
    );
    assert_eq!(app.session().await["member_id"], sub.as_str());

    assert_eq!(app.post("/logout").await.status(), 200);
    assert_eq!(app.session().await, json!({"connected": false}));
}

#[tokio::test]
async fn cancelling_at_the_provider_is_oidc_denied_on_a_page_for_a_person() {
    let app = spawn_app().await;
    let browser = step_by_step(&app);
    let authorization = start(&app, &browser).await;
    let callback = consent(&browser, &authorization, "cancel", "nobody").await;
    assert_eq!(query(&callback)["error"], "user_cancelled_login");
    let response = browser
        .get(callback)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(
        page.contains("oidc_denied") && page.contains("user_cancelled_login"),
        "{page}"
    );
    assert!(page.contains(r#"href="/""#), "a way back");
    // A deliberate cancel is no failure, and the page asks for no favicon.
    assert!(
        page.contains("<title>Sign-in cancelled</title>")
            && page.contains("<h1>Sign-in cancelled</h1>")
            && !page.contains("Sign-in failed"),
        "{page}"
    );
    assert!(
        page.contains(r#"<link rel="icon" href="data:,">"#),
        "{page}"
    );
    assert_eq!(app.session().await, json!({"connected": false}));

    // A callback that fails is still "Sign-in failed".
    let failed = browser
        .get(app.url("/auth/linkedin/callback?code=x&state=unknown"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 400);
    let page = failed.text().await.unwrap();
    assert!(
        page.contains("<title>Sign-in failed</title>") && page.contains("oidc_state_mismatch"),
        "{page}"
    );
}
