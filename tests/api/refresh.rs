//! Credentials that age in view (issue 30): refresh tokens kept and used before the access
//! token expires, once across a fleet, and introspection that ends the sessions of a member
//! who removed the app. Against the test provider, which keeps tokens as LinkedIn documents
//! them (learn.microsoft.com, "Programmatic Refresh Tokens" and "Token Introspection"; see
//! `support::oidc_provider`), with lifetimes of seconds.

use std::sync::Arc;
use std::time::Duration;

use linkedin_token_exchange::server::config::Config;
use serde_json::Value;

use crate::oidc::step_by_step_with;
use crate::support::oidc_provider::{
    CLIENT_ID, CLIENT_SECRET, Profile, Provider, Rig, real_mode_config, unix_now,
};
use crate::support::redis::Cluster;
use crate::support::servers::{RedisServer, postgres_for_tests, skip_or_fail};
use crate::support::{FetchJson, TestApp, eventually, sample, scrape, sleep_until};

/// The access tokens' life in these tests: refreshed in their last quarter, 3 s.
const ACCESS_TTL: i64 = 12;

/// A provider of `profile` that gives refresh tokens (a partner app) and `ACCESS_TTL`-second
/// access tokens.
async fn partner_provider(profile: Profile) -> Provider {
    let provider = Provider::start(profile).await;
    provider.set(|k| {
        k.refresh_tokens = true;
        k.access_ttl = ACCESS_TTL;
    });
    provider
}

/// With the metrics listener on.
fn with_metrics(config: &mut Config) {
    config.listen.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
}

/// Signs the rig's browser in as `member-a`: the session's `expires_at`.
async fn sign_in(rig: &Rig) -> i64 {
    let response = rig.round().await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let session = rig.app.session().await;
    assert_eq!(session["member_id"], "member-a", "{session}");
    session["expires_at"].as_i64().unwrap()
}

/// A counter of the app's metrics, 0 when absent.
async fn counter(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, scrape) = scrape(app.metrics.unwrap()).await;
    sample(&scrape, name, labels).unwrap_or(0.0)
}

/// learn.microsoft.com, "Programmatic Refresh Tokens": a partner app's token answer carries
/// `refresh_token` and `refresh_token_expires_in`; `grant_type=refresh_token` with the
/// client's id and secret gives a new access token.
#[tokio::test]
async fn a_refreshed_token_keeps_the_session_alive_past_the_first_tokens_expiry() {
    let provider = partner_provider(Profile::Observed).await;
    let rig = Rig::start(provider, with_metrics).await;
    let first_end = sign_in(&rig).await;
    assert!(first_end - unix_now() <= ACCESS_TTL, "{first_end}");
    let first_token = rig.provider.access_tokens_of("member-a")[0].clone();

    // Before the last quarter: nothing is refreshed.
    assert_eq!(rig.app.session().await["connected"], true);
    assert_eq!(rig.provider.refresh_grants(), 0);

    // In it, a request starts the refresh; the request itself is answered at once.
    sleep_until(first_end - 2, Duration::ZERO).await;
    let session = rig.app.session().await;
    assert_eq!(session["expires_at"], first_end, "{session}");
    eventually(Duration::from_secs(3), "one refresh grant", async || {
        rig.provider.refresh_grants() == 1
    })
    .await;
    let grant = rig
        .provider
        .token_requests()
        .into_iter()
        .find(|form| form["grant_type"] == "refresh_token")
        .unwrap();
    assert_eq!(grant["client_id"], CLIENT_ID);
    assert_eq!(grant["client_secret"], CLIENT_SECRET);
    assert!(grant["refresh_token"].starts_with("refresh-"), "{grant:?}");

    // Past the first token's expiry: the session lives on, on the new token.
    sleep_until(first_end + 1, Duration::ZERO).await;
    let session = rig.app.session().await;
    assert_eq!(session["connected"], true, "{session}");
    let new_end = session["expires_at"].as_i64().unwrap();
    assert!(new_end > first_end, "{new_end} after {first_end}");
    let tokens = rig.provider.access_tokens_of("member-a");
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_ne!(tokens[1], first_token);
    // `/me` calls userinfo with the new token: the first one has expired there.
    let me: Value = rig.app.get("/me").await.json().await.unwrap();
    assert_eq!(me["sub"], "member-a", "{me}");
    assert_eq!(
        rig.provider.refresh_grants(),
        1,
        "one refresh, not one per request"
    );
    assert_eq!(
        counter(
            &rig.app,
            "lte_token_refreshes_total",
            &[("outcome", "refreshed")]
        )
        .await,
        1.0
    );
}

