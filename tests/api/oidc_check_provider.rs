//! `linkedin-token-exchange check-provider`, the binary as a person runs it before going
//! live: against the observed-LinkedIn test provider, against one whose discovery names
//! another issuer, against a running sandbox over HTTPS, and against a hostile provider
//! (endless and oversized documents, key ids holding terminal escapes, endless lists).

use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::oidc_provider::{Profile, Provider, Rig};
use crate::support::{Served, binary, json_of};

/// Every subject the check names, each on its own line.
const SUBJECTS: [&str; 9] = [
    "discovery",
    "issuer",
    "jwks",
    "auth method",
    "pkce",
    "nonce",
    "algorithms",
    "scopes",
    "userinfo",
];

/// What `check-provider` printed and how it exited.
struct Checked {
    code: Option<i32>,
    lines: Vec<String>,
    stderr: String,
}

impl Checked {
    fn last(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or_default()
    }

    /// The report's finding lines (after the heading, before the summary).
    fn findings(&self) -> &[String] {
        match self.lines.len() {
            0..=2 => &[],
            n => &self.lines[1..n - 1],
        }
    }

    /// The finding line about `subject`.
    fn about(&self, subject: &str) -> Option<&str> {
        self.findings().iter().map(String::as_str).find(|l| {
            l.get(5..)
                .is_some_and(|rest| rest.starts_with(&format!("{subject}:")))
        })
    }
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n{}\nstderr: {}",
            self.code,
            self.lines.join("\n"),
            self.stderr
        )
    }
}

/// Runs `check-provider` with `env` (off the runtime's threads, so that a provider on this
/// runtime can answer it).
async fn check_provider(env: &[(&str, &str)]) -> Checked {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let run = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        binary(dir.path())
            .arg("check-provider")
            .envs(env)
            .output()
            .unwrap()
    });
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("check-provider finishes within a minute")
        .unwrap();
    Checked {
        code: status.code(),
        lines: String::from_utf8(stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The check against the test provider at its own issuer, with `env` on top.
async fn check(provider: &Provider, env: &[(&str, &str)]) -> Checked {
    let issuer = provider.issuer.to_string();
    let mut all = vec![
        ("LINKEDIN_OIDC_ISSUER", issuer.as_str()),
        ("SANDBOX", "false"),
        ("UPSTREAM_TIMEOUT_MS", "5000"),
    ];
    all.extend_from_slice(env);
    check_provider(&all).await
}

#[tokio::test]
async fn against_linkedin_as_observed_every_subject_passes_and_the_provider_is_ready() {
    let provider = Provider::start(Profile::Observed).await;
    let checked = check(&provider, &[]).await;
    assert_eq!(checked.code, Some(0), "{checked}");
    assert_eq!(checked.last(), "provider ready", "{checked}");
    for line in checked.findings() {
        assert!(
            line.starts_with("ok   ") || line.starts_with("warn "),
            "{line:?} in {checked}"
        );
    }
    for subject in SUBJECTS {
        assert!(checked.about(subject).is_some(), "{subject} in {checked}");
    }
    // What the service will do with LinkedIn's discovery, which lists neither auth methods
    // nor PKCE methods: the secret in the form, no PKCE.
    let auth = checked.about("auth method").unwrap_or_default();
    assert!(auth.contains("client_secret_post"), "{checked}");
}

#[tokio::test]
async fn a_discovery_naming_another_issuer_fails_naming_both() {
    let provider = Provider::start(Profile::Observed).await;
    // LinkedIn's issuer before (and after) its unannounced change differed by the `/oauth`
    // path (supabase/auth#1536, keycloak/keycloak#28686).
    let pathless = provider.origin();
    provider.set(|k| {
        k.discovery.insert("issuer".into(), json!(pathless));
    });
    let checked = check(&provider, &[]).await;
    assert_eq!(checked.code, Some(1), "{checked}");
    let line = checked.about("issuer").unwrap_or_default();
    assert!(line.starts_with("FAIL issuer"), "{checked}");
    assert!(
        line.contains(&format!("discovery names {pathless},"))
            && line.contains(&format!("LINKEDIN_OIDC_ISSUER is {}", provider.issuer)),
        "{line}"
    );
    assert!(checked.last().ends_with("problem(s) found"), "{checked}");
}

#[tokio::test]
async fn scopes_the_provider_does_not_offer_fail_and_a_retired_one_is_a_configuration_error() {
    let provider = Provider::start(Profile::Observed).await;
    let checked = check(
        &provider,
        &[(
            "LINKEDIN_OIDC_SCOPES",
            "openid profile email w_member_social",
        )],
    )
    .await;
    assert_eq!(checked.code, Some(1), "{checked}");
    let line = checked.about("scopes").unwrap_or_default();
    assert!(
        line.starts_with("FAIL scopes") && line.contains("w_member_social"),
        "{checked}"
    );

    let checked = check(
        &provider,
        &[("LINKEDIN_OIDC_SCOPES", "openid r_liteprofile")],
    )
    .await;
    assert_eq!(checked.code, Some(2), "{checked}");
    assert!(checked.stderr.contains("LINKEDIN_OIDC_SCOPES"), "{checked}");
}

#[tokio::test]
async fn against_a_running_sandbox_over_https_the_provider_is_ready() {
    let sandbox = Served::start(
        "127.0.0.1",
        &[("SANDBOX", "true")],
        "/sandbox/oauth/.well-known/openid-configuration",
    )
    .await;
    // The browser is on 127.0.0.1, but the sandbox's issuer is where the server reaches its
    // own sandbox: `localhost`, a name its certificate carries.
    let issuer = sandbox
        .url("/sandbox/oauth")
        .replace("https://127.0.0.1:", "https://localhost:");
    let cert = sandbox.cert();
    let checked = check_provider(&[
        ("LINKEDIN_OIDC_ISSUER", issuer.as_str()),
        ("SANDBOX", "false"),
        ("UPSTREAM_CA_CERT", cert.to_str().unwrap()),
        ("UPSTREAM_TIMEOUT_MS", "5000"),
    ])
    .await;
    assert_eq!(checked.code, Some(0), "{checked}");
    assert_eq!(checked.last(), "provider ready", "{checked}");
    for subject in SUBJECTS {
        assert!(checked.about(subject).is_some(), "{subject} in {checked}");
    }
    assert!(
        checked
            .about("issuer")
            .is_some_and(|l| l.starts_with("ok   ")),
        "{checked}"
    );
}

// ---------------------------------------------------------------------------------------
// A hostile provider.

/// The peak resident memory (VmHWM) allowed to `check-provider`, in KiB: generous for a debug
/// build that reads at most the service's 1 MiB per answer; far below what an unbounded read
/// of the documents below takes (gigabytes).
const PEAK_LIMIT_KIB: u64 = 200 * 1024;

/// `check-provider` with `env`, its peak resident memory watched while it runs: killed as
/// soon as it passes [`PEAK_LIMIT_KIB`]. Returns what it printed and the peak seen, in KiB.
async fn check_provider_watched(env: &[(&str, &str)]) -> (Checked, u64) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let run = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let mut child = binary(dir.path())
            .arg("check-provider")
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status_file = format!("/proc/{}/status", child.id());
        let mut peak = 0;
        while child.try_wait().unwrap().is_none() {
            let hwm = std::fs::read_to_string(&status_file)
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                })
                .unwrap_or(0);
            peak = peak.max(hwm);
            if peak > PEAK_LIMIT_KIB {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (child.wait_with_output().unwrap(), peak)
    });
    let (output, peak) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("check-provider finishes within a minute")
        .unwrap();
    (checked(output), peak)
}

