//! Store faults, made for real on servers the tests own (a Redis killed or frozen, a
//! PostgreSQL cluster stopped with `-m immediate`, SQLite on a full tmpfs or its reads locked
//! out by another process): every request that needs the store is answered 503
//! `session_store_unavailable` in JSON within 2 s, a failed exchange leaves the previous
//! session exactly as it was, and the service recovers by itself when the store is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use linkedin_token_exchange::server::config::StoreUrl;
use serde_json::{Value, json};

use crate::support::servers::{PostgresCluster, RedisServer, Tmpfs, skip_or_fail};
use crate::support::{
    Behaviour, FakeUpstream, GRANT, SECRET_KEY, TestApp, json_of, signed_cookie, spawn_app,
    test_config,
};

/// The bound on answering a store failure.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// A real-mode app on `store`, its upstream `upstream`.
async fn app_on(store: StoreUrl, upstream: &FakeUpstream) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.sessions.store = store;
    upstream.configure(&mut config);
    TestApp::start(config, dir).await
}

fn assert_store_unavailable(status: u16, body: &Value, what: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("session_store_unavailable")),
        "{what}: {body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

/// Member A is connected; member B's exchange, in the same browser, meets `fault` while the
/// upstream is answering (after the session was read, before it is written). The answer is
/// a prompt 503, and once `heal` has run, A's session is exactly as it was and B's exchange
/// goes through.
async fn an_exchange_meeting_a_store_fault_keeps_the_previous_session(
    store: StoreUrl,
    fault: impl FnOnce() + Send + 'static,
    heal: impl FnOnce() + Send + 'static,
) -> Duration {
    let upstream = FakeUpstream::start(GRANT).await;
    let app = app_on(store, &upstream).await;
    app.set_jsapi_cookie(&app.jar, &signed_cookie("token-a", "member-a", SECRET_KEY));
    assert_eq!(app.exchange().await.0, 200);
    let before_id = app.session_id().unwrap();
    let before = app.session().await;
    assert_eq!(before["member_id"], "member-a", "{before}");

    const UPSTREAM_DELAY: Duration = Duration::from_millis(500);
    upstream
        .set(Behaviour::Grant {
            delay: UPSTREAM_DELAY,
            expires_in: 5_183_999,
        })
        .await;
    app.set_jsapi_cookie(&app.jar, &signed_cookie("token-b", "member-b", SECRET_KEY));
    let exchange = tokio::spawn({
        let (client, url, origin) = (
            app.client.clone(),
            app.url("/token-exchange"),
            app.base.clone(),
        );
        async move {
            let response = client
                .post(url)
                .header("origin", origin)
                .send()
                .await
                .unwrap();
            (json_of(response).await, Instant::now())
        }
    });
    let started = Instant::now();
    while upstream.calls() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the exchange reached upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let upstream_answers = Instant::now() + UPSTREAM_DELAY;
    tokio::task::spawn_blocking(fault).await.unwrap();
    // The store is first needed again once the upstream has answered.
    let faulted = Instant::now().max(upstream_answers);
    let ((status, body), answered) = exchange.await.unwrap();
    let took = answered.saturating_duration_since(faulted);
    assert_store_unavailable(status, &body, "the exchange");
    assert!(took < ANSWER_WITHIN, "answered {took:?} after the fault");

    tokio::task::spawn_blocking(heal).await.unwrap();
    assert_eq!(
        app.session_id().unwrap(),
        before_id,
        "the browser keeps its session id"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let response = app.get("/session").await;
        if response.status() == 200 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the store came back within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after, before, "the previous session is exactly as it was");
    assert_eq!(app.get("/me").await.status(), 200);

    // The store takes new sessions again (SQLite: through the writer that met the fault).
    upstream.set(GRANT).await;
    let (status, body) = app.exchange().await;
    assert_eq!(status, 200, "the exchange after the fault: {body}");
    assert_eq!(app.session().await["member_id"], "member-b");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_on_a_full_sqlite_disk_answers_503_and_keeps_the_previous_session() {
    const TEST: &str =
        "faults::an_exchange_on_a_full_sqlite_disk_answers_503_and_keeps_the_previous_session";
    let disk = match Tmpfs::mount("8m") {
        Ok(disk) => Arc::new(disk),
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    std::fs::create_dir_all(disk.path().join("data")).unwrap();
    let store = StoreUrl::Sqlite(disk.path().join("data/sessions.db"));
    let (fill, free) = (disk.clone(), disk.clone());
    let took = an_exchange_meeting_a_store_fault_keeps_the_previous_session(
        store,
        move || {
            fill.fill();
        },
        move || free.free(),
    )
    .await;
    eprintln!("fault: SQLite disk full during an exchange -> 503 in {took:?}");
}

/// Holds, from another process, the write locks on the read marks of a SQLite file's shared
/// memory (`<db>-shm`, bytes 123–127: `WAL_READ_LOCK(0..4)` after the 120-byte header in
/// SQLite's Unix VFS), so that no connection can begin a read, until its stdin closes. Locks
/// taken by the test's own process would not do: POSIX record locks never conflict within one
/// process.
const READ_MARK_HOLDER: &str = r#"
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 5, 123, os.SEEK_SET)
print("locked", flush=True)
sys.stdin.read()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_check_answers_503_in_time_while_sqlite_reads_are_locked_out_and_200_once_they_are_not()
 {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let upstream = FakeUpstream::start(GRANT).await;
    let files = tempfile::tempdir().unwrap();
    let db = files.path().join("sessions.db");
    let app = app_on(StoreUrl::Sqlite(db.clone()), &upstream).await;
    app.set_jsapi_cookie(
        &app.jar,
        &signed_cookie("token-a", "locked-out", SECRET_KEY),
    );
    assert_eq!(app.exchange().await.0, 200);
    assert_eq!(app.get("/auth/check").await.status(), 200);

    let mut holder = Command::new("python3")
        .args(["-c", READ_MARK_HOLDER])
        .arg(db.with_extension("db-shm"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    // Every check, however many wait, is answered 503 in time: the store's bound holds
    // although the readers are stuck inside SQLite.
    let mut checks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url) = (app.client.clone(), app.url("/auth/check"));
        checks.spawn(async move {
            let started = Instant::now();
            let (status, body) = json_of(client.get(url).send().await.unwrap()).await;
            (status, body, started.elapsed())
        });
    }
    while let Some(check) = checks.join_next().await {
        let (status, body, took) = check.unwrap();
        assert_store_unavailable(status, &body, "/auth/check");
        assert!(took < ANSWER_WITHIN, "answered in {took:?}");
    }

    // Once the locks are gone the readers carry on (the loads given up are skipped), and the
    // member is let through again within a second or two.
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let released = Instant::now();
    loop {
        let response = app.get("/auth/check").await;
        if response.status() == 200 {
            assert_eq!(
                response.headers()["x-auth-request-user"].to_str().unwrap(),
                "locked-out"
            );
            break;
        }
        assert!(
            released.elapsed() < Duration::from_secs(5),
            "still {} after the locks were released",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "fault: SQLite reads locked out -> 503s, then 200 {:?} after release",
        released.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_while_postgres_stops_answers_503_and_keeps_the_previous_session() {
    const TEST: &str =
        "faults::an_exchange_while_postgres_stops_answers_503_and_keeps_the_previous_session";
    let cluster = match PostgresCluster::start() {
        Ok(cluster) => Arc::new(std::sync::Mutex::new(cluster)),
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let store: StoreUrl = cluster.lock().unwrap().url().parse().unwrap();
    let (stop, start) = (cluster.clone(), cluster.clone());
    let took = an_exchange_meeting_a_store_fault_keeps_the_previous_session(
        store,
        move || stop.lock().unwrap().stop_immediate(),
        move || start.lock().unwrap().start_again(),
    )
    .await;
    eprintln!("fault: PostgreSQL stopped during an exchange -> 503 in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_while_redis_hangs_answers_503_and_keeps_the_previous_session() {
    const TEST: &str =
        "faults::an_exchange_while_redis_hangs_answers_503_and_keeps_the_previous_session";
    let redis = match RedisServer::start() {
        Ok(redis) => Arc::new(redis),
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let store: StoreUrl = redis.url().parse().unwrap();
    let (pause, resume) = (redis.clone(), redis.clone());
    let took = an_exchange_meeting_a_store_fault_keeps_the_previous_session(
        store,
        move || pause.pause(),
        move || resume.resume(),
    )
    .await;
    eprintln!("fault: Redis frozen (SIGSTOP) during an exchange -> 503 in {took:?}");
}

/// One request of the outage test: what it was, its answer and how long it took.
async fn timed(
    client: reqwest::Client,
    method: &'static str,
    url: String,
    origin: String,
) -> (String, u16, Value, Duration) {
    let started = Instant::now();
    let request = match method {
        "POST" => client.post(&url).header("origin", origin),
        _ => client.get(&url),
    };
    let response = request.send().await.unwrap();
    let (status, body) = json_of(response).await;
    (format!("{method} {url}"), status, body, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_killed_every_route_answers_503_within_2_s_twenty_at_once_then_recovers() {
    const TEST: &str =
        "faults::with_redis_killed_every_route_answers_503_within_2_s_twenty_at_once_then_recovers";
    let mut redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.sessions.store = redis.url().parse().unwrap();
    let app = TestApp::start(config, dir).await;
    app.sign_in("outage-member").await;
    assert_eq!(app.exchange().await.0, 200);

    redis.kill();
    let routes = [
        ("GET", "/"),
        ("GET", "/session"),
        ("GET", "/me"),
        ("POST", "/token-exchange"),
        ("POST", "/logout"),
    ];
    let requests: Vec<_> = (0..20)
        .map(|i| {
            let (method, path) = routes[i % routes.len()];
            tokio::spawn(timed(
                app.client.clone(),
                method,
                app.url(path),
                app.base.clone(),
            ))
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for request in requests {
        let (what, status, body, took) = request.await.unwrap();
        assert_store_unavailable(status, &body, &what);
        assert!(took < ANSWER_WITHIN, "{what} took {took:?}");
        slowest = slowest.max(took);
    }
    eprintln!("fault: Redis killed, 20 requests at once -> all 503, slowest in {slowest:?}");

    redis.restart();
    let restarted = Instant::now();
    loop {
        let (status, body) = json_of(app.get("/session").await).await;
        if status == 200 {
            // Redis kept nothing (no persistence): the session is gone, the service is back.
            assert_eq!(body, json!({"connected": false}));
            break;
        }
        assert_store_unavailable(status, &body, "GET /session while Redis comes back");
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "recovered within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "fault: Redis back -> served again after {:?}",
        restarted.elapsed()
    );
    app.sign_in("outage-member").await;
    assert_eq!(app.exchange().await.1["status"], "connected");
}

#[tokio::test]
async fn a_logout_without_a_session_or_with_a_junk_id_is_fine() {
    let app = spawn_app().await;
    let (status, body) = json_of(app.post("/logout").await).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("logged_out")));
    let (status, body) = json_of(
        app.client
            .get(app.url("/session"))
            .header("cookie", "__Host-lte_session=not-a-session-id")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (200, json!({"connected": false})));
}
