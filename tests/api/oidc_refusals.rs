//! OpenID Connect sign-ins that must fail, against a provider that misbehaves on purpose:
//! every refusal answers the code SPEC names and leaves the browser's session as it was.
//! Last, the sandbox's own provider, checked with a verifier that is not the service's.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use linkedin_token_exchange::secret::Secret;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value, json};
use url::Url;

use crate::helpers::{TestApp, json_of, test_config};
use crate::oidc::{location, query, start, step_by_step, step_by_step_with};

const CLIENT_ID: &str = "rp-client";
const CLIENT_SECRET: &str = "rp-secret-7Qx";
/// The app's `upstream_timeout_ms` against the provider (with room for a loaded machine).
const TIMEOUT_MS: u64 = 2_000;

// ---------------------------------------------------------------------------------------
// The provider's keys: made once per test process.

struct TestKey {
    kid: &'static str,
    private: EncodingKey,
    jwk: Value,
    public_pem: String,
}

impl TestKey {
    fn generate(kid: &'static str) -> TestKey {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let der = private.to_pkcs1_der().unwrap();
        TestKey {
            kid,
            private: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": B64URL.encode(private.n().to_bytes_be()),
                "e": B64URL.encode(private.e().to_bytes_be()),
            }),
            public_pem: private
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        }
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
// The misbehaving provider.

/// How the id_token is signed.
#[derive(Clone, Copy, Debug, Default)]
enum Signing {
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
enum TokenAnswer {
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
struct Knobs {
    /// The id_token's `sub`.
    sub: String,
    /// Claims replaced in the id_token (`null`: left out).
    claims: Map<String, Value>,
    signing: Signing,
    token: TokenAnswer,
    /// Discovery lists `code_challenge_methods_supported: ["S256"]`.
    pkce: bool,
    /// The JWKS lists the rotated key from this fetch (1-based) on.
    rotated_from_fetch: Option<usize>,
}

/// A code the authorization endpoint gave out.
struct Grant {
    redirect_uri: String,
    nonce: Option<String>,
    challenge: Option<String>,
}

struct ProviderState {
    issuer: String,
    knobs: Knobs,
    codes: HashMap<String, Grant>,
    access_tokens: HashMap<String, String>,
    issued: usize,
    jwks_fetches: usize,
    token_requests: Vec<HashMap<String, String>>,
}

type Shared = Arc<Mutex<ProviderState>>;

/// A plain-HTTP OpenID Connect provider on 127.0.0.1, issuer `http://127.0.0.1:PORT/oauth`.
struct Provider {
    issuer: Url,
    state: Shared,
    /// A browser for the provider's side: no redirects followed.
    browser: reqwest::Client,
}

impl Provider {
    async fn start(pkce: bool) -> Provider {
        // The keys are made before any request can wait on them: RSA generation must not eat
        // into the app's upstream deadline on a busy machine.
        tokio::task::spawn_blocking(keys).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}/oauth");
        let state = Arc::new(Mutex::new(ProviderState {
            issuer: issuer.clone(),
            knobs: Knobs {
                sub: "member-a".into(),
                claims: Map::new(),
                signing: Signing::default(),
                token: TokenAnswer::default(),
                pkce,
                rotated_from_fetch: None,
            },
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            issued: 0,
            jwks_fetches: 0,
            token_requests: Vec::new(),
        }));
        let app = Router::new()
            .route("/oauth/.well-known/openid-configuration", get(discovery))
            .route("/oauth/v2/authorization", get(authorization))
            .route("/oauth/v2/accessToken", post(token))
            .route("/oauth/openid/jwks", get(jwks))
            .route("/v2/userinfo", get(userinfo))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        linkedin_token_exchange::tls::install_crypto_provider();
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
    fn set(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.state.lock().unwrap().knobs);
    }

    /// Replaces one claim of the next id_tokens (`null`: leaves it out).
    fn claim(&self, name: &str, value: Value) {
        self.set(|k| {
            k.claims.insert(name.into(), value);
        });
    }

