//! `linkedin-token-exchange check-provider`, the binary as a person runs it before going
//! live: against the observed-LinkedIn test provider, against one whose discovery names
//! another issuer, and against a running sandbox over HTTPS.

use std::process::Output;
use std::time::Duration;

use serde_json::json;

use crate::support::oidc_provider::{Profile, Provider};
use crate::support::{Served, binary};

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
