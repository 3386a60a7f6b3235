//! The main flow over real HTTPS, with the sandbox as the upstream: exchange, session,
//! profile, logout, and the page.

use serde_json::json;

use crate::support::{API_KEY, session_set_cookie, spawn_app};

#[tokio::test]
async fn a_signed_in_member_is_exchanged_stored_and_can_fetch_the_profile() {
    let app = spawn_app().await;
    app.sign_in("SandboxAda").await;

    let (status, body) = app.exchange().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "connected");
    assert_eq!(body["member_id"], "SandboxAda");
    assert_eq!(body["expires_in"], 5_183_999);
    assert_eq!(app.sandbox_stats().await["exchanges_accepted"], 1);

    let session = app.session().await;
    assert_eq!(session["connected"], true);
    assert_eq!(session["member_id"], "SandboxAda");
    assert!(session["expires_at"].as_i64().unwrap() > 1_700_000_000);

    let profile: serde_json::Value = app.get("/me").await.json().await.unwrap();
    assert_eq!(profile["firstName"], "Ada");
    assert_eq!(profile["lastName"], "Lovelace");
    assert_eq!(app.sandbox_stats().await["profiles_served"], 1);
}

#[tokio::test]
async fn the_same_member_again_is_already_connected_without_an_upstream_call() {
    let app = spawn_app().await;
    app.sign_in("member-7").await;
    assert_eq!(app.exchange().await.1["status"], "connected");
    let (status, body) = app.exchange().await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "already_connected");
    assert_eq!(body["member_id"], "member-7");
    assert!(body["expires_in"].as_i64().unwrap() > 5_183_000);
    assert_eq!(app.sandbox_stats().await["exchanges_accepted"], 1);
}

#[tokio::test]
async fn session_answers_before_during_and_after_a_connection() {
    let app = spawn_app().await;
    assert_eq!(app.session().await, json!({"connected": false}));
    app.sign_in("SandboxAda").await;
    app.exchange().await;
    assert_eq!(app.session().await["connected"], true);

    let (status, body) = crate::support::json_of(app.post("/logout").await).await;
    assert_eq!((status, body), (200, json!({"status": "logged_out"})));
    assert_eq!(app.session().await, json!({"connected": false}));
}

#[tokio::test]
async fn logout_deletes_the_session_in_the_store_not_only_the_cookie() {
    let app = spawn_app().await;
    app.sign_in("SandboxAda").await;
    app.exchange().await;
    let old_id = app.session_id().unwrap();
    app.post("/logout").await;
    assert_eq!(app.session_id(), None, "the session cookie is removed");

    // Replaying the old id from elsewhere finds nothing.
    assert_eq!(
        app.session_with_id(&old_id).await,
        json!({"connected": false})
    );
}

#[tokio::test]
async fn the_session_cookie_is_secure_http_only_and_same_site_lax() {
    let app = spawn_app().await;
    app.sign_in("SandboxAda").await;
    let response = app.post("/token-exchange").await;
    let cookie = session_set_cookie(&response);
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            cookie.split("; ").any(|part| part == flag),
            "{flag} missing in {cookie}"
        );
    }
    // A host-only cookie a sibling subdomain cannot plant: the `__Host-` prefix, no Domain.
    assert!(cookie.starts_with("__Host-lte_session="), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
}

#[tokio::test]
async fn the_login_page_embeds_the_jsapi_and_shows_the_connected_member() {
    let app = spawn_app().await;
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        page.contains(r#"<script type="text/javascript" src="/sandbox/in.js">"#),
        "{page}"
    );
    assert!(page.contains(&format!("api_key: {API_KEY}")));
    assert!(page.contains("authorize: true"));
    assert!(page.contains("credentials_cookie: true"));
    assert!(page.contains("onLoad: onLinkedInLoad"));
    assert!(page.contains(
        r#"<script type="IN/Login" data-onAuth="onAuth" data-onLogout="onLogout"></script>"#
    ));
    assert!(page.contains(r#"data-state="disconnected""#));

    app.sign_in("SandboxAda").await;
    app.exchange().await;
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains(r#"data-state="connected""#));
    assert!(page.contains(r#"<strong id="member">SandboxAda</strong>"#));
}

#[tokio::test]
async fn health_static_assets_and_unknown_routes() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");

    let js = app.get("/static/app.js").await;
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.text().await.unwrap().contains("function onAuth"));
    assert_eq!(app.get("/static/app.css").await.status(), 200);
    assert_eq!(app.get("/sandbox/in.js").await.status(), 200);

    let (status, body) = crate::support::json_of(app.get("/static/nope.js").await).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    assert_eq!(app.get("/nowhere").await.status(), 404);
}

#[tokio::test]
async fn the_profile_needs_a_connected_member() {
    let app = spawn_app().await;
    let (status, body) = crate::support::json_of(app.get("/me").await).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "not_connected");
    assert!(body["message"].as_str().unwrap().ends_with('.'));
}
