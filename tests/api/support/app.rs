//! A real server over HTTPS on a random port (built by the same `Server::build` as `main`),
//! with a cookie-keeping client that trusts its certificate, and the JSAPI cookie as the
//! sandbox's script would write it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use linkedin_token_exchange::Secret;
use linkedin_token_exchange::server::Server;
use linkedin_token_exchange::server::config::{Config, StoreUrl};
use reqwest::cookie::{CookieStore, Jar};
use serde_json::Value;
use sha1::Sha1;
use tempfile::TempDir;
use tokio::sync::oneshot;

use super::upstream::FakeUpstream;
use url::Url;

pub const API_KEY: &str = "testAppKey";
pub const SECRET_KEY: &str = "test-secret-Kq93";
/// The session key of every test app (base64 of 32 bytes), so that instances share it.
pub const SESSION_KEY: &str = "dGVzdC1zZXNzaW9uLWtleS0wMTIzNDU2Nzg5YWJjZGU=";

/// A running server and a browser-like client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The metrics listener, when the config sets `METRICS_BIND`.
    pub metrics: Option<SocketAddr>,
    /// The redirect listener, when the config sets `HTTP_REDIRECT_BIND`.
    pub redirect: Option<SocketAddr>,
    pub base: String,
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    pub dir: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A configuration for tests: port 0, certificates in a temp dir, memory sessions, the
/// sandbox with a known key pair.
pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config::defaults();
    config.listen.bind = "127.0.0.1:0".parse().unwrap();
    config.listen.tls_cert = dir.path().join("cert.pem");
    config.listen.tls_key = dir.path().join("key.pem");
    super::dev_pair(&config.listen.tls_cert, &config.listen.tls_key);
    config.sessions.store = StoreUrl::Memory;
    config.sessions.keys = Some(Secret::new(SESSION_KEY));
    config.sessions.key_file = dir.path().join("session.key");
    config.linkedin.api_key = Some(API_KEY.into());
    config.linkedin.secret_key = Some(Secret::new(SECRET_KEY));
    config.linkedin.sandbox = Some(true);
    config.limits.upstream_timeout_ms = 5_000;
    config
}

/// The sandbox app with default test settings.
pub async fn spawn_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = test_config(&dir);
    TestApp::start(config, dir).await
}

/// The app in real mode, pointed at `upstream` (a plain-HTTP mock on 127.0.0.1).
pub async fn spawn_real_app(upstream: &FakeUpstream) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    upstream.configure(&mut config);
    TestApp::start(config, dir).await
}

/// A browser with the cookie jar `jar`, trusting the certificate in `dir`.
pub fn trusting_client(dir: &TempDir, jar: Arc<Jar>) -> reqwest::Client {
    super::client::trusting(&dir.path().join("cert.pem"))
        .cookie_provider(jar)
        .build()
        .unwrap()
}

/// A client that speaks HTTP/1.1 only (the default one negotiates HTTP/2).
pub fn http1_client(dir: &TempDir) -> reqwest::Client {
    super::client::trusting(&dir.path().join("cert.pem"))
        .http1_only()
        .build()
        .unwrap()
}

