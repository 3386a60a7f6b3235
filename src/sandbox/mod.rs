//! The sandbox: a built-in emulation of the retired LinkedIn side, mounted under `/sandbox/`,
//! so that the whole flow runs offline, in a browser and in tests.
//!
//! It has its own router, its own in-memory state (bounded, expiring) and its own signature
//! check (`oauth`); it reuses none of the client's signing code, and production code never
//! depends on it. Routes:
//! - `GET /sandbox/in.js`: the JSAPI stand-in;
//! - `POST /sandbox/oauth2/authorize`: a signed JSAPI cookie payload for a sandbox member;
//! - `POST /sandbox/uas/oauth/accessToken`: the OAuth 1.0a exchange;
//! - `GET /sandbox/v1/people/~`: the member's profile;
//! - `GET /sandbox/stats`: counts of what it granted (for tests and benchmarks);
//! - `GET`/`POST /sandbox/permitted-services`: the member's apps, and removing one
//!   (`permitted`);
//! - the OpenID Connect provider (`oidc`) under `/sandbox/oauth/` and `/sandbox/v2/`, and the
//!   REST routes its bearer tokens call (`rest`).
//!
//! What it granted, for how long, and what a member withdrew is kept in one ledger
//! (`tokens`), shared by both flows.

pub(crate) mod oauth;
pub(crate) mod oidc;
pub(crate) mod permitted;
pub(crate) mod rest;
pub(crate) mod standalone;
pub(crate) mod tokens;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::handlers::{Routes, Verb};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use moka::sync::Cache;
use serde_json::{Value, json};
use sha1::Sha1;

use crate::secret::Secret;
use oauth::{IncomingRequest, Problem};
pub(crate) use tokens::TokenRules;
use tokens::{Flow, Issued, Ledger, Status};

/// The member signed in by one click, with no parameter.
pub const DEFAULT_MEMBER_ID: &str = "SandboxAda";
/// How long a JSAPI access token stays exchangeable.
const JSAPI_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);
/// The scope a JSAPI sign-in grants (the JSAPI era's basic profile).
const JSAPI_SCOPE: &str = "r_basicprofile";
/// How long a nonce is remembered: the whole timestamp window on both sides.
const NONCE_TTL: Duration = Duration::from_secs(2 * oauth::TIMESTAMP_WINDOW_SECS as u64);
/// Bounds on the sandbox's memory.
const MAX_TOKENS: u64 = 200_000;
const MAX_NONCES: u64 = 2_000_000;

/// The app the sandbox serves.
#[derive(Clone, Debug)]
pub(crate) struct SandboxConfig {
    /// The API key it accepts (consumer key, cookie name).
    pub api_key: String,
    /// The secret it signs cookies with and verifies OAuth signatures against.
    pub secret_key: Secret,
    /// The OpenID Connect client it knows, when OpenID Connect is on.
    pub oidc: Option<oidc::OidcSandboxConfig>,
    /// The scheme its clients sign OAuth 1.0a requests for: `https`, or `http` when the
    /// server runs with `TLS=off` and calls its sandbox in plain HTTP.
    pub scheme: &'static str,
    /// Lifetimes of what it issues, refresh tokens, and the daily quota.
    pub rules: TokenRules,
}

#[derive(Clone)]
struct SandboxState(Arc<Inner>);

struct Inner {
    config: SandboxConfig,
    /// What was granted and withdrawn, shared with the OpenID Connect side.
    ledger: Arc<Ledger>,
    /// JSAPI access token -> (member id, the ledger's stamp at its issue).
    jsapi_tokens: Cache<String, (String, u64)>,
    /// OAuth token -> (token secret, the credentials).
    oauth_tokens: Cache<String, Arc<(String, Issued)>>,
    /// `consumer_key nonce timestamp` already used.
    nonces: Cache<String, ()>,
    /// Exchanges answered with credentials (for benchmarks: no shortcut is counted).
    exchanges_accepted: AtomicU64,
    /// Profiles served.
    profiles_served: AtomicU64,
}

