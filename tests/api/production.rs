//! A production start (issue 28, items 1, 5 and 6): the sandbox only where it is meant (on by
//! default only without any LinkedIn credential, never on a public origin unless asked for),
//! the README's "Going live with LinkedIn" deployment behind `deploy/nginx.conf` exposing
//! nothing under `/sandbox/`, the development certificate (generated only at the default
//! paths, for a year, renewed before it expires, an operator's never touched), a mistyped
//! store folder, and a public origin on another port than `BIND`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::cookie::Jar;
use serde_json::Value;

use crate::support::nginx::{Nginx, nginx_binary};
use crate::support::servers::skip_or_fail;
use crate::support::{API_KEY, SECRET_KEY, Served, binary, encode_cookie, free_port};

const CLIENT_ID: &str = "prod-client-id";
const CLIENT_SECRET: &str = "prod-client-secret-9Xq";
/// The common name the service gives the certificate it generates.
const GENERATED_NAME: &str = "linkedin-token-exchange development certificate";

/// How a start ended: still running once it said where it listens (then stopped), or its exit
/// code; with everything it printed.
struct Start {
    exit: Option<i32>,
    /// Both streams.
    output: String,
    /// What it wrote to stderr (a refusal's one line).
    stderr: String,
}

impl Start {
    fn started(&self) -> bool {
        self.exit.is_none()
    }

    fn warnings(&self) -> Vec<&str> {
        self.output
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect()
    }
}

/// Starts the binary in `dir` (its working directory, so the certificate is at the default
/// paths there) with memory sessions on a free port and `env` on top; stops it as soon as it
/// says where it listens.
fn start_in(dir: &Path, env: &[(&str, &str)]) -> Start {
    let (log, err) = (dir.join("server.log"), dir.join("server.err"));
    let mut child = binary(dir)
        .env("BIND", "127.0.0.1:0")
        .env("SESSION_STORE", "memory")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let read = || {
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        let stdout = std::fs::read_to_string(&log).unwrap_or_default();
        (format!("{stdout}{stderr}"), stderr)
    };
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let (output, stderr) = read();
            return Start {
                exit: status.code(),
                output,
                stderr,
            };
        }
        let (output, stderr) = read();
        if output.contains("listening; open") {
            let _ = child.kill();
            let _ = child.wait();
            return Start {
                exit: None,
                output,
                stderr,
            };
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "neither started nor stopped: {output}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(env: &[(&str, &str)]) -> Start {
    start_in(tempfile::tempdir().unwrap().path(), env)
}

const OIDC: [(&str, &str); 2] = [
    ("LINKEDIN_CLIENT_ID", CLIENT_ID),
    ("LINKEDIN_CLIENT_SECRET", CLIENT_SECRET),
];
const JSAPI: [(&str, &str); 2] = [
    ("LINKEDIN_API_KEY", API_KEY),
    ("LINKEDIN_SECRET_KEY", SECRET_KEY),
];
const PUBLIC: (&str, &str) = ("PUBLIC_ORIGIN", "https://login.example.com");

