//! A plain-HTTP stand-in for LinkedIn's REST API, and its OAuth 1.0a exchange, that records
//! every API call and answers as the test says. Beside `upstream` (the exchange that
//! misbehaves) and `oidc_provider` (the sign-in): this one is the API the member's client and
//! the pass-through call.
//!
//! - `POST /uas/oauth/accessToken` grants `oauth_token=tok-<access>` and
//!   `oauth_token_secret=sec-<access>`, `<access>` being the JSAPI access token exchanged:
//!   two browsers exchanging the same JSAPI cookie hold the same token, as the withdrawal
//!   tests need. Its lifetime is [`FakeApi::set_expires_in`]'s.
//! - Any other path is an API call: recorded, then answered 401 when its token (OAuth 1.0a
//!   `oauth_token`, or `Bearer`) was revoked ([`FakeApi::revoke`], LinkedIn's answer to a
//!   member who removed the app), else as [`Answer`] says.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use linkedin_token_exchange::server::config::Config;
use serde_json::json;
use url::Url;

/// How the fake answers an API call whose token is not revoked.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 JSON describing the call (method, path, query, token, `LinkedIn-Version`), with
    /// `X-RestLi-Id: echo-<n>`.
    Echo,
    /// This status, `Content-Type`, extra headers and body.
    Status {
        status: u16,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Never answers.
    Hang,
}

impl Answer {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Answer {
        Answer::Status {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.to_string(),
        }
    }
}

/// One API call as the fake received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// A header's value, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct ApiState {
    calls: Vec<Seen>,
    answer: Answer,
    revoked: HashSet<String>,
    expires_in: u64,
    exchanges: usize,
}

type Shared = Arc<Mutex<ApiState>>;

/// The fake API on 127.0.0.1.
pub struct FakeApi {
    pub addr: SocketAddr,
    state: Shared,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let state = Arc::new(Mutex::new(ApiState {
            calls: Vec::new(),
            answer: Answer::Echo,
            revoked: HashSet::new(),
            expires_in: 5_183_999,
            exchanges: 0,
        }));
        let app = Router::new()
            .route("/uas/oauth/accessToken", post(exchange))
            .fallback(api_call)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeApi { addr, state }
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    /// The service's REST base is this fake (the rest of `config` as it is).
    pub fn serve_the_api(&self, config: &mut Config) {
        config.linkedin.api_url = Some(self.url(""));
        config.limits.upstream_timeout_ms = 1_000;
    }

    /// Real mode: the JSAPI exchange and the REST base are both this fake.
    pub fn serve_jsapi(&self, config: &mut Config) {
        config.linkedin.sandbox = Some(false);
        config.linkedin.access_token_url = Some(self.url("/uas/oauth/accessToken"));
        self.serve_the_api(config);
    }

    /// How the next API calls are answered.
    pub fn answer(&self, answer: Answer) {
        self.state.lock().unwrap().answer = answer;
    }

    /// LinkedIn no longer accepts `token`: every call with it is answered 401.
    pub fn revoke(&self, token: &str) {
        self.state.lock().unwrap().revoked.insert(token.to_owned());
    }

    /// The lifetime of the tokens the exchange grants from now on, in seconds.
    pub fn set_expires_in(&self, seconds: u64) {
        self.state.lock().unwrap().expires_in = seconds;
    }

    /// The API calls received so far (not the exchanges).
    pub fn calls(&self) -> Vec<Seen> {
        self.state.lock().unwrap().calls.clone()
    }

    /// How many exchanges were granted.
    pub fn exchanges(&self) -> usize {
        self.state.lock().unwrap().exchanges
    }
}

/// The token a call carries: OAuth 1.0a's `oauth_token`, or the bearer token.
pub fn token_of(headers: &HeaderMap) -> Option<String> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    if let Some(bearer) = authorization.strip_prefix("Bearer ") {
        return Some(bearer.to_owned());
    }
    let value = authorization
        .split("oauth_token=\"")
        .nth(1)?
        .split('"')
        .next()?;
    Some(
        percent_encoding::percent_decode_str(value)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

async fn exchange(State(state): State<Shared>, body: Bytes) -> Response {
    let access = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "xoauth_oauth2_access_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let expires_in = {
        let mut state = state.lock().unwrap();
        state.exchanges += 1;
        state.expires_in
    };
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("oauth_token", &format!("tok-{access}"))
        .append_pair("oauth_token_secret", &format!("sec-{access}"))
        .append_pair("oauth_expires_in", &expires_in.to_string())
        .append_pair("oauth_authorization_expires_in", &expires_in.to_string())
        .finish();
    (StatusCode::OK, body).into_response()
}

async fn api_call(State(state): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body,
    };
    let token = token_of(&parts.headers);
    let (answer, revoked, n) = {
        let mut state = state.lock().unwrap();
        state.calls.push(seen.clone());
        let revoked = token.as_ref().is_some_and(|t| state.revoked.contains(t));
        (state.answer.clone(), revoked, state.calls.len())
    };
    if revoked {
        // LinkedIn's answer once the member removed the app (learn.microsoft.com, "Token
        // Introspection": such a token is `revoked`; the API answers 401).
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "serviceErrorCode": 65601,
                "message": "The token used in the request has been revoked by the user",
                "status": 401
            })),
        )
            .into_response();
    }
    match answer {
        Answer::Echo => (
            StatusCode::OK,
            [("x-restli-id", format!("echo-{n}"))],
            axum::Json(json!({
                "method": seen.method.as_str(),
                "path": seen.path,
                "query": seen.query,
                "token": token,
                "linkedin_version": seen.header("linkedin-version"),
            })),
        )
            .into_response(),
        Answer::Status {
            status,
            content_type,
            headers,
            body,
        } => {
            let mut response = (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", content_type)],
                body,
            )
                .into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            StatusCode::OK.into_response()
        }
    }
}