fn checked(output: Output) -> Checked {
    let Output {
        status,
        stdout,
        stderr,
    } = output;
    Checked {
        code: status.code(),
        lines: String::from_utf8(stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// What the raw provider answers to every request.
#[derive(Clone)]
enum Raw {
    /// A chunked JSON array of `{}` that never ends, as fast as it is read.
    Endless,
    /// This body, as JSON.
    Body(Arc<Vec<u8>>),
}

/// A provider on raw TCP answering every request with what `answer` makes of its issuer:
/// the issuer.
async fn raw_provider(answer: impl FnOnce(&str) -> Raw) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/oauth", listener.local_addr().unwrap());
    let raw = answer(&issuer);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let raw = raw.clone();
            tokio::spawn(async move {
                let mut head = [0; 4096];
                let _ = stream.read(&mut head).await;
                match raw {
                    Raw::Endless => {
                        let objects = "{},".repeat(20_000);
                        let chunk = format!("{:x}\r\n{objects}\r\n", objects.len());
                        let start = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n1\r\n[\r\n";
                        if stream.write_all(start).await.is_ok() {
                            while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                        }
                    }
                    Raw::Body(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        if stream.write_all(head.as_bytes()).await.is_ok() {
                            let _ = stream.write_all(&body).await;
                        }
                    }
                }
            });
        }
    });
    issuer
}

/// Checks that `checked` failed on discovery as the service does with an answer over its
/// 1 MiB cap: exit 1, the line naming the cap and the service's answer.
fn assert_refused_as_too_large(checked: &Checked) {
    assert_eq!(checked.code, Some(1), "{checked}");
    let line = checked.about("discovery").unwrap_or_default();
    assert!(
        line.starts_with("FAIL discovery")
            && line.contains("larger than 1 MiB")
            && line.contains("502 upstream_malformed"),
        "{checked}"
    );
    assert!(checked.last().ends_with("problem(s) found"), "{checked}");
}

/// check-provider against the hostile `issuer` (what it serves: `what`): refused as the
/// service refuses it, at its 1 MiB cap, within [`PEAK_LIMIT_KIB`] of memory.
async fn refused_as_too_large_in_little_memory(issuer: &str, what: &str) {
    let (checked, peak) = check_provider_watched(&[
        ("LINKEDIN_OIDC_ISSUER", issuer),
        ("SANDBOX", "false"),
        ("UPSTREAM_TIMEOUT_MS", "5000"),
    ])
    .await;
    eprintln!("check-provider against {what}: peak VmHWM {peak} KiB");
    assert!(peak <= PEAK_LIMIT_KIB, "peak {peak} KiB\n{checked}");
    assert_refused_as_too_large(&checked);
}

