//! `linkedin-token-exchange sandbox`: the emulated LinkedIn alone, as an app in another
//! language runs its tests against it. A Python client (`tests/clients/sandbox_client.py`,
//! `requests`, `pyjwt`, `requests-oauthlib`) signs in with what the command printed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::servers::skip_or_fail;
use crate::support::{FetchJson, binary, free_port};

/// The `sandbox` command, running; killed when dropped.
struct Standalone {
    child: Child,
    dir: TempDir,
    /// The `KEY=VALUE` lines it printed, and its comment lines.
    printed: Vec<String>,
}

impl Standalone {
    fn start(env: &[(&str, &str)]) -> Standalone {
        let dir = tempfile::tempdir().unwrap();
        let mut child = binary(dir.path())
            .arg("sandbox")
            .env("BIND", format!("127.0.0.1:{}", free_port()))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut printed = Vec::new();
        for line in stdout.lines() {
            let line = line.unwrap();
            let last = line.starts_with("UPSTREAM_CA_CERT=");
            printed.push(line);
            if last {
                break;
            }
        }
        let standalone = Standalone {
            child,
            dir,
            printed,
        };
        assert!(
            standalone
                .printed
                .iter()
                .any(|l| l.starts_with("UPSTREAM_CA_CERT=")),
            "the sandbox printed {:?}; stderr: {}",
            standalone.printed,
            standalone.stderr()
        );
        standalone
    }

