//! The binary as a person runs it: its log output (no secrets, even at `trace`), its
//! graceful shutdown on SIGTERM, and its one-line refusal of a bad configuration.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    API_KEY, Behaviour, FakeUpstream, SECRET_KEY, encode_cookie, json_of, signed_cookie,
    trusting_client,
};

const BINARY: &str = env!("CARGO_BIN_EXE_linkedin-token-exchange");

/// The binary, running, with everything it prints collected.
struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
    base: String,
    dir: TempDir,
}

impl Running {
    /// Starts the binary with `env` (plus a temp dir for certificates and port 0) and waits
    /// for the line that says where it listens.
    fn start(env: &[(&str, &str)]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        Self::start_in(dir, env, &cert, &key)
    }

    /// Starts the binary with its certificate pair at `cert` and `key`.
    fn start_with_tls(
        env: &[(&str, &str)],
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Running {
        Self::start_in(tempfile::tempdir().unwrap(), env, cert, key)
    }

    fn start_in(
        dir: TempDir,
        env: &[(&str, &str)],
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Running {
        Self::launch(Command::new(BINARY), dir, env, cert, key)
    }

    /// Starts the binary through a shell that first sets its open-file limit to `limit`.
    fn start_with_open_file_limit(env: &[(&str, &str)], limit: u32) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let mut shell = Command::new("bash");
        shell.args(["-c", &format!("ulimit -n {limit} && exec \"$0\""), BINARY]);
        Self::launch(shell, dir, env, &cert, &key)
    }

    fn launch(
        mut command: Command,
        dir: TempDir,
        env: &[(&str, &str)],
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Running {
        crate::support::dev_pair(cert, key);
        command
            .env_clear()
            .env("BIND", "127.0.0.1:0")
            .env("TLS_CERT", cert)
            .env("TLS_KEY", key)
            .env("SESSION_STORE", "memory")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let port_tx = port_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    // "listening; open https://HOST:PORT/", HOST whatever PUBLIC_ORIGIN names.
                    if let Some(rest) = line.split("listening; open https://").nth(1) {
                        let origin: String =
                            rest.chars().take_while(|&c| c != '/' && c != '"').collect();
                        let port: String = origin
                            .rsplit(':')
                            .next()
                            .unwrap_or_default()
                            .chars()
                            .take_while(char::is_ascii_digit)
                            .collect();
                        let _ = port_tx.send(port);
                    }
                    let mut all = output.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                }
            });
        }
        let port = port_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the server did not start: {}", output.lock().unwrap()));
        Running {
            child,
            output,
            base: format!("https://localhost:{port}"),
            dir,
        }
    }

    /// The binary in real mode against `upstream`, with `env` on top.
    fn real(upstream: &FakeUpstream, env: &[(&str, &str)]) -> Running {
        let access = upstream.url("/uas/oauth/accessToken").to_string();
        let api = upstream.url("").to_string();
        let mut all = vec![
            ("LINKEDIN_API_KEY", API_KEY),
            ("LINKEDIN_SECRET_KEY", SECRET_KEY),
            ("LINKEDIN_ACCESS_TOKEN_URL", access.as_str()),
            ("LINKEDIN_API_URL", api.as_str()),
        ];
        all.extend_from_slice(env);
        Running::start(&all)
    }

    /// A browser holding a JSAPI cookie for `member` (signed over `token`), and its jar.
    fn browser_signed_in(
        &self,
        token: &str,
        member: &str,
    ) -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        jar.add_cookie_str(
            &format!(
                "linkedin_oauth_{API_KEY}={}; Path=/",
                signed_cookie(token, member, SECRET_KEY)
            ),
            &self.base.parse().unwrap(),
        );
        (trusting_client(&self.dir, jar.clone()), jar)
    }

    /// A same-origin `POST` from `browser`.
    async fn post(&self, browser: &reqwest::Client, path: &str) -> reqwest::Response {
        browser
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .send()
            .await
            .unwrap()
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_response_page_or_log_line_even_at_trace() {
    // The token secret comes from this upstream, so the test knows what to look for.
    let upstream = FakeUpstream::start(Behaviour::Grant {
        delay: Duration::ZERO,
        expires_in: 5_183_999,
    })
    .await;
    let server = Running::real(&upstream, &[("RUST_LOG", "trace")]);
    let (browser, jar) = server.browser_signed_in("jsapi-token", "log-member");

    let mut seen = String::new();
    let (status, body) = json_of(server.post(&browser, "/token-exchange").await).await;
    assert_eq!(status, 200, "{body}");
    seen.push_str(&body.to_string());
    for path in ["/session", "/me", "/"] {
        seen.push_str(
            &browser
                .get(format!("{}{path}", server.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    // A refused exchange and an upstream refusal are logged too.
    upstream
        .set(Behaviour::Answer(401, "oauth_problem=token_rejected"))
        .await;
    jar.add_cookie_str(
        &format!(
            "linkedin_oauth_{API_KEY}={}; Path=/",
            signed_cookie("jsapi-token-2", "other-member", SECRET_KEY)
        ),
        &server.base.parse().unwrap(),
    );
    let response = server.post(&browser, "/token-exchange").await;
    assert_eq!(response.status(), 502);
    seen.push_str(&response.text().await.unwrap());
    jar.add_cookie_str(
        &format!("linkedin_oauth_{API_KEY}={}; Path=/", encode_cookie("{}")),
        &server.base.parse().unwrap(),
    );
    for path in ["/token-exchange", "/logout"] {
        let response = server.post(&browser, path).await;
        seen.push_str(&response.text().await.unwrap());
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.output();
    assert!(log.contains("TRACE"), "the log runs at trace level");
    assert!(
        log.lines()
            .any(|l| l.contains(" exchange ") && l.contains(r#"outcome="connected""#)),
        "the log shows the flow:\n{log}"
    );
    for secret in [SECRET_KEY, "fake-secret-1"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
        assert!(
            !seen.contains(secret),
            "{secret} leaked into a response: {seen}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_exchange_in_flight_then_exits_zero() {
    let upstream = FakeUpstream::start(Behaviour::Grant {
        delay: Duration::from_millis(1_500),
        expires_in: 5_183_999,
    })
    .await;
    let mut server = Running::real(&upstream, &[("UPSTREAM_TIMEOUT_MS", "5000")]);
    let (browser, _) = server.browser_signed_in("slow-token", "slow-member");
    let in_flight = tokio::spawn({
        let (browser, base) = (browser.clone(), server.base.clone());
        async move {
            json_of(
                browser
                    .post(format!("{base}/token-exchange"))
                    .header("origin", &base)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    });
    // Wait until the exchange has reached the upstream, then ask the server to stop.
    let started = Instant::now();
    while upstream.calls() == 0 {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = trusting_client(&server.dir, Arc::new(reqwest::cookie::Jar::default()));
    assert!(
        fresh
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err(),
        "no new connections after SIGTERM"
    );

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("connected")),
        "{body}"
    );
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.wait(Duration::from_secs(10));
        (status, server.output())
    })
    .await
    .unwrap();
    assert_eq!(exit.0.code(), Some(0), "{}", exit.1);
    assert!(exit.1.contains("shutting down"));
}

fn refused(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    crate::support::dev_pair(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
    let output = Command::new(BINARY)
        .env_clear()
        .env("BIND", "127.0.0.1:0")
        .env("SESSION_STORE", "memory")
        .env("TLS_CERT", dir.path().join("cert.pem"))
        .env("TLS_KEY", dir.path().join("key.pem"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn a_bad_configuration_stops_the_start_with_one_line_naming_the_variable() {
    assert!(refused(&[("LINKEDIN_API_KEY", "abc")]).contains("LINKEDIN_SECRET_KEY"));
    assert!(refused(&[("BIND", "not-an-address")]).contains("BIND"));
    assert!(refused(&[("LINKEDIN_API_URL", "::nope")]).contains("LINKEDIN_API_URL"));
    assert!(refused(&[("SESSION_STORE", "mysql://x")]).contains("SESSION_STORE"));
    assert!(refused(&[("SESSION_STORE", "redis://127.0.0.1:1")]).contains("SESSION_KEYS"));
    let key = "c2Vzc2lvbi1rZXktZm9yLXRoZS1wcm9jZXNzLXRlc3Q=";
    let unreachable = refused(&[
        ("SESSION_STORE", "redis://127.0.0.1:1"),
        ("SESSION_KEYS", key),
    ]);
    assert!(unreachable.contains("SESSION_STORE"), "{unreachable}");
    let malformed = refused(&[("SESSION_KEYS", "c2hvcnQta2V5")]);
    assert!(malformed.contains("SESSION_KEYS"), "{malformed}");
    assert!(
        !malformed.contains("c2hvcnQta2V5"),
        "the key is never printed: {malformed}"
    );
    assert!(refused(&[("PUBLIC_ORIGIN", "ftp://x")]).contains("PUBLIC_ORIGIN"));
    let short_admin = refused(&[
        ("ADMIN_TOKEN", "short-admin-token"),
        ("METRICS_BIND", "127.0.0.1:0"),
    ]);
    assert!(short_admin.contains("ADMIN_TOKEN"), "{short_admin}");
    assert!(!short_admin.contains("short-admin-token"), "{short_admin}");
    let admin_without_listener = refused(&[("ADMIN_TOKEN", &"x".repeat(40))]);
    assert!(
        admin_without_listener.contains("ADMIN_TOKEN")
            && admin_without_listener.contains("METRICS_BIND"),
        "{admin_without_listener}"
    );
    let bad_filter = refused(&[("RUST_LOG", "info,[=oops")]);
    assert!(bad_filter.contains("RUST_LOG"), "{bad_filter}");
    let store = refused(&[(
        "SESSION_STORE",
        "postgres://app:hunter2@127.0.0.1:1/sessions",
    )]);
    assert!(
        store.contains("127.0.0.1:1/sessions"),
        "port and database: {store}"
    );
    assert!(
        !store.contains("hunter2") && !store.contains("app:"),
        "{store}"
    );
}

#[test]
fn a_garbage_or_mismatched_key_is_reported_as_tls_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let other_key = dir.path().join("other-key.pem");
    // Two generated pairs: the first's certificate with the second's key.
    let generate = |cert: &std::path::Path, key: &std::path::Path| {
        let mut running = Running::start_with_tls(&[], cert, key);
        running.sigterm();
        running.wait(Duration::from_secs(10));
    };
    generate(&cert, &key);
    generate(&dir.path().join("other.pem"), &other_key);
    let with_pair = |key: &std::path::Path| {
        refused(&[
            ("TLS_CERT", cert.to_str().unwrap()),
            ("TLS_KEY", key.to_str().unwrap()),
        ])
    };
    let mismatched = with_pair(&other_key);
    assert!(mismatched.contains("TLS_KEY"), "{mismatched}");
    std::fs::write(&other_key, "garbage").unwrap();
    let garbage = with_pair(&other_key);
    assert!(garbage.contains("TLS_KEY"), "{garbage}");
}

/// Lines of `output` that are WARN or worse.
fn warnings(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cannot_forge_log_lines_or_write_warnings_at_will() {
    let server = Running::start(&[
        ("LINKEDIN_API_KEY", API_KEY),
        ("LINKEDIN_SECRET_KEY", SECRET_KEY),
    ]);
    let startup_warnings = warnings(&server.output()).len();
    let browser = trusting_client(&server.dir, Arc::new(reqwest::cookie::Jar::default()));
    // A signature_order whose name carries a newline and a whole fake log line.
    let forged = "2026-01-01T00:00:00.000000Z  INFO linkedin_token_exchange: member connected member_id=admin";
    let cookie = encode_cookie(
        &serde_json::json!({
            "signature_method": "HMAC-SHA1",
            "signature_order": [format!("access_token\n{forged}"), "member_id"],
            "access_token": "t", "member_id": "m", "signature": "AAAA", "signature_version": 1,
        })
        .to_string(),
    );
    let send = |cookie: String| {
        browser
            .post(format!("{}/token-exchange", server.base))
            .header("origin", &server.base)
            .header("cookie", cookie)
            .send()
    };
    let (status, body) = json_of(
        send(format!("linkedin_oauth_{API_KEY}={cookie}"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("malformed_cookie")),
        "{body}"
    );
    // Junk and unknown session ids, and a logout with no session at all.
    for cookie in [
        "__Host-lte_session=junk%0A",
        "__Host-lte_session=AAAAAAAAAAAAAAAAAAAAAA",
        "__Host-lte_session=",
    ] {
        let response = browser
            .get(format!("{}/session", server.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{cookie}");
        let response = browser
            .post(format!("{}/logout", server.base))
            .header("origin", &server.base)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{cookie}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let output = server.output();
    assert!(
        !output.lines().any(|line| line.starts_with(forged)),
        "a request forged a log line:\n{output}"
    );
    assert!(
        output.contains("malformed_cookie"),
        "the refusal is logged: {output}"
    );
    assert_eq!(
        warnings(&output).len(),
        startup_warnings,
        "requests wrote WARN lines:\n{output}"
    );
}

#[test]
fn the_start_warns_about_plain_http_upstreams_and_an_exposed_sandbox() {
    /// The warnings of a start with `env`, up to a clean stop.
    fn start_warnings(env: &[(&str, &str)]) -> String {
        let mut running = Running::start(env);
        running.sigterm();
        running.wait(Duration::from_secs(10));
        warnings(&running.output()).join("\n")
    }
    let real = start_warnings(&[
        ("LINKEDIN_API_KEY", API_KEY),
        ("LINKEDIN_SECRET_KEY", SECRET_KEY),
        (
            "LINKEDIN_ACCESS_TOKEN_URL",
            "http://127.0.0.1:9/uas/oauth/accessToken",
        ),
    ]);
    assert!(real.contains("plain http://"), "{real}");
    let exposed = start_warnings(&[("BIND", "0.0.0.0:0")]);
    assert!(exposed.contains("anyone who can reach"), "{exposed}");
}

#[test]
fn the_start_names_the_first_public_origin_as_the_address_to_open() {
    let port = crate::support::free_port();
    let bind = format!("127.0.0.1:{port}");
    let origin = format!("https://127.0.0.1:{port}");
    let mut running =
        Running::start(&[("BIND", bind.as_str()), ("PUBLIC_ORIGIN", origin.as_str())]);
    running.sigterm();
    running.wait(Duration::from_secs(10));
    let output = running.output();
    assert!(
        output.contains(&format!("listening; open {origin}/")),
        "{output}"
    );
    assert!(!output.contains("open https://localhost"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_log_format_json_every_line_is_json_and_exchanges_log_member_and_request_id() {
    let upstream = FakeUpstream::start(Behaviour::Grant {
        delay: Duration::ZERO,
        expires_in: 5_183_999,
    })
    .await;
    let mut server = Running::real(&upstream, &[("LOG_FORMAT", "json")]);
    let (browser, _) = server.browser_signed_in("json-token", "json-member");
    let response = server.post(&browser, "/token-exchange").await;
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.status(), 200);
    let stranger = trusting_client(&server.dir, Arc::new(reqwest::cookie::Jar::default()));
    assert_eq!(
        server.post(&stranger, "/token-exchange").await.status(),
        400
    );
    server.sigterm();
    assert!(server.wait(Duration::from_secs(10)).success());

    let output = server.output();
    let lines: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() >= 5, "{output}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap_or("").contains("listening"))
    );
    let exchange = lines
        .iter()
        .find(|l| l["message"] == "exchange" && l["outcome"] == "connected")
        .unwrap_or_else(|| panic!("no exchange line: {output}"));
    assert_eq!(exchange["level"], "INFO");
    assert_eq!(
        exchange["span"]["request_id"],
        request_id.as_str(),
        "{exchange}"
    );
    assert!(
        exchange["member_id"]
            .as_str()
            .unwrap()
            .contains("json-member"),
        "{exchange}"
    );
    assert!(!output.contains("fake-secret-1") && !output.contains(SECRET_KEY));

    // A configuration that does not parse is reported in JSON too.
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(BINARY)
        .env_clear()
        .env("LOG_FORMAT", "json")
        .env("BIND", "nowhere")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let line: Value = serde_json::from_slice(&refused.stderr).unwrap();
    assert!(line["message"].as_str().unwrap().contains("BIND"), "{line}");
}

/// A self-signed pair for localhost, PEM.
fn new_pair() -> (Vec<u8>, Vec<u8>) {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (
        pair.cert.pem().into_bytes(),
        pair.signing_key.serialize_pem().into_bytes(),
    )
}

/// The certificate the server at `base` presents in a new handshake (DER), trusting `roots`.
async fn presented(base: &str, roots: &[&[u8]]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    linkedin_token_exchange::server::install_crypto_provider();
    let mut store = rustls::RootCertStore::empty();
    for pem in roots {
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
            store.add(cert.unwrap()).unwrap();
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(store)
        .with_no_client_auth();
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem)
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_or_new_files_reload_the_certificate_and_open_connections_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls-key.pem"));
    let (a, a_key) = new_pair();
    std::fs::write(&cert, &a).unwrap();
    std::fs::write(&key, &a_key).unwrap();
    let server = Running::start_with_tls(&[], &cert, &key);
    let (b, b_key) = new_pair();
    let (c, c_key) = new_pair();
    let roots = [a.as_slice(), b.as_slice(), c.as_slice()];
    assert_eq!(presented(&server.base, &roots).await, der(&a));

    // A keep-alive client that trusts the first certificate only: it can only go on working
    // over the connection it already has.
    let old = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&a).unwrap())
        .build()
        .unwrap();
    let healthz = format!("{}/healthz", server.base);
    assert_eq!(old.get(&healthz).send().await.unwrap().status(), 200);

    std::fs::write(&cert, &b).unwrap();
    std::fs::write(&key, &b_key).unwrap();
    let hup = |child: u32| {
        let status = Command::new("kill")
            .args(["-HUP", &child.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hup(server.child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    while presented(&server.base, &roots).await != der(&b) {
        assert!(
            Instant::now() < deadline,
            "SIGHUP reloaded the pair: {}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        old.get(&healthz).send().await.unwrap().status(),
        200,
        "the open connection works"
    );

    // A broken pair is refused, and the server keeps the one it has.
    std::fs::write(&cert, b"garbage").unwrap();
    hup(server.child.id());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server.output().contains("certificate not reloaded"),
        "{}",
        server.output()
    );
    assert_eq!(presented(&server.base, &roots).await, der(&b));

    // New files are picked up without a signal.
    std::fs::write(&key, &c_key).unwrap();
    std::fs::write(&cert, &c).unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    while presented(&server.base, &roots).await != der(&c) {
        assert!(
            Instant::now() < deadline,
            "the change was picked up: {}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_error_description_cannot_forge_a_log_line_or_hide_text() {
    let server = Running::start(&[]);
    let browser = crate::support::client::trusting(&server.dir.path().join("cert.pem"))
        .cookie_provider(Arc::new(reqwest::cookie::Jar::default()))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let started = browser
        .get(format!("{}/auth/linkedin", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 302);
    let authorization = url::Url::parse(started.headers()["location"].to_str().unwrap()).unwrap();
    let state = authorization
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    // What a hostile provider (or a crafted link) sends back: a quote that closes the message,
    // a fake field, a line separator and a right-to-left override.
    let description = "no\" member_id=\"admin\u{2028}2026-01-01T00:00:00Z  INFO forged\u{202e}";
    let mut callback = url::Url::parse(&format!("{}/auth/linkedin/callback", server.base)).unwrap();
    callback
        .query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("error", "access_denied")
        .append_pair("error_description", description);
    let (status, body) = crate::oidc::callback_json(&browser, callback).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("oidc_denied")));
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(r#"no\" member_id=\"admin\u{2028}"#) && message.contains(r"\u{202e}"),
        "escaped as request values are: {message}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let output = server.output();
    let line = output
        .lines()
        .find(|l| l.contains("oidc_denied") && l.contains("access_denied"))
        .unwrap_or_else(|| panic!("the refusal is logged: {output}"));
    assert!(
        !line.contains(r#"member_id="admin"#) && line.contains(r#"member_id=\"admin"#),
        "the quote cannot pose as a field: {line}"
    );
    assert!(
        !output.contains('\u{2028}') && !output.contains('\u{202e}'),
        "no line separator or override reaches the log: {output}"
    );
}

/// The address the redirect listener announced in `output`.
fn redirect_addr(output: &str) -> std::net::SocketAddr {
    output
        .lines()
        .find_map(|line| line.split("plain HTTP on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no redirect listener in {output}"))
        .parse()
        .unwrap()
}

/// The cap a listener announced in `output`: the `max_connections` of the line containing
/// `marker`.
fn announced_cap(output: &str, marker: &str) -> usize {
    output
        .lines()
        .find(|line| line.contains(marker))
        .and_then(|line| line.split("max_connections=").nth(1))
        .and_then(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no max_connections on the {marker:?} line: {output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_redirect_port_cannot_take_the_file_budget_of_the_https_port() {
    let running = Running::start_with_open_file_limit(
        &[
            ("HTTP_REDIRECT_BIND", "127.0.0.1:0"),
            ("METRICS_BIND", "127.0.0.1:0"),
        ],
        256,
    );
    let output = running.output();

    // 300 clients connect and say nothing; those the listen queue has no room for give up.
    let to = redirect_addr(&output);
    let attempts: Vec<_> = (0..300)
        .map(|_| {
            tokio::spawn(tokio::time::timeout(
                Duration::from_secs(4),
                tokio::net::TcpStream::connect(to),
            ))
        })
        .collect();
    let mut idle = Vec::new();
    for attempt in attempts {
        if let Ok(Ok(stream)) = attempt.await.unwrap() {
            idle.push(stream);
        }
    }
    let files =
        std::fs::read_dir(format!("/proc/{}/fd", running.child.id())).map_or(0, Iterator::count);
    eprintln!(
        "{} idle connections to the redirect port; the server holds {files} files",
        idle.len()
    );

    let client = trusting_client(&running.dir, Arc::new(reqwest::cookie::Jar::default()));
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(format!("{}/healthz", running.base)).send(),
    )
    .await
    .expect("the HTTPS port answers within 5 s")
    .expect("the HTTPS port answers");
    assert_eq!(response.status(), 200);
    eprintln!("the HTTPS port answered after {:?}", started.elapsed());
    let output = running.output();
    assert!(
        !output.contains("Too many open files"),
        "the process ran out of files:\n{output}"
    );
    let (main, redirect, metrics) = (
        announced_cap(&output, "connections are bounded"),
        announced_cap(&output, "redirects to HTTPS"),
        announced_cap(&output, "/metrics"),
    );
    eprintln!("with 256 open files: main {main}, redirect {redirect}, metrics {metrics}");
    assert!(
        main + redirect + metrics + 3 < 256,
        "the caps ({main}, {redirect}, {metrics}) leave no room for the rest"
    );
    assert!(idle.len() > redirect, "only {} connected", idle.len());
    drop(idle);
}

/// The status line and headers of the answer to `request` sent as is to `to` (plain HTTP).
async fn plain_answer_head(to: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(to).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed before an answer: {seen:?}");
        seen.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_port_answers_options_star_with_400_and_warns_when_it_would_send_visitors_to_localhost()
 {
    let mut exposed = Running::start(&[("HTTP_REDIRECT_BIND", "0.0.0.0:0")]);
    let to = redirect_addr(&exposed.output());
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], to.port()));
    let star = plain_answer_head(local, "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n").await;
    assert!(star.starts_with("HTTP/1.1 400"), "{star}");
    assert!(!star.to_ascii_lowercase().contains("location:"), "{star}");
    let path = plain_answer_head(local, "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\n\r\n").await;
    assert!(path.starts_with("HTTP/1.1 308"), "{path}");
    assert!(
        path.to_ascii_lowercase()
            .contains(&format!("location: {}/a?b=1", exposed.base)),
        "{path}"
    );
    exposed.sigterm();
    exposed.wait(Duration::from_secs(10));
    let warned = warnings(&exposed.output()).join("\n");
    assert!(
        warned.contains("HTTP_REDIRECT_BIND") && warned.contains("PUBLIC_ORIGIN"),
        "no warning about redirecting remote visitors to localhost:\n{}",
        exposed.output()
    );

    let mut named = Running::start(&[
        ("HTTP_REDIRECT_BIND", "0.0.0.0:0"),
        ("PUBLIC_ORIGIN", "https://example.com"),
        // Sandbox mode on a public origin must be asked for.
        ("SANDBOX", "true"),
    ]);
    named.sigterm();
    named.wait(Duration::from_secs(10));
    let warned = warnings(&named.output()).join("\n");
    assert!(!warned.contains("HTTP_REDIRECT_BIND"), "{warned}");
}