    fn jwks_fetches(&self) -> usize {
        self.state.lock().unwrap().jwks_fetches
    }

    fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().token_requests.clone()
    }

    /// `http://127.0.0.1:PORT`, with no path.
    fn origin(&self) -> String {
        self.issuer.origin().ascii_serialization()
    }
}

async fn discovery(State(state): State<Shared>) -> Json<Value> {
    let state = state.lock().unwrap();
    let issuer = &state.issuer;
    let mut metadata = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/v2/authorization"),
        "token_endpoint": format!("{issuer}/v2/accessToken"),
        "userinfo_endpoint": issuer.replace("/oauth", "/v2/userinfo"),
        "jwks_uri": format!("{issuer}/openid/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
    });
    if state.knobs.pkce {
        metadata["code_challenge_methods_supported"] = json!(["S256"]);
    }
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
        || (pkce_sent && !state.knobs.pkce)
    {
        return oauth_error(400, "invalid_request", "refused by the test provider");
    }
    let Some(redirect_uri) = asked.get("redirect_uri") else {
        return oauth_error(400, "invalid_request", "no redirect_uri");
    };
    state.issued += 1;
    let code = format!("code-{}", state.issued);
    state.codes.insert(
        code.clone(),
        Grant {
            redirect_uri: redirect_uri.clone(),
            nonce: asked.get("nonce").cloned(),
            challenge: asked.get("code_challenge").cloned(),
        },
    );
    let mut back = Url::parse(redirect_uri).unwrap();
    back.query_pairs_mut().append_pair("code", &code);
    if let Some(s) = asked.get("state") {
        back.query_pairs_mut().append_pair("state", s);
    }
    (StatusCode::FOUND, [(LOCATION, back.to_string())]).into_response()
}

async fn token(State(state): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let answer = {
        let mut state = state.lock().unwrap();
        state.token_requests.push(form.clone());
        state.knobs.token
    };
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
    /// redirect URI, PKCE when the code was asked with it), then the token answer.
    fn exchange(&mut self, form: &HashMap<String, String>) -> Response {
        let field = |name: &str| form.get(name).map(String::as_str);
        if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
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
        let mut claims = json!({
            "iss": self.issuer, "aud": CLIENT_ID, "sub": sub,
            "iat": now, "exp": now + 3_600, "nonce": grant.nonce,
            "name": format!("Member {sub}"), "email": format!("{sub}@example.test"),
        });
        for (name, value) in &self.knobs.claims {
            claims[name] = value.clone();
        }
        if let Value::Object(claims) = &mut claims {
            claims.retain(|_, value| !value.is_null());
        }
        self.issued += 1;
        let access_token = format!("access-{}", self.issued);
        self.access_tokens.insert(access_token.clone(), sub);
        Json(json!({
            "access_token": access_token,
            "expires_in": 5_184_000,
            "scope": "openid,profile,email",
            "token_type": "Bearer",
            "id_token": sign(self.knobs.signing, &claims),
        }))
        .into_response()
    }
}

async fn jwks(State(state): State<Shared>) -> Json<Value> {
    let mut state = state.lock().unwrap();
    state.jwks_fetches += 1;
    let mut listed = vec![keys().current.jwk.clone()];
    if state
        .knobs
        .rotated_from_fetch
        .is_some_and(|from| state.jwks_fetches >= from)
    {
        listed.push(keys().rotated.jwk.clone());
    }
    Json(json!({ "keys": listed }))
}

