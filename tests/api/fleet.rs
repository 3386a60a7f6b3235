//! A fleet of instances on real Redis deployments the tests start themselves: a primary lost
//! to Sentinel is followed (503 `session_store_unavailable` meanwhile, each answer within
//! 2 s), sessions spread over a three-master Cluster, and one rate-limit budget shared by
//! three instances (`RATE_LIMIT_STORE=redis`) that fails open when its Redis dies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use linkedin_token_exchange::server::config::{RateLimit, RateLimitStore};
use serde_json::Value;

use crate::support::redis::{Cluster, SERVICE, SentinelSet};
use crate::support::servers::{RedisServer, skip_or_fail};
use crate::support::{FetchJson, TestApp, json_of, sample, scrape, test_config};

/// The bound on any answer while the store fails.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// The bound on following a promoted primary.
const FOLLOW_WITHIN: Duration = Duration::from_secs(10);

/// An instance on `store`, with `RATE_LIMIT=limit` kept in `limit_store`.
async fn instance(store: &str, limit: &str, limit_store: RateLimitStore, metrics: bool) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.sessions.store = store.parse().unwrap();
    config.limits.rate_limit = limit.parse::<RateLimit>().unwrap();
    config.limits.rate_limit_store = limit_store;
    if metrics {
        config.listen.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    }
    TestApp::start(config, dir).await
}

/// A request's answer and how long it took; a request that does not finish within
/// [`ANSWER_WITHIN`] (plus slack for the client) fails the test.
async fn timed(request: reqwest::RequestBuilder, what: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = tokio::time::timeout(ANSWER_WITHIN * 3, request.send())
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
        .unwrap();
    let (status, body) = json_of(response).await;
    (status, body, started.elapsed())
}

/// A fresh browser that exchanges `member`'s JSAPI cookie: (status, body, time taken).
async fn exchange_as(app: &TestApp, member: &str) -> (u16, Value, Duration) {
    let (browser, jar) = app.new_browser();
    app.set_jsapi_cookie(&jar, &app.authorize(member).await);
    let request = browser
        .post(app.url("/token-exchange"))
        .header("Origin", &app.base);
    timed(request, &format!("the exchange of {member}")).await
}

