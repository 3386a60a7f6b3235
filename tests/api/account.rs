//! The member's own sessions across devices (`GET /sessions`, `DELETE /sessions/{handle}`,
//! `POST /sessions/end-others`, the `/account` page), against every store that keeps the
//! member index (memory, SQLite, Redis, PostgreSQL), through the real HTTPS interface: each
//! "device" is a client with its own cookie jar and `User-Agent`. A member sees every one of
//! their sessions with this device marked, ends another device's or all the others; another
//! member's handle, a cross-site request and a request without a member end nothing. Two
//! instances sharing a store name a session by the same handle and note its use for each
//! other. The page itself runs in Chromium in `account::browser`.
//!
//! Redis and PostgreSQL are the shared test servers (skipped, or failed under
//! `LTE_REQUIRE_ALL_TESTS=1`, when they do not answer).

use std::time::Duration;

use linkedin_token_exchange::server::config::StoreUrl;
use serde_json::{Value, json};

use crate::support::device::Device;
use crate::support::servers::skip_or_fail;
use crate::support::stores::{
    Store, app_on, app_with_store, memory, per_store, postgres, redis, sqlite, store_or_skip,
    unique,
};
use crate::support::{FetchJson, TestApp, assert_error, json_of};

mod browser;

/// Chrome on Windows, as it announces itself.
const CHROME_ON_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// Firefox on Linux.
const FIREFOX_ON_LINUX: &str =
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
/// Safari on an iPhone.
const SAFARI_ON_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// What a device does on the member's own sessions.
impl Device {
    /// `GET /sessions`: the status and the JSON.
    async fn sessions(&self, app: &TestApp) -> (u16, Value) {
        json_of(self.client.get(app.url("/sessions")).send().await.unwrap()).await
    }

    /// The listed sessions, which must be answered 200, oldest first.
    async fn listed(&self, app: &TestApp) -> Vec<Value> {
        let (status, body) = self.sessions(app).await;
        assert_eq!(status, 200, "{body}");
        let listed = body["sessions"].as_array().unwrap().clone();
        let signed_in: Vec<i64> = listed
            .iter()
            .map(|s| s["created_at"].as_i64().unwrap())
            .collect();
        assert!(signed_in.is_sorted(), "oldest first: {body}");
        listed
    }

    /// The handle of this device's own session, as it lists it.
    async fn own_handle(&self, app: &TestApp) -> String {
        let listed = self.listed(app).await;
        let mine: Vec<_> = listed.iter().filter(|s| s["current"] == true).collect();
        assert_eq!(mine.len(), 1, "exactly one current session: {listed:?}");
        mine[0]["handle"].as_str().unwrap().to_owned()
    }

    /// `DELETE /sessions/{handle}` from the page's origin.
    async fn end(&self, app: &TestApp, handle: &str) -> (u16, Value) {
        let request = self.client.delete(app.url(&format!("/sessions/{handle}")));
        json_of(from_page(app, request).await).await
    }

    /// `POST /sessions/end-others` from the page's origin.
    async fn end_others(&self, app: &TestApp) -> (u16, Value) {
        let request = self.client.post(app.url("/sessions/end-others"));
        json_of(from_page(app, request).await).await
    }
}

/// `request`, sent from the page's origin.
async fn from_page(app: &TestApp, request: reqwest::RequestBuilder) -> reqwest::Response {
    request.header("origin", &app.base).send().await.unwrap()
}

/// The listed session signed in with `browser` (each test signs in one per browser).
fn by_browser<'a>(listed: &'a [Value], browser: &str) -> &'a Value {
    let found: Vec<_> = listed.iter().filter(|s| s["browser"] == browser).collect();
    assert_eq!(found.len(), 1, "one session of {browser}: {listed:?}");
    found[0]
}

/// `(browser, flow, current)` of each listed session, by browser.
fn shown(listed: &[Value]) -> Vec<(String, String, bool)> {
    let mut shown: Vec<_> = listed
        .iter()
        .map(|s| {
            (
                s["browser"].as_str().unwrap().to_owned(),
                s["flow"].as_str().unwrap().to_owned(),
                s["current"].as_bool().unwrap(),
            )
        })
        .collect();
    shown.sort();
    shown
}