/// A proxy that only asks `/auth/check` keeps its members too: the check reads the store
/// without writing, and the refresh runs beside it.
#[tokio::test]
async fn forward_authentication_alone_refreshes_the_token_too() {
    let rig = Rig::start(partner_provider(Profile::Documented).await, |_| {}).await;
    let first_end = sign_in(&rig).await;
    sleep_until(first_end - 2, Duration::ZERO).await;
    let check = rig.app.get("/auth/check").await;
    assert_eq!(check.status(), 200);
    assert_eq!(check.headers()["x-auth-request-user"], "member-a");
    assert!(
        check.headers().get("set-cookie").is_none(),
        "the check still writes nothing"
    );
    eventually(Duration::from_secs(3), "the refresh", async || {
        rig.provider.refresh_grants() == 1
    })
    .await;
    sleep_until(first_end + 1, Duration::ZERO).await;
    let check = rig.app.get("/auth/check").await;
    assert_eq!(check.status(), 200, "alive past the first token's expiry");
}

/// A refresh LinkedIn refuses (`invalid_grant`: revoked, or past its fixed end: nango.dev,
/// "LinkedIn OAuth refresh token invalid_grant") leaves the session to end at the access
/// token's expiry, as without a refresh token; it is counted, and not tried again.
#[tokio::test]
async fn a_refused_refresh_ends_the_session_at_the_access_tokens_expiry() {
    let provider = partner_provider(Profile::Documented).await;
    provider.set(|k| {
        k.refresh_answer = Some((
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        ));
    });
    let rig = Rig::start(provider, with_metrics).await;
    let first_end = sign_in(&rig).await;
    sleep_until(first_end - 2, Duration::ZERO).await;
    assert_eq!(rig.app.session().await["connected"], true);
    eventually(
        Duration::from_secs(3),
        "the refused refresh counted",
        async || {
            counter(
                &rig.app,
                "lte_token_refreshes_total",
                &[("outcome", "refused")],
            )
            .await
                == 1.0
        },
    )
    .await;
    // Further requests in the window do not ask again: the refresh token was dropped.
    for _ in 0..3 {
        assert_eq!(rig.app.session().await["connected"], true);
    }
    sleep_until(first_end, Duration::ZERO).await;
    let session = rig.app.session().await;
    assert_eq!(session["connected"], false, "{session}");
    assert_eq!(rig.provider.refresh_grants(), 1);
}

/// Two instances sharing a store, each asked for the same session in its refresh window at
/// the same moment, with a provider that takes a second to answer a refresh: one refresh
/// grant in all (the session's lease in the store), and both instances serve the new token.
async fn two_instances_refresh_once(store: &str) {
    let provider = partner_provider(Profile::Documented).await;
    provider.set(|k| k.refresh_delay = Duration::from_secs(1));
    let rig = Rig::start(provider, |config| {
        config.sessions.store = store.parse().unwrap();
    })
    .await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = real_mode_config(&rig.provider, &dir);
    config.sessions.store = store.parse().unwrap();
    let other = TestApp::start(config, dir).await;

    let first_end = sign_in(&rig).await;
    let id = rig.app.session_id().unwrap();
    assert_eq!(other.session_with_id(&id).await["member_id"], "member-a");

    sleep_until(first_end - 2, Duration::ZERO).await;
    let answers = tokio::join!(
        rig.app.session_with_id(&id),
        other.session_with_id(&id),
        rig.app.session_with_id(&id),
        other.session_with_id(&id),
    );
    for session in [answers.0, answers.1, answers.2, answers.3] {
        assert_eq!(session["connected"], true, "{session}");
    }
    eventually(Duration::from_secs(4), "a refresh", async || {
        rig.provider.refresh_grants() >= 1
    })
    .await;
    // Time for a second refresh, had the other instance not waited: the provider answers
    // each in a second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        rig.provider.refresh_grants(),
        1,
        "{store}: one refresh for the fleet"
    );

    sleep_until(first_end + 1, Duration::ZERO).await;
    let here = rig.app.session_with_id(&id).await;
    let there = other.session_with_id(&id).await;
    assert_eq!(here["connected"], true, "{here}");
    assert_eq!(here, there, "both instances read the refreshed session");
    assert!(here["expires_at"].as_i64().unwrap() > first_end, "{here}");
    assert_eq!(rig.provider.refresh_grants(), 1);
}

