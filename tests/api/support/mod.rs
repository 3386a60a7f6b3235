//! The shared test harness, one place for what several test modules use:
//! - [`app`]: a real server over HTTPS on a random port (built by the same `Server::build` as
//!   `main`), driven by a cookie-keeping client;
//! - [`chromium`]: headless Chromium over WebDriver, for the tests that use the pages;
//! - [`client`]: the one way to build an HTTPS client that trusts a test server;
//! - [`upstream`]: a plain-HTTP OAuth 1.0a upstream that misbehaves on purpose;
//! - [`linkedin_api`]: a plain-HTTP LinkedIn API (and exchange) that records each call and
//!   answers as told, revoked tokens with 401;
//! - [`oidc_provider`]: the fake OpenID Connect provider (documented and observed-LinkedIn
//!   profiles) and the rig that signs in against it;
//! - [`sandbox_rp`]: a relying party of the sandbox's OpenID Connect provider, without the
//!   service's client;
//! - [`servers`]: Redis, PostgreSQL and a tmpfs of the tests' own, to break on purpose;
//! - [`stores`]: the session stores a suite runs against, one function each;
//! - [`device`]: one of a member's browsers, for tests that drive several at once;
//! - [`nginx`]: Debian's nginx running the repository's `deploy/nginx.conf`;
//! - [`caddy`]: Debian's caddy running the repository's `deploy/Caddyfile`;
//! - [`protected`]: the app behind either proxy, which verifies the signed identity itself
//!   and echoes WebSockets;
//! - [`redis`]: the fleet's Redis deployments (a Sentinel set, a Cluster);
//! - here: the service's binary as a person runs it (a one-off command, or a server), a
//!   scrape of its metrics, waiting on time and on a condition, and what a withdrawal says.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::cookie::Jar;
use tempfile::TempDir;

pub mod app;
pub mod caddy;
pub mod chromium;
pub mod client;
pub mod device;
pub mod linkedin_api;
pub mod nginx;
pub mod oidc_provider;
pub mod protected;
pub mod redis;
pub mod sandbox_rp;
pub mod servers;
pub mod stores;
pub mod upstream;

pub use app::*;
pub use upstream::*;

/// A port of 127.0.0.1 that was free a moment ago (the kernel's choice for port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap()
}

/// A development pair at `cert` and `key` (as the service makes its own), unless either is
/// there: the service generates one only at its default paths, so a test that names other
/// paths brings the pair.
pub fn dev_pair(cert: &Path, key: &Path) {
    if !cert.exists() && !key.exists() {
        let names = ["localhost", "127.0.0.1", "::1"]
            .map(str::to_owned)
            .to_vec();
        let pair = rcgen::generate_simple_self_signed(names).unwrap();
        std::fs::write(cert, pair.cert.pem()).unwrap();
        std::fs::write(key, pair.signing_key.serialize_pem()).unwrap();
    }
}

/// The service's binary, with no inherited environment and `dir` as its working directory
/// (so that no `.env` is read but one the test writes there).
pub fn binary(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_linkedin-token-exchange"));
    command.env_clear().current_dir(dir);
    command
}

/// The service's binary, serving on a free port of 127.0.0.1 with its own certificate, its
/// output in a file; killed when dropped.
pub struct Served {
    child: Child,
    pub dir: TempDir,
    /// `https://HOST:PORT`, as `PUBLIC_ORIGIN` says.
    pub origin: String,
}

impl Served {
    /// Starts the binary with `env` on top of a free port, a certificate in its directory,
    /// memory sessions and `PUBLIC_ORIGIN=https://HOST:PORT`, and waits until `ready` (a
    /// path) answers 200.
    pub async fn start(host: &str, env: &[(&str, &str)], ready: &str) -> Served {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let origin = format!("https://{host}:{port}");
        let log = File::create(dir.path().join("server.log")).unwrap();
        dev_pair(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
        let child = binary(dir.path())
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("PUBLIC_ORIGIN", &origin)
            .env("TLS_CERT", dir.path().join("cert.pem"))
            .env("TLS_KEY", dir.path().join("key.pem"))
            .env("SESSION_STORE", "memory")
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let served = Served { child, dir, origin };
        let started = Instant::now();
        loop {
            if served.dir.path().join("cert.pem").exists()
                && let Ok(response) = served.client(None).get(served.url(ready)).send().await
                && response.status() == 200
            {
                return served;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not start: {}",
                served.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// A browser that trusts the server's certificate and follows no redirects.
    pub fn client(&self, jar: Option<Arc<Jar>>) -> reqwest::Client {
        let mut builder =
            client::trusting(&self.cert()).redirect(reqwest::redirect::Policy::none());
        if let Some(jar) = jar {
            builder = builder.cookie_provider(jar);
        }
        builder.build().unwrap()
    }

    /// Everything the server printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The metrics listener at `addr`, scraped: the text and its parse.
pub async fn scrape(addr: SocketAddr) -> (String, prometheus_parse::Scrape) {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the metrics parse as Prometheus text");
    (text, scrape)
}

/// The value of sample `name` with exactly `labels`, in a parsed scrape.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                && s.labels.iter().count() == labels.len()
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// Polls `check` every 100 ms until it holds, for at most `within`: how long it took.
pub async fn eventually(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sleeps until the Unix time `at` plus `margin` (at once when that has passed).
pub async fn sleep_until(at: i64, margin: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let target = Duration::from_secs(u64::try_from(at).unwrap()) + margin;
    if let Some(left) = target.checked_sub(now) {
        tokio::time::sleep(left).await;
    }
}

/// The error code of a JSON error answer.
pub fn error_code(body: &serde_json::Value) -> &str {
    body["error"].as_str().unwrap_or("(no code)")
}

/// What `/session` says to a browser whose session ended because LinkedIn access was withdrawn.
pub fn withdrawn_session() -> serde_json::Value {
    serde_json::json!({"connected": false, "ended": "linkedin_access_withdrawn"})
}

/// Asserts that a JSON error answer (`status`, `body`) is `expected` (status and code), its
/// message containing `says`.
pub fn assert_json_error(status: u16, body: &serde_json::Value, expected: (u16, &str), says: &str) {
    assert_eq!((status, error_code(body)), expected, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains(says)),
        "{body}"
    );
}

/// Asserts that an answer (`status`, `body`) is the withdrawal: 401
/// `linkedin_access_withdrawn`, its message saying so.
pub fn assert_withdrawn(status: u16, body: &serde_json::Value) {
    assert_json_error(
        status,
        body,
        (401, "linkedin_access_withdrawn"),
        "LinkedIn access",
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("LinkedIn access was withdrawn")),
        "{body}"
    );
}

/// A server's binary: the one `variable` names, else Debian's at `debian`, else the one of
/// that name on the `PATH`; `Err` says how to install it (Debian's `package`).
pub fn installed(variable: &str, debian: &str, package: &str) -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var(variable) {
        return Ok(PathBuf::from(path));
    }
    let debian = PathBuf::from(debian);
    if debian.exists() {
        return Ok(debian);
    }
    let name = debian.file_name().unwrap_or_default().to_owned();
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&name))
        .find(|candidate| candidate.exists())
        .ok_or_else(|| {
            format!(
                "{} is not installed (apt-get install {package})",
                name.to_string_lossy()
            )
        })
}