/// What a start is expected to do.
enum Expect {
    /// Starts in sandbox mode; with a WARN holding this text, when given.
    Sandbox(Option<&'static str>),
    /// Starts in real mode, no sandbox.
    Real,
    /// Exit 2, one line naming the variable.
    Refused(&'static str),
}

/// A row of the start-up table: its name, its variables, what it does.
type Case = (&'static str, Vec<(&'static str, &'static str)>, Expect);

#[test]
fn the_sandbox_is_on_by_default_only_without_credentials_and_a_public_origin_must_ask_for_it() {
    let exposed = Some("sign in as anyone");
    let cases: Vec<Case> = vec![
        ("no configuration", vec![], Expect::Sandbox(None)),
        ("OIDC client only", OIDC.to_vec(), Expect::Real),
        ("JSAPI key pair only", JSAPI.to_vec(), Expect::Real),
        (
            "OIDC client + public origin",
            [&OIDC[..], &[PUBLIC]].concat(),
            Expect::Real,
        ),
        (
            "SANDBOX=true + public origin",
            vec![("SANDBOX", "true"), PUBLIC],
            Expect::Sandbox(exposed),
        ),
        (
            "SANDBOX=true + OIDC client + public origin",
            [&OIDC[..], &[("SANDBOX", "true"), PUBLIC]].concat(),
            Expect::Sandbox(exposed),
        ),
        (
            "no credentials (sandbox by default) + public origin",
            vec![PUBLIC],
            Expect::Refused("SANDBOX"),
        ),
        (
            "SANDBOX=false + no credentials",
            vec![("SANDBOX", "false")],
            Expect::Refused("SANDBOX"),
        ),
    ];
    let mut table = vec![
        "| configuration | outcome |".to_owned(),
        "| --- | --- |".into(),
    ];
    for (name, env, expect) in cases {
        let start = start(&env);
        let out = &start.output;
        match expect {
            Expect::Sandbox(warning) => {
                assert!(start.started(), "{name}: {out}");
                assert!(out.contains("sandbox mode"), "{name}: {out}");
                let warned = start.warnings().join("\n");
                match warning {
                    Some(text) => assert!(warned.contains(text), "{name}: {out}"),
                    None => assert!(!warned.contains("anyone"), "{name}: {out}"),
                }
                table.push(format!(
                    "| {name} | starts in sandbox mode{} |",
                    if warning.is_some() {
                        "; WARN: the sandbox lets anyone sign in as anyone"
                    } else {
                        ""
                    }
                ));
            }
            Expect::Real => {
                assert!(start.started(), "{name}: {out}");
                assert!(out.contains("real mode"), "{name}: {out}");
                assert!(!out.contains("sandbox mode"), "{name}: {out}");
                table.push(format!("| {name} | starts in real mode, no /sandbox/ |"));
            }
            Expect::Refused(variable) => {
                assert_eq!(start.exit, Some(2), "{name}: {out}");
                let line = start.stderr.trim_end();
                assert_eq!(line.lines().count(), 1, "{name}: one line: {out}");
                assert!(line.contains(variable), "{name}: {out}");
                table.push(format!("| {name} | exit 2: `{line}` |"));
            }
        }
    }
    eprintln!("{}", table.join("\n"));
}

/// An OpenID Connect client alone (as the README's "Going live" sets): real mode, nothing
/// under `/sandbox/`, no sandbox key on the page, no JSAPI flow.
#[tokio::test]
async fn with_only_an_oidc_client_nothing_of_the_sandbox_is_served() {
    let server = Served::start("localhost", &OIDC, "/healthz").await;
    let browser = server.client(Some(Arc::new(Jar::default())));
    for path in [
        "/sandbox/in.js",
        "/sandbox/oauth/.well-known/openid-configuration",
        "/sandbox/oauth/v2/authorization",
        "/sandbox/stats",
    ] {
        let status = browser.get(server.url(path)).send().await.unwrap().status();
        assert_eq!(status, 404, "GET {path}");
    }
    let minted = browser
        .post(server.url("/sandbox/oauth2/authorize"))
        .header("origin", &server.origin)
        .form(&[("api_key", "anything"), ("member_id", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 404);

    let page = browser.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(!page.contains("api_key"), "a key on the page: {page}");
    assert!(!page.contains("IN/Login"), "a JSAPI button: {page}");
    assert!(!page.contains("/sandbox/"), "{page}");
    assert!(!page.to_lowercase().contains("sandbox mode"), "{page}");
    assert!(
        page.contains("oidc-sign-in"),
        "the OpenID Connect button: {page}"
    );

    let exchange = browser
        .post(server.url("/token-exchange"))
        .header("origin", &server.origin)
        .send()
        .await
        .unwrap();
    assert_eq!(exchange.status(), 404);
    let body: Value = exchange.json().await.unwrap();
    assert_eq!(body["error"], "jsapi_not_configured", "{body}");

    let output = server.output();
    assert!(output.contains("real mode"), "{output}");
    assert!(!output.contains("sandbox mode"), "{output}");
}

/// The README's "Going live with LinkedIn" deployment (an OpenID Connect client only,
/// `TLS=off` behind `deploy/nginx.conf`, `PUBLIC_ORIGIN` the proxy's): the probe
/// (read the page's sandbox key, mint a cookie for `admin` at the sandbox, exchange it) signs
/// no one in, and `/auth/check` stays 401.
#[tokio::test]
async fn the_going_live_deployment_behind_nginx_lets_no_stranger_sign_in() {
    const TEST: &str =
        "production::the_going_live_deployment_behind_nginx_lets_no_stranger_sign_in";
    let nginx_path = match nginx_binary() {
        Ok(path) => path,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let service: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // No protected app runs: nothing here goes past /auth/check.
    let nowhere: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let nginx = Nginx::start(&nginx_path, service, nowhere).await;
    let origin = nginx.origin();
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let bind = service.to_string();
    let mut child = binary(dir.path())
        .envs(OIDC)
        .env("PUBLIC_ORIGIN", &origin)
        .env("TLS", "off")
        .env("BIND", &bind)
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .env(
            "SESSION_KEYS",
            "cHJvZHVjdGlvbi10ZXN0LXNlc3Npb24ta2V5LTAxMjM=",
        )
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let output = || std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    let stranger = crate::support::client::trusting(&nginx.cert())
        .cookie_provider(Arc::new(Jar::default()))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let started = Instant::now();
    let page = loop {
        if let Ok(response) = stranger.get(format!("{origin}/")).send().await
            && response.status() == 200
        {
            break response.text().await.unwrap();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the service stopped: {}",
            output()
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ready: {}\n{}",
            output(),
            nginx.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // 1. The page's sandbox key (whatever follows `api_key:`), if any.
    let api_key = page.split("api_key:").nth(1).map(|rest| {
        rest.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    assert_eq!(api_key, None, "the page names a key: {page}");
    // 2. A cookie for `admin`, minted at the sandbox (with the key a sandbox would use).
    let key = api_key.unwrap_or_else(|| "sandbox".to_owned());
    let minted = stranger
        .post(format!("{origin}/sandbox/oauth2/authorize"))
        .header("origin", &origin)
        .form(&[("api_key", key.as_str()), ("member_id", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 404, "the sandbox answers behind the proxy");
    let payload = minted.text().await.unwrap();
    // 3. The cookie, exchanged.
    let exchange = stranger
        .post(format!("{origin}/token-exchange"))
        .header("origin", &origin)
        .header(
            "cookie",
            format!("linkedin_oauth_{key}={}", encode_cookie(&payload)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(exchange.status(), 404);
    let body: Value = exchange.json().await.unwrap();
    assert_eq!(body["error"], "jsapi_not_configured", "{body}");
    // 4. Nobody is signed in.
    let check = stranger
        .get(format!("{origin}/auth/check"))
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 401);
    for path in [
        "/sandbox/in.js",
        "/sandbox/oauth/.well-known/openid-configuration",
    ] {
        let status = stranger
            .get(format!("{origin}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "GET {path} through nginx");
    }
    let _ = child.kill();
    let _ = child.wait();
    let output = output();
    assert!(output.contains("real mode"), "{output}");
    assert!(!output.contains("sandbox mode"), "{output}");
}

/// A certificate for localhost named `name`, expiring in `days`: its PEM and its key's.
fn short_lived(name: &str, days: i64) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now + time::Duration::days(days);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Whether the PEM certificate at `path` is still valid in `days` days, through openssl.
fn valid_in(path: &Path, days: u64) -> bool {
    std::process::Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-checkend",
            &(days * 86_400).to_string(),
            "-in",
        ])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn subject(path: &Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_generated_certificate_is_named_for_the_service_and_valid_for_a_year() {
    let dir = tempfile::tempdir().unwrap();
    let start = start_in(dir.path(), &[]);
    assert!(start.started(), "{}", start.output);
    let cert = dir.path().join("certs/localhost.pem");
    assert!(
        subject(&cert).contains(GENERATED_NAME),
        "{}",
        subject(&cert)
    );
    assert!(valid_in(&cert, 364), "valid for a year");
    assert!(!valid_in(&cert, 366), "valid for at most a year");
}

#[test]
fn an_expiring_generated_pair_is_replaced_and_an_operators_pair_never_is() {
    // Generated (its name) at the default paths, expiring in 3 days: replaced, and said.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let (cert, key) = (certs.join("localhost.pem"), certs.join("localhost-key.pem"));
    let (old_cert, old_key) = short_lived(GENERATED_NAME, 3);
    std::fs::write(&cert, &old_cert).unwrap();
    std::fs::write(&key, &old_key).unwrap();
    let start = start_in(dir.path(), &[]);
    assert!(start.started(), "{}", start.output);
    assert!(start.output.contains("replaced"), "{}", start.output);
    assert_ne!(std::fs::read_to_string(&cert).unwrap(), old_cert);
    assert!(valid_in(&cert, 364), "the new one is valid for a year");

    // What earlier versions generated there (rcgen's default name, valid until 4096):
    // replaced by a pair valid for a year.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let (cert, key) = (certs.join("localhost.pem"), certs.join("localhost-key.pem"));
    let (old_cert, old_key) = short_lived("rcgen self signed cert", 774_680);
    std::fs::write(&cert, &old_cert).unwrap();
    std::fs::write(&key, &old_key).unwrap();
    let start = start_in(dir.path(), &[]);
    assert!(start.started(), "{}", start.output);
    assert!(start.output.contains("replaced"), "{}", start.output);
    assert!(
        !valid_in(&cert, 366),
        "the new one is valid for a year only"
    );

    // The operator's, at paths they named, expiring in 3 days (even under our name): kept.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("mine.pem"), dir.path().join("mine-key.pem"));
    let (op_cert, op_key) = short_lived(GENERATED_NAME, 3);
    std::fs::write(&cert, &op_cert).unwrap();
    std::fs::write(&key, &op_key).unwrap();
    let named = [
        ("TLS_CERT", cert.to_str().unwrap()),
        ("TLS_KEY", key.to_str().unwrap()),
    ];
    let start = start_in(dir.path(), &named);
    assert!(start.started(), "{}", start.output);
    assert!(!start.output.contains("replaced"), "{}", start.output);
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), op_cert);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), op_key);

    // The operator's at the default paths (another name, e.g. from mkcert): kept.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let cert = certs.join("localhost.pem");
    let (op_cert, op_key) = short_lived("mkcert development certificate", 3);
    std::fs::write(&cert, &op_cert).unwrap();
    std::fs::write(certs.join("localhost-key.pem"), &op_key).unwrap();
    let start = start_in(dir.path(), &[]);
    assert!(start.started(), "{}", start.output);
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), op_cert);
}

#[test]
fn a_named_certificate_that_does_not_exist_stops_the_start_and_makes_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (
        dir.path().join("etc/ssl/mycert.pem"),
        dir.path().join("srv/tls/mykey.pem"),
    );
    let start = start_in(
        dir.path(),
        &[
            ("TLS_CERT", cert.to_str().unwrap()),
            ("TLS_KEY", key.to_str().unwrap()),
        ],
    );
    assert_eq!(start.exit, Some(2), "{}", start.output);
    assert_eq!(
        start.stderr.trim_end().lines().count(),
        1,
        "{}",
        start.output
    );
    assert!(start.output.contains("TLS_CERT"), "{}", start.output);
    assert!(
        start.output.contains(cert.to_str().unwrap()),
        "{}",
        start.output
    );
    assert!(!dir.path().join("etc").exists(), "a folder was created");
    assert!(!dir.path().join("srv").exists(), "a folder was created");
    assert!(!dir.path().join("certs").exists(), "a folder was created");
}

#[test]
fn a_sqlite_store_in_a_folder_that_does_not_exist_stops_the_start_naming_session_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexistent-dir");
    let store = format!("sqlite://{}/sessions.db", missing.display());
    let start = start_in(dir.path(), &[("SESSION_STORE", store.as_str())]);
    assert_eq!(start.exit, Some(2), "{}", start.output);
    assert_eq!(
        start.stderr.trim_end().lines().count(),
        1,
        "{}",
        start.output
    );
    assert!(start.output.contains("SESSION_STORE"), "{}", start.output);
    assert!(!missing.exists(), "the folder was created");

    // The default store's folder, data/, is still made.
    let start = start_in(
        dir.path(),
        &[("SESSION_STORE", "sqlite://data/sessions.db")],
    );
    assert!(start.started(), "{}", start.output);
    assert!(dir.path().join("data/sessions.db").exists());
}

#[test]
fn a_public_origin_on_another_port_than_bind_is_warned_about_without_a_proxy() {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let origin = format!("https://localhost:{}", free_port());
    let env = [("BIND", bind.as_str()), ("PUBLIC_ORIGIN", origin.as_str())];
    let off_port = start(&env);
    assert!(off_port.started(), "{}", off_port.output);
    let warned = off_port.warnings().join("\n");
    assert!(
        warned.contains(&origin) && warned.contains(&bind) && warned.contains("BIND"),
        "{}",
        off_port.output
    );
    // Behind a proxy (TRUSTED_PROXIES), the ports may differ.
    let proxied = start(&[
        ("BIND", bind.as_str()),
        ("PUBLIC_ORIGIN", origin.as_str()),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    assert!(proxied.started(), "{}", proxied.output);
    assert!(
        !proxied.warnings().join("\n").contains("another port"),
        "{}",
        proxied.output
    );
    // The same port: no word.
    let same = format!("https://localhost:{port}");
    let quiet = start(&[("BIND", bind.as_str()), ("PUBLIC_ORIGIN", same.as_str())]);
    assert!(quiet.started(), "{}", quiet.output);
    assert!(
        !quiet.warnings().join("\n").contains("another port"),
        "{}",
        quiet.output
    );
}