    /// The printed variables.
    fn vars(&self) -> HashMap<String, String> {
        self.printed
            .iter()
            .filter_map(|line| line.split_once('='))
            .filter(|(name, _)| !name.starts_with('#'))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// A client trusting the sandbox's certificate, following no redirects.
    fn client(&self) -> reqwest::Client {
        crate::support::client::trusting(std::path::Path::new(&self.vars()["UPSTREAM_CA_CERT"]))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// `https://localhost:PORT/sandbox`.
    fn base(&self) -> String {
        self.vars()["LINKEDIN_API_URL"].clone()
    }

    /// Waits until the sandbox answers its health check.
    async fn ready(&self) {
        let started = Instant::now();
        let origin = self.base().trim_end_matches("/sandbox").to_owned();
        while !self
            .client()
            .get(format!("{origin}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `python3` has what the client imports; otherwise why not.
fn python_client_ready() -> Result<(), String> {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import requests, jwt, requests_oauthlib, cryptography",
        ])
        .output()
        .map_err(|e| format!("python3 cannot run: {e}"))?;
    if probe.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 lacks the client's modules (pip install requests pyjwt cryptography requests-oauthlib): {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ))
    }
}

#[tokio::test]
async fn a_python_client_signs_in_with_openid_connect_and_jsapi_against_the_sandbox_command() {
    if let Err(why) = python_client_ready() {
        return skip_or_fail(
            "a_python_client_signs_in_with_openid_connect_and_jsapi_against_the_sandbox_command",
            &why,
        );
    }
    let sandbox = Standalone::start(&[]);
    sandbox.ready().await;
    let client = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/sandbox_client.py"
    );
    let output = Command::new("python3")
        .arg(client)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .envs(sandbox.vars())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{}\nsandbox: {}",
        String::from_utf8_lossy(&output.stderr),
        sandbox.stderr()
    );
    assert!(stdout.contains("oidc ok: sub="), "{stdout}");
    assert!(stdout.contains("jsapi ok: member=PythonPat"), "{stdout}");
}

#[tokio::test]
async fn the_sandbox_command_prints_a_registration_and_serves_nothing_of_the_service() {
    let sandbox = Standalone::start(&[]);
    sandbox.ready().await;
    let vars = sandbox.vars();
    let base = sandbox.base();
    assert!(base.starts_with("https://localhost:"), "{base}");
    assert_eq!(vars["LINKEDIN_OIDC_ISSUER"], format!("{base}/oauth"));
    assert_eq!(vars["LINKEDIN_JSAPI_URL"], format!("{base}/in.js"));
    for made_up in [
        "LINKEDIN_CLIENT_ID",
        "LINKEDIN_CLIENT_SECRET",
        "LINKEDIN_API_KEY",
        "LINKEDIN_SECRET_KEY",
    ] {
        assert!(vars[made_up].len() >= 8, "{made_up}: {vars:?}");
    }
    assert!(
        sandbox.printed.iter().all(|l| l.starts_with('#')
            || l.split_once('=')
                .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))),
        "stdout carries only KEY=VALUE and comment lines (logs go to stderr): {:?}",
        sandbox.printed
    );
    assert!(sandbox.stderr().contains("standalone sandbox"));

    let client = sandbox.client();
    let origin = base.trim_end_matches("/sandbox");
    for (path, status) in [
        ("/", 200),
        ("/auth/linkedin", 404),
        ("/me", 404),
        ("/sandbox/in.js", 200),
        ("/sandbox/oauth/.well-known/openid-configuration", 200),
        ("/static/app.css", 200),
    ] {
        let answer = client.get(format!("{origin}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), status, "{path}");
    }
    // The JSAPI script runs on the pages of the app under test, another origin.
    let authorize = client
        .post(format!("{base}/oauth2/authorize"))
        .header("origin", "http://localhost:3000")
        .form(&[("api_key", vars["LINKEDIN_API_KEY"].as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(authorize.status(), 200);
    assert_eq!(authorize.headers()["access-control-allow-origin"], "*");
    // It keeps no sessions: nothing but its certificate is written.
    let mut written: Vec<_> = walk(sandbox.dir.path());
    written.sort();
    assert_eq!(
        written,
        [
            "certs/localhost-key.pem",
            "certs/localhost.pem",
            "stderr.log"
        ]
    );
}

#[tokio::test]
async fn the_sandbox_command_takes_the_usual_variables_and_never_prints_a_secret_it_was_given() {
    let callback = "http://127.0.0.1:9/app/callback";
    let sandbox = Standalone::start(&[
        ("LINKEDIN_API_KEY", "myAppKey"),
        ("LINKEDIN_SECRET_KEY", "jsapi-secret-from-env"),
        ("LINKEDIN_CLIENT_ID", "my-client"),
        ("LINKEDIN_CLIENT_SECRET", "client-secret-from-env"),
        ("LINKEDIN_OIDC_REDIRECT_URL", callback),
    ]);
    sandbox.ready().await;
    let vars = sandbox.vars();
    assert_eq!(vars["LINKEDIN_API_KEY"], "myAppKey");
    assert_eq!(vars["LINKEDIN_CLIENT_ID"], "my-client");
    assert_eq!(vars["LINKEDIN_OIDC_REDIRECT_URL"], callback);
    assert!(!vars.contains_key("LINKEDIN_SECRET_KEY"));
    assert!(!vars.contains_key("LINKEDIN_CLIENT_SECRET"));
    let everything = format!("{}\n{}", sandbox.printed.join("\n"), sandbox.stderr());
    assert!(!everything.contains("secret-from-env"), "{everything}");

    // Only the registered redirect URI is sent a code; another loopback one is refused.
    let client = sandbox.client();
    let authorize = |redirect: &str| {
        let url = url::Url::parse_with_params(
            &format!("{}/oauth/v2/authorization", sandbox.base()),
            [
                ("response_type", "code"),
                ("client_id", "my-client"),
                ("redirect_uri", redirect),
                ("scope", "openid profile email"),
                ("state", "s"),
            ],
        )
        .unwrap();
        client.get(url).send()
    };
    assert_eq!(authorize(callback).await.unwrap().status(), 200);
    assert_eq!(
        authorize("http://127.0.0.1:9/other")
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn the_sandbox_commands_root_is_a_page_naming_its_endpoints_and_registration_but_no_secret() {
    let sandbox = Standalone::start(&[]);
    sandbox.ready().await;
    let vars = sandbox.vars();
    let base = sandbox.base();
    let origin = base.trim_end_matches("/sandbox").to_owned();
    let client = sandbox.client();
    let answer = client.get(format!("{origin}/")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        answer.headers()
    );
    let policy = answer.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    let page = answer.text().await.unwrap();
    assert!(
        page.contains(r#"<link rel="stylesheet" href="/static/app.css">"#),
        "{page}"
    );
    let discovery: serde_json::Value = client
        .get(format!("{base}/oauth/.well-known/openid-configuration"))
        .fetch_json()
        .await;
    let issuer = &vars["LINKEDIN_OIDC_ISSUER"];
    for named in [
        // OpenID Connect: where each endpoint is, as discovery says.
        issuer.clone(),
        format!("{issuer}/.well-known/openid-configuration"),
        discovery["authorization_endpoint"]
            .as_str()
            .unwrap()
            .to_owned(),
        discovery["token_endpoint"].as_str().unwrap().to_owned(),
        discovery["jwks_uri"].as_str().unwrap().to_owned(),
        discovery["userinfo_endpoint"].as_str().unwrap().to_owned(),
        // The JSAPI side.
        vars["LINKEDIN_JSAPI_URL"].clone(),
        format!("{base}/oauth2/authorize"),
        vars["LINKEDIN_ACCESS_TOKEN_URL"].clone(),
        format!("{base}/v1/people/~"),
        // The registration: ids, not secrets.
        vars["LINKEDIN_CLIENT_ID"].clone(),
        vars["LINKEDIN_API_KEY"].clone(),
        "any http(s) URL on localhost, 127.0.0.1 or [::1]".to_owned(),
        // How to pick a member, and the consent form's fields for test automation.
        "sandbox_member".to_owned(),
        "member_id".to_owned(),
        r#"decision=allow"#.to_owned(),
        r#"decision=cancel"#.to_owned(),
        "user_cancelled_login".to_owned(),
        "state".to_owned(),
    ] {
        assert!(page.contains(&named), "the page names {named}: {page}");
    }
    for secret in ["LINKEDIN_CLIENT_SECRET", "LINKEDIN_SECRET_KEY"] {
        let value = &vars[secret];
        assert!(value.len() >= 8, "{secret}");
        assert!(!page.contains(value.as_str()), "the page shows {secret}");
    }
}

#[tokio::test]
async fn the_sandbox_commands_root_names_the_registered_redirect_uri_when_one_is_set() {
    let callback = "http://127.0.0.1:9/app/callback";
    let sandbox = Standalone::start(&[
        ("LINKEDIN_CLIENT_ID", "my-client"),
        ("LINKEDIN_CLIENT_SECRET", "client-secret-from-env"),
        ("LINKEDIN_OIDC_REDIRECT_URL", callback),
    ]);
    sandbox.ready().await;
    let origin = sandbox.base().trim_end_matches("/sandbox").to_owned();
    let page = sandbox
        .client()
        .get(format!("{origin}/"))
        .fetch_text()
        .await;
    assert!(page.contains(callback), "{page}");
    assert!(page.contains("my-client"), "{page}");
    assert!(!page.contains("client-secret-from-env"), "{page}");
    assert!(!page.contains("any http(s) URL on localhost"), "{page}");
}

/// The files under `dir`, relative to it.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                found.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    found
}