/// The emulated LinkedIn as a host mounts it in its own tests: both flows, registered for a
/// made-up app, reachable at `base_url` (where the host nests [`Sandbox::router`]).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use linkedin_token_exchange::LinkedInSignIn;
/// use linkedin_token_exchange::sandbox::Sandbox;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let origin = format!("http://{}", listener.local_addr()?);
/// let sandbox = Sandbox::new(format!("{origin}/sandbox").parse()?);
/// let sign_in = LinkedInSignIn::builder()
///     .public_origin(&origin)
///     .oidc(sandbox.client_id(), sandbox.client_secret())
///     .issuer(sandbox.issuer())
///     .build()?;
/// let app = axum::Router::new()
///     .merge(sign_in.router())
///     .nest("/sandbox", sandbox.router());
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Sandbox {
    base: url::Url,
    config: SandboxConfig,
}

impl Sandbox {
    /// A sandbox at `base_url` (`http://127.0.0.1:PORT/sandbox`), with a made-up JSAPI key
    /// pair and OpenID Connect client that sends codes to any loopback redirect URL.
    pub fn new(base_url: url::Url) -> Self {
        let mut base = base_url;
        let path = base.path().trim_end_matches('/').to_owned();
        base.set_path(&path);
        let text = base.as_str().trim_end_matches('/').to_owned();
        let oidc = oidc::OidcSandboxConfig {
            issuer: format!("{text}/oauth"),
            api_base: text.clone(),
            browser_base: text,
            client_id: format!("sandbox-client-{}", &random_token()[..8]),
            client_secret: Secret::new(random_token()),
            redirect_uris: oidc::RedirectUris::AnyLoopback,
        };
        let config = SandboxConfig {
            api_key: format!("sandbox{}", &random_token()[..8]),
            secret_key: Secret::new(random_token()),
            oidc: Some(oidc),
            scheme: if base.scheme() == "http" {
                "http"
            } else {
                "https"
            },
            rules: TokenRules::default(),
        };
        Self { base, config }
    }

    /// How long its access tokens live (both flows; LinkedIn's 60 days by default, at least a
    /// second, at most ten years), so that a host's tests see expiry in seconds.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.rules.token_ttl = lifetime;
        self.config.rules = self.config.rules.bounded();
        self
    }

    /// Answers the OpenID Connect token requests with refresh tokens living `lifetime` from
    /// their first issue, as LinkedIn does for approved partners (365 days there).
    pub fn refresh_tokens(mut self, lifetime: Duration) -> Self {
        self.config.rules.refresh_ttl = Some(lifetime);
        self.config.rules = self.config.rules.bounded();
        self
    }

    /// Answers 429 to a member's API calls over `calls` in a UTC day.
    pub fn daily_quota(mut self, calls: u64) -> Self {
        self.config.rules.daily_quota = Some(calls);
        self
    }

    /// Sends codes only to `url`, as LinkedIn does for a registered redirect URL.
    pub fn redirect_url(mut self, url: impl Into<String>) -> Self {
        if let Some(oidc) = self.config.oidc.as_mut() {
            oidc.redirect_uris = oidc::RedirectUris::Registered(url.into());
        }
        self
    }

    /// The sandbox's routes, to nest where `base_url` points (`.nest("/sandbox", ..)`).
    pub fn router(&self) -> Router {
        router(self.config.clone())
    }

    /// The OpenID Connect issuer (`<base_url>/oauth`), for [`crate::SignInBuilder::issuer`].
    pub fn issuer(&self) -> url::Url {
        self.at("/oauth")
    }

    /// `path` under the base URL.
    fn at(&self, path: &str) -> url::Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        url
    }

    /// The registered OpenID Connect client id.
    pub fn client_id(&self) -> String {
        self.config
            .oidc
            .as_ref()
            .map(|oidc| oidc.client_id.clone())
            .unwrap_or_default()
    }

    /// The registered OpenID Connect client secret.
    pub fn client_secret(&self) -> String {
        self.config
            .oidc
            .as_ref()
            .map(|oidc| oidc.client_secret.expose().to_owned())
            .unwrap_or_default()
    }

    /// The JSAPI API key it accepts.
    pub fn api_key(&self) -> &str {
        &self.config.api_key
    }

    /// The JSAPI secret key it signs cookies with.
    pub fn secret_key(&self) -> &str {
        self.config.secret_key.expose()
    }

    /// The OAuth 1.0a exchange endpoint and the REST base, for
    /// [`crate::SignInBuilder::jsapi_urls`].
    pub fn jsapi_urls(&self) -> (url::Url, url::Url) {
        (self.at("/uas/oauth/accessToken"), self.base.clone())
    }
}