fn is_store_unavailable(status: u16, body: &Value) -> bool {
    status == 503 && body["error"] == "session_store_unavailable"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_lost_to_sentinel_is_followed_within_10_s_and_the_earlier_session_survives() {
    const TEST: &str = "fleet::a_primary_lost_to_sentinel_is_followed_within_10_s_and_the_earlier_session_survives";
    let mut set = match SentinelSet::start() {
        Ok(set) => set,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let app = instance(&set.url(), "off", RateLimitStore::Local, false).await;
    app.sign_in("before-failover").await;
    assert_eq!(app.exchange().await.0, 200);
    // Replication runs by itself; a second covers it (SPEC: a session written 1 s before).
    tokio::time::sleep(Duration::from_secs(1)).await;

    let replica = set.replica.port;
    let sentinel = set.sentinels[0].port;
    set.primary.kill();
    let killed = Instant::now();
    // Watchers: when the sentinels name the replica as primary, and what /readyz says.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let promotion = tokio::task::spawn_blocking({
        let done = done.clone();
        move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if primary_port(sentinel) == Some(replica) {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        }
    });
    let readiness = tokio::spawn({
        let (done, client, url) = (done.clone(), app.client.clone(), app.url("/readyz"));
        async move {
            let mut statuses = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _, took) = timed(client.get(&url), "GET /readyz").await;
                statuses.push((status, took));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            statuses
        }
    });
    let (mut first_failure, mut last_failure) = (None::<Instant>, None::<Instant>);
    let mut longest = Duration::ZERO;
    let (mut clean_rounds, mut round) = (0, 0);
    while clean_rounds < 3 {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no recovery a minute after the kill"
        );
        round += 1;
        let started = Instant::now();
        let answers = [
            exchange_as(&app, &format!("during-failover-{round}")).await,
            timed(app.client.get(app.url("/session")), "GET /session").await,
            timed(app.client.get(app.url("/me")), "GET /me").await,
        ];
        let mut clean = true;
        for (status, body, took) in &answers {
            longest = longest.max(*took);
            assert!(*took < ANSWER_WITHIN, "an answer took {took:?}: {body}");
            if *status != 200 {
                assert!(is_store_unavailable(*status, body), "{status} {body}");
                clean = false;
            }
        }
        if clean {
            clean_rounds += usize::from(first_failure.is_some());
        } else {
            first_failure.get_or_insert(started);
            last_failure = Some(Instant::now());
            clean_rounds = 0;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let readiness = readiness.await.unwrap();
    let promoted = promotion.await.unwrap();
    for (status, took) in &readiness {
        longest = longest.max(*took);
        assert!(*took < ANSWER_WITHIN, "/readyz took {took:?}");
        assert!([200, 503].contains(status), "/readyz answered {status}");
    }
    let ready_failed = readiness.iter().any(|(status, _)| *status == 503);
    assert_eq!(readiness.last().map(|r| r.0), Some(200), "ready again");
    let (first_failure, last_failure) = (first_failure.unwrap(), last_failure.unwrap());
    let promoted = promoted.expect("the sentinels promoted the replica");
    let gap = last_failure - first_failure;
    let after_promotion = last_failure.saturating_duration_since(promoted);
    eprintln!(
        "sentinel failover: promotion {:.1} s after the kill; 503s for {:.1} s; served again \
         {:.1} s after the promotion; longest single request {:.0} ms",
        (promoted - killed).as_secs_f64(),
        gap.as_secs_f64(),
        after_promotion.as_secs_f64(),
        longest.as_secs_f64() * 1000.0
    );
    assert!(
        after_promotion <= FOLLOW_WITHIN,
        "followed {after_promotion:?} after the promotion"
    );
    assert!(ready_failed, "/readyz answered 503 during the failover");
    let session = app.session().await;
    assert_eq!(
        (&session["connected"], &session["member_id"]),
        (&Value::Bool(true), &Value::from("before-failover")),
        "{session}"
    );
    assert_eq!(
        set.replica.cli(&["ROLE"]).lines().next(),
        Some("master"),
        "the replica is the primary now"
    );
}

