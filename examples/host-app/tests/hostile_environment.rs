//! The host app run as its own process (`host-app --sandbox`) in an environment full of the
//! service's variables, all wrong for it: a builder-made sign-in reads none of them, so
//! members still sign in through the sandbox, JSAPI stays off, the store's password is never
//! printed, and the sign-in rate limit works.

// The helpers are test code too: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ORIGIN, RETRY_AFTER};
use support::{allow_and_come_back, client, location, start_sign_in};

/// The service's variables as a host process might have them, for its own purposes or by
/// mistake: each would break or reconfigure a sign-in that read the environment.
const HOSTILE: &[(&str, &str)] = &[
    ("BIND", "localhost:3000"),
    ("PUBLIC_ORIGIN", "https://other.example"),
    ("RATE_LIMIT", "abc"),
    ("LINKEDIN_API_KEY", "hostile-key"),
    ("LINKEDIN_SECRET_KEY", "hostile-secret"),
    // A password with an `@` in it, which a careless parser splits at.
    ("SESSION_STORE", "redis://admin:Qx7k@Vz9w@127.0.0.1:1/0"),
    ("TRUSTED_PROXIES", "0.0.0.0/0"),
    ("LINKEDIN_OIDC_ISSUER", "https://evil.example/oauth"),
    ("SESSION_IDLE_MINUTES", "0"),
    ("TLS", "maybe"),
];

/// The two halves of `SESSION_STORE`'s password: neither may ever be printed.
const PASSWORD_PARTS: [&str; 2] = ["Qx7k", "Vz9w"];

/// How long the host may take to print its origin.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The line the host prints once it listens, before its origin.
const LISTENING: &str = "host-app: listening on ";

/// A running `host-app --sandbox` with [`HOSTILE`] in its environment, killed when dropped
/// (a failed test included).
struct Host {
    child: Child,
    /// The origin it printed.
    origin: String,
    /// Its stdout and stderr so far, line by line.
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Host {
    /// Starts the host and waits for its origin line.
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_host-app"))
            .arg("--sandbox")
            .envs(HOSTILE.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let (origin_tx, origin_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let readers = vec![
            collect(stdout, output.clone(), Some(origin_tx)),
            collect(stderr, output.clone(), None),
        ];
        let mut host = Self {
            child,
            origin: String::new(),
            output,
            readers,
        };
        // Until here, a panic would leave the child running; from here on `host` kills it.
        match origin_rx.recv_timeout(START_TIMEOUT) {
            Ok(origin) => host.origin = origin,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Its stdout closed without the line: it exited.
                let status = host.child.wait().unwrap();
                let output = host.finish_output();
                panic!(
                    "host-app --sandbox exited ({status}) before listening; it printed:\n{output}"
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "host-app --sandbox printed no origin within {START_TIMEOUT:?}; so far:\n{}",
                host.output.lock().unwrap()
            ),
        }
        host
    }

    /// Stops the host and returns everything it printed.
    fn finish_output(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        self.output.lock().unwrap().clone()
    }

    /// Stops the host, and checks that nothing it printed holds the store's password.
    fn finish(mut self) {
        let output = self.finish_output();
        for part in PASSWORD_PARTS {
            assert!(!output.contains(part), "{part} printed:\n{output}");
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line into `output` on a thread of its own; the first origin line
/// goes to `origin`, when given.
fn collect(
    stream: impl Read + Send + 'static,
    output: Arc<Mutex<String>>,
    mut origin: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(found) = line.strip_prefix(LISTENING)
                && let Some(origin) = origin.take()
            {
                let _ = origin.send(found.trim().to_owned());
            }
            let mut output = output.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    })
}

#[tokio::test]
async fn a_member_signs_in_through_the_sandbox_whatever_the_environment_says() {
    let host = Host::start();
    let origin = host.origin.clone();
    assert!(origin.starts_with("http://127.0.0.1:"), "{origin}");
    let http = client();

    let start = start_sign_in(&http, &origin).await;
    let authorization = location(&start);
    // To the host's own sandbox, and back to its own callback: not to `PUBLIC_ORIGIN`'s
    // site nor `LINKEDIN_OIDC_ISSUER`'s.
    assert!(
        authorization.starts_with(&format!("{origin}/sandbox/oauth/v2/authorization")),
        "{authorization}"
    );
    for elsewhere in ["other.example", "evil.example"] {
        assert!(!authorization.contains(elsewhere), "{authorization}");
    }

    allow_and_come_back(&http, &authorization, &origin).await;
    let private = http.get(format!("{origin}/private")).send().await.unwrap();
    assert_eq!(private.status(), StatusCode::OK);
    assert_eq!(private.text().await.unwrap(), "Hello, Ada Lovelace");
    host.finish();
}

#[tokio::test]
async fn the_hostile_jsapi_key_does_not_turn_the_cookie_exchange_on() {
    let host = Host::start();
    let origin = host.origin.clone();
    let exchange = client()
        .post(format!("{origin}/token-exchange"))
        .header(ORIGIN, &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(exchange.status(), StatusCode::NOT_FOUND);
    let body = exchange.text().await.unwrap();
    assert!(
        body.contains("\"error\":\"jsapi_not_configured\""),
        "{body}"
    );
    host.finish();
}

#[tokio::test]
async fn the_sign_in_rate_limit_works_with_the_host_serving_client_addresses() {
    let host = Host::start();
    let origin = host.origin.clone();
    let http = client();
    // The default is a burst of 20, then 2 a second, per client. Each request claims another
    // client in `X-Forwarded-For`: with the hostile `TRUSTED_PROXIES=0.0.0.0/0` read, each
    // would count apart and none would be refused.
    let mut refused = Vec::new();
    for i in 0..40 {
        let response = http
            .get(format!("{origin}/auth/linkedin"))
            .header("x-forwarded-for", format!("203.0.113.{}", i + 1))
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::FOUND => {}
            StatusCode::TOO_MANY_REQUESTS => refused.push(response),
            other => panic!("request {i}: {other}: {}", response.text().await.unwrap()),
        }
    }
    assert!(!refused.is_empty(), "40 quick sign-ins, none refused");
    for response in refused {
        let retry_after: u64 = response.headers()[RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry_after >= 1);
        assert!(response.text().await.unwrap().contains("rate_limited"));
    }
    host.finish();
}