/// The sandbox's router, to be nested under `/sandbox`.
pub(crate) fn router(config: SandboxConfig) -> Router {
    let ledger = Arc::new(Ledger::new(config.rules));
    let rules = ledger.rules();
    let provider = config
        .oidc
        .clone()
        .map(|oidc| {
            oidc::router(oidc.clone(), ledger.clone()).merge(rest::router(oidc, ledger.clone()))
        })
        .unwrap_or_default();
    let permitted = permitted::router(permitted::App::of(&config), ledger.clone());
    let state = SandboxState(Arc::new(Inner {
        config,
        ledger,
        jsapi_tokens: Cache::builder()
            .max_capacity(MAX_TOKENS)
            .time_to_live(JSAPI_TOKEN_TTL)
            .build(),
        oauth_tokens: Cache::builder()
            .max_capacity(MAX_TOKENS)
            // Kept past their end, so that a late call is told "expired".
            .time_to_live(rules.token_ttl + tokens::EXPIRED_KEPT)
            .build(),
        nonces: Cache::builder()
            .max_capacity(MAX_NONCES)
            .time_to_live(NONCE_TTL)
            .build(),
        exchanges_accepted: AtomicU64::new(0),
        profiles_served: AtomicU64::new(0),
    }));
    Router::new()
        .at(Verb::Get, "/in.js", jsapi_script)
        .at(Verb::Post, "/oauth2/authorize", authorize)
        .at(Verb::Post, "/uas/oauth/accessToken", access_token)
        .at(Verb::Get, "/v1/people/~", profile)
        .at(Verb::Get, "/stats", stats)
        .with_state(state)
        .merge(provider)
        .merge(permitted)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn random_token() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn jsapi_script() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        include_str!("in.js"),
    )
}

/// LinkedIn's JSON error shape for the REST API and the JSAPI endpoints.
fn json_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"errorCode": 0, "message": message, "status": status.as_u16(), "timestamp": now() * 1000});
    (status, axum::Json(body)).into_response()
}

/// The daily quota's refusal in the JSAPI era's shape (kademi-dev#6199 quotes its message),
/// with `Retry-After` until midnight UTC.
fn throttled_v1(retry_after: u64) -> Response {
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "Throttle limit for calls to this resource is reached.",
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// The OAuth endpoints' refusal: `401` with a form-encoded `oauth_problem` body, and the
/// same problem in `WWW-Authenticate`.
fn oauth_refusal(problem: &Problem) -> Response {
    let body = format!(
        "oauth_problem={}&oauth_problem_advice={}",
        problem.code(),
        oauth::encode(&problem.advice())
    );
    let challenge = format!(
        "OAuth realm=\"https://api.linkedin.com\", oauth_problem=\"{}\"",
        problem.code()
    );
    (
        StatusCode::UNAUTHORIZED,
        [
            (CONTENT_TYPE, "application/x-www-form-urlencoded".to_owned()),
            (WWW_AUTHENTICATE, challenge),
        ],
        body,
    )
        .into_response()
}

/// A sandbox member id: what LinkedIn's looked like, letters, digits, `-` and `_`.
fn valid_member_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `POST /sandbox/oauth2/authorize` (form: `api_key`, optional `member_id`): issues a JSAPI
/// access token and answers the cookie payload, signed with the app's secret exactly as
/// LinkedIn signed it.
async fn authorize(State(state): State<SandboxState>, body: Bytes) -> Response {
    let params = oauth::form_pairs(&body);
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if get("api_key") != Some(state.0.config.api_key.as_str()) {
        return json_error(StatusCode::UNAUTHORIZED, "Unknown API key.");
    }
    let member_id = get("member_id")
        .filter(|m| !m.is_empty())
        .unwrap_or(DEFAULT_MEMBER_ID);
    if !valid_member_id(member_id) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "member_id must be 1 to 64 letters, digits, '-' or '_'.",
        );
    }
    let access_token = random_token();
    let ledger = &state.0.ledger;
    ledger.consent(member_id, [JSAPI_SCOPE], Flow::Jsapi, now());
    state
        .0
        .jsapi_tokens
        .insert(access_token.clone(), (member_id.to_owned(), ledger.stamp()));
    let signature = sign_cookie(
        state.0.config.secret_key.expose(),
        &[&access_token, member_id],
    );
    axum::Json(json!({
        "signature_method": "HMAC-SHA1",
        "signature_order": ["access_token", "member_id"],
        "access_token": access_token,
        "signature": signature,
        "member_id": member_id,
        "signature_version": 1,
    }))
    .into_response()
}