/// `(browser, flow, current)` as `shown` gives them.
fn expected(rows: &[(&str, &str, bool)]) -> Vec<(String, String, bool)> {
    let mut rows: Vec<_> = rows
        .iter()
        .map(|(b, f, c)| ((*b).to_owned(), (*f).to_owned(), *c))
        .collect();
    rows.sort();
    rows
}

/// A listed session has exactly the six fields, sane times and a handle that is no session
/// id of `ids`.
fn check_shape(session: &Value, ids: &[String], signed_in_since: i64) {
    let fields: Vec<&str> = session
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields.len(),
        6,
        "handle, flow, created_at, last_seen, browser, current only: {session}"
    );
    let handle = session["handle"].as_str().unwrap();
    assert_eq!(handle.len(), 22, "{session}");
    assert!(
        !ids.iter().any(|id| id == handle || id.contains(handle)),
        "{session}"
    );
    let (created, seen) = (
        session["created_at"].as_i64().unwrap(),
        session["last_seen"].as_i64().unwrap(),
    );
    assert!(
        (signed_in_since - 1..=now() + 1).contains(&created),
        "{session}"
    );
    assert!((created..=now() + 1).contains(&seen), "{session}");
    assert!(session["current"].is_boolean(), "{session}");
}

/// One member on a laptop (OpenID Connect, Firefox on Linux) and a desktop (the JSAPI,
/// Chrome on Windows), another member on a phone: each of the first two lists both, with
/// its own marked; a cross-site or origin-less request, the other member's handle and an
/// unknown handle end nothing; the laptop ends the desktop's session, which is then signed
/// out, and the same handle is gone.
async fn a_member_ends_another_devices_session(test: &str, store: Store) {
    if let Some(app) = app_on(test, store).await {
        another_devices_session_on(&app).await;
    }
}