/// An in-place failover (`SENTINEL FAILOVER`: the old primary lives on, demoted) leaves the
/// service's connections open to a node that is now a replica; Sentinel ends them
/// (`CLIENT KILL TYPE normal` with the `REPLICAOF`), and the service must then ask again
/// rather than keep writing to the demoted node (StackExchange.Redis#3130 is that bug in
/// another client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_sentinel_failover_moves_writes_to_the_promoted_replica() {
    const TEST: &str = "fleet::an_in_place_sentinel_failover_moves_writes_to_the_promoted_replica";
    let set = match SentinelSet::start() {
        Ok(set) => set,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let app = instance(&set.url(), "off", RateLimitStore::Local, false).await;
    app.sign_in("before-switch").await;
    assert_eq!(app.exchange().await.0, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;

    set.sentinels[0].cli(&["SENTINEL", "FAILOVER", SERVICE]);
    let asked = Instant::now();
    let mut promoted = None::<Instant>;
    // Exchanges in a row whose session reached the promoted replica.
    let mut landed = 0;
    let mut round = 0;
    let new_primary_keys = || -> usize { set.replica.cli(&["DBSIZE"]).parse().unwrap() };
    while landed < 3 {
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "writes never reached the promoted replica"
        );
        round += 1;
        if promoted.is_none() && primary_port(set.sentinels[0].port) == Some(set.replica.port) {
            promoted = Some(Instant::now());
        }
        let before = new_primary_keys();
        let (status, body, took) = exchange_as(&app, &format!("after-switch-{round}")).await;
        assert!(took < ANSWER_WITHIN, "an exchange took {took:?}");
        assert!(
            status == 200 || is_store_unavailable(status, &body),
            "{status} {body}"
        );
        if let Some(at) = promoted {
            // Replication, when the write went to the demoted node, is gone by now; a new key
            // on the promoted node is a write that reached it.
            if status == 200 && new_primary_keys() > before {
                landed += 1;
            } else {
                landed = 0;
                // Sentinel demotes the old primary (and so cuts its clients) only after
                // about 10 s here; the service asks the sentinels every second instead.
                assert!(
                    at.elapsed() <= Duration::from_secs(5),
                    "writes still miss the promoted replica {:?} after the promotion",
                    at.elapsed()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let promoted = promoted.unwrap();
    eprintln!(
        "in-place sentinel failover: promotion {:.1} s after asking; writes on the new primary \
         {:.1} s after the promotion",
        (promoted - asked).as_secs_f64(),
        promoted.elapsed().as_secs_f64()
    );
    let role = set.replica.cli(&["ROLE"]);
    assert_eq!(role.lines().next(), Some("master"), "{role}");
    let session = app.session().await;
    assert_eq!(session["member_id"], "before-switch", "{session}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_every_cluster_master_stay_readable_and_logout_and_the_rate_limit_work()
 {
    const TEST: &str = "fleet::sessions_spread_over_every_cluster_master_stay_readable_and_logout_and_the_rate_limit_work";
    let cluster = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let app = instance(&cluster.url(), "70,1", RateLimitStore::Redis, false).await;
    let mut browsers = Vec::new();
    for i in 0..60 {
        let (browser, jar) = app.new_browser();
        app.set_jsapi_cookie(&jar, &app.authorize(&format!("member-{i}")).await);
        let (status, body) = json_of(app.post_from(&browser, "/token-exchange").await).await;
        assert_eq!(status, 200, "exchange {i}: {body}");
        browsers.push(browser);
    }
    let sessions_per_master = |cluster: &Cluster| -> Vec<usize> {
        cluster
            .keys_per_master()
            .iter()
            .map(|keys| keys.iter().filter(|k| !k.starts_with("lte:")).count())
            .collect()
    };
    let spread = sessions_per_master(&cluster);
    eprintln!("cluster: 60 sessions per master {spread:?}");
    assert_eq!(spread.iter().sum::<usize>(), 60, "{spread:?}");
    assert!(spread.iter().all(|n| *n > 0), "{spread:?}");

    for (i, browser) in browsers.iter().enumerate() {
        let body: Value = browser.get(app.url("/session")).fetch_json().await;
        assert_eq!(body["member_id"], format!("member-{i}"), "{body}");
    }
    for browser in &browsers[..10] {
        assert_eq!(app.post_from(browser, "/logout").await.status(), 200);
        let body: Value = browser.get(app.url("/session")).fetch_json().await;
        assert_eq!(body["connected"], false, "{body}");
    }
    assert_eq!(
        sessions_per_master(&cluster).iter().sum::<usize>(),
        50,
        "the ten signed-out sessions left the cluster"
    );

    // The client's budget (70, of which the exchanges drew 60) runs out on the cluster.
    let (browser, _) = app.new_browser();
    let mut refused_at = None;
    for n in 1..=40 {
        let response = app.post_from(&browser, "/token-exchange").await;
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            refused_at = Some(n);
            break;
        }
    }
    assert!(refused_at.is_some(), "the shared budget refused within 40");
    let holders: Vec<usize> = cluster
        .keys_per_master()
        .iter()
        .map(|keys| {
            keys.iter()
                .filter(|k| *k == "lte:ratelimit:client:127.0.0.1")
                .count()
        })
        .collect();
    assert_eq!(holders.iter().sum::<usize>(), 1, "{holders:?}");
}

/// Three instances on the Redis at `store`, `RATE_LIMIT=4,1` kept in `limit_store`; the
/// first one serves metrics.
async fn three_instances(store: &str, limit_store: RateLimitStore) -> Vec<TestApp> {
    vec![
        instance(store, "4,1", limit_store, true).await,
        instance(store, "4,1", limit_store, false).await,
        instance(store, "4,1", limit_store, false).await,
    ]
}

/// `POST /token-exchange` without a JSAPI cookie (400 `missing_cookie` once admitted),
/// from 127.0.0.1 like every request of the test.
async fn knock(app: &TestApp) -> u16 {
    let request = app
        .client
        .post(app.url("/token-exchange"))
        .header("Origin", &app.base);
    let (status, _, took) = timed(request, "a rate-limited request").await;
    assert!(took < ANSWER_WITHIN, "took {took:?}");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_burst_plus_first_request_is_refused_whichever_instance_it_reaches_and_fails_open_without_redis()
 {
    const TEST: &str = "fleet::the_burst_plus_first_request_is_refused_whichever_instance_it_reaches_and_fails_open_without_redis";
    let mut redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    // Per instance, as before: twelve alternating requests, each instance sees four.
    let local = three_instances(&redis.url(), RateLimitStore::Local).await;
    let mut statuses = Vec::new();
    for n in 0..12 {
        statuses.push(knock(&local[n % 3]).await);
    }
    assert!(statuses.iter().all(|s| *s == 400), "local: {statuses:?}");

    let fleet = three_instances(&redis.url(), RateLimitStore::Redis).await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        statuses.push(knock(&fleet[n % 3]).await);
    }
    assert_eq!(statuses, [400; 4], "the burst passes");
    for app in [&fleet[1], &fleet[2], &fleet[0]] {
        assert_eq!(
            knock(app).await,
            429,
            "the fifth is refused on every instance"
        );
    }

    // Redis dies: the shared tier passes, counted; the local one (4 each) still holds.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let mut statuses = Vec::new();
    for n in 0..12 {
        statuses.push(knock(&fleet[n % 3]).await);
    }
    assert!(
        statuses.iter().all(|s| *s == 400),
        "fail open: {statuses:?}"
    );
    let at_once: Vec<u16> = knock_at_once(&fleet[0], 6).await;
    assert!(
        at_once.contains(&429),
        "the local tier (a burst of 4) still applies: {at_once:?}"
    );
    let (_, metrics) = scrape(fleet[0].metrics.unwrap()).await;
    let errors = sample(
        &metrics,
        "lte_session_store_errors_total",
        &[("operation", "rate_limit")],
    )
    .unwrap_or(0.0);
    assert!(errors >= 4.0, "counted {errors}");
}

/// `n` knocks on `app` at once.
async fn knock_at_once(app: &TestApp, n: usize) -> Vec<u16> {
    let knocks: Vec<_> = (0..n)
        .map(|_| {
            let request = app
                .client
                .post(app.url("/token-exchange"))
                .header("Origin", &app.base);
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for knock in knocks {
        statuses.push(knock.await.unwrap());
    }
    statuses
}

/// The primary's port as the sentinel on `port` names it now.
fn primary_port(port: u16) -> Option<u16> {
    let answer =
        crate::support::redis::cli(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]).ok()?;
    answer.lines().nth(1)?.trim().parse().ok()
}

/// The binary with `env` on top of memory sessions: its exit code and its stderr.
fn start_refused(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    crate::support::dev_pair(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
    let output = crate::support::binary(dir.path())
        .env("BIND", "127.0.0.1:0")
        .env("SESSION_STORE", "memory")
        .env("TLS_CERT", dir.path().join("cert.pem"))
        .env("TLS_KEY", dir.path().join("key.pem"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_fleet_settings_stop_the_start_naming_the_variable_and_never_the_password() {
    const KEY: &str = "c2Vzc2lvbi1rZXktZm9yLXRoZS1wcm9jZXNzLXRlc3Q=";
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("SESSION_STORE", "redis-sentinel://:hunter2@127.0.0.1:1")],
            "SESSION_STORE",
        ),
        (
            &[("SESSION_STORE", "redis-cluster://:hunter2@127.0.0.1:1/3")],
            "SESSION_STORE",
        ),
        (
            &[
                (
                    "SESSION_STORE",
                    "redis-sentinel://:hunter2@127.0.0.1:1/mymaster",
                ),
                ("SESSION_KEYS", KEY),
            ],
            "SESSION_STORE",
        ),
        (&[("RATE_LIMIT_STORE", "redis")], "RATE_LIMIT_STORE"),
        (&[("RATE_LIMIT_STORE", "shared")], "RATE_LIMIT_STORE"),
    ];
    for (env, variable) in cases {
        let (code, stderr) = start_refused(env);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(variable), "{env:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
