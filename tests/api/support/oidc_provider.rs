//! A fake OpenID Connect provider on 127.0.0.1, and the rig that points a real app at it.
//!
//! The provider has two profiles:
//! - [`Profile::Documented`]: LinkedIn as its documentation and OpenID Connect Core read
//!   (`nonce` echoed, `token_endpoint_auth_methods_supported` listed, JWKS keys with `alg` and
//!   `use`, PKCE refused at authorization unless discovery lists it);
//! - [`Profile::Observed`]: LinkedIn as integrators report it (SPEC.md, "LinkedIn as it is
//!   observed"), serving the published shapes in `tests/fixtures/linkedin/`: no `nonce` in the
//!   id_token whatever was asked, `email_verified` the string `"true"` in the id_token and a
//!   boolean in userinfo, `locale` a string there and an object here, no auth methods or PKCE
//!   methods in discovery, bare JWKS keys (`kty`, `kid`, `n`, `e`), PKCE ignored at
//!   authorization and a token request carrying `code_verifier` refused with 401
//!   `invalid_client`, the client secret expected in the form (`client_secret_post`).
//!
//! Both misbehave on purpose when a test turns a [`Knobs`] setting.
//!
//! Both also keep tokens as LinkedIn documents them (issue 30, "Credentials that age in view"):
//! - access tokens live `expires_in` seconds ([`Knobs::access_ttl`]; LinkedIn: 60 days);
//! - with [`Knobs::refresh_tokens`] (a partner app), the token answer also carries
//!   `refresh_token` and `refresh_token_expires_in`; `grant_type=refresh_token` at the token
//!   endpoint answers `access_token`, `expires_in`, `refresh_token` and
//!   `refresh_token_expires_in` (no `token_type`, no `id_token`), and the refresh token keeps
//!   the end of its first grant: a refresh never extends it, and an access token never
//!   outlives it (learn.microsoft.com, "Programmatic Refresh Tokens": "the lifespan or Time To
//!   Live (TTL) of the refresh token remains the same as specified in the initial OAuth
//!   flow"; day 360's access token expires with the refresh token, 5 days later);
//! - `POST /oauth/v2/introspectToken` (`client_id`, `client_secret`, `token`) answers
//!   `active`, `status` (`active`, `expired`, `revoked`), `expires_at`, `created_at`,
//!   `client_id`, `scope`, `auth_type`; 400 for an unknown client id or token, 401 for a wrong
//!   secret (learn.microsoft.com, "Token Introspection");
//! - [`Provider::revoke`] is the member removing the app: every token of theirs is revoked,
//!   refresh tokens included; userinfo then answers 401.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use linkedin_token_exchange::Secret;
use linkedin_token_exchange::server::config::Config;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value, json};
use url::Url;

use crate::oidc::{location, query, start, step_by_step};
use crate::support::{TestApp, json_of, test_config};

pub const CLIENT_ID: &str = "rp-client";
pub const CLIENT_SECRET: &str = "rp-secret-7Qx";
/// The app's `upstream_timeout_ms` against the provider (with room for a loaded machine).
pub const TIMEOUT_MS: u64 = 2_000;

/// Which provider the tests talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// As LinkedIn's documentation and OpenID Connect Core read.
    Documented,
    /// As LinkedIn behaves (the fixtures in `tests/fixtures/linkedin/`).
    Observed,
}

/// One of LinkedIn's published shapes, from `tests/fixtures/linkedin/`.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/linkedin/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `value` with LinkedIn's hosts replaced by `origin` in every string.
fn at_origin(value: Value, origin: &str) -> Value {
    match value {
        Value::String(s) => Value::String(
            s.replace("https://www.linkedin.com", origin)
                .replace("https://api.linkedin.com", origin),
        ),
        Value::Array(items) => items.into_iter().map(|v| at_origin(v, origin)).collect(),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, at_origin(v, origin)))
                .collect(),
        ),
        other => other,
    }
}

/// `overrides` written over `object`'s fields; a `null` override removes the field.
fn apply(object: &mut Value, overrides: &Map<String, Value>) {
    for (name, value) in overrides {
        object[name] = value.clone();
    }
    if let Value::Object(fields) = object {
        fields.retain(|_, value| !value.is_null());
    }
}

// ---------------------------------------------------------------------------------------
// The provider's keys: made once per test process.