/// The JSAPI cookie signature: base64 of HMAC-SHA1 over the concatenated values.
fn sign_cookie(secret: &str, values: &[&str]) -> String {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    for value in values {
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// Reads what the verifier needs from an axum request.
fn incoming<'a>(
    scheme: &'static str,
    method: &'a Method,
    uri: &'a axum::http::Uri,
    headers: &'a HeaderMap,
    body: Option<&'a [u8]>,
) -> IncomingRequest<'a> {
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    IncomingRequest {
        method: method.as_str(),
        scheme,
        authority: uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or(""),
        path: uri.path(),
        query: uri.query(),
        authorization: headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()),
        form_body: body.filter(|_| is_form),
    }
}

impl SandboxState {
    /// Checks the nonce after the signature verified, so that garbage cannot burn nonces.
    fn check_nonce(&self, verified: &oauth::VerifiedRequest) -> Result<(), Problem> {
        let key = format!(
            "{} {} {}",
            self.0.config.api_key, verified.nonce, verified.timestamp
        );
        let entry = self.0.nonces.entry(key).or_insert(());
        if entry.is_fresh() {
            Ok(())
        } else {
            Err(Problem::NonceUsed)
        }
    }

    fn token_secret(&self, token: &str) -> Option<String> {
        self.0.oauth_tokens.get(token).map(|t| t.0.clone())
    }

    /// The member a JSAPI access token was issued to, unless they removed the app since.
    fn jsapi_member(&self, token: &str) -> Option<String> {
        let (member, stamp) = self.0.jsapi_tokens.get(token)?;
        (!self.0.ledger.revoked(&member, stamp)).then_some(member)
    }
}

/// `POST /sandbox/uas/oauth/accessToken`: verifies the OAuth 1.0a request (consumer key and
/// secret, no token) and its `xoauth_oauth2_access_token`, and issues REST credentials.
async fn access_token(
    State(state): State<SandboxState>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let config = &state.0.config;
    let request = incoming(config.scheme, &method, &uri, &headers, Some(&body));
    let result = oauth::verify(
        &request,
        &config.api_key,
        config.secret_key.expose(),
        |_| None,
        now(),
    )
    .and_then(|verified| {
        if verified.token.is_some() {
            return Err(Problem::ParameterRejected(
                "oauth_token (the exchange takes none)".into(),
            ));
        }
        state.check_nonce(&verified)?;
        let jsapi_token = verified
            .param("xoauth_oauth2_access_token")
            .ok_or_else(|| Problem::ParameterAbsent("xoauth_oauth2_access_token".into()))?;
        state
            .jsapi_member(jsapi_token)
            .ok_or(Problem::TokenRejected)
    });
    let member_id = match result {
        Ok(member_id) => member_id,
        Err(problem) => return oauth_refusal(&problem),
    };
    let (token, secret) = (random_token(), random_token());
    let ledger = &state.0.ledger;
    let ttl = ledger.rules().token_ttl;
    let issued = ledger.issue(&member_id, JSAPI_SCOPE, ttl, None, now());
    state
        .0
        .oauth_tokens
        .insert(token.clone(), Arc::new((secret.clone(), issued)));
    state.0.exchanges_accepted.fetch_add(1, Ordering::Relaxed);
    // LinkedIn answered its 60-day credentials with `oauth_expires_in=5183999`: the time
    // left, rounded down, a second less than the lifetime.
    let expires_in = ttl.as_secs().saturating_sub(1).max(1);
    (
        [(CONTENT_TYPE, "application/x-www-form-urlencoded")],
        format!(
            "oauth_token={token}&oauth_token_secret={secret}&oauth_expires_in={expires_in}&oauth_authorization_expires_in={expires_in}"
        ),
    )
        .into_response()
}

