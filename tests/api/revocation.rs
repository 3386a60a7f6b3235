//! Sign out everywhere and admin revocation, against every store (memory, SQLite, Redis,
//! PostgreSQL) through the real interfaces: a member signed in from three browsers (the
//! JSAPI exchange and OpenID Connect mixed) is ended by one call, another member keeps their
//! session, and the member index forgets sessions that end or expire on their own. Plus the
//! admin routes' authentication, which is the same on every store.
//!
//! Redis and PostgreSQL are the shared test servers of `stores` (skipped, or failed under
//! `LTE_REQUIRE_ALL_TESTS=1`, when they do not answer).

use std::sync::Arc;
use std::time::Duration;

use linkedin_token_exchange::Secret;
use linkedin_token_exchange::server::config::{Config, StoreUrl};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::device::Device;
use crate::support::redis::Cluster;
use crate::support::servers::{postgres_for_tests, skip_or_fail};
use crate::support::stores::{
    Store, config_on, memory, per_store, postgres, redis, sqlite, unique,
};
use crate::support::{
    API_KEY, Behaviour, FakeUpstream, GRANT, SECRET_KEY, TestApp, json_of, signed_cookie,
    test_config,
};

/// The admin token of these tests.
const ADMIN: &str = "revocation-test-admin-token-0123456789";

/// A configuration with the metrics listener and the admin routes on `store`, or `None`
/// after saying that `test` is skipped.
fn admin_config(test: &str, store: Store, dir: &TempDir) -> Option<Config> {
    let mut config = config_on(test, store, dir)?;
    config.listen.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    config.listen.admin_token = Some(Secret::new(ADMIN));
    Some(config)
}

async fn start_app(config: Config, dir: Arc<TempDir>) -> TestApp {
    TestApp::start(config, dir).await
}

