//! OpenID Connect discovery under concurrent sign-ins: one fetch in flight at a time, its
//! answer (or its failure) shared by every waiter, against a real slow provider on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use linkedin_token_exchange::Secret;
use linkedin_token_exchange::server::config::RateLimit;
use serde_json::{Value, json};

use crate::oidc::step_by_step_with;
use crate::support::{TestApp, json_of, test_config};

/// A provider whose discovery answers after `delay_ms`, counting the fetches.
#[derive(Clone, Default)]
struct SlowProvider {
    fetches: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    issuer: Arc<std::sync::OnceLock<String>>,
}

async fn discovery(State(provider): State<SlowProvider>) -> Json<Value> {
    provider.fetches.fetch_add(1, Ordering::SeqCst);
    let delay = provider.delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let issuer = provider.issuer.get().cloned().unwrap_or_default();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/v2/authorization"),
        "token_endpoint": format!("{issuer}/v2/accessToken"),
        "jwks_uri": format!("{issuer}/openid/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks() -> Json<Value> {
    Json(json!({"keys": []}))
}

/// Six browsers start a sign-in at once; returns each one's status and the slowest wait.
async fn six_at_once(app: &TestApp) -> (Vec<u16>, Duration) {
    let started = Instant::now();
    let attempts = (0..6).map(|_| {
        let (_, jar) = app.new_browser();
        let browser = step_by_step_with(app, jar);
        let url = app.url("/auth/linkedin");
        tokio::spawn(async move {
            let response = browser.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            if status != 302 {
                let (_, body) = json_of(response).await;
                assert_eq!(body["error"], "upstream_timeout", "{body}");
            }
            (status, started.elapsed())
        })
    });
    let mut statuses = Vec::new();
    let mut slowest = Duration::ZERO;
    for attempt in attempts.collect::<Vec<_>>() {
        let (status, waited) = attempt.await.unwrap();
        statuses.push(status);
        slowest = slowest.max(waited);
    }
    (statuses, slowest)
}

/// Before: each waiter fetched again under the lock, one after the other (six fetches,
/// answers at 1.7, 3.2, … 9.2 s). Now the six share one fetch, failed or not.
#[tokio::test]
async fn concurrent_sign_ins_share_one_discovery_fetch_whether_it_fails_or_succeeds() {
    let provider = SlowProvider::default();
    provider.delay_ms.store(5_000, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/oauth", listener.local_addr().unwrap());
    provider.issuer.set(issuer.clone()).unwrap();
    let routes = Router::new()
        .route("/oauth/.well-known/openid-configuration", get(discovery))
        .route("/oauth/openid/jwks", get(jwks))
        .with_state(provider.clone());
    tokio::spawn(async move { axum::serve(listener, routes).await });

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.linkedin.sandbox = Some(false);
    config.oidc.client_id = Some("client".into());
    config.oidc.client_secret = Some(Secret::new("secret"));
    config.oidc.issuer = Some(issuer.parse().unwrap());
    config.limits.upstream_timeout_ms = 1_500;
    config.limits.rate_limit = RateLimit::Off;
    let app = TestApp::start(config, dir).await;

    // The provider is slower than the upstream timeout: one fetch, and every waiter gets its
    // 504 when that one fetch gives up, not one timeout after another.
    let (statuses, slowest) = six_at_once(&app).await;
    assert_eq!(statuses, [504; 6]);
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1, "one fetch");
    assert!(
        slowest < Duration::from_millis(6_000),
        "the waiters shared the fetch instead of queueing: slowest {slowest:?}"
    );

    // A failure is not kept: the next sign-ins fetch again, once, and all go through.
    provider.delay_ms.store(500, Ordering::SeqCst);
    let (statuses, _) = six_at_once(&app).await;
    assert_eq!(statuses, [302; 6]);
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2, "one more fetch");

    // Cached now: no fetch at all.
    let (statuses, _) = six_at_once(&app).await;
    assert_eq!(statuses, [302; 6]);
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);
    app.stop().await;
}