/// `GET /sandbox/v1/people/~`: the member's profile, for a request signed with the consumer
/// secret and the issued token secret, or (as the JSAPI's own calls were) for an
/// `oauth_token` header carrying a JSAPI access token.
async fn profile(
    State(state): State<SandboxState>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let member_id = if let Some(jsapi_token) =
        headers.get("oauth_token").and_then(|v| v.to_str().ok())
    {
        match state.jsapi_member(jsapi_token) {
            Some(member_id) => member_id,
            None => {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    "[unauthorized]. The token used in the request has expired or was not issued here.",
                );
            }
        }
    } else {
        let config = &state.0.config;
        let request = incoming(config.scheme, &method, &uri, &headers, None);
        let verified = oauth::verify(
            &request,
            &config.api_key,
            config.secret_key.expose(),
            |t| state.token_secret(t),
            now(),
        )
        .and_then(|verified| state.check_nonce(&verified).map(|()| verified));
        let verified = match verified {
            Ok(verified) => verified,
            Err(problem) => {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    &format!(
                        "[unauthorized]. OAuth problem: {}; {}",
                        problem.code(),
                        problem.advice()
                    ),
                );
            }
        };
        let token = verified.token.unwrap_or_default();
        let Some(issued) = state.0.oauth_tokens.get(&token) else {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "[unauthorized]. The token used in the request was not issued here.",
            );
        };
        match state.0.ledger.status(&issued.1, now()) {
            Status::Active => issued.1.member.clone(),
            Status::Expired => {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    "[unauthorized]. The token used in the OAuth request has expired.",
                );
            }
            Status::Revoked => {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    "[unauthorized]. The token used in the OAuth request has been revoked by the user.",
                );
            }
        }
    };
    if let Err(retry_after) = state.0.ledger.spend(&member_id, now()) {
        return throttled_v1(retry_after);
    }
    state.0.profiles_served.fetch_add(1, Ordering::Relaxed);
    axum::Json(member_profile(&member_id)).into_response()
}

/// `GET /sandbox/stats`: what the sandbox has granted, so that tests and benchmarks can check
/// that every exchange the server reported really happened upstream.
async fn stats(State(state): State<SandboxState>) -> axum::Json<Value> {
    axum::Json(json!({
        "exchanges_accepted": state.0.exchanges_accepted.load(Ordering::Relaxed),
        "profiles_served": state.0.profiles_served.load(Ordering::Relaxed),
    }))
}

/// The profile of a sandbox member: the default one is Ada, any other is synthesised.
fn member_profile(member_id: &str) -> Value {
    let (first, last, headline) = if member_id == DEFAULT_MEMBER_ID {
        (
            "Ada",
            "Lovelace",
            "Analyst of the Analytical Engine (sandbox member)",
        )
    } else {
        ("Sandbox", member_id, "Sandbox member")
    };
    json!({
        "id": member_id,
        "firstName": first,
        "lastName": last,
        "headline": headline,
        "siteStandardProfileRequest": {
            "url": format!("https://www.linkedin.com/profile/view?id={member_id}&authType=name&trk=api*sandbox"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_signed_like_the_published_example() {
        // strikingly/omniauth-linkedin-jsapi's vector, signed by the sandbox's own code.
        let signature = sign_cookie(
            "X19zkd7LdmSPVcrV",
            &["AD2dpVe1tOclAsNYsCri4nOatfstw7ZnMzWP", "vvUNSej47H"],
        );
        assert_eq!(signature, "4pgJrTAD+EktW7c5VTuZFhLrmOA=");
    }

    #[test]
    fn member_ids_are_checked() {
        assert!(valid_member_id(DEFAULT_MEMBER_ID));
        assert!(valid_member_id("member-0042_x"));
        assert!(!valid_member_id(""));
        assert!(!valid_member_id("a b"));
        assert!(!valid_member_id(&"x".repeat(65)));
    }
}