struct TestKey {
    kid: &'static str,
    private: EncodingKey,
    n: String,
    e: String,
    public_pem: String,
}

impl TestKey {
    fn generate(kid: &'static str) -> TestKey {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let der = private.to_pkcs1_der().unwrap();
        TestKey {
            kid,
            private: EncodingKey::from_rsa_der(der.as_bytes()),
            n: B64URL.encode(private.n().to_bytes_be()),
            e: B64URL.encode(private.e().to_bytes_be()),
            public_pem: private
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        }
    }

    /// The public key as a JWK: bare (`kty`, `kid`, `n`, `e`), or also with `alg` and `use`.
    fn jwk(&self, bare: bool) -> Value {
        let mut jwk = json!({"kty": "RSA", "kid": self.kid, "n": self.n, "e": self.e});
        if !bare {
            jwk["use"] = json!("sig");
            jwk["alg"] = json!("RS256");
        }
        jwk
    }
}

/// The key the JWKS always lists, and one it lists only after a rotation (if ever).
struct Keys {
    current: TestKey,
    rotated: TestKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        current: TestKey::generate("key-current"),
        rotated: TestKey::generate("key-rotated"),
    })
}

// ---------------------------------------------------------------------------------------
// The provider.

/// How the id_token is signed.
#[derive(Clone, Copy, Debug, Default)]
pub enum Signing {
    /// RS256 with the key the JWKS lists.
    #[default]
    Current,
    /// RS256 with another key, under the listed key's `kid`: a bad signature.
    OtherKey,
    /// RS256 with the rotated key and its own `kid`.
    Rotated,
    /// `alg: none`, no signature.
    Unsigned,
    /// HS256 keyed with the listed key's public PEM (the algorithm confusion attack).
    Hs256WithPublicKey,
}

/// How the token endpoint answers.
#[derive(Clone, Copy, Debug, Default)]
pub enum TokenAnswer {
    /// Checks the request and grants a token.
    #[default]
    Grant,
    /// This status and JSON body, whatever the request.
    Status(u16, &'static str),
    /// Grants, but only after this long.
    Slow(Duration),
}

/// What a test may change.
#[derive(Debug)]
pub struct Knobs {
    /// The id_token's `sub`.
    pub sub: String,
    /// Claims replaced in the id_token (`null`: left out).
    pub claims: Map<String, Value>,
    pub signing: Signing,
    pub token: TokenAnswer,
    /// Discovery lists `code_challenge_methods_supported: ["S256"]` (documented profile).
    pub pkce: bool,
    /// The JWKS lists the rotated key from this fetch (1-based) on.
    pub rotated_from_fetch: Option<usize>,
    /// The id_token carries the `nonce` of the authorization request (documented: yes,
    /// observed: never).
    pub echo_nonce: bool,
    /// Fields replaced in the discovery document (`null`: left out).
    pub discovery: Map<String, Value>,
    /// The JWKS lists its keys without `alg` and `use` (documented: no, observed: yes).
    pub bare_jwks: bool,
    /// The JWKS endpoint answers this document instead of its keys (a hostile key set).
    pub jwks: Option<Value>,
    /// The JWKS endpoint answers this status with an error body (each answer counted as a
    /// fetch).
    pub jwks_status: Option<u16>,
    /// Seconds an access token lives (`expires_in`).
    pub access_ttl: i64,
    /// The token answers carry a refresh token (a partner app).
    pub refresh_tokens: bool,
    /// Seconds a refresh token lives from its first grant.
    pub refresh_ttl: i64,
    /// A refresh grant answers this status and JSON body instead.
    pub refresh_answer: Option<(u16, &'static str)>,
    /// A refresh grant is answered only after this long.
    pub refresh_delay: Duration,
}

/// An access token the provider issued.
struct AccessToken {
    sub: String,
    created_at: i64,
    expires_at: i64,
}

/// A code the authorization endpoint gave out.
struct Grant {
    redirect_uri: String,
    nonce: Option<String>,
    challenge: Option<String>,
}

struct ProviderState {
    profile: Profile,
    origin: String,
    issuer: String,
    knobs: Knobs,
    codes: HashMap<String, Grant>,
    access_tokens: HashMap<String, AccessToken>,
    /// Refresh token → (member, fixed end).
    refresh_tokens: HashMap<String, (String, i64)>,
    /// Revoked tokens, access and refresh.
    revoked: std::collections::HashSet<String>,
    refresh_grants: usize,
    introspections: Vec<String>,
    issued: usize,
    jwks_fetches: usize,
    token_requests: Vec<(HashMap<String, String>, Option<String>)>,
}

type Shared = Arc<Mutex<ProviderState>>;

/// A plain-HTTP OpenID Connect provider on 127.0.0.1, issuer `http://127.0.0.1:PORT/oauth`.
pub struct Provider {
    pub issuer: Url,
    state: Shared,
    /// A browser for the provider's side: no redirects followed.
    pub browser: reqwest::Client,
}

impl Provider {
    pub async fn start(profile: Profile) -> Provider {
        // The keys are made before any request can wait on them: RSA generation must not eat
        // into the app's upstream deadline on a busy machine.
        tokio::task::spawn_blocking(keys).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let origin = format!("http://{addr}");
        let issuer = format!("{origin}/oauth");
        let state = Arc::new(Mutex::new(ProviderState {
            profile,
            origin,
            issuer: issuer.clone(),
            knobs: Knobs {
                sub: "member-a".into(),
                claims: Map::new(),
                signing: Signing::default(),
                token: TokenAnswer::default(),
                pkce: false,
                rotated_from_fetch: None,
                echo_nonce: profile == Profile::Documented,
                discovery: Map::new(),
                bare_jwks: profile == Profile::Observed,
                jwks: None,
                jwks_status: None,
                access_ttl: 5_184_000,
                refresh_tokens: false,
                refresh_ttl: 31_536_000,
                refresh_answer: None,
                refresh_delay: Duration::ZERO,
            },
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            revoked: std::collections::HashSet::new(),
            refresh_grants: 0,
            introspections: Vec::new(),
            issued: 0,
            jwks_fetches: 0,
            token_requests: Vec::new(),
        }));
        let app = Router::new()
            .route("/oauth/.well-known/openid-configuration", get(discovery))
            .route("/oauth/v2/authorization", get(authorization))
            .route("/oauth/v2/accessToken", post(token))
            .route("/oauth/openid/jwks", get(jwks))
            .route("/oauth/v2/introspectToken", post(introspect))
            .route("/v2/userinfo", get(userinfo))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        linkedin_token_exchange::server::install_crypto_provider();
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Provider {
            issuer: Url::parse(&issuer).unwrap(),
            state,
            browser,
        }
    }