/// An admin request to `path` on the metrics listener, with `token` when given.
async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let metrics = app.metrics.expect("the metrics listener");
    let mut request = reqwest::Client::new().request(method, format!("http://{metrics}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// `GET /admin/members/{member}/sessions`: the raw text and its JSON.
async fn admin_list(app: &TestApp, member: &str) -> (String, Value) {
    let path = format!("/admin/members/{member}/sessions");
    let response = admin(app, reqwest::Method::GET, &path, Some(ADMIN)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap();
    (text, value)
}

/// One member signed in from three browsers (OpenID Connect, then the JSAPI twice, with the
/// subject OpenID Connect gave them), and another member in a fourth: the member id, the
/// three browsers, the bystander and their member id.
async fn three_browsers_and_a_bystander(app: &TestApp) -> (String, Vec<Device>, Device, String) {
    let browsers: Vec<Device> = (0..3).map(|_| Device::new(app)).collect();
    let member = browsers[0].sign_in_oidc(app, &unique("everywhere")).await;
    browsers[1].sign_in_jsapi(app, &member).await;
    browsers[2].sign_in_jsapi(app, &member).await;
    let bystander = Device::new(app);
    let other = unique("bystander");
    bystander.sign_in_jsapi(app, &other).await;
    for browser in &browsers {
        assert_eq!(browser.session(app).await["member_id"], member.as_str());
    }

    let (text, listed) = admin_list(app, &member).await;
    assert_eq!(listed["member_id"], member.as_str(), "{listed}");
    let sessions = listed["sessions"].as_array().unwrap();
    let mut flows: Vec<&str> = sessions
        .iter()
        .map(|s| s["flow"].as_str().unwrap())
        .collect();
    flows.sort();
    assert_eq!(flows, ["jsapi", "jsapi", "oidc"], "{listed}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for session in sessions {
        let (created, expires) = (
            session["created_at"].as_i64().unwrap(),
            session["expires_at"].as_i64().unwrap(),
        );
        assert!((now - 120..=now + 5).contains(&created), "{session}");
        assert!(expires > now + 3_600, "{session}");
        assert_eq!(
            session.as_object().unwrap().len(),
            3,
            "flow, created_at, expires_at only: {session}"
        );
    }
    for browser in browsers.iter().chain([&bystander]) {
        assert!(
            !text.contains(&browser.session_id(app)),
            "no session id in the admin output"
        );
    }
    (member, browsers, bystander, other)
}

/// After the member's sessions ended: every browser of theirs is signed out, the index is
/// empty, and the bystander is still signed in and listed.
async fn only_the_bystander_is_left(
    app: &TestApp,
    member: &str,
    browsers: &[Device],
    bystander: &Device,
    other: &str,
) {
    for browser in browsers {
        assert_eq!(browser.session(app).await, json!({"connected": false}));
        let me = browser.client.get(app.url("/me")).send().await.unwrap();
        assert_eq!(me.status(), 401);
    }
    assert_eq!(admin_list(app, member).await.1["sessions"], json!([]));
    assert_eq!(bystander.session(app).await["member_id"], other);
    let (_, listed) = admin_list(app, other).await;
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1, "{listed}");
}

async fn sign_out_everywhere(test: &str, store: Store) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    if let Some(config) = admin_config(test, store, &dir) {
        sign_out_everywhere_with(config, dir).await;
    }
}

async fn sign_out_everywhere_with(config: Config, dir: Arc<TempDir>) {
    let app = start_app(config, dir).await;
    let (member, browsers, bystander, other) = three_browsers_and_a_bystander(&app).await;

    // Asked from the second browser, as JSON; a form (`everywhere=1`) is the other way.
    let response = browsers[1]
        .client
        .post(app.url("/logout"))
        .header("origin", &app.base)
        .json(&json!({"everywhere": true}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"connected": false, "sessions_ended": 3}));
    only_the_bystander_is_left(&app, &member, &browsers, &bystander, &other).await;

    // The same as a form, from a browser with a single session: it ends that one.
    let response = bystander
        .client
        .post(app.url("/logout"))
        .header("origin", &app.base)
        .form(&[("everywhere", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(response).await.1,
        json!({"connected": false, "sessions_ended": 1})
    );
    assert_eq!(bystander.session(&app).await, json!({"connected": false}));
}

async fn admin_revocation(test: &str, store: Store) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    if let Some(config) = admin_config(test, store, &dir) {
        admin_revocation_with(config, dir).await;
    }
}

async fn admin_revocation_with(config: Config, dir: Arc<TempDir>) {
    let app = start_app(config, dir).await;
    let (member, browsers, bystander, other) = three_browsers_and_a_bystander(&app).await;

    let path = format!("/admin/members/{member}/sessions");
    let response = admin(&app, reqwest::Method::DELETE, &path, Some(ADMIN)).await;
    assert_eq!(json_of(response).await, (200, json!({"sessions_ended": 3})));
    only_the_bystander_is_left(&app, &member, &browsers, &bystander, &other).await;

    // Nothing left to end.
    let response = admin(&app, reqwest::Method::DELETE, &path, Some(ADMIN)).await;
    assert_eq!(json_of(response).await, (200, json!({"sessions_ended": 0})));
}

/// A member with a session whose credentials last 4 s and one that lasts: once the first has
/// expired by itself, the index lists and ends only the second, and the store's own cleanup
/// leaves one entry.
async fn expired_sessions_leave_the_index(test: &str, store: Store) {
    let upstream = FakeUpstream::start(Behaviour::Grant {
        delay: Duration::ZERO,
        expires_in: 4,
    })
    .await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let Some(mut config) = admin_config(test, store, &dir) else {
        return;
    };
    upstream.configure(&mut config);
    let store_url = config.sessions.store.clone();
    let app = start_app(config, dir.clone()).await;
    let member = unique("expiring");
    let short = Device::new(&app);
    app.set_jsapi_cookie(&short.jar, &signed_cookie("short", &member, SECRET_KEY));
    short.exchange(&app).await;
    upstream.set(GRANT).await;
    let long = Device::new(&app);
    app.set_jsapi_cookie(&long.jar, &signed_cookie("long", &member, SECRET_KEY));
    long.exchange(&app).await;
    assert_eq!(
        admin_list(&app, &member).await.1["sessions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    tokio::time::sleep(Duration::from_millis(5_100)).await;
    let (_, listed) = admin_list(&app, &member).await;
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "only the live session: {listed}");
    assert!(
        sessions[0]["expires_at"].as_i64().unwrap()
            > time::OffsetDateTime::now_utc().unix_timestamp() + 60
    );
    if let Some(entries) = stored_entries(&store_url, &member).await {
        assert_eq!(entries, 1, "the store kept only the live session's entry");
    }

    let path = format!("/admin/members/{member}/sessions");
    let response = admin(&app, reqwest::Method::DELETE, &path, Some(ADMIN)).await;
    assert_eq!(json_of(response).await.1, json!({"sessions_ended": 1}));
    assert_eq!(long.session(&app).await, json!({"connected": false}));
}

/// How many index entries the store itself holds for `member` after its own cleanup (the
/// SQL stores: after a run of the expiry sweep); `None` for the memory store, whose index is
/// checked by its unit tests.
async fn stored_entries(store: &StoreUrl, member: &str) -> Option<i64> {
    use linkedin_token_exchange::__private::Sweeper;
    use tower_sessions_sqlx_store::sqlx;
    match store {
        // The Cluster test checks where the keys live instead.
        StoreUrl::Memory | StoreUrl::RedisFleet(_) => None,
        StoreUrl::Sqlite(path) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let pool = sqlx::SqlitePool::connect_with(options.clone())
                .await
                .unwrap();
            let sessions =
                linkedin_token_exchange::__private::SqliteSessions::open(pool.clone(), options)
                    .await
                    .unwrap();
            assert!(Sweeper::Sqlite(sessions).sweep().await.unwrap() >= 1);
            Some(
                sqlx::query_scalar("select count(*) from lte_member_sessions where member_id = ?")
                    .bind(member)
                    .fetch_one(&pool)
                    .await
                    .unwrap(),
            )
        }
        StoreUrl::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url.as_str()).await.unwrap();
            // Another app's sweeper (every app sweeps as it starts) may have been first.
            Sweeper::Postgres(pool.clone()).sweep().await.unwrap();
            Some(
                sqlx::query_scalar(
                    r#"select count(*) from "tower_sessions"."member_session" where member_id = $1"#,
                )
                .bind(member)
                .fetch_one(&pool)
                .await
                .unwrap(),
            )
        }
        StoreUrl::Redis(url) => {
            use tower_sessions_redis_store::fred::prelude::*;
            let client = Client::new(Config::from_url(url.as_str()).unwrap(), None, None, None);
            client.init().await.unwrap();
            let count: i64 = client
                .zcard(format!("lte:member:{{{member}}}:sessions"))
                .await
                .unwrap();
            let meta: i64 = client
                .hlen(format!("lte:member:{{{member}}}:meta"))
                .await
                .unwrap();
            assert_eq!(meta, count, "one flow and sign-in time per session");
            client.quit().await.unwrap();
            Some(count)
        }
    }
}