async fn userinfo(State(state): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    let state = state.lock().unwrap();
    let member = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| state.access_tokens.get(token));
    match member {
        Some(sub) => {
            Json(json!({"sub": sub, "email": format!("{sub}@example.test")})).into_response()
        }
        None => oauth_error(401, "invalid_token", "unknown access token"),
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
fn s256(verifier: &str) -> String {
    B64URL.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

fn unix_now() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(elapsed.as_secs()).unwrap()
}

// ---------------------------------------------------------------------------------------
// The app in real mode against the provider, and a browser that walks the redirects.

struct Rig {
    provider: Provider,
    app: TestApp,
    browser: reqwest::Client,
}

impl Rig {
    async fn new(pkce: bool) -> Rig {
        let provider = Provider::start(pkce).await;
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config(&dir);
        config.sandbox = Some(false);
        config.linkedin_client_id = Some(CLIENT_ID.into());
        config.linkedin_client_secret = Some(Secret::new(CLIENT_SECRET));
        config.linkedin_oidc_issuer = Some(provider.issuer.clone());
        config.upstream_timeout_ms = TIMEOUT_MS;
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
    async fn signed_in() -> Rig {
        let rig = Rig::new(false).await;
        let response = rig.round().await;
        assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
        let session = rig.app.session().await;
        assert_eq!(
            (&session["flow"], &session["member_id"]),
            (&json!("oidc"), &json!("member-a")),
            "{session}"
        );
        rig.provider.set(|k| k.sub = "member-b".into());
        rig
    }

    /// `GET /auth/linkedin`, then the provider's consent: the callback URL it sends back.
    async fn authorize_and_consent(&self) -> Url {
        let authorization = start(&self.app, &self.browser).await;
        self.consent(&authorization).await
    }

    async fn consent(&self, authorization: &Url) -> Url {
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
    async fn callback(&self, url: &Url) -> reqwest::Response {
        assert!(url.as_str().starts_with(&self.app.base), "{url}");
        self.browser
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
    }

    /// A whole sign-in, the callback's query edited on the way back.
    async fn tampered_round(
        &self,
        edit: impl FnOnce(&mut HashMap<String, String>),
    ) -> reqwest::Response {
        let mut back = self.authorize_and_consent().await;
        let mut pairs = query(&back);
        edit(&mut pairs);
        back.query_pairs_mut().clear().extend_pairs(&pairs);
        self.callback(&back).await
    }

    async fn round(&self) -> reqwest::Response {
        self.tampered_round(|_| {}).await
    }

    /// Runs `attempt`, checks that it is refused with `status` and `code` (JSON with a
    /// request id), and that the browser's session, its id and its content, is exactly as
    /// before. Returns the message.
    async fn refused(
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
    async fn id_token_refused(&self, check: &str) {
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

// ---------------------------------------------------------------------------------------
// The id_token.

#[tokio::test]
async fn an_id_token_from_another_issuer_or_linkedins_old_pathless_issuer_is_refused() {
    let rig = Rig::signed_in().await;
    for issuer in [
        "https://evil.example/oauth".to_owned(),
        rig.provider.origin(),
        format!("{}/", rig.provider.issuer),
    ] {
        rig.provider.claim("iss", json!(issuer));
        rig.id_token_refused("issuer").await;
    }
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    let rig = Rig::signed_in().await;
    rig.provider.claim("aud", json!("another-client"));
    rig.id_token_refused("audience").await;
    rig.provider.claim("aud", json!(["another-client"]));
    rig.id_token_refused("audience").await;
}

#[tokio::test]
async fn an_id_token_expired_two_minutes_ago_is_refused() {
    let rig = Rig::signed_in().await;
    let now = unix_now();
    rig.provider.claim("iat", json!(now - 3_720));
    rig.provider.claim("exp", json!(now - 120));
    rig.id_token_refused("expired").await;
}

#[tokio::test]
async fn an_id_token_issued_more_than_a_minute_in_the_future_is_refused() {
    let rig = Rig::signed_in().await;
    for ahead in [120, 86_400] {
        let iat = unix_now() + ahead;
        rig.provider.claim("iat", json!(iat));
        rig.provider.claim("exp", json!(iat + 3_600));
        rig.id_token_refused("issued in the future").await;
    }
}

#[tokio::test]
async fn an_id_token_signed_with_a_key_the_jwks_does_not_hold_is_refused() {
    let rig = Rig::signed_in().await;
    rig.provider.set(|k| k.signing = Signing::OtherKey);
    rig.id_token_refused("signature").await;
}

#[tokio::test]
async fn an_unsigned_id_token_with_alg_none_is_refused() {
    let rig = Rig::signed_in().await;
    rig.provider.set(|k| k.signing = Signing::Unsigned);
    rig.id_token_refused("signature").await;
}

#[tokio::test]
async fn an_hs256_id_token_keyed_with_the_providers_public_key_is_refused() {
    let rig = Rig::signed_in().await;
    rig.provider
        .set(|k| k.signing = Signing::Hs256WithPublicKey);
    rig.id_token_refused("signature").await;
}

#[tokio::test]
async fn an_unknown_kid_is_accepted_after_exactly_one_more_jwks_fetch() {
    let rig = Rig::signed_in().await;
    let fetched = rig.provider.jwks_fetches();
    assert_eq!(fetched, 1, "discovery fetched the key set once");
    rig.provider.set(|k| {
        k.signing = Signing::Rotated;
        k.rotated_from_fetch = Some(fetched + 1);
    });

    let response = rig.round().await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(rig.provider.jwks_fetches(), fetched + 1, "one refetch");
    assert_eq!(rig.app.session().await["member_id"], "member-b");
    let me: Value = rig.app.get("/me").await.json().await.unwrap();
    assert_eq!(me["sub"], "member-b", "{me}");

    // The refetched set is kept: the next sign-in with the new key fetches nothing.
    rig.provider.set(|k| k.sub = "member-c".into());
    let response = rig.round().await;
    assert_eq!(response.status(), 303);
    assert_eq!(rig.provider.jwks_fetches(), fetched + 1, "no fetch");
}

#[tokio::test]
async fn a_kid_still_unknown_after_one_refetch_is_refused_without_another() {
    let rig = Rig::signed_in().await;
    rig.provider.set(|k| k.signing = Signing::Rotated);
    let fetched = rig.provider.jwks_fetches();
    rig.id_token_refused("kid").await;
    assert_eq!(
        rig.provider.jwks_fetches(),
        fetched + 1,
        "exactly one refetch"
    );
}

#[tokio::test]
async fn a_missing_or_wrong_nonce_is_refused() {
    let rig = Rig::signed_in().await;
    for nonce in [Value::Null, json!("not-the-nonce")] {
        rig.provider.claim("nonce", nonce);
        rig.id_token_refused("nonce").await;
    }
}

// ---------------------------------------------------------------------------------------
// The callback's parameters.

#[tokio::test]
async fn a_missing_forged_foreign_or_replayed_state_is_a_state_mismatch_before_any_exchange() {
    let rig = Rig::signed_in().await;
    let exchanged = rig.provider.token_requests().len();
    let missing = rig.tampered_round(|q| {
        q.remove("state");
    });
    rig.refused(400, "oidc_state_mismatch", missing).await;
    let forged = rig.tampered_round(|q| {
        q.insert("state".into(), "forged-state".into());
    });
    rig.refused(400, "oidc_state_mismatch", forged).await;

    // A state issued to another browser is unknown to this one.
    let theirs = step_by_step_with(&rig.app, Arc::default());
    let their_callback = rig.consent(&start(&rig.app, &theirs).await).await;
    rig.refused(400, "oidc_state_mismatch", rig.callback(&their_callback))
        .await;
    assert_eq!(
        rig.provider.token_requests().len(),
        exchanged,
        "no code traded"
    );

    // A state that succeeded once, used again.
    let back = rig.authorize_and_consent().await;
    let response = rig.callback(&back).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(rig.app.session().await["member_id"], "member-b");
    rig.refused(400, "oidc_state_mismatch", rig.callback(&back))
        .await;
    assert_eq!(rig.provider.token_requests().len(), exchanged + 1);
}

#[tokio::test]
async fn a_cancelled_login_is_oidc_denied_naming_the_providers_error() {
    let rig = Rig::signed_in().await;
    let message = rig
        .refused(
            400,
            "oidc_denied",
            rig.tampered_round(|q| {
                q.remove("code");
                q.insert("error".into(), "user_cancelled_login".into());
                q.insert(
                    "error_description".into(),
                    "The user cancelled LinkedIn login".into(),
                );
            }),
        )
        .await;
    assert!(message.contains("user_cancelled_login"), "{message}");
}

// ---------------------------------------------------------------------------------------
// The token endpoint.

#[tokio::test]
async fn a_code_the_token_endpoint_refuses_is_upstream_rejected_naming_invalid_grant() {
    let rig = Rig::signed_in().await;
    rig.provider.set(|k| {
        k.token = TokenAnswer::Status(
            400,
            r#"{"error":"invalid_grant","error_description":"The code has expired"}"#,
        );
    });
    let message = rig.refused(502, "upstream_rejected", rig.round()).await;
    assert!(message.contains("invalid_grant"), "{message}");
}

#[tokio::test]
async fn a_token_endpoint_failing_with_500_is_upstream_unavailable() {
    let rig = Rig::signed_in().await;
    rig.provider
        .set(|k| k.token = TokenAnswer::Status(500, r#"{"error":"server_error"}"#));
    rig.refused(502, "upstream_unavailable", rig.round()).await;
}

#[tokio::test]
async fn a_token_endpoint_answering_garbage_is_upstream_malformed() {
    let rig = Rig::signed_in().await;
    rig.provider
        .set(|k| k.token = TokenAnswer::Status(200, r#"{"access_token": "#));
    rig.refused(502, "upstream_malformed", rig.round()).await;
}

#[tokio::test]
async fn a_token_endpoint_slower_than_the_upstream_timeout_is_upstream_timeout() {
    let rig = Rig::signed_in().await;
    let late = Duration::from_millis(TIMEOUT_MS * 3);
    rig.provider.set(|k| k.token = TokenAnswer::Slow(late));
    let started = std::time::Instant::now();
    rig.refused(504, "upstream_timeout", rig.round()).await;
    assert!(started.elapsed() < late, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_code_used_twice_is_upstream_rejected_the_second_time() {
    let rig = Rig::signed_in().await;
    let first = rig.authorize_and_consent().await;
    let response = rig.callback(&first).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let code = query(&first)["code"].clone();

    let message = rig
        .refused(
            502,
            "upstream_rejected",
            rig.tampered_round(|q| {
                q.insert("code".into(), code.clone());
            }),
        )
        .await;
    assert!(message.contains("invalid_grant"), "{message}");
    let traded: Vec<_> = rig
        .provider
        .token_requests()
        .into_iter()
        .filter(|r| r.get("code") == Some(&code))
        .collect();
    assert_eq!(traded.len(), 2, "the same code, twice");
}

// ---------------------------------------------------------------------------------------
// PKCE.

#[tokio::test]
async fn pkce_s256_is_used_when_discovery_lists_it() {
    let rig = Rig::new(true).await;
    let authorization = start(&rig.app, &rig.browser).await;
    let asked = query(&authorization);
    assert_eq!(
        asked.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    let challenge = asked
        .get("code_challenge")
        .expect("a code_challenge")
        .clone();

    let back = rig.consent(&authorization).await;
    let response = rig.callback(&back).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let requests = rig.provider.token_requests();
    let verifier = requests[0].get("code_verifier").expect("a code_verifier");
    assert_eq!(s256(verifier), challenge);
}

#[tokio::test]
async fn pkce_is_left_out_when_discovery_lists_no_method_and_the_secret_goes_in_the_form() {
    let rig = Rig::new(false).await;
    let authorization = start(&rig.app, &rig.browser).await;
    let asked = query(&authorization);
    assert!(!asked.contains_key("code_challenge"), "{authorization}");
    assert!(
        !asked.contains_key("code_challenge_method"),
        "{authorization}"
    );

    let back = rig.consent(&authorization).await;
    let response = rig.callback(&back).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let request = &rig.provider.token_requests()[0];
    assert!(!request.contains_key("code_verifier"), "{request:?}");
    assert_eq!(request["client_id"], CLIENT_ID);
    assert_eq!(request["client_secret"], CLIENT_SECRET);
    assert_eq!(
        request["redirect_uri"],
        rig.app.url("/auth/linkedin/callback")
    );
}