#[tokio::test]
async fn two_instances_sharing_a_sqlite_file_refresh_once() {
    let dir = tempfile::tempdir().unwrap();
    two_instances_refresh_once(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}

#[tokio::test]
async fn two_instances_sharing_redis_refresh_once() {
    let redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(reason) => {
            return skip_or_fail("refresh::two_instances_sharing_redis_refresh_once", &reason);
        }
    };
    two_instances_refresh_once(&redis.url()).await;
}

#[tokio::test]
async fn two_instances_sharing_postgresql_refresh_once() {
    let url = match postgres_for_tests() {
        Ok(url) => url,
        Err(reason) => {
            return skip_or_fail(
                "refresh::two_instances_sharing_postgresql_refresh_once",
                &reason,
            );
        }
    };
    two_instances_refresh_once(&url).await;
}

/// Introspection every `every`, at the provider's endpoint, with the metrics on.
fn introspecting(provider: &Provider, every: Duration) -> impl FnOnce(&mut Config) + use<> {
    let url = provider.introspection_url();
    move |config| {
        config.oidc.introspect_every = Some(every);
        config.oidc.introspection_url = Some(url);
        with_metrics(config);
    }
}

/// learn.microsoft.com, "Token Introspection": `status` `revoked` for a token the member
/// withdrew (removing the app revokes every token of it). Each live session is introspected
/// once per interval; a revoked token ends every session of the member, on every device.
#[tokio::test]
async fn a_revoked_token_ends_the_members_sessions_within_one_introspection_interval() {
    const EVERY: Duration = Duration::from_secs(3);
    let provider = Provider::start(Profile::Observed).await;
    let configure = introspecting(&provider, EVERY);
    let rig = Rig::start(provider, configure).await;
    sign_in(&rig).await;
    // A second device of the same member.
    let (phone, phone_jar) = rig.app.new_browser();
    let phone_rig_browser = step_by_step_with(&rig.app, phone_jar.clone());
    let authorization = crate::oidc::start(&rig.app, &phone_rig_browser).await;
    let back = rig.consent(&authorization).await;
    let response = phone_rig_browser.get(back).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let phone_session: Value = phone.get(rig.app.url("/session")).fetch_json().await;
    assert_eq!(phone_session["member_id"], "member-a", "{phone_session}");

    // Active tokens are introspected, and nothing ends.
    eventually(EVERY * 2, "both tokens introspected", async || {
        let asked = rig.provider.introspections();
        rig.provider
            .access_tokens_of("member-a")
            .iter()
            .all(|token| asked.contains(token))
    })
    .await;
    assert!(
        counter(
            &rig.app,
            "lte_introspections_total",
            &[("outcome", "active")]
        )
        .await
            >= 2.0
    );
    assert_eq!(rig.app.session().await["connected"], true);

    // The member removes the app.
    rig.provider.revoke("member-a");
    // Each device's token is revoked, and each is introspected in the same pass: both
    // sessions end within one interval, each told why.
    let took = eventually(EVERY * 2, "both devices' sessions ended", async || {
        let phone_session: Value = phone.get(rig.app.url("/session")).fetch_json().await;
        rig.app.session().await["connected"] == false && phone_session["connected"] == false
    })
    .await;
    assert!(
        took <= EVERY + Duration::from_secs(1),
        "ended within one interval (and a tick): {took:?}"
    );
    let phone_session: Value = phone.get(rig.app.url("/session")).fetch_json().await;
    assert_eq!(
        phone_session["ended"], "linkedin_access_withdrawn",
        "{phone_session}"
    );
    assert_eq!(
        rig.app.session().await["ended"],
        "linkedin_access_withdrawn"
    );
    assert!(
        counter(
            &rig.app,
            "lte_introspections_total",
            &[("outcome", "revoked")]
        )
        .await
            >= 1.0
    );
}

/// `status: expired` ends that session only (another device holds another token).
#[tokio::test]
async fn an_expired_token_ends_its_own_session_only() {
    const EVERY: Duration = Duration::from_secs(2);
    let provider = Provider::start(Profile::Documented).await;
    let configure = introspecting(&provider, EVERY);
    let rig = Rig::start(provider, configure).await;
    sign_in(&rig).await;
    let (_, other_jar) = rig.app.new_browser();
    let other = step_by_step_with(&rig.app, other_jar);
    let authorization = crate::oidc::start(&rig.app, &other).await;
    let back = rig.consent(&authorization).await;
    assert_eq!(other.get(back).send().await.unwrap().status(), 303);

    let tokens = rig.provider.access_tokens_of("member-a");
    assert_eq!(tokens.len(), 2);
    rig.provider.expire(&tokens[0]);
    eventually(EVERY * 2, "the first session ended", async || {
        rig.app.session().await["connected"] == false
    })
    .await;
    let still: Value = other.get(rig.app.url("/session")).fetch_json().await;
    assert_eq!(still["connected"], true, "{still}");
    assert!(
        counter(
            &rig.app,
            "lte_introspections_total",
            &[("outcome", "expired")]
        )
        .await
            >= 1.0
    );
}