per_store!([memory, sqlite, redis, postgres], {
    a_member_in_three_browsers_signs_out_everywhere_with_one_call => sign_out_everywhere,
    an_administrator_ends_a_members_three_sessions_with_one_call => admin_revocation,
    a_session_that_expires_on_its_own_leaves_the_index => expired_sessions_leave_the_index,
});

#[tokio::test]
async fn the_admin_routes_want_the_bearer_token_and_live_only_on_the_metrics_listener() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = admin_config("admin auth", memory, &dir).unwrap();
    let app = start_app(config, dir).await;
    app.sign_in("admin-auth-member").await;
    assert_eq!(app.exchange().await.0, 200);
    let path = "/admin/members/admin-auth-member/sessions";

    for (token, why) in [
        (None, "no header"),
        (
            Some("wrong-token-of-the-right-length-0123456789"),
            "a wrong token",
        ),
        (
            Some(&ADMIN[..ADMIN.len() - 1]),
            "the token less one character",
        ),
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let response = admin(&app, method.clone(), path, token).await;
            assert_eq!(response.headers()["www-authenticate"], "Bearer", "{why}");
            let (status, body) = json_of(response).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (401, Some("unauthorized")),
                "{why}: {body}"
            );
        }
    }
    // A token in another scheme is no token.
    let metrics = app.metrics.unwrap();
    let basic = reqwest::Client::new()
        .get(format!("http://{metrics}{path}"))
        .header("authorization", format!("Basic {ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(
        app.session().await["member_id"],
        "admin-auth-member",
        "nothing ended"
    );

    let (_, listed) = admin_list(&app, "admin-auth-member").await;
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1);

    // The public port has no admin routes, whatever the token.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = app
            .client
            .request(method, app.url(path))
            .bearer_auth(ADMIN)
            .header("origin", &app.base)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    assert_eq!(app.session().await["member_id"], "admin-auth-member");
}

