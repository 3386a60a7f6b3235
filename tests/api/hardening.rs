//! The holes an adversarial review found (issue 20), each shut and kept shut: short-lived
//! sessions for sign-ins in progress, flows that do not mix, rate limits that cannot be
//! dodged through `X-Forwarded-For`, provider text that cannot forge a log line, secrets
//! that configuration errors and `--help` never print.

use std::sync::Arc;
use std::time::Duration;

use linkedin_token_exchange::server::config::{RateLimit, StoreUrl};
use time::OffsetDateTime;
use tower_sessions_sqlx_store::sqlx::{self, Row};

use crate::oidc::{consent, start, step_by_step};
use crate::support::{FetchJson, TestApp, test_config};

/// A client that keeps no cookie and follows no redirect: every request is a new visitor.
fn cookieless(app: &TestApp) -> reqwest::Client {
    crate::support::client::trusting(&app.dir.path().join("cert.pem"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The expiry dates of the rows in a SQLite sessions file.
async fn sqlite_expiries(path: &std::path::Path) -> Vec<OffsetDateTime> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let rows = sqlx::query("select expiry_date from tower_sessions")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.get::<OffsetDateTime, _>("expiry_date"))
        .collect();
    pool.close().await;
    rows
}

#[tokio::test]
async fn an_anonymous_sign_in_start_is_kept_ten_minutes_and_a_members_session_its_day() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("sessions.db");
    let mut config = test_config(&dir);
    config.sessions.store = StoreUrl::Sqlite(db.clone());
    let app = TestApp::start(config, dir.clone()).await;
    let browser = step_by_step(&app);

    let authorization = start(&app, &browser).await;
    let expiries = sqlite_expiries(&db).await;
    assert_eq!(expiries.len(), 1, "one row: {expiries:?}");
    let left = expiries[0] - OffsetDateTime::now_utc();
    assert!(
        left <= time::Duration::minutes(10) && left > time::Duration::minutes(9),
        "a pending sign-in's session lives as long as the sign-in: {left}"
    );

    // Signed in, the session has its inactivity period; a new sign-in started from it does
    // not shorten it.
    let callback = consent(&browser, &authorization, "allow", "ten-minutes").await;
    assert_eq!(browser.get(callback).send().await.unwrap().status(), 303);
    start(&app, &browser).await;
    let expiries = sqlite_expiries(&db).await;
    assert_eq!(expiries.len(), 1, "the old id is gone: {expiries:?}");
    let left = expiries[0] - OffsetDateTime::now_utc();
    assert!(left > time::Duration::hours(23), "{left}");
    let session = app.session().await;
    assert_eq!(
        session["name"], "Sandbox ten-minutes",
        "still signed in: {session}"
    );
}

#[tokio::test]
async fn a_flood_of_sign_in_starts_never_evicts_a_signed_in_member_from_memory() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.sessions.store = StoreUrl::Memory;
    config.sessions.memory_sessions = 100;
    config.limits.rate_limit = RateLimit::Off;
    let app = TestApp::start(config, dir.clone()).await;
    app.sign_in("kept-member").await;
    assert_eq!(app.exchange().await.0, 200);

    // 200 strangers without a cookie: 200 new sessions, each holding a pending sign-in.
    let stranger = cookieless(&app);
    for _ in 0..200 {
        let response = stranger
            .get(app.url("/auth/linkedin"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
        assert!(response.headers().contains_key("set-cookie"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let session = app.session().await;
    assert_eq!(session["connected"], true, "{session}");
    assert_eq!(session["member_id"], "kept-member");
}

#[tokio::test]
async fn a_jsapi_exchange_over_an_oidc_session_of_the_same_member_replaces_it() {
    let app = crate::support::spawn_app().await;
    let browser = step_by_step(&app);
    let authorization = start(&app, &browser).await;
    let callback = consent(&browser, &authorization, "allow", "both-flows").await;
    assert_eq!(browser.get(callback).send().await.unwrap().status(), 303);
    let session = app.session().await;
    assert_eq!(session["flow"], "oidc", "{session}");
    // The sandbox's `sub` is pairwise (per client id), as LinkedIn's: the JSAPI cookie below
    // is made for that same member id.
    let member = session["member_id"].as_str().unwrap().to_owned();
    let oidc_id = app.session_id().unwrap();
    let accepted = || async {
        app.sandbox_stats().await["exchanges_accepted"]
            .as_u64()
            .unwrap()
    };
    let exchanges_before = accepted().await;

    app.sign_in(&member).await;
    let (status, body) = app.exchange().await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("connected")),
        "the same member through another flow is not already connected: {body}"
    );
    assert_ne!(app.session_id().unwrap(), oidc_id, "a new session id");
    let session = app.session().await;
    assert_eq!(
        (session["flow"].as_str(), session["member_id"].as_str()),
        (Some("jsapi"), Some(member.as_str())),
        "{session}"
    );
    assert_eq!(accepted().await, exchanges_before + 1, "LinkedIn was asked");
    assert_eq!(
        app.session_with_id(&oidc_id).await["connected"],
        false,
        "the OpenID Connect session is gone"
    );

    // Through the same flow again, it is already connected.
    let (status, body) = app.exchange().await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("already_connected"))
    );
}