impl TestApp {
    /// Starts a server with `config`; `dir` holds its certificate (and anything else).
    pub async fn start(config: Config, dir: Arc<TempDir>) -> TestApp {
        let server = Server::build(&config).await.expect("server starts");
        let addr = server.local_addr();
        let (metrics, redirect) = (server.metrics_addr(), server.redirect_addr());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        let jar = Arc::new(Jar::default());
        let client = trusting_client(&dir, jar.clone());
        TestApp {
            addr,
            metrics,
            redirect,
            base: format!("https://localhost:{}", addr.port()),
            client,
            jar,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A second browser: its own cookie jar.
    pub fn new_browser(&self) -> (reqwest::Client, Arc<Jar>) {
        let jar = Arc::new(Jar::default());
        (trusting_client(&self.dir, jar.clone()), jar)
    }

    /// Signs `member` in at the sandbox: the cookie payload it answers.
    pub async fn authorize_payload(&self, member: &str) -> Value {
        self.client
            .post(self.url("/sandbox/oauth2/authorize"))
            .form(&[("api_key", API_KEY), ("member_id", member)])
            .fetch_json()
            .await
    }

    /// Signs `member` in at the sandbox and returns the cookie value, as the JSAPI writes it.
    pub async fn authorize(&self, member: &str) -> String {
        encode_cookie(&self.authorize_payload(member).await.to_string())
    }

    /// Puts the JSAPI cookie for `member` into the default browser, as the JSAPI would.
    pub async fn sign_in(&self, member: &str) {
        let value = self.authorize(member).await;
        self.set_jsapi_cookie(&self.jar, &value);
    }

    pub fn set_jsapi_cookie(&self, jar: &Jar, value: &str) {
        let url = Url::parse(&self.base).unwrap();
        jar.add_cookie_str(
            &format!("linkedin_oauth_{API_KEY}={value}; Path=/; Secure"),
            &url,
        );
    }

    /// A same-origin POST from the default browser.
    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.post_from(&self.client, path).await
    }

    /// A same-origin POST from `browser`.
    pub async fn post_from(&self, browser: &reqwest::Client, path: &str) -> reqwest::Response {
        browser
            .post(self.url(path))
            .header("Origin", &self.base)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// `POST /token-exchange`, answered as (status, JSON).
    pub async fn exchange(&self) -> (u16, Value) {
        json_of(self.post("/token-exchange").await).await
    }

    pub async fn session(&self) -> Value {
        self.get("/session").await.json().await.unwrap()
    }

    /// `GET /session` from another browser that holds session id `id`.
    pub async fn session_with_id(&self, id: &str) -> Value {
        let (browser, jar) = self.new_browser();
        jar.add_cookie_str(
            &format!("__Host-lte_session={id}; Path=/; Secure"),
            &Url::parse(&self.base).unwrap(),
        );
        browser.get(self.url("/session")).fetch_json().await
    }

    /// The session id the default browser holds.
    pub fn session_id(&self) -> Option<String> {
        session_id_in(&self.jar, &self.base)
    }

    /// The sandbox's counters.
    pub async fn sandbox_stats(&self) -> Value {
        self.get("/sandbox/stats").await.json().await.unwrap()
    }
}

/// The session cookie a response sets (`__Host-lte_session=…; Flags`).
pub fn session_set_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-lte_session="))
        .expect("a session cookie is set")
}

/// Sends a request and reads its JSON answer.
pub trait FetchJson {
    fn fetch_json(self) -> impl std::future::Future<Output = Value>;
    /// The answer's body as text, whatever its status.
    fn fetch_text(self) -> impl std::future::Future<Output = String>;
}

impl FetchJson for reqwest::RequestBuilder {
    async fn fetch_json(self) -> Value {
        self.send().await.unwrap().json().await.unwrap()
    }

    async fn fetch_text(self) -> String {
        self.send().await.unwrap().text().await.unwrap()
    }
}

pub fn session_id_in(jar: &Jar, base: &str) -> Option<String> {
    let header = jar.cookies(&Url::parse(base).unwrap())?;
    header
        .to_str()
        .unwrap()
        .split("; ")
        .find_map(|c| c.strip_prefix("__Host-lte_session=").map(str::to_owned))
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

/// Asserts that `answer` (a status and a JSON body, as [`json_of`] gives them) is `status`
/// with the error code `error`.
#[track_caller]
pub fn assert_error(answer: (u16, Value), status: u16, error: &str) {
    let (got, body) = answer;
    assert_eq!(
        (got, body["error"].as_str()),
        (status, Some(error)),
        "{body}"
    );
}

/// `encodeURIComponent`, as the JSAPI applied it to the cookie's JSON.
pub fn encode_cookie(json: &str) -> String {
    const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    percent_encoding::utf8_percent_encode(json, COMPONENT).to_string()
}

/// A cookie as LinkedIn would sign it for this test app (for real-mode tests).
pub fn signed_cookie(access_token: &str, member_id: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(access_token.as_bytes());
    mac.update(member_id.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let json = serde_json::json!({
        "signature_method": "HMAC-SHA1",
        "signature_order": ["access_token", "member_id"],
        "access_token": access_token,
        "signature": signature,
        "member_id": member_id,
        "signature_version": 1,
    });
    encode_cookie(&json.to_string())
}

/// A raw TLS connection to `addr` that trusts the certificate in `dir` and offers only `alpn`
/// (`b"http/1.1"` or `b"h2"`): for tests that write requests by hand.
pub async fn raw_tls(
    dir: &TempDir,
    addr: SocketAddr,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    raw_tls_trusting(&dir.path().join("cert.pem"), addr, alpn).await
}

/// A raw TLS connection to `addr`, as `localhost`, trusting only the certificate in the PEM
/// file `cert` and offering only `alpn`.
pub async fn raw_tls_trusting(
    cert: &std::path::Path,
    addr: SocketAddr,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    linkedin_token_exchange::server::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let handshake = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        tcp,
    );
    tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .expect("the TLS handshake completes at once")
        .unwrap()
}