#[tokio::test]
async fn the_bearer_scheme_is_taken_in_any_case() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = admin_config("bearer case", memory, &dir).unwrap();
    let app = start_app(config, dir).await;
    let metrics = app.metrics.unwrap();
    let path = "/admin/members/case-member/sessions";
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = reqwest::Client::new()
            .get(format!("http://{metrics}{path}"))
            .header("authorization", format!("{scheme} {ADMIN}"))
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(status, 200, "{scheme}: {body}");
        assert_eq!(body["member_id"], "case-member");
    }
    for wrong in [format!("bearer {ADMIN}x"), format!("bearerx {ADMIN}")] {
        let response = reqwest::Client::new()
            .get(format!("http://{metrics}{path}"))
            .header("authorization", &wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{wrong}");
    }
}

#[tokio::test]
async fn a_method_the_admin_route_does_not_take_is_told_the_methods_it_does() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = admin_config("admin 405", memory, &dir).unwrap();
    let app = start_app(config, dir).await;
    let path = "/admin/members/anyone/sessions";
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ] {
        let response = admin(&app, method.clone(), path, Some(ADMIN)).await;
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        let (status, body) = json_of(response).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (405, Some("method_not_allowed")),
            "{method}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(!message.contains("no method"), "{message}");
        for allowed in allow.split(',').map(str::trim) {
            assert!(
                message.contains(allowed),
                "{allowed} ({allow}) in {message}"
            );
        }
        assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    }
}

/// The line of `output` that holds every one of `needles`.
fn line_with<'a>(output: &'a str, needles: &[&str]) -> Option<&'a str> {
    output
        .lines()
        .find(|line| needles.iter().all(|needle| line.contains(needle)))
}