/// A client that connects from `local`, keeps no cookie and follows no redirect.
fn client_from(app: &TestApp, local: &str) -> reqwest::Client {
    crate::support::client::trusting(&app.dir.path().join("cert.pem"))
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A server with `RATE_LIMIT=3,1` behind trusted proxies `trusted`, bound to `bind`.
async fn limited_app(bind: &str, trusted: &str) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.listen.bind = bind.parse().unwrap();
    config.limits.rate_limit = "3,1".parse().unwrap();
    config.limits.trusted_proxies = Some(trusted.parse().unwrap());
    TestApp::start(config, dir).await
}

/// The statuses of `GET /auth/linkedin` sent from `local` to 127.0.0.1 with each
/// `X-Forwarded-For` of `forwarded`.
async fn statuses(
    app: &TestApp,
    local: &str,
    forwarded: impl IntoIterator<Item = String>,
) -> Vec<u16> {
    let client = client_from(app, local);
    let url = format!("https://127.0.0.1:{}/auth/linkedin", app.addr.port());
    let mut statuses = Vec::new();
    for xff in forwarded {
        let response = client
            .get(&url)
            .header("x-forwarded-for", xff)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn forwarded_entries_with_a_port_brackets_or_garbage_cannot_dodge_the_limit() {
    for last in ["198.51.100.8:4711", "[2001:db8::1]:4711", "unknown"] {
        let app = limited_app("127.0.0.1:0", "127.0.0.0/8").await;
        let sent = (0..10).map(|i| format!("10.9.8.{i}, {last}"));
        let statuses = statuses(&app, "127.0.0.1", sent).await;
        assert_eq!(
            statuses.iter().filter(|s| **s == 302).count(),
            3,
            "{last}: {statuses:?}"
        );
        assert_eq!(statuses[9], 429, "{last}: {statuses:?}");
    }
}

#[tokio::test]
async fn ipv6_clients_share_one_budget_per_64() {
    let app = limited_app("127.0.0.1:0", "127.0.0.0/8").await;
    let sent = (1..=10).map(|i| format!("2001:db8:7:7::{i:x}"));
    let statuses = statuses(&app, "127.0.0.1", sent).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 302).count(),
        3,
        "{statuses:?}"
    );
    // Another /64 has its own budget.
    let other = statuses_from_other_net(&app).await;
    assert_eq!(other, 302);
}

async fn statuses_from_other_net(app: &TestApp) -> u16 {
    statuses(app, "127.0.0.1", ["2001:db8:7:8::1".to_owned()]).await[0]
}

#[tokio::test]
async fn on_a_dual_stack_listener_ipv4_peers_match_trusted_proxies() {
    let app = limited_app("[::]:0", "127.0.0.0/8").await;
    // Three proxies on this machine forward the same client, twice each: one budget.
    let mut all = Vec::new();
    for proxy in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let sent = (0..2).map(|_| "203.0.113.7".to_owned());
        all.extend(statuses(&app, proxy, sent).await);
    }
    assert_eq!(all.iter().filter(|s| **s == 302).count(), 3, "{all:?}");
    assert_eq!(all[5], 429, "{all:?}");
}

const BINARY: &str = env!("CARGO_BIN_EXE_linkedin-token-exchange");

/// Runs the binary with only `env` (and `args`), in an empty folder: exit code, stdout and
/// stderr.
fn run(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    run_with_dotenv(None, env, args)
}

