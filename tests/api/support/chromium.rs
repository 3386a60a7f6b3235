//! Headless Chromium over WebDriver, for the tests that use the pages as a person does
//! (`browser`, `account::browser`): chromedriver in a process group of its own (killed with
//! Chromium when the test ends, also when it fails), a browser session with steps that fail
//! naming what they did and the page's state, and the sandbox app on its loopback origin.

use std::fmt::Display;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use linkedin_token_exchange::server::config::Config;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::servers::skip_or_fail;
use super::{TestApp, test_config};

/// Debian's chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one step of the flow may take in the browser.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long chromedriver and Chromium may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The sandbox app on its loopback origin and Chromium to drive it, or `None` after saying
/// that `test` is skipped: `SKIP_BROWSER_TESTS=1`, or chromedriver or Chromium missing.
pub async fn start_or_skip(test: &str) -> Option<(TestApp, Browser)> {
    start_or_skip_with(test, |_| {}).await
}

/// [`start_or_skip`], with `change` made to the app's configuration.
pub async fn start_or_skip_with(
    test: &str,
    change: impl FnOnce(&mut Config),
) -> Option<(TestApp, Browser)> {
    if std::env::var("SKIP_BROWSER_TESTS").is_ok_and(|v| v == "1") {
        skip_or_fail(test, "SKIP_BROWSER_TESTS=1");
        return None;
    }
    if let Some(missing) = [CHROMEDRIVER, CHROMIUM]
        .into_iter()
        .find(|binary| !Path::new(binary).exists())
    {
        skip_or_fail(
            test,
            &format!(
                "{missing} is missing: install Debian's `chromium` and `chromium-driver` packages \
                 (`apt-get install chromium chromium-driver`, as .ci/run does)"
            ),
        );
        return None;
    }
    let app = spawn_on_loopback_origin(change).await;
    let browser = Browser::launch(&app).await;
    Some((app, browser))
}

/// The sandbox app on `https://127.0.0.1:PORT`, its only public origin (as a person who
/// opens the address the start-up log names), with metrics on a listener of their own.
/// `change` is made to its configuration.
pub async fn spawn_on_loopback_origin(change: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let port = super::free_port();
    let mut config = test_config(&dir);
    config.listen.bind = format!("127.0.0.1:{port}").parse().unwrap();
    config.listen.public_origin = Some(format!("https://127.0.0.1:{port}"));
    config.listen.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    change(&mut config);
    let mut app = TestApp::start(config, dir).await;
    app.base = format!("https://127.0.0.1:{port}");
    app
}

/// chromedriver on a free port, in its own process group with the Chromium it starts; the
/// whole group is killed on drop, also when the test fails.
struct Chromedriver {
    child: Child,
    url: String,
    log: std::path::PathBuf,
    /// Chromium's fresh profile (and chromedriver's log), removed after the kill.
    dir: TempDir,
}

impl Chromedriver {
    async fn start(app: &TestApp) -> Chromedriver {
        use std::os::unix::process::CommandExt;

        let port = super::free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("chromedriver.log");
        let out = File::create(&log).unwrap();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let mut driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!("chromedriver exited at start ({exit}): {}", driver.output());
            }
            let status = app
                .client
                .get(format!("{}/status", driver.url))
                .send()
                .await;
            if let Ok(response) = status
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {} within {START_TIMEOUT:?}: {}",
                driver.url,
                driver.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // chromedriver leads its process group; Chromium and its helpers are in it too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session in headless Chromium, with the chromedriver that runs it.
pub struct Browser {
    /// The WebDriver client, for the commands no step here wraps.
    pub client: Client,
    /// Killed (with Chromium) when the browser is dropped or closed.
    driver: Chromedriver,
    /// When chromedriver was started.
    started: Instant,
}

impl Browser {
    /// chromedriver, and a Chromium session in it (which accepts the test server's
    /// self-signed certificate); `app`'s client polls chromedriver until it is ready.
    pub async fn launch(app: &TestApp) -> Browser {
        let started = Instant::now();
        let driver = Chromedriver::start(app).await;
        let profile = driver.dir.path().join("profile");
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        // The server's certificate is self-signed: accepted for this session only.
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let client = match tokio::time::timeout(START_TIMEOUT, builder.connect(&driver.url)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!(
                "cannot open a Chromium session through chromedriver: {e}\n{}",
                driver.output()
            ),
            Err(_) => panic!(
                "no Chromium session within {START_TIMEOUT:?}\n{}",
                driver.output()
            ),
        };
        Browser {
            client,
            driver,
            started,
        }
    }

    /// Opens `url`, as step `what`.
    pub async fn goto(&self, what: &str, url: &str) {
        self.step(what, self.client.goto(url).await).await;
    }

    /// The JSAPI's "Sign in with LinkedIn" button, once the JSAPI has rendered it.
    pub async fn jsapi_button(&self, what: &str) -> Element {
        self.step(
            what,
            self.client
                .wait()
                .at_most(STEP_TIMEOUT)
                .for_element(Locator::Css("button.in-login"))
                .await,
        )
        .await
    }

    /// Reloads the page.
    pub async fn reload(&self) {
        self.step("reload the page", self.client.refresh().await)
            .await;
    }

    /// Clicks `element`, as step `what`.
    pub async fn click(&self, what: &str, element: Element) {
        self.step(what, element.click().await).await;
    }

    /// The value of the script `body` (synchronous, ending in `return`), as step `what`.
    pub async fn execute(&self, what: &str, body: &str) -> Value {
        self.step(what, self.client.execute(body, vec![]).await)
            .await
    }