async fn another_devices_session_on(app: &TestApp) {
    let since = now();
    let laptop = Device::with_user_agent(app, FIREFOX_ON_LINUX);
    let member = laptop.sign_in_oidc(app, &unique("account")).await;
    let desktop = Device::with_user_agent(app, CHROME_ON_WINDOWS);
    desktop.sign_in_jsapi(app, &member).await;
    let phone = Device::with_user_agent(app, SAFARI_ON_IOS);
    let other = unique("bystander");
    phone.sign_in_jsapi(app, &other).await;
    let ids = [
        laptop.session_id(app),
        desktop.session_id(app),
        phone.session_id(app),
    ];

    let raw = laptop
        .client
        .get(app.url("/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["cache-control"], "no-store");
    let text = raw.text().await.unwrap();
    for id in &ids {
        assert!(!text.contains(id.as_str()), "a session id in {text}");
    }
    let seen_from_laptop = laptop.listed(app).await;
    assert_eq!(seen_from_laptop.len(), 2, "{seen_from_laptop:?}");
    for session in &seen_from_laptop {
        check_shape(session, &ids, since);
    }
    assert_eq!(
        shown(&seen_from_laptop),
        expected(&[
            ("Firefox on Linux", "oidc", true),
            ("Chrome on Windows", "jsapi", false)
        ]),
        "this device marked: {seen_from_laptop:?}"
    );
    // The desktop sees the same sessions under the same handles, itself marked.
    let seen_from_desktop = desktop.listed(app).await;
    let handles = |listed: &[Value]| -> Vec<(String, bool)> {
        let mut handles: Vec<_> = listed
            .iter()
            .map(|s| {
                (
                    s["handle"].as_str().unwrap().to_owned(),
                    s["current"].as_bool().unwrap(),
                )
            })
            .collect();
        handles.sort();
        handles
    };
    let (laptop_handle, desktop_handle) = (
        by_browser(&seen_from_laptop, "Firefox on Linux")["handle"]
            .as_str()
            .unwrap()
            .to_owned(),
        by_browser(&seen_from_laptop, "Chrome on Windows")["handle"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert_ne!(laptop_handle, desktop_handle);
    let mut flipped = vec![
        (laptop_handle.clone(), false),
        (desktop_handle.clone(), true),
    ];
    flipped.sort();
    assert_eq!(handles(&seen_from_desktop), flipped);
    // The phone's member sees only their own.
    let phone_handle = phone.own_handle(app).await;
    assert_eq!(phone.listed(app).await.len(), 1);

    // Refused before anything ends: another site's page, or no origin at all.
    for origin in [Some("https://evil.example"), None] {
        for mut request in [
            laptop
                .client
                .delete(app.url(&format!("/sessions/{desktop_handle}"))),
            laptop.client.post(app.url("/sessions/end-others")),
        ] {
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            assert_error(
                json_of(request.send().await.unwrap()).await,
                403,
                "cross_origin",
            );
        }
    }
    // Another member's handle, an unknown one, a long one, a session id: not found, and
    // nothing ends.
    let long = "A".repeat(100);
    for handle in [
        phone_handle.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAA",
        long.as_str(),
        ids[1].as_str(),
    ] {
        let (status, body) = laptop.end(app, handle).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("session_not_found")),
            "{handle}: {body}"
        );
    }
    assert_eq!(phone.session(app).await["member_id"], other.as_str());
    assert_eq!(desktop.session(app).await["member_id"], member.as_str());
    assert_eq!(laptop.listed(app).await.len(), 2);

    // The laptop ends the desktop's session.
    assert_eq!(
        laptop.end(app, &desktop_handle).await,
        (200, json!({"sessions_ended": 1, "connected": true}))
    );
    assert_eq!(desktop.session(app).await, json!({"connected": false}));
    assert_error(desktop.sessions(app).await, 401, "not_connected");
    assert_eq!(laptop.session(app).await["member_id"], member.as_str());
    let left = laptop.listed(app).await;
    assert_eq!(handles(&left), [(laptop_handle, true)], "{left:?}");
    assert_error(
        laptop.end(app, &desktop_handle).await,
        404,
        "session_not_found",
    );
    assert_eq!(
        phone.listed(app).await.len(),
        1,
        "the other member's session stays"
    );
}

/// One member on three devices and another member elsewhere: the second device ends the
/// others, keeps its own, and the other member keeps theirs; then it ends its own by its
/// handle, which signs it out as a logout does.
async fn a_member_ends_every_other_session(test: &str, store: Store) {
    if let Some(app) = app_on(test, store).await {
        every_other_session_on(&app).await;
    }
}

async fn every_other_session_on(app: &TestApp) {
    let member = unique("others");
    let devices: Vec<Device> = [FIREFOX_ON_LINUX, CHROME_ON_WINDOWS, SAFARI_ON_IOS]
        .into_iter()
        .map(|agent| Device::with_user_agent(app, agent))
        .collect();
    for device in &devices {
        device.sign_in_jsapi(app, &member).await;
    }
    let bystander = Device::with_user_agent(app, CHROME_ON_WINDOWS);
    let other = unique("bystander");
    bystander.sign_in_jsapi(app, &other).await;
    let listed = devices[1].listed(app).await;
    assert_eq!(
        shown(&listed),
        expected(&[
            ("Firefox on Linux", "jsapi", false),
            ("Chrome on Windows", "jsapi", true),
            ("Safari on iOS", "jsapi", false)
        ]),
        "{listed:?}"
    );

    assert_eq!(
        devices[1].end_others(app).await,
        (200, json!({"sessions_ended": 2}))
    );
    for ended in [&devices[0], &devices[2]] {
        assert_eq!(ended.session(app).await, json!({"connected": false}));
    }
    assert_eq!(devices[1].session(app).await["member_id"], member.as_str());
    let left = devices[1].listed(app).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (&left[0]["current"], &left[0]["browser"]),
        (&json!(true), &json!("Chrome on Windows"))
    );
    assert_eq!(bystander.session(app).await["member_id"], other.as_str());
    assert_eq!(bystander.listed(app).await.len(), 1);
    // Nothing else to end.
    assert_eq!(
        devices[1].end_others(app).await,
        (200, json!({"sessions_ended": 0}))
    );

    // Its own handle ends this session, as a logout: the cookie goes too.
    let own = devices[1].own_handle(app).await;
    let request = devices[1]
        .client
        .delete(app.url(&format!("/sessions/{own}")));
    let response = from_page(app, request).await;
    let cleared = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("__Host-lte_session=;"));
    assert!(cleared, "{:?}", response.headers());
    assert_eq!(
        json_of(response).await,
        (200, json!({"sessions_ended": 1, "connected": false}))
    );
    assert_eq!(devices[1].session(app).await, json!({"connected": false}));
    assert_eq!(bystander.session(app).await["member_id"], other.as_str());
}