    /// Changes the knobs.
    pub fn set(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.state.lock().unwrap().knobs);
    }

    /// Replaces one claim of the next id_tokens (`null`: leaves it out).
    pub fn claim(&self, name: &str, value: Value) {
        self.set(|k| {
            k.claims.insert(name.into(), value);
        });
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.lock().unwrap().jwks_fetches
    }

    /// The forms the token endpoint received.
    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        let state = self.state.lock().unwrap();
        state
            .token_requests
            .iter()
            .map(|(f, _)| f.clone())
            .collect()
    }

    /// The `Authorization` headers the token endpoint received, one per request.
    pub fn token_authorization_headers(&self) -> Vec<Option<String>> {
        let state = self.state.lock().unwrap();
        state
            .token_requests
            .iter()
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// `http://127.0.0.1:PORT`, with no path.
    pub fn origin(&self) -> String {
        self.issuer.origin().ascii_serialization()
    }

    /// The introspection endpoint, as LinkedIn's is named.
    pub fn introspection_url(&self) -> Url {
        Url::parse(&format!("{}/v2/introspectToken", self.issuer)).unwrap()
    }

    /// How many refresh grants the token endpoint answered (refused ones included).
    pub fn refresh_grants(&self) -> usize {
        self.state.lock().unwrap().refresh_grants
    }

    /// The tokens introspected, in order.
    pub fn introspections(&self) -> Vec<String> {
        self.state.lock().unwrap().introspections.clone()
    }

    /// The access tokens issued to `sub`, oldest first.
    pub fn access_tokens_of(&self, sub: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let mut theirs: Vec<(i64, String)> = state
            .access_tokens
            .iter()
            .filter(|(_, token)| token.sub == sub)
            .map(|(value, _)| {
                let n = value.trim_start_matches("access-").parse().unwrap();
                (n, value.clone())
            })
            .collect();
        theirs.sort();
        theirs.into_iter().map(|(_, value)| value).collect()
    }

    /// Access token `value` expires now (as LinkedIn may end a token before the end it gave).
    pub fn expire(&self, value: &str) {
        let mut state = self.state.lock().unwrap();
        let now = unix_now();
        state.access_tokens.get_mut(value).unwrap().expires_at = now;
    }

    /// The member `sub` removes the app: every token of theirs is revoked.
    pub fn revoke(&self, sub: &str) {
        let mut state = self.state.lock().unwrap();
        let theirs: Vec<String> = state
            .access_tokens
            .iter()
            .filter(|(_, token)| token.sub == sub)
            .map(|(value, _)| value.clone())
            .chain(
                state
                    .refresh_tokens
                    .iter()
                    .filter(|(_, (owner, _))| owner == sub)
                    .map(|(value, _)| value.clone()),
            )
            .collect();
        state.revoked.extend(theirs);
    }
}

async fn discovery(State(state): State<Shared>) -> Json<Value> {
    let state = state.lock().unwrap();
    let issuer = &state.issuer;
    let mut metadata = match state.profile {
        Profile::Documented => json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/v2/authorization"),
            "token_endpoint": format!("{issuer}/v2/accessToken"),
            "userinfo_endpoint": format!("{}/v2/userinfo", state.origin),
            "jwks_uri": format!("{issuer}/openid/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }),
        Profile::Observed => at_origin(fixture("openid-configuration.json"), &state.origin),
    };
    if state.knobs.pkce {
        metadata["code_challenge_methods_supported"] = json!(["S256"]);
    }
    apply(&mut metadata, &state.knobs.discovery);
    Json(metadata)
}

/// Consents at once: back to `redirect_uri` with a fresh code and the `state`.
async fn authorization(
    State(state): State<Shared>,
    Query(asked): Query<HashMap<String, String>>,
) -> Response {
    let mut state = state.lock().unwrap();
    let pkce_sent = asked.contains_key("code_challenge");
    if asked.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || asked.get("response_type").map(String::as_str) != Some("code")
        || (state.profile == Profile::Documented && pkce_sent && !state.knobs.pkce)
    {
        return oauth_error(400, "invalid_request", "refused by the test provider");
    }
    let Some(redirect_uri) = asked.get("redirect_uri") else {
        return oauth_error(400, "invalid_request", "no redirect_uri");
    };
    let challenge = match state.profile {
        Profile::Documented => asked.get("code_challenge").cloned(),
        // LinkedIn ignores PKCE parameters on a web app's authorization request.
        Profile::Observed => None,
    };
    state.issued += 1;
    let code = format!("code-{}", state.issued);
    state.codes.insert(
        code.clone(),
        Grant {
            redirect_uri: redirect_uri.clone(),
            nonce: asked.get("nonce").cloned(),
            challenge,
        },
    );
    let mut back = Url::parse(redirect_uri).unwrap();
    back.query_pairs_mut().append_pair("code", &code);
    if let Some(s) = asked.get("state") {
        back.query_pairs_mut().append_pair("state", s);
    }
    (StatusCode::FOUND, [(LOCATION, back.to_string())]).into_response()
}

async fn token(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let answer = {
        let mut state = state.lock().unwrap();
        let authorization = headers
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned());
        state.token_requests.push((form.clone(), authorization));
        state.knobs.token
    };
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let delay = state.lock().unwrap().knobs.refresh_delay;
        tokio::time::sleep(delay).await;
        return state.lock().unwrap().refresh(&form);
    }
    match answer {
        TokenAnswer::Grant => {}
        TokenAnswer::Status(status, body) => {
            return (
                StatusCode::from_u16(status).unwrap(),
                [(CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
        TokenAnswer::Slow(delay) => tokio::time::sleep(delay).await,
    }
    state.lock().unwrap().exchange(&form)
}

impl ProviderState {
    /// The token endpoint's checks (`client_secret_post`, single-use codes bound to their
    /// redirect URI, PKCE as the profile has it), then the token answer.
    fn exchange(&mut self, form: &HashMap<String, String>) -> Response {
        let field = |name: &str| form.get(name).map(String::as_str);
        if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
            return oauth_error(401, "invalid_client", "Client authentication failed");
        }
        if self.profile == Profile::Observed && field("code_verifier").is_some() {
            // A web app's PKCE verifier makes LinkedIn's token endpoint fail the client
            // (nextauthjs/next-auth#8831, directus/directus#23645).
            return oauth_error(401, "invalid_client", "Client authentication failed");
        }
        if field("grant_type") != Some("authorization_code") {
            return oauth_error(400, "unsupported_grant_type", "authorization_code only");
        }
        let Some(grant) = field("code").and_then(|code| self.codes.remove(code)) else {
            return oauth_error(400, "invalid_grant", "The code is invalid, used or expired");
        };
        if field("redirect_uri") != Some(grant.redirect_uri.as_str()) {
            return oauth_error(400, "invalid_grant", "redirect_uri does not match");
        }
        let verified = match (&grant.challenge, field("code_verifier")) {
            (None, None) => true,
            (Some(challenge), Some(verifier)) => s256(verifier) == *challenge,
            _ => false,
        };
        if !verified {
            return oauth_error(400, "invalid_grant", "PKCE verification failed");
        }
        let now = unix_now();
        let sub = self.knobs.sub.clone();
        let mut claims = match self.profile {
            Profile::Documented => json!({
                "name": format!("Member {sub}"), "email": format!("{sub}@example.test"),
            }),
            Profile::Observed => fixture("id_token_claims.json"),
        };
        claims["iss"] = json!(self.issuer);
        claims["aud"] = json!(CLIENT_ID);
        claims["sub"] = json!(sub);
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + 3_600);
        if self.knobs.echo_nonce {
            claims["nonce"] = json!(grant.nonce);
        }
        apply(&mut claims, &self.knobs.claims);
        let access_token = self.issue_access_token(&sub, self.knobs.access_ttl);
        let mut answer = match self.profile {
            Profile::Documented => json!({
                "expires_in": 5_184_000,
                "scope": "openid,profile,email",
                "token_type": "Bearer",
            }),
            Profile::Observed => fixture("token_answer.json"),
        };
        answer["access_token"] = json!(access_token);
        answer["expires_in"] = json!(self.knobs.access_ttl);
        answer["id_token"] = json!(sign(self.knobs.signing, &claims));
        if self.knobs.refresh_tokens {
            self.issued += 1;
            let refresh_token = format!("refresh-{}", self.issued);
            self.refresh_tokens
                .insert(refresh_token.clone(), (sub, now + self.knobs.refresh_ttl));
            answer["refresh_token"] = json!(refresh_token);
            answer["refresh_token_expires_in"] = json!(self.knobs.refresh_ttl);
        }
        Json(answer).into_response()
    }

    /// A new access token of `sub`, living `ttl` seconds.
    fn issue_access_token(&mut self, sub: &str, ttl: i64) -> String {
        self.issued += 1;
        let value = format!("access-{}", self.issued);
        let now = unix_now();
        self.access_tokens.insert(
            value.clone(),
            AccessToken {
                sub: sub.to_owned(),
                created_at: now,
                expires_at: now + ttl,
            },
        );
        value
    }

    /// `grant_type=refresh_token`: a new access token that lives `access_ttl`, but never past
    /// the refresh token's fixed end; the same refresh token, with what is left of its life.
    fn refresh(&mut self, form: &HashMap<String, String>) -> Response {
        self.refresh_grants += 1;
        let field = |name: &str| form.get(name).map(String::as_str);
        if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
            return oauth_error(401, "invalid_client", "Client authentication failed");
        }
        if let Some((status, body)) = self.knobs.refresh_answer {
            return (
                StatusCode::from_u16(status).unwrap(),
                [(CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
        let now = unix_now();
        let Some(refresh_token) = field("refresh_token").map(str::to_owned) else {
            return oauth_error(400, "invalid_request", "no refresh_token");
        };
        let found = self.refresh_tokens.get(&refresh_token).cloned();
        let Some((sub, end)) = found.filter(|_| !self.revoked.contains(&refresh_token)) else {
            return oauth_error(
                400,
                "invalid_grant",
                "The refresh token is invalid or revoked",
            );
        };
        if end <= now {
            return oauth_error(400, "invalid_grant", "The refresh token has expired");
        }
        let ttl = self.knobs.access_ttl.min(end - now);
        let access_token = self.issue_access_token(&sub, ttl);
        Json(json!({
            "access_token": access_token,
            "expires_in": ttl,
            "refresh_token": refresh_token,
            "refresh_token_expires_in": end - now,
        }))
        .into_response()
    }
}

/// Token introspection, as learn.microsoft.com's "Token Introspection" documents it.
async fn introspect(
    State(state): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = state.lock().unwrap();
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("client_id") != Some(CLIENT_ID) {
        return oauth_error(400, "invalid_request", "Invalid client id");
    }
    if field("client_secret") != Some(CLIENT_SECRET) {
        return oauth_error(401, "invalid_client", "Invalid client secret");
    }
    let token = field("token").unwrap_or_default().to_owned();
    state.introspections.push(token.clone());
    let Some(found) = state.access_tokens.get(&token) else {
        return oauth_error(400, "invalid_request", "Invalid token");
    };
    let status = if state.revoked.contains(&token) {
        "revoked"
    } else if found.expires_at <= unix_now() {
        "expired"
    } else {
        "active"
    };
    Json(json!({
        "active": status == "active",
        "client_id": CLIENT_ID,
        "authorized_at": found.created_at,
        "created_at": found.created_at,
        "status": status,
        "expires_at": found.expires_at,
        "scope": "email,openid,profile",
        "auth_type": "3L",
    }))
    .into_response()
}

async fn jwks(State(state): State<Shared>) -> Response {
    let mut state = state.lock().unwrap();
    state.jwks_fetches += 1;
    if let Some(status) = state.knobs.jwks_status {
        return oauth_error(status, "server_error", "the key set is unavailable");
    }
    if let Some(document) = &state.knobs.jwks {
        return Json(document.clone()).into_response();
    }
    let bare = state.knobs.bare_jwks;
    let mut listed = vec![keys().current.jwk(bare)];
    if state
        .knobs
        .rotated_from_fetch
        .is_some_and(|from| state.jwks_fetches >= from)
    {
        listed.push(keys().rotated.jwk(bare));
    }
    Json(json!({ "keys": listed })).into_response()
}

async fn userinfo(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let state = state.lock().unwrap();
    let now = unix_now();
    let member = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|token| !state.revoked.contains(*token))
        .and_then(|token| state.access_tokens.get(token))
        .filter(|token| token.expires_at > now)
        .map(|token| &token.sub);
    match (member, state.profile) {
        (Some(sub), Profile::Documented) => {
            Json(json!({"sub": sub, "email": format!("{sub}@example.test")})).into_response()
        }
        (Some(sub), Profile::Observed) => {
            let mut info = fixture("userinfo.json");
            info["sub"] = json!(sub);
            Json(info).into_response()
        }
        (None, _) => oauth_error(401, "invalid_token", "unknown access token"),
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// The id_token, signed as `signing` says. The unsigned and HS256 forms are built by hand.
fn sign(signing: Signing, claims: &Value) -> String {
    let keys = keys();
    let rs256 = |key: &TestKey, kid: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &key.private).unwrap()
    };
    let unsigned = |header: Value| {
        format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        )
    };
    match signing {
        Signing::Current => rs256(&keys.current, keys.current.kid),
        Signing::OtherKey => rs256(&keys.rotated, keys.current.kid),
        Signing::Rotated => rs256(&keys.rotated, keys.rotated.kid),
        Signing::Unsigned => format!("{}.", unsigned(json!({"alg": "none", "typ": "JWT"}))),
        Signing::Hs256WithPublicKey => {
            let input = unsigned(json!({"alg": "HS256", "typ": "JWT", "kid": keys.current.kid}));
            let key =
                ring::hmac::Key::new(ring::hmac::HMAC_SHA256, keys.current.public_pem.as_bytes());
            let tag = ring::hmac::sign(&key, input.as_bytes());
            format!("{input}.{}", B64URL.encode(tag.as_ref()))
        }
    }
}

/// PKCE's S256: base64url(SHA-256(verifier)).
pub fn s256(verifier: &str) -> String {
    B64URL.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

pub fn unix_now() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(elapsed.as_secs()).unwrap()
}

// ---------------------------------------------------------------------------------------
// The app in real mode against the provider, and a browser that walks the redirects.

/// A test configuration in real mode, OpenID Connect only, against `provider`.
pub fn real_mode_config(provider: &Provider, dir: &tempfile::TempDir) -> Config {
    let mut config = test_config(dir);
    config.linkedin.sandbox = Some(false);
    config.oidc.client_id = Some(CLIENT_ID.into());
    config.oidc.client_secret = Some(Secret::new(CLIENT_SECRET));
    config.oidc.issuer = Some(provider.issuer.clone());
    config.limits.upstream_timeout_ms = TIMEOUT_MS;
    config
}

pub struct Rig {
    pub provider: Provider,
    pub app: TestApp,
    pub browser: reqwest::Client,
}

impl Rig {
    /// The app against a fresh provider of `profile`, with the default settings.
    pub async fn new(profile: Profile) -> Rig {
        Rig::start(Provider::start(profile).await, |_| {}).await
    }

    /// The app in real mode against `provider`, its configuration changed by `adjust`.
    pub async fn start(provider: Provider, adjust: impl FnOnce(&mut Config)) -> Rig {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = real_mode_config(&provider, &dir);
        adjust(&mut config);
        let app = TestApp::start(config, dir).await;
        let browser = step_by_step(&app);
        Rig {
            provider,
            app,
            browser,
        }
    }

    /// A rig whose browser is signed in as `member-a` by a good round; the next id_tokens
    /// are for `member-b`, so that a refused round that stored anything would show.
    pub async fn signed_in(profile: Profile) -> Rig {
        Rig::new(profile).await.after_a_good_round().await
    }

    /// Signs the browser in as `member-a`, then makes the next id_tokens `member-b`'s.
    pub async fn after_a_good_round(self) -> Rig {
        let response = self.round().await;
        assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
        let session = self.app.session().await;
        assert_eq!(
            (&session["flow"], &session["member_id"]),
            (&json!("oidc"), &json!("member-a")),
            "{session}"
        );
        self.provider.set(|k| k.sub = "member-b".into());
        self
    }

    /// `GET /auth/linkedin`, then the provider's consent: the callback URL it sends back.
    pub async fn authorize_and_consent(&self) -> Url {
        let authorization = start(&self.app, &self.browser).await;
        self.consent(&authorization).await
    }

    pub async fn consent(&self, authorization: &Url) -> Url {
        let response = self
            .provider
            .browser
            .get(authorization.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "{}", authorization);
        location(&response)
    }

    /// The app's callback, asking for JSON.
    pub async fn callback(&self, url: &Url) -> reqwest::Response {
        assert!(url.as_str().starts_with(&self.app.base), "{url}");
        self.browser
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
    }

    /// A whole sign-in, the callback's query edited on the way back.
    pub async fn tampered_round(
        &self,
        edit: impl FnOnce(&mut HashMap<String, String>),
    ) -> reqwest::Response {
        let mut back = self.authorize_and_consent().await;
        let mut pairs = query(&back);
        edit(&mut pairs);
        back.query_pairs_mut().clear().extend_pairs(&pairs);
        self.callback(&back).await
    }

    pub async fn round(&self) -> reqwest::Response {
        self.tampered_round(|_| {}).await
    }

    /// Runs `attempt`, checks that it is refused with `status` and `code` (JSON with a
    /// request id), and that the browser's session, its id and its content, is exactly as
    /// before. Returns the message.
    pub async fn refused(
        &self,
        status: u16,
        code: &str,
        attempt: impl Future<Output = reqwest::Response>,
    ) -> String {
        let (id, session) = (self.app.session_id(), self.app.session().await);
        assert!(id.is_some(), "a session to keep");
        let (got, body) = json_of(attempt.await).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(
            body["request_id"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}"
        );
        assert_eq!(self.app.session_id(), id, "the session id is unchanged");
        assert_eq!(self.app.session().await, session, "nothing is stored");
        body["message"].as_str().unwrap_or_default().to_owned()
    }

    /// A round whose id_token is refused: 401 `oidc_invalid_id_token`, its message naming
    /// `check`.
    pub async fn id_token_refused(&self, check: &str) {
        let message = self
            .refused(401, "oidc_invalid_id_token", self.round())
            .await;
        assert!(message.contains(check), "{check:?} in {message:?}");
        if check != "expired" {
            assert!(
                !message.contains("expired"),
                "only the failed check is named: {message:?}"
            );
        }
    }
}