    /// The console since the last call, which must hold no Content-Security-Policy violation
    /// (`policy` names the policy in the failure message).
    pub async fn console_without_csp_violations(&self, policy: &str) -> Vec<String> {
        let console = self.console().await.expect("the browser console");
        let violations: Vec<_> = console
            .iter()
            .filter(|line| line.contains("Content Security Policy") || line.contains("Refused to"))
            .collect();
        assert!(
            violations.is_empty(),
            "CSP violations:\n{violations:#?}\nunder {policy}"
        );
        console
    }

    /// The element with id `id`, found as step `what`.
    pub async fn find(&self, what: &str, id: &str) -> Element {
        self.step(what, self.client.find(Locator::Id(id)).await)
            .await
    }

    /// The first element that the CSS `selector` matches, found as step `what`.
    pub async fn find_css(&self, what: &str, selector: &str) -> Element {
        self.step(what, self.client.find(Locator::Css(selector)).await)
            .await
    }

    /// The result of a browser command, or a failure naming `what` with the page's state.
    pub async fn step<T>(&self, what: &str, result: Result<T, CmdError>) -> T {
        match result {
            Ok(value) => value,
            Err(e) => panic!(
                "browser step failed: {what}: {e}\n{}",
                self.diagnostics().await
            ),
        }
    }

    /// Polls `condition` (a script body returning a boolean) until it holds.
    /// Stops early if the page shows an error (`#status` with `data-state="error"`).
    pub async fn wait_for(&self, what: &str, condition: &str) {
        let script = format!(
            "const met = (() => {{ {condition} }})();
             const s = document.getElementById('status');
             return {{ met: met === true, error: !!s && s.dataset.state === 'error' }};"
        );
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let last = self.client.execute(&script, vec![]).await;
            if let Ok(check) = &last {
                if check["met"] == true {
                    return;
                }
                if check["error"] == true {
                    panic!(
                        "the page shows an error while waiting for {what}\n{}",
                        self.diagnostics().await
                    );
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {STEP_TIMEOUT:?} waiting for {what} (last check: {last:?})\n{}",
                    self.diagnostics().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `body` as an async script; it answers by calling `done(value)`.
    pub async fn execute_async(&self, what: &str, body: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1];\n{body}");
        let value = self
            .step(what, self.client.execute_async(&script, vec![]).await)
            .await;
        if value.get("error").is_some() {
            panic!("{what}: {value}\n{}", self.diagnostics().await);
        }
        value
    }

    /// `GET path` from the page (same origin, its cookies), answered as JSON.
    pub async fn fetch_json(&self, path: &str) -> Value {
        let body = format!(
            "fetch({path:?}, {{ credentials: 'same-origin' }})
               .then(r => r.text().then(text => {{
                 try {{ done({{ status: r.status, body: JSON.parse(text) }}); }}
                 catch (e) {{ done({{ error: 'not JSON (' + r.status + '): ' + text }}); }}
               }}), e => done({{ error: String(e) }}));"
        );
        let answer = self
            .execute_async(&format!("fetch {path} from the browser"), &body)
            .await;
        assert_eq!(
            answer["status"], 200,
            "GET {path} from the browser: {answer}"
        );
        answer["body"].clone()
    }

    /// The text of the element with id `id`.
    pub async fn text_of(&self, id: &str) -> String {
        let element = self
            .step(
                &format!("find #{id}"),
                self.client.find(Locator::Id(id)).await,
            )
            .await;
        self.step(&format!("read #{id}"), element.text().await)
            .await
    }

    /// The page's URL, `#status` and console, for failure messages.
    async fn diagnostics(&self) -> String {
        let url = describe(self.client.current_url().await.map(|u| u.to_string()));
        let status = describe(
            self.client
                .execute(
                    "const s = document.getElementById('status');
                     return s ? s.dataset.state + ': ' + s.textContent : '(no #status)';",
                    vec![],
                )
                .await,
        );
        let console = match self.console().await {
            Ok(lines) if lines.is_empty() => "(empty)".to_owned(),
            Ok(lines) => lines.join("\n"),
            Err(e) => format!("(unavailable: {e})"),
        };
        format!("page: {url}\n#status: {status}\nbrowser console:\n{console}")
    }

    /// The browser console since the last call, one `  [LEVEL] message` a line.
    pub async fn console(&self) -> Result<Vec<String>, String> {
        match self.client.issue_cmd(BrowserLog).await {
            Ok(Value::Array(entries)) => Ok(entries
                .iter()
                .map(|e| {
                    format!(
                        "  [{}] {}",
                        e["level"].as_str().unwrap_or("?"),
                        e["message"].as_str().unwrap_or("?")
                    )
                })
                .collect()),
            Ok(other) => Ok(vec![other.to_string()]),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Ends the session, kills chromedriver and Chromium, and says how long `what` took.
    pub async fn close(self, what: &str) {
        if let Err(e) = self.client.close().await {
            eprintln!("closing the browser session failed (chromedriver is killed anyway): {e}");
        }
        drop(self.driver);
        eprintln!("{what} took {:.2?}", self.started.elapsed());
    }
}

fn describe<T: Into<Value>, E: Display>(result: Result<T, E>) -> String {
    match result.map(Into::into) {
        Ok(Value::String(text)) => text,
        Ok(value) => value.to_string(),
        Err(e) => format!("(unavailable: {e})"),
    }
}

/// chromedriver's log endpoint: the browser console since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (Method, Option<String>) {
        (Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}