#[tokio::test]
async fn an_endless_discovery_is_read_to_the_services_1_mib_cap_and_fails_as_the_service_does() {
    let issuer = raw_provider(|_| Raw::Endless).await;
    refused_as_too_large_in_little_memory(&issuer, "an endless discovery").await;
}

#[tokio::test]
async fn a_20_mb_discovery_of_small_objects_is_refused_at_1_mib_in_little_memory() {
    let issuer = raw_provider(|issuer| {
        let mut body = format!(r#"{{"issuer":"{issuer}","x":["#).into_bytes();
        body.extend("{},".repeat(20 * 1024 * 1024 / 3).as_bytes());
        body.extend(b"{}]}");
        Raw::Body(Arc::new(body))
    })
    .await;
    refused_as_too_large_in_little_memory(&issuer, "a 20 MB discovery of small objects").await;
}

/// A discovery document of 50 MB that is otherwise LinkedIn's: the service answers the
/// sign-in 502 `upstream_malformed`, and the check says so instead of "provider ready".
#[tokio::test]
async fn a_50_mb_discovery_the_service_refuses_fails_the_check_with_the_services_verdict() {
    // The test provider's discovery, served padded (and at once) from another issuer; its
    // key set and endpoints stay the test provider's.
    let provider = Provider::start(Profile::Observed).await;
    let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
    let document: Value = reqwest::get(discovery).await.unwrap().json().await.unwrap();
    let issuer = raw_provider(|issuer| {
        let mut document = document.clone();
        document["issuer"] = json!(issuer);
        let mut body = document.to_string();
        body.pop();
        body.push_str(r#","x-padding":""#);
        body.push_str(&"x".repeat(50 * 1024 * 1024));
        body.push_str(r#""}"#);
        Raw::Body(Arc::new(body.into_bytes()))
    })
    .await;
    refused_as_too_large_in_little_memory(&issuer, "a 50 MB discovery").await;

    // The service itself, against the same provider.
    let rig = Rig::start(provider, |config| {
        config.oidc.issuer = Some(issuer.parse().unwrap());
    })
    .await;
    let (status, body) = json_of(
        rig.browser
            .get(rig.app.url("/auth/linkedin"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("upstream_malformed")),
        "{body}"
    );
}

/// Terminal escapes and line breaks a provider puts in a `kid`, and in the lists it
/// publishes, are printed escaped and visible; long lists are cut with a count.
#[tokio::test]
async fn provider_text_is_printed_escaped_and_long_lists_are_summarised() {
    let provider = Provider::start(Profile::Observed).await;
    let forged = "\u{1b}[2K\rok   issuer: forged\r\nok   forged: by the kid\u{1b}]0;title\u{7}";
    let mut keys = vec![json!({"kty": "RSA", "kid": forged, "n": "AQAB", "e": "AQAB"})];
    keys.extend(
        (1..10_000)
            .map(|i| json!({"kty": "RSA", "kid": format!("k{i}"), "n": "AQAB", "e": "AQAB"})),
    );
    let methods: Vec<Value> = std::iter::once(json!("\u{1b}[31mclient_secret_basic\r\nok   x"))
        .chain((1..5_000).map(|i| json!(format!("m{i}"))))
        .collect();
    provider.set(|k| {
        k.jwks = Some(json!({ "keys": keys }));
        k.discovery.insert(
            "token_endpoint_auth_methods_supported".into(),
            json!(methods),
        );
    });
    let checked = check(&provider, &[]).await;
    let output = checked.lines.join("\n");
    assert!(
        !output.contains(['\u{1b}', '\r', '\u{7}']),
        "a raw control character: {checked}"
    );
    // One line per subject, between the heading and the summary: none was forged.
    assert_eq!(checked.lines.len(), SUBJECTS.len() + 2, "{checked}");
    assert!(!output.contains("\nok   forged"), "{checked}");

    let jwks = checked.about("jwks").unwrap_or_default();
    assert!(
        jwks.starts_with("ok   jwks: 10,000 signature key(s): "),
        "{jwks}"
    );
    assert!(
        jwks.contains(r"\u{1b}[2K\rok   issuer: forged\r\nok   forged"),
        "the kid, escaped and visible: {jwks}"
    );
    assert!(jwks.contains("and 9,990 more"), "{jwks}");
    assert!(jwks.len() < 2_000, "{} characters", jwks.len());

    let auth = checked.about("auth method").unwrap_or_default();
    assert!(auth.starts_with("FAIL auth method"), "{checked}");
    assert!(
        auth.contains(r"\u{1b}[31mclient_secret_basic\r\nok   x"),
        "{auth}"
    );
    assert!(auth.contains("and 4,990 more"), "{auth}");
    assert!(auth.len() < 2_000, "{} characters", auth.len());
    assert_eq!(checked.code, Some(1), "{checked}");
}