/// Two instances sharing the store: a session signed in on the first and used on the second
/// (more than a second later) is listed by the first as last used then, and the first's
/// handle for it ends it through the second.
async fn instances_share_handles_and_last_use(test: &str, store: Store) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(store) = store_or_skip(test, store, &dir) {
        instances_share_on(store).await;
    }
}

async fn instances_share_on(store: StoreUrl) {
    let (first, second) = (
        app_with_store(store.clone()).await,
        app_with_store(store.clone()).await,
    );

    let member = unique("fleet");
    let here = Device::with_user_agent(&first, FIREFOX_ON_LINUX);
    here.sign_in_jsapi(&first, &member).await;
    let there = Device::with_user_agent(&first, CHROME_ON_WINDOWS);
    there.sign_in_jsapi(&first, &member).await;
    let listed = here.listed(&first).await;
    let theirs = by_browser(&listed, "Chrome on Windows");
    let (created, seen) = (
        theirs["created_at"].as_i64().unwrap(),
        theirs["last_seen"].as_i64().unwrap(),
    );
    assert_eq!(seen, created, "used only to sign in: {listed:?}");
    let there_handle = theirs["handle"].as_str().unwrap().to_owned();

    // The second device, on the second instance, a moment later: that instance notes the use.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let there_id = there.session_id(&first);
    let on_second = second.session_with_id(&there_id).await;
    assert_eq!(on_second["member_id"], member.as_str(), "{on_second}");
    let listed = here.listed(&first).await;
    let theirs = by_browser(&listed, "Chrome on Windows");
    assert_eq!(theirs["handle"], there_handle.as_str());
    assert!(
        theirs["last_seen"].as_i64().unwrap() > created,
        "the use on the second instance is noted: {listed:?}"
    );
    // This instance noted nothing of the kind for the session it served the whole time.
    let ours = by_browser(&listed, "Firefox on Linux");
    assert_eq!(ours["last_seen"], ours["created_at"], "{listed:?}");

    // The first instance's handle ends the session through the second.
    let (remote, remote_jar) = second.new_browser();
    let url = url::Url::parse(&second.base).unwrap();
    remote_jar.add_cookie_str(
        &format!(
            "__Host-lte_session={}; Path=/; Secure",
            here.session_id(&first)
        ),
        &url,
    );
    let request = remote.delete(second.url(&format!("/sessions/{there_handle}")));
    let response = from_page(&second, request).await;
    assert_eq!(
        json_of(response).await,
        (200, json!({"sessions_ended": 1, "connected": true}))
    );
    assert_eq!(there.session(&first).await, json!({"connected": false}));
    assert_eq!(here.listed(&first).await.len(), 1);
}

per_store!([memory, sqlite, redis, postgres], {
    a_member_ends_another_devices_session_and_nobody_elses => a_member_ends_another_devices_session,
    a_member_ends_every_other_session_and_keeps_this_one => a_member_ends_every_other_session,
});

macro_rules! fleet_suite {
    ($($store:ident),*) => {$(
        #[tokio::test]
        async fn $store() {
            let test = concat!("account::two_instances::", stringify!($store));
            super::instances_share_handles_and_last_use(test, super::$store).await;
        }
    )*};
}

/// Two instances on one store (the memory store is one process's; its last use is tested
/// beside the store, in `session::backend`).
mod two_instances {
    fleet_suite!(sqlite, redis, postgres);
}

/// On a Redis Cluster of three masters: every script of the index (the new session, its last
/// use, its end) runs on the one master of the member's hash tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_member_lists_and_ends_their_sessions() {
    const TEST: &str = "account::on_a_redis_cluster_a_member_lists_and_ends_their_sessions";
    let cluster = match crate::support::redis::Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let store: StoreUrl = cluster.url().parse().unwrap();
    let app = app_with_store(store.clone()).await;
    another_devices_session_on(&app).await;
    every_other_session_on(&app).await;
    instances_share_on(store).await;
}