/// [`run`], with a `.env` file of `dotenv` in the folder.
fn run_with_dotenv(
    dotenv: Option<&str>,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    crate::support::dev_pair(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
    if let Some(text) = dotenv {
        std::fs::write(dir.path().join(".env"), text).unwrap();
    }
    let mut child = std::process::Command::new(BINARY)
        .env_clear()
        .env("BIND", "127.0.0.1:0")
        .env("TLS_CERT", dir.path().join("cert.pem"))
        .env("TLS_KEY", dir.path().join("key.pem"))
        .envs(env.iter().copied())
        .args(args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A binary that starts instead of refusing is stopped after a while (exit code None).
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn help_never_shows_a_secret_or_a_urls_password() {
    let (code, help, _) = run(
        &[
            ("SESSION_STORE", "postgres://app:PW@db/x"),
            ("LINKEDIN_ACCESS_TOKEN_URL", "https://u:PW@x.example/token"),
            ("LINKEDIN_API_URL", "https://u:PW@x.example"),
            ("LINKEDIN_JSAPI_URL", "https://u:PW@x.example/in.js"),
            ("LINKEDIN_OIDC_ISSUER", "https://u:PW@x.example/oauth"),
            ("LINKEDIN_OIDC_REDIRECT_URL", "https://u:PW@x.example/cb"),
            ("PUBLIC_ORIGIN", "https://u:PW@x.example"),
            ("LINKEDIN_SECRET_KEY", "PW"),
            ("LINKEDIN_CLIENT_SECRET", "PW"),
            ("SESSION_KEYS", "PW"),
        ],
        &["--help"],
    );
    assert_eq!(code, Some(0));
    assert!(help.contains("SESSION_STORE"), "{help}");
    assert!(!help.contains("PW"), "{help}");
}

#[test]
fn a_mistyped_store_url_is_reported_without_its_password_in_text_and_in_json() {
    for format in ["text", "json"] {
        let (code, _, stderr) = run(
            &[
                ("SESSION_STORE", "postgress://app:PW@db/x"),
                ("LOG_FORMAT", format),
            ],
            &[],
        );
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("PW"), "{format}: {stderr}");
        let line = if format == "json" {
            let json: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
            json["message"].as_str().unwrap().to_owned()
        } else {
            stderr.clone()
        };
        assert!(
            line.contains("SESSION_STORE") && line.contains("a postgress:// URL, not shown"),
            "{format}: {stderr}"
        );
    }
    // A URL that parses but whose server cannot be reached: the password stays hidden too.
    let (code, _, stderr) = run(
        &[
            ("SESSION_STORE", "postgres://app:PW@127.0.0.1:1/x"),
            ("SESSION_KEYS", crate::support::SESSION_KEY),
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("PW"), "{stderr}");
}

#[test]
fn values_clap_checks_name_the_variable_and_keep_the_allowed_values() {
    let (code, _, stderr) = run(&[("SANDBOX", "yes")], &[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("SANDBOX: invalid value 'yes'") && !stderr.contains("--sandbox"),
        "{stderr}"
    );
    assert!(
        stderr.contains("true, false"),
        "the allowed values: {stderr}"
    );
    let (_, _, stderr) = run(&[("LOG_FORMAT", "xml")], &[]);
    assert!(
        stderr.contains("LOG_FORMAT") && stderr.contains("text, json"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[("BIND", "localhost:9443")], &[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("BIND") && stderr.contains("takes an IP address and a port"),
        "{stderr}"
    );
}

/// Every way the binary stops before serving, past clap: `--version` exits 0 and prints the
/// version; a trace export, a server or a `check-provider` configuration that cannot start
/// exits 2 with one line on stderr naming the variable, as JSON when the logs are, with no
/// password shown.
#[test]
fn each_start_failure_is_one_line_and_exit_2_and_version_exits_0() {
    let (code, stdout, stderr) = run(&[], &["--version"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "{stdout}{stderr}"
    );
    for (env, args, variable) in [
        (
            vec![(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "ftp://user:PW@127.0.0.1:4318",
            )],
            vec![],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (vec![("SANDBOX", "false")], vec![], "SANDBOX"),
        (
            vec![
                ("LINKEDIN_OIDC_ISSUER", "http://user:PW@127.0.0.1:1/oauth"),
                ("LINKEDIN_OIDC_SCOPES", "openid r_liteprofile"),
            ],
            vec!["check-provider"],
            "LINKEDIN_OIDC_SCOPES",
        ),
    ] {
        for format in ["text", "json"] {
            let mut env = env.clone();
            env.push(("LOG_FORMAT", format));
            let (code, _, stderr) = run(&env, &args);
            assert_eq!(code, Some(2), "{variable} {format}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
            assert!(!stderr.contains("PW"), "{stderr}");
            let line = if format == "json" {
                let json: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
                assert_eq!(json["level"], "ERROR", "{stderr}");
                json["message"].as_str().unwrap().to_owned()
            } else {
                stderr.trim_end().to_owned()
            };
            assert!(
                line.starts_with("linkedin-token-exchange: configuration error: ")
                    && line.contains(variable),
                "{variable} {format}: {stderr}"
            );
        }
    }
}

#[tokio::test]
async fn an_empty_session_key_file_left_by_a_crash_no_longer_stops_every_start() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let key_file = dir.path().join("session.key");
    std::fs::write(&key_file, "").unwrap();
    let mut config = test_config(&dir);
    config.sessions.keys = None;
    config.sessions.key_file = key_file.clone();
    let app = TestApp::start(config.clone(), dir.clone()).await;
    app.sign_in("after-a-crash").await;
    assert_eq!(app.exchange().await.0, 200);
    app.stop().await;
    let written = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(written.trim().len(), 44, "a whole base64 key: {written:?}");
    // The next start loads that key.
    let again = TestApp::start(config, dir.clone()).await;
    assert_eq!(again.get("/healthz").await.status(), 200);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), written);
}

#[tokio::test]
async fn a_session_cookie_without_the_host_prefix_is_not_read() {
    let app = crate::support::spawn_app().await;
    app.sign_in("prefixed").await;
    assert_eq!(app.exchange().await.0, 200);
    let id = app.session_id().unwrap();
    assert_eq!(app.session_with_id(&id).await["connected"], true);
    // What a sibling subdomain could plant: the name without the prefix.
    let (browser, jar) = app.new_browser();
    jar.add_cookie_str(
        &format!("lte_session={id}; Path=/; Secure"),
        &app.base.parse().unwrap(),
    );
    let session: serde_json::Value = browser.get(app.url("/session")).fetch_json().await;
    assert_eq!(session["connected"], false, "{session}");
}

#[test]
fn a_malformed_dotenv_line_stops_the_start_naming_the_line_and_not_its_value() {
    let (code, _, stderr) = run_with_dotenv(
        Some("RUST_LOG=info\nLINKEDIN_SECRET_KEY=s3cr3t\"oops\nBIND=127.0.0.1:9543\n"),
        &[("SESSION_STORE", "memory")],
        &[],
    );
    assert_eq!(code, Some(2), "the start stops: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(".env line 2 (LINKEDIN_SECRET_KEY=…)"),
        "names the file, the line and the variable: {stderr}"
    );
    assert!(!stderr.contains("s3cr3t"), "never the value: {stderr}");
}

#[test]
fn a_store_on_a_closed_port_is_connection_refused_at_host_and_port_in_words() {
    for store in [
        "redis://127.0.0.1:1",
        "postgres://app:PW@127.0.0.1:1/sessions",
    ] {
        let (code, _, stderr) = run(
            &[
                ("SESSION_STORE", store),
                ("SESSION_KEYS", crate::support::SESSION_KEY),
            ],
            &[],
        );
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("SESSION_STORE")
                && stderr.contains("connection refused at 127.0.0.1:1"),
            "{store}: {stderr}"
        );
        assert!(
            !stderr.contains("Os {") && !stderr.contains("timed out"),
            "no debug output, no pool timeout: {stderr}"
        );
    }
}

/// Starts `count` instances of the binary at the same moment, all with the session key file
/// `key_file`: the `key_id` each reports, or what it printed instead.
fn start_together(count: usize, key_file: &std::path::Path) -> Vec<Result<String, String>> {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(count));
    let threads: Vec<_> = (0..count)
        .map(|i| {
            let (barrier, key_file) = (barrier.clone(), key_file.to_owned());
            let (cert, key) = (
                dir.path().join(format!("cert{i}.pem")),
                dir.path().join(format!("key{i}.pem")),
            );
            crate::support::dev_pair(&cert, &key);
            std::thread::spawn(move || {
                let mut command = std::process::Command::new(BINARY);
                command
                    .env_clear()
                    .env("BIND", "127.0.0.1:0")
                    .env("SESSION_STORE", "memory")
                    .env("SESSION_KEY_FILE", &key_file)
                    .env("TLS_CERT", cert)
                    .env("TLS_KEY", key)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                barrier.wait();
                let mut child = command.spawn().unwrap();
                let stdout = BufReader::new(child.stdout.take().unwrap());
                let mut seen = String::new();
                let mut found = None;
                for line in stdout.lines() {
                    let line = line.unwrap();
                    if let Some(rest) = line.split("key_id=").nth(1) {
                        found = Some(
                            rest.chars()
                                .take_while(char::is_ascii_alphanumeric)
                                .collect(),
                        );
                        break;
                    }
                    seen.push_str(&line);
                }
                let _ = child.kill();
                let output = child.wait_with_output().unwrap();
                seen.push_str(&String::from_utf8_lossy(&output.stderr));
                found.ok_or(seen)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn instances_of_the_binary_starting_at_once_all_use_the_same_generated_key() {
    for _ in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("data/session.key");
        let ids = start_together(3, &key_file);
        let first = ids[0]
            .as_ref()
            .unwrap_or_else(|e| panic!("did not start: {e}"));
        for id in &ids {
            assert_eq!(id.as_ref(), Ok(first), "every instance, one key: {ids:?}");
        }
    }
}