#[tokio::test]
async fn admin_requests_are_logged_with_the_client_the_request_id_and_the_member_never_the_token() {
    let metrics_port = crate::support::free_port();
    let metrics_bind = format!("127.0.0.1:{metrics_port}");
    let server = crate::support::Served::start(
        "localhost",
        &[
            ("LINKEDIN_API_KEY", API_KEY),
            ("LINKEDIN_SECRET_KEY", SECRET_KEY),
            ("SANDBOX", "true"),
            ("METRICS_BIND", &metrics_bind),
            ("ADMIN_TOKEN", ADMIN),
        ],
        "/healthz",
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{metrics_bind}/admin/members/logged-member/sessions");
    let mut requests = Vec::new();
    for (method, token, status) in [
        (reqwest::Method::GET, None, 401),
        (
            reqwest::Method::DELETE,
            Some("wrong-token-of-the-right-length-0123456789"),
            401,
        ),
        (reqwest::Method::GET, Some(ADMIN), 200),
        (reqwest::Method::DELETE, Some(ADMIN), 200),
    ] {
        let mut request = client.request(method.clone(), &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{method} {token:?}");
        let id = response
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("{method} {token:?}: no x-request-id"))
            .to_str()
            .unwrap()
            .to_owned();
        requests.push((method, status, id));
    }
    let started = std::time::Instant::now();
    loop {
        let output = server.output();
        let lines: Vec<Option<&str>> = requests
            .iter()
            .map(|(_, _, id)| line_with(&output, &[" INFO ", id.as_str(), "client=127.0.0.1"]))
            .collect();
        if lines.iter().all(Option::is_some) {
            for ((method, status, _), line) in requests.iter().zip(&lines) {
                let line = line.unwrap();
                assert!(line.contains("logged-member"), "{method} {status}: {line}");
                if *status == 401 {
                    assert!(line.contains("unauthorized"), "{line}");
                }
            }
            assert!(
                line_with(&output, &["listed", "logged-member"]).is_some(),
                "the listing is logged:\n{output}"
            );
            assert!(!output.contains(ADMIN), "the token was logged:\n{output}");
            assert!(
                !output.contains("wrong-token"),
                "a token was logged:\n{output}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not every admin request is logged with its client and request id:\n{output}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn without_admin_token_the_metrics_listener_has_no_admin_routes() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = admin_config("no admin token", memory, &dir).unwrap();
    config.listen.admin_token = None;
    let app = start_app(config, dir).await;
    let response = admin(
        &app,
        reqwest::Method::GET,
        "/admin/members/anyone/sessions",
        Some(ADMIN),
    )
    .await;
    assert_eq!(response.status(), 404);
    let metrics = admin(&app, reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(metrics.status(), 200, "the metrics stay");
}

#[tokio::test]
async fn a_logout_body_that_is_neither_json_nor_a_form_is_a_clear_400_and_ends_nothing() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = admin_config("logout body", memory, &dir).unwrap();
    let app = start_app(config, dir).await;
    app.sign_in("body-member").await;
    assert_eq!(app.exchange().await.0, 200);
    for (content_type, body) in [
        ("application/json", "{\"everywhere\":\"yes\"}"),
        ("application/json", "{"),
        ("text/plain", "everywhere=1"),
        ("application/x-www-form-urlencoded", "everywhere=perhaps"),
    ] {
        let response = app
            .client
            .post(app.url("/logout"))
            .header("origin", &app.base)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, answer) = json_of(response).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("bad_request")),
            "{body}: {answer}"
        );
        assert!(
            answer["message"].as_str().unwrap().contains("everywhere"),
            "{answer}"
        );
    }
    assert_eq!(app.session().await["member_id"], "body-member");
    // From another origin, the everywhere logout is refused like any other.
    let response = app
        .client
        .post(app.url("/logout"))
        .header("origin", "https://elsewhere.example")
        .json(&json!({"everywhere": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(response).await.1["error"], "cross_origin");
    assert_eq!(app.session().await["member_id"], "body-member");
    // No body: today's answer.
    let response = app.post("/logout").await;
    assert_eq!(json_of(response).await.1, json!({"status": "logged_out"}));
}

/// A request that loaded its session before the session ended (a revocation, a logout
/// elsewhere) saves it afterwards: the save must not write it back. Memory and SQLite have
/// unit tests of the same; PostgreSQL's save is checked here on the real server.
#[tokio::test]
async fn a_save_after_the_session_ended_does_not_bring_a_postgres_session_back() {
    use linkedin_token_exchange::__private::PostgresSessions;
    use tower_sessions::SessionStore;
    use tower_sessions::session::{Id, Record};
    use tower_sessions_sqlx_store::{PostgresStore, sqlx};
    let url = match postgres_for_tests() {
        Ok(url) => url,
        Err(reason) => {
            return skip_or_fail(
                "revocation::a_save_after_the_session_ended_does_not_bring_a_postgres_session_back",
                &reason,
            );
        }
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // Migrated by `postgres_for_tests`.
    let store = PostgresStore::new(pool.clone());
    let sessions = PostgresSessions::new(store, pool);
    let mut record = Record {
        id: Id::default(),
        data: [("k".to_owned(), json!("first"))].into(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    sessions.create(&mut record).await.unwrap();
    record.data = [("k".to_owned(), json!("second"))].into();
    sessions.save(&record).await.unwrap();
    let loaded = sessions.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.data, record.data, "a save updates the row");
    sessions.delete(&record.id).await.unwrap();
    sessions.save(&record).await.unwrap();
    assert_eq!(sessions.load(&record.id).await.unwrap(), None);
}

/// On a Redis Cluster of three masters: one call ends a member's sessions (sign out
/// everywhere, then the admin route), and each member's two index keys live on one master
/// (one hash tag), so that every script of the index runs on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_one_call_ends_a_members_sessions_and_each_index_lives_on_one_master() {
    const TEST: &str = "revocation::on_a_redis_cluster_one_call_ends_a_members_sessions_and_each_index_lives_on_one_master";
    let cluster = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let on_cluster = |dir: &TempDir| {
        let mut config = test_config(dir);
        config.sessions.store = cluster.url().parse().unwrap();
        config.listen.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
        config.listen.admin_token = Some(Secret::new(ADMIN));
        config
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    sign_out_everywhere_with(on_cluster(&dir), dir).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    admin_revocation_with(on_cluster(&dir), dir).await;

    // The admin test's bystander is still signed in: their index is on the cluster.
    let index_keys: Vec<(usize, String)> = cluster
        .keys_per_master()
        .into_iter()
        .enumerate()
        .flat_map(|(master, keys)| {
            keys.into_iter()
                .filter(|key| key.starts_with("lte:member:"))
                .map(move |key| (master, key))
        })
        .collect();
    assert!(index_keys.len() >= 2, "{index_keys:?}");
    for (master, key) in &index_keys {
        let Some(tag) = key.strip_suffix(":sessions") else {
            continue;
        };
        let meta = format!("{tag}:meta");
        assert!(
            index_keys.contains(&(*master, meta)),
            "{key}'s flows and times on the same master: {index_keys:?}"
        );
    }
}