#[tokio::test]
async fn without_a_member_the_routes_answer_not_connected_and_the_page_offers_the_sign_in() {
    let app = crate::support::spawn_app().await;
    assert_error(
        json_of(app.get("/sessions").await).await,
        401,
        "not_connected",
    );
    for request in [
        app.client
            .delete(app.url("/sessions/AAAAAAAAAAAAAAAAAAAAAA")),
        app.client.post(app.url("/sessions/end-others")),
    ] {
        let response = from_page(&app, request).await;
        assert_error(json_of(response).await, 401, "not_connected");
    }
    let page = app.get("/account").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
        "{policy}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"data-state="disconnected""#), "{html}");
    assert!(html.contains(r#"href="/""#), "{html}");
    assert!(!html.contains("<table"), "{html}");
    // The methods the routes do not take.
    let response = app
        .client
        .get(app.url("/sessions/end-others"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test]
async fn the_page_lists_the_sessions_the_json_lists_with_this_device_marked() {
    let app = crate::support::spawn_app().await;
    let member = unique("page");
    let laptop = Device::with_user_agent(&app, FIREFOX_ON_LINUX);
    laptop.sign_in_jsapi(&app, &member).await;
    let phone = Device::with_user_agent(&app, SAFARI_ON_IOS);
    phone.sign_in_jsapi(&app, &member).await;
    let listed = laptop.listed(&app).await;
    let html = laptop.client.get(app.url("/account")).fetch_text().await;
    for session in &listed {
        let handle = session["handle"].as_str().unwrap();
        assert!(
            html.contains(&format!(r#"data-handle="{handle}""#)),
            "{handle}: {html}"
        );
    }
    assert_eq!(html.matches("(this device)").count(), 1, "{html}");
    // A button for the other session, none for this one, and "End all other sessions".
    assert_eq!(html.matches(r#"class="end-session"#).count(), 1, "{html}");
    let other = listed.iter().find(|s| s["current"] == false).unwrap();
    assert!(html.contains(&format!(
        r#"class="end-session secondary" data-handle="{}""#,
        other["handle"].as_str().unwrap()
    )));
    assert!(
        html.contains("Safari on iOS") && html.contains("Firefox on Linux"),
        "{html}"
    );
    assert!(
        html.contains(r#"<button id="end-others" type="button">"#),
        "{html}"
    );
    assert!(html.contains(r#"src="/static/account.js""#), "{html}");
    for asset in ["/static/account.js", "/static/account.css"] {
        let response = app.get(asset).await;
        assert_eq!(response.status(), 200, "{asset}");
    }
    // The login page links to it once connected.
    let login = laptop.client.get(app.url("/")).fetch_text().await;
    assert!(login.contains(r#"<a href="/account">"#), "{login}");
}

/// A host app with the library's router and its own session layer: without the member
/// index the routes say so; with the sealed store's `Extension`, they work.
#[tokio::test]
async fn a_host_without_the_member_index_is_told_and_one_with_it_is_served() {
    use axum::Extension;
    use linkedin_token_exchange::stores::{SealedStore, StoreUrl as HostStoreUrl};
    use linkedin_token_exchange::{LinkedInSignIn, Secret};
    use tower::ServiceExt;

    let sign_in = LinkedInSignIn::builder()
        .public_origin("https://app.example.com")
        .oidc("client-id", "client-secret")
        .build()
        .unwrap();
    let get_sessions = || {
        axum::http::Request::get("/sessions")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let without = axum::Router::new().merge(sign_in.router()).layer(
        sign_in.session_layer(linkedin_token_exchange::tower_sessions::MemoryStore::default()),
    );
    let response = without.oneshot(get_sessions()).await.unwrap();
    assert_eq!(response.status(), 404);
    let body = axum::body::to_bytes(response.into_body(), 10_000)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "sessions_not_configured", "{body}");

    let store = SealedStore::connect(
        &HostStoreUrl::Memory,
        &Secret::new(crate::support::SESSION_KEY),
    )
    .await
    .unwrap();
    let with = axum::Router::new()
        .merge(sign_in.router())
        .layer(Extension(store.clone()))
        .layer(sign_in.session_layer(store));
    let response = with.oneshot(get_sessions()).await.unwrap();
    assert_eq!(response.status(), 401, "no member yet");
}