/// Without `LINKEDIN_INTROSPECT_EVERY`, no token is introspected: a revoked token's session
/// lives on until its next LinkedIn call or its expiry.
#[tokio::test]
async fn introspection_is_off_by_default() {
    assert_eq!(Config::defaults().oidc.introspect_every, None);
    let rig = Rig::start(Provider::start(Profile::Observed).await, with_metrics).await;
    sign_in(&rig).await;
    rig.provider.revoke("member-a");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rig.app.session().await["connected"], true);
    assert!(rig.provider.introspections().is_empty());
    let (text, _) = scrape(rig.app.metrics.unwrap()).await;
    assert!(!text.contains("lte_introspections_total{"), "{text}");
}

/// A session no request touches is refreshed by the pass before its token expires.
#[tokio::test]
async fn the_pass_refreshes_a_session_no_request_touches() {
    let provider = partner_provider(Profile::Documented).await;
    let configure = introspecting(&provider, Duration::from_secs(2));
    let rig = Rig::start(provider, configure).await;
    let first_end = sign_in(&rig).await;
    sleep_until(first_end + 1, Duration::ZERO).await;
    assert!(rig.provider.refresh_grants() >= 1);
    let session = rig.app.session().await;
    assert_eq!(session["connected"], true, "{session}");
    assert!(
        session["expires_at"].as_i64().unwrap() > first_end,
        "{session}"
    );
}

/// A browser of its own, signed in as `member` by a whole round against the rig's provider.
async fn signed_in_browser(rig: &Rig, member: &str) -> reqwest::Client {
    rig.provider.set(|k| k.sub = member.into());
    let (_, jar) = rig.app.new_browser();
    let browser = step_by_step_with(&rig.app, jar);
    let authorization = crate::oidc::start(&rig.app, &browser).await;
    let back = rig.consent(&authorization).await;
    assert_eq!(browser.get(back).send().await.unwrap().status(), 303);
    let session: Value = browser.get(rig.app.url("/session")).fetch_json().await;
    assert_eq!(session["member_id"], member, "{session}");
    browser
}

/// On a Redis Cluster, each member's index lives on the master of its hash tag: the pass
/// scans every master, so every member's session is introspected, and a revocation ends the
/// sessions of that member only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_reaches_the_sessions_on_every_master_of_a_redis_cluster() {
    const EVERY: Duration = Duration::from_secs(2);
    let cluster = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) => {
            return skip_or_fail(
                "refresh::introspection_reaches_the_sessions_on_every_master_of_a_redis_cluster",
                &reason,
            );
        }
    };
    let provider = Provider::start(Profile::Documented).await;
    let configure = introspecting(&provider, EVERY);
    let store = cluster.url();
    let rig = Rig::start(provider, move |config| {
        configure(config);
        config.sessions.store = store.parse().unwrap();
    })
    .await;
    let members: Vec<String> = (1..=6).map(|n| format!("member-{n}")).collect();
    let mut browsers = Vec::new();
    for member in &members {
        browsers.push(signed_in_browser(&rig, member).await);
    }
    let masters_with_members = cluster
        .keys_per_master()
        .iter()
        .filter(|keys| keys.iter().any(|key| key.starts_with("lte:member:")))
        .count();
    assert!(
        masters_with_members >= 2,
        "the members spread over the masters"
    );

    eventually(EVERY * 3, "every member's token introspected", async || {
        let asked = rig.provider.introspections();
        members.iter().all(|member| {
            rig.provider
                .access_tokens_of(member)
                .iter()
                .all(|token| asked.contains(token))
        })
    })
    .await;
    rig.provider.revoke("member-1");
    eventually(EVERY * 2, "member-1's session ended", async || {
        let session: Value = browsers[0].get(rig.app.url("/session")).fetch_json().await;
        session["connected"] == false
    })
    .await;
    for browser in &browsers[1..] {
        let session: Value = browser.get(rig.app.url("/session")).fetch_json().await;
        assert_eq!(session["connected"], true, "{session}");
    }
}
