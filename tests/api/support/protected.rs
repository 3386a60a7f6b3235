//! The app a proxy protects, written as an app behind `deploy/nginx.conf` or
//! `deploy/Caddyfile` would be: plain HTTP on a random port of 127.0.0.1, trusting the
//! `X-Auth-Request-*` headers the proxy sets, and verifying `X-Auth-Request-Assertion` itself
//! with the `jsonwebtoken` crate (ES256) against the keys the service publishes at
//! `/.well-known/jwks.json`, fetched through the proxy as any app would.
//!
//! Every path answers JSON with what the app was told: the method, path and body, the
//! member's headers, and `assertion` (`null` without one; else `verified`, and the `claims` or the
//! `error`). `/app/ws` and `/app/staff/ws` are WebSocket echoes: the first message is that
//! same JSON, then every message comes back as it was sent.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::get;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

/// Whom the app believes, set once the proxy's origin is known.
struct Trust {
    /// `<issuer>/.well-known/jwks.json`.
    jwks_url: String,
    issuer: String,
    audience: String,
    /// A client that reaches `jwks_url` (trusting the proxy's certificate).
    client: reqwest::Client,
}

type Shared = Arc<OnceLock<Trust>>;

/// The running app; stopped when dropped.
pub struct ProtectedApp {
    pub addr: SocketAddr,
    trust: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl ProtectedApp {
    /// Starts the app on a free port of 127.0.0.1. Until [`ProtectedApp::trust`] is called,
    /// no assertion verifies.
    pub async fn start() -> ProtectedApp {
        let trust: Shared = Arc::default();
        let app = axum::Router::new()
            .route("/app/ws", get(websocket))
            .route("/app/staff/ws", get(websocket))
            .fallback(echo)
            .with_state(trust.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ProtectedApp { addr, trust, task }
    }

    /// Verifies assertions from now on: issued by `issuer` (whose keys are at
    /// `<issuer>/.well-known/jwks.json`, fetched with `client`), meant for `audience`.
    pub fn trust(&self, issuer: &str, audience: &str, client: reqwest::Client) {
        let trust = Trust {
            jwks_url: format!("{issuer}/.well-known/jwks.json"),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            client,
        };
        assert!(self.trust.set(trust).is_ok(), "trusted once");
    }
}

impl Drop for ProtectedApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the app was told, as JSON.
async fn seen(
    trust: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Value {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let assertion = match get("x-auth-request-assertion") {
        None => Value::Null,
        Some(token) => match verify(trust.get(), token).await {
            Ok(claims) => json!({"verified": true, "claims": claims}),
            Err(error) => json!({"verified": false, "error": error}),
        },
    };
    json!({
        "method": method.as_str(),
        "path": uri.to_string(),
        "user": get("x-auth-request-user"),
        "email": get("x-auth-request-email"),
        "name": get("x-auth-request-name"),
        "flow": get("x-auth-request-flow"),
        "access_token": get("x-auth-request-access-token"),
        "assertion": assertion,
        "body": String::from_utf8_lossy(body),
    })
}

/// The assertion's claims, when `token` is an ES256 JWS signed by a key the issuer
/// publishes under the token's `kid`, from that issuer, for this audience, unexpired;
/// otherwise why not.
async fn verify(trust: Option<&Trust>, token: &str) -> Result<Value, String> {
    let trust = trust.ok_or("the app trusts no issuer yet")?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
    let kid = header.kid.ok_or("no kid in the header")?;
    let keys: JwkSet = trust
        .client
        .get(&trust.jwks_url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("{}: {e}", trust.jwks_url))?
        .json()
        .await
        .map_err(|e| format!("{}: {e}", trust.jwks_url))?;
    let jwk = keys.find(&kid).ok_or(format!("no published key {kid}"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[&trust.issuer]);
    validation.set_audience(&[&trust.audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

async fn echo(
    State(trust): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    Json(seen(&trust, &method, &uri, &headers, &body).await)
}

async fn websocket(
    State(trust): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let hello = seen(&trust, &method, &uri, &headers, b"").await.to_string();
    upgrade.on_upgrade(|socket| echo_socket(socket, hello))
}

/// Sends `hello`, then every text or binary message back, until the client closes.
async fn echo_socket(mut socket: WebSocket, hello: String) {
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        let back = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if socket.send(back).await.is_err() {
            break;
        }
    }
}
