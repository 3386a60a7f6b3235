//! The sandbox's OpenID Connect provider: LinkedIn's as integrators observe it (SPEC, "LinkedIn
//! as it is observed"), not as its documentation reads, so that an app developed against it
//! meets LinkedIn's quirks on its first day rather than in production:
//! - the issuer is a path (`…/sandbox/oauth`), as LinkedIn's `/oauth`;
//! - discovery lists neither `code_challenge_methods_supported` nor
//!   `token_endpoint_auth_methods_supported`, yet the token endpoint takes `client_secret_post`;
//! - PKCE parameters at the authorization endpoint are ignored, and a token request carrying a
//!   `code_verifier` gets 401 `invalid_client`;
//! - a token request without `client_secret` in its form (HTTP Basic, say) gets 401
//!   `invalid_client` too; here its description names `client_secret_post`, where LinkedIn's
//!   says only "Client authentication failed";
//! - the id_token never carries `nonce`, whatever the request sent;
//! - `email_verified` is the string `"true"` in the id_token and a boolean in userinfo;
//!   `locale` is a string (`"en_US"`) in the id_token and an object in userinfo;
//! - `sub` is pairwise: derived from the client id and the member, 10 base64url characters
//!   like LinkedIn's, the same in the id_token and userinfo;
//! - codes are single use and bound to the exact `redirect_uri`; id_tokens are RS256 with a
//!   `kid`, and live an hour (`exp - iat = 3600`);
//! - a member who already allowed the app every scope asked for is sent straight back with a
//!   code, without the consent page (the "Renew" sign-in of an app whose token nears its
//!   end); `prompt=login` (or `prompt=consent`) shows the page anyway, to switch member. The
//!   sandbox has no LinkedIn session of its own: `sandbox_member` in the authorization
//!   request names the member signed in to LinkedIn in this browser, and without it the
//!   page asks;
//! - access tokens live `SANDBOX_TOKEN_TTL` (LinkedIn's 60 days by default) and then answer
//!   401; with `SANDBOX_REFRESH_TOKENS=true` the token answer carries `refresh_token` and
//!   `refresh_token_expires_in`, and `grant_type=refresh_token` answers a new access token
//!   with the same refresh token, whose end stays where its first issue put it
//!   (learn.microsoft.com, "Programmatic Refresh Tokens"); an expired or revoked one answers
//!   400 `invalid_grant`;
//! - `picture` is a signed URL of the sandbox's own that expires with the access token it
//!   came with (`e=`; LinkedIn's expire after about two months), served until then.
//!
//! The authorization endpoint (the consent page, the only URL a browser is sent to) is on the
//! first public origin; the other endpoints are where the server reaches itself. The consent
//! page's `form-action` admits the registered redirect URI's origin.
//!
//! It signs with code of its own (a JWS built here, signed by `ring`), not with the client's
//! verifying crate run backwards. Its RSA key is generated once per process (the `rsa`
//! crate; `ring` signs RSA but cannot generate keys). Routes, under `/sandbox`:
//! - `GET /oauth/.well-known/openid-configuration`
//! - `GET /oauth/v2/authorization` (the consent page) and `POST` (Allow or Cancel)
//! - `POST /oauth/v2/accessToken`
//! - `GET /oauth/openid/jwks`
//! - `GET /v2/userinfo`
//!
//! What it grants goes into the sandbox's ledger ([`super::tokens`]), which the REST routes
//! ([`super::rest`]) and the permitted-services page ([`super::permitted`]) share.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::handlers::{Routes, Verb};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use moka::sync::Cache;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use serde_json::{Value, json};

use super::tokens::{Flow, Issued, Ledger, Status};
use super::{DEFAULT_MEMBER_ID, now, random_token};
use crate::secret::Secret;

/// How long a code may be traded.
const CODE_TTL: Duration = Duration::from_secs(600);
/// How long an id_token is valid: LinkedIn's `exp - iat` is an hour.
const ID_TOKEN_TTL_SECS: i64 = 3_600;
/// What a refresh grant with a token that does not work answers (LinkedIn's words).
const BAD_REFRESH_TOKEN: &str =
    "The provided authorization grant or refresh token is invalid, expired or revoked";
/// Bounds on memory.
const MAX_GRANTS: u64 = 200_000;
/// The key of the pairwise subjects: fixed, so that a member keeps their `sub` for a client
/// id across restarts, as on LinkedIn.
const PAIRWISE_KEY: &[u8] = b"linkedin-token-exchange sandbox: pairwise subject";
/// The length of a subject: LinkedIn's are 10 base64url characters.
const SUB_LEN: usize = 10;

/// The client the sandbox provider knows.
#[derive(Clone, Debug)]
pub(crate) struct OidcSandboxConfig {
    /// The issuer, where the server reaches itself: `https://localhost:PORT/sandbox/oauth`
    /// (the token endpoint and the JWKS live under it).
    pub issuer: String,
    /// The sandbox's base where the server reaches itself: `https://localhost:PORT/sandbox`
    /// (userinfo lives there).
    pub api_base: String,
    /// The sandbox's base as the browser reaches it, on the first public origin:
    /// `https://127.0.0.1:PORT/sandbox` (the authorization endpoint lives there).
    pub browser_base: String,
    /// The registered client id.
    pub client_id: String,
    /// The registered client secret.
    pub client_secret: Secret,
    /// Where the provider may send the browser back to.
    pub redirect_uris: RedirectUris,
}

/// The redirect URIs a client registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RedirectUris {
    /// Exactly this one, as LinkedIn compares its registered redirect URLs.
    Registered(String),
    /// Any `http://` or `https://` URI on a loopback host (`localhost`, `127.0.0.1`, `[::1]`):
    /// the standalone sandbox started without `LINKEDIN_OIDC_REDIRECT_URL`, serving apps it
    /// cannot know in advance. LinkedIn itself has no such mode.
    AnyLoopback,
}

impl RedirectUris {
    /// Whether `uri` may be sent a code.
    pub(crate) fn admits(&self, uri: &str) -> bool {
        match self {
            Self::Registered(registered) => uri == registered,
            Self::AnyLoopback => url::Url::parse(uri).is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.username().is_empty()
                    && url.password().is_none()
                    && match url.host() {
                        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
                        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                        None => false,
                    }
            }),
        }
    }
}

/// The signing key: generated once per process.
struct SigningKey {
    pair: RsaKeyPair,
    kid: String,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

fn signing_key() -> Option<&'static SigningKey> {
    static KEY: OnceLock<Option<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::EncodePrivateKey;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).ok()?;
        let der = private.to_pkcs8_der().ok()?;
        let pair = RsaKeyPair::from_pkcs8(der.as_bytes()).ok()?;
        let modulus = private.n().to_bytes_be();
        let digest = ring::digest::digest(&ring::digest::SHA256, &modulus);
        Some(SigningKey {
            pair,
            kid: BASE64URL.encode(&digest.as_ref()[..8]),
            modulus,
            exponent: private.e().to_bytes_be(),
        })
    })
    .as_ref()
}

/// A code granted on Allow (or at once, to a member who allowed the app before). No
/// `nonce`: LinkedIn's id_tokens never carry one.
#[derive(Clone)]
struct Grant {
    member_id: String,
    redirect_uri: String,
    /// The scopes granted, comma-separated.
    scope: String,
    /// The ledger's stamp at the grant: a removal of the app since voids the code.
    stamp: u64,
}

#[derive(Clone)]
struct ProviderState(Arc<Provider>);

struct Provider {
    config: OidcSandboxConfig,
    codes: Cache<String, Grant>,
    ledger: Arc<Ledger>,
}

/// The provider's routes, to be merged into the sandbox's router (paths under `/sandbox`),
/// recording what they grant in `ledger`. The signing key is made at once on a thread of its
/// own, so that neither the start nor the first sign-in waits for RSA key generation.
pub(crate) fn router(config: OidcSandboxConfig, ledger: Arc<Ledger>) -> Router {
    std::thread::spawn(signing_key);
    let state = ProviderState(Arc::new(Provider {
        config,
        codes: Cache::builder()
            .max_capacity(MAX_GRANTS)
            .time_to_live(CODE_TTL)
            .build(),
        ledger,
    }));
    Router::new()
        .at(
            Verb::Get,
            "/oauth/.well-known/openid-configuration",
            discovery,
        )
        .at(Verb::Get, "/oauth/v2/authorization", consent)
        .at(Verb::Post, "/oauth/v2/authorization", decide)
        .at(Verb::Post, "/oauth/v2/accessToken", access_token)
        .at(Verb::Get, "/oauth/openid/jwks", jwks)
        .at(Verb::Get, "/v2/userinfo", userinfo)
        .with_state(state)
}

async fn discovery(State(state): State<ProviderState>) -> Json<Value> {
    let config = &state.0.config;
    Json(json!({
        "issuer": config.issuer,
        "authorization_endpoint": format!("{}/oauth/v2/authorization", config.browser_base),
        "token_endpoint": format!("{}/v2/accessToken", config.issuer),
        "userinfo_endpoint": format!("{}/v2/userinfo", config.api_base),
        "jwks_uri": format!("{}/openid/jwks", config.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email"],
        "claims_supported": ["iss", "aud", "iat", "exp", "sub", "name", "given_name",
            "family_name", "picture", "email", "email_verified", "locale"],
    }))
}

async fn jwks() -> Response {
    let Some(key) = signing_key() else {
        return unavailable();
    };
    Json(json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": key.kid,
        "n": BASE64URL.encode(&key.modulus), "e": BASE64URL.encode(&key.exponent),
    }]}))
    .into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "temporarily_unavailable"})),
    )
        .into_response()
}

/// An error page of the provider's own (it has no redirect to go back to).
fn refuse(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_request", "error_description": message})),
    )
        .into_response()
}

/// The authorization request's parameters. Anything else (`nonce`, `code_challenge`,
/// `code_challenge_method`) is ignored, as LinkedIn ignores it.
#[derive(Clone, Debug, Deserialize)]
struct AuthorizationRequest {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    /// Which sandbox member signs in (stands for the member signed in to LinkedIn).
    sandbox_member: Option<String>,
    /// `login` or `consent`: show the page even to a member who allowed the app before.
    prompt: Option<String>,
}

impl AuthorizationRequest {
    /// The scopes asked for, each once, in order (LinkedIn takes them space- or
    /// comma-separated).
    fn scopes(&self) -> Vec<&str> {
        let mut scopes: Vec<&str> = Vec::new();
        let asked = self.scope.as_deref().unwrap_or_default();
        for scope in asked.split(|c: char| c.is_whitespace() || c == ',') {
            if !scope.is_empty() && !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes
    }

    /// The member named, when valid.
    fn member(&self) -> Option<&str> {
        self.sandbox_member.as_deref().filter(|m| valid_member(m))
    }

    /// Whether the request asks for the page whatever the member allowed before.
    fn prompts(&self) -> bool {
        self.prompt
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .any(|p| p == "login" || p == "consent")
    }

    /// The request's own errors, which LinkedIn shows on its page rather than redirecting.
    fn check(&self, config: &OidcSandboxConfig) -> Result<(), &'static str> {
        if self.client_id.as_deref() != Some(config.client_id.as_str()) {
            return Err("unknown client_id");
        }
        if !self
            .redirect_uri
            .as_deref()
            .is_some_and(|uri| config.redirect_uris.admits(uri))
        {
            return Err("redirect_uri is not one registered for this client");
        }
        if self.response_type.as_deref() != Some("code") {
            return Err("response_type must be code");
        }
        if !self
            .scope
            .as_deref()
            .is_some_and(|s| s.split_whitespace().any(|s| s == "openid"))
        {
            return Err("scope must include openid");
        }
        Ok(())
    }
}

/// The consent page.
#[derive(Template, WebTemplate)]
#[template(path = "sandbox_consent.html")]
struct ConsentPage {
    client_id: String,
    redirect_uri: String,
    state: String,
    scope: String,
    member: String,
}

async fn consent(
    State(state): State<ProviderState>,
    Query(request): Query<AuthorizationRequest>,
) -> Response {
    if let Err(why) = request.check(&state.0.config) {
        return refuse(why);
    }
    // A member who already allowed every scope asked for goes straight back (LinkedIn shows
    // no consent screen to them), unless the request prompts.
    if let Some(member) = request.member()
        && !request.prompts()
        && state
            .0
            .ledger
            .consented(member, request.scopes().into_iter())
    {
        let member = member.to_owned();
        return grant(&state, &request, &member);
    }
    let page = ConsentPage {
        client_id: request.client_id.unwrap_or_default(),
        redirect_uri: request.redirect_uri.unwrap_or_default(),
        state: request.state.unwrap_or_default(),
        scope: request.scope.unwrap_or_default(),
        member: request
            .sandbox_member
            .filter(|m| valid_member(m))
            .unwrap_or_else(|| DEFAULT_MEMBER_ID.to_owned()),
    };
    let policy = consent_policy(&page.redirect_uri);
    (
        [(CACHE_CONTROL, "no-store")],
        [(CONTENT_SECURITY_POLICY, policy)],
        page,
    )
        .into_response()
}

/// The consent page's policy: the app's, except that its form may lead to the registered
/// redirect URI (Allow and Cancel answer with a redirect there, which Chromium checks against
/// `form-action`).
fn consent_policy(redirect_uri: &str) -> HeaderValue {
    let redirect = crate::csp::csp_source(redirect_uri);
    let policy = format!(
        "default-src 'self'; script-src 'self'; img-src 'self' data:; style-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'{redirect}; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'self'"))
}

fn valid_member(member: &str) -> bool {
    !member.is_empty()
        && member.len() <= 64
        && member
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The consent form: the request again, the member, and Allow or Cancel.
#[derive(Debug, Deserialize)]
struct Decision {
    #[serde(flatten)]
    request: AuthorizationRequest,
    decision: String,
}

async fn decide(State(state): State<ProviderState>, Form(form): Form<Decision>) -> Response {
    if let Err(why) = form.request.check(&state.0.config) {
        return refuse(why);
    }
    let request = form.request;
    if form.decision != "allow" {
        return back(
            &request,
            &[
                ("error", "user_cancelled_login"),
                ("error_description", "The user cancelled LinkedIn login"),
            ],
        );
    }
    let member = request.member().unwrap_or(DEFAULT_MEMBER_ID).to_owned();
    state
        .0
        .ledger
        .consent(&member, request.scopes(), Flow::Oidc, now());
    grant(&state, &request, &member)
}

/// A code for `member` and `request` (checked), sent back to its redirect URI.
fn grant(state: &ProviderState, request: &AuthorizationRequest, member: &str) -> Response {
    let code = random_token();
    state.0.codes.insert(
        code.clone(),
        Grant {
            member_id: member.to_owned(),
            redirect_uri: request.redirect_uri.clone().unwrap_or_default(),
            scope: request.scopes().join(","),
            stamp: state.0.ledger.stamp(),
        },
    );
    back(request, &[("code", &code)])
}

/// The redirect to `request`'s redirect URI (checked) with `pairs` and its `state`.
fn back(request: &AuthorizationRequest, pairs: &[(&str, &str)]) -> Response {
    let redirect_uri = request.redirect_uri.as_deref().unwrap_or_default();
    let mut target = match url::Url::parse(redirect_uri) {
        Ok(url) => url,
        Err(_) => return refuse("the registered redirect_uri does not parse"),
    };
    {
        let mut query = target.query_pairs_mut();
        query.extend_pairs(pairs);
        if let Some(s) = request.state.as_deref().filter(|s| !s.is_empty()) {
            query.append_pair("state", s);
        }
    }
    (StatusCode::FOUND, [(LOCATION, target.to_string())]).into_response()
}

/// The token request (`client_secret_post`).
#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code_verifier: Option<String>,
    /// `grant_type=refresh_token`'s token.
    refresh_token: Option<String>,
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Why a client that did not authenticate as LinkedIn wants (`client_secret_post`) failed:
/// LinkedIn says only "Client authentication failed", which leaves a developer whose library
/// sends HTTP Basic by default (`client_secret_basic`) guessing. The error keeps LinkedIn's
/// shape; only the description says more.
fn not_client_secret_post(headers: &HeaderMap) -> &'static str {
    let basic = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic"));
    if basic {
        "Client authentication failed: LinkedIn takes client_secret_post only, with client_id \
         and client_secret in the form body; it ignores an HTTP Basic Authorization header"
    } else {
        "Client authentication failed: no client_secret in the form body; LinkedIn takes \
         client_secret_post, with client_id and client_secret in the form body"
    }
}

async fn access_token(
    State(state): State<ProviderState>,
    headers: HeaderMap,
    Form(form): Form<TokenRequest>,
) -> Response {
    let config = &state.0.config;
    // LinkedIn answers a web app's PKCE with a client authentication failure (the code stays
    // unused).
    if form.code_verifier.is_some() {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let Some(given) = form.client_secret.as_deref().filter(|s| !s.is_empty()) else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            not_client_secret_post(&headers),
        );
    };
    let secret_matches = config.client_secret.matches(given);
    if form.client_id.as_deref() != Some(config.client_id.as_str()) || !secret_matches {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let refreshes = state.0.ledger.rules().refresh_ttl.is_some();
    match form.grant_type.as_deref() {
        Some("authorization_code") => {}
        Some("refresh_token") if refreshes => return refresh(&state, &form),
        _ => {
            let expected = if refreshes {
                "grant_type must be authorization_code or refresh_token"
            } else {
                "grant_type must be authorization_code"
            };
            return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", expected);
        }
    }
    // Single use: the code is gone whatever happens next.
    let Some(grant) = form
        .code
        .as_deref()
        .and_then(|code| state.0.codes.remove(code))
    else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The authorization code is invalid, used or expired",
        );
    };
    if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri does not match the authorization request",
        );
    }
    let ledger = &state.0.ledger;
    if ledger.revoked(&grant.member_id, grant.stamp) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The authorization code is invalid, used or expired",
        );
    }
    let Some(key) = signing_key() else {
        return unavailable();
    };
    let issued = now();
    let refresh = ledger.issue_refresh(&grant.member_id, &grant.scope, issued);
    let (token, access) = ledger.issue_bearer(
        &grant.member_id,
        &grant.scope,
        refresh.as_ref().map(|(_, r)| r.expires_at),
        issued,
    );
    let mut claims = profile_claims(&state, &grant.member_id, &access);
    // The id_token's shapes differ from userinfo's: `email_verified` a string, `locale` a
    // string. And no `nonce`, whatever the request sent.
    claims["email_verified"] = json!("true");
    claims["locale"] = json!("en_US");
    let extra = json!({
        "iss": config.issuer, "aud": config.client_id,
        "iat": issued, "exp": issued + ID_TOKEN_TTL_SECS,
    });
    if let (Value::Object(claims), Value::Object(extra)) = (&mut claims, extra) {
        claims.extend(extra);
    }
    let Some(id_token) = sign_jws(key, &claims) else {
        return unavailable();
    };
    let mut answer = token_answer(&token, &access, refresh.as_ref(), issued);
    answer["id_token"] = json!(id_token);
    ([(CACHE_CONTROL, "no-store")], Json(answer)).into_response()
}

/// A token answer: the access token, and the refresh token when there is one (with the
/// seconds its fixed end is away), as LinkedIn writes them.
fn token_answer(
    token: &str,
    access: &Issued,
    refresh: Option<&(String, Arc<Issued>)>,
    now: i64,
) -> Value {
    let mut answer = json!({
        "access_token": token,
        "expires_in": access.expires_at - now,
        "scope": access.scope,
        "token_type": "Bearer",
    });
    if let Some((refresh_token, refresh)) = refresh {
        answer["refresh_token"] = json!(refresh_token);
        answer["refresh_token_expires_in"] = json!(refresh.expires_at - now);
    }
    answer
}

/// `grant_type=refresh_token` (client already authenticated): a new access token, and the
/// same refresh token, whose end does not move.
fn refresh(state: &ProviderState, form: &TokenRequest) -> Response {
    let ledger = &state.0.ledger;
    let now = now();
    let Some(refresh_token) = form.refresh_token.as_deref().filter(|t| !t.is_empty()) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A required parameter \"refresh_token\" is missing",
        );
    };
    let Some(refresh) = ledger
        .refresh_token(refresh_token)
        .filter(|refresh| ledger.status(refresh, now) == Status::Active)
    else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", BAD_REFRESH_TOKEN);
    };
    let (token, access) = ledger.issue_bearer(
        &refresh.member,
        &refresh.scope,
        Some(refresh.expires_at),
        now,
    );
    let pair = (refresh_token.to_owned(), refresh);
    (
        [(CACHE_CONTROL, "no-store")],
        Json(token_answer(&token, &access, Some(&pair), now)),
    )
        .into_response()
}

/// A compact JWS, RS256, with the key's `kid`.
fn sign_jws(key: &SigningKey, claims: &Value) -> Option<String> {
    let header = json!({"alg": "RS256", "kid": key.kid, "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        BASE64URL.encode(serde_json::to_vec(&header).ok()?),
        BASE64URL.encode(serde_json::to_vec(claims).ok()?)
    );
    let mut signature = vec![0; key.pair.public().modulus_len()];
    key.pair
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .ok()?;
    Some(format!("{signing_input}.{}", BASE64URL.encode(signature)))
}

/// A member's subject for a client: pairwise, as LinkedIn's, so that two apps see two ids
/// for one member. The first 10 base64url characters of an HMAC-SHA256 over both.
fn pairwise_sub(client_id: &str, member_id: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, PAIRWISE_KEY);
    // Length-prefixed, so that no other (client id, member) pair signs the same bytes.
    let message = format!("{}:{client_id}{member_id}", client_id.len());
    let tag = ring::hmac::sign(&key, message.as_bytes());
    let mut sub = BASE64URL.encode(tag.as_ref());
    sub.truncate(SUB_LEN);
    sub
}

/// The member's pairwise subject for this client (LinkedIn's `sub`, and the `urn:li:person:`
/// id of the REST API).
pub(crate) fn subject(config: &OidcSandboxConfig, member_id: &str) -> String {
    pairwise_sub(&config.client_id, member_id)
}

/// What LinkedIn's userinfo says of a member for this client, with the picture URL signed to
/// expire with `access`, the token it is given with.
fn profile_claims(state: &ProviderState, member_id: &str, access: &Issued) -> Value {
    let config = &state.0.config;
    let (given, family) = if member_id == DEFAULT_MEMBER_ID {
        ("Ada", "Lovelace")
    } else {
        ("Sandbox", member_id)
    };
    let picture = format!(
        "{}{}",
        config.browser_base,
        state.0.ledger.picture_path(member_id, access.expires_at)
    );
    json!({
        "sub": subject(config, member_id),
        "name": format!("{given} {family}"),
        "given_name": given,
        "family_name": family,
        "picture": picture,
        "locale": {"country": "US", "language": "en"},
        "email": format!("{}@sandbox.example", member_id.to_ascii_lowercase()),
        "email_verified": true,
    })
}

async fn userinfo(State(state): State<ProviderState>, headers: HeaderMap) -> Response {
    let access = match super::rest::bearer(&state.0.ledger, &headers) {
        Ok(access) => access,
        Err(refusal) => return refusal.into_response(),
    };
    Json(profile_claims(&state, &access.member, &access)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_tokens_are_rs256_with_the_published_kid_and_verify_with_the_public_key() {
        let key = signing_key().unwrap();
        let token = sign_jws(key, &json!({"sub": "x"})).unwrap();
        let mut parts = token.split('.');
        let header: Value =
            serde_json::from_slice(&BASE64URL.decode(parts.next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], key.kid.as_str());
        let (body, signature) = token.rsplit_once('.').unwrap();
        let public = ring::signature::RsaPublicKeyComponents {
            n: &key.modulus,
            e: &key.exponent,
        };
        public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                body.as_bytes(),
                &BASE64URL.decode(signature).unwrap(),
            )
            .unwrap();
    }

    #[test]
    fn subjects_are_pairwise_stable_and_shaped_like_linkedins() {
        let sub = pairwise_sub("client-a", "SandboxAda");
        assert_eq!(sub, pairwise_sub("client-a", "SandboxAda"));
        assert_eq!(sub.len(), 10);
        assert!(
            sub.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{sub}"
        );
        assert_ne!(sub, pairwise_sub("client-b", "SandboxAda"));
        assert_ne!(sub, pairwise_sub("client-a", "SandboxGrace"));
        // The length prefix keeps the pairs apart.
        assert_ne!(pairwise_sub("ab", "c"), pairwise_sub("a", "bc"));
    }

    #[test]
    fn a_registered_redirect_uri_admits_itself_only_and_any_loopback_admits_loopback_hosts_only() {
        let registered = RedirectUris::Registered("https://app.example/cb".to_owned());
        assert!(registered.admits("https://app.example/cb"));
        assert!(!registered.admits("https://app.example/cb?x=1"));
        assert!(!registered.admits("https://app.example/cb/"));
        let loopback = RedirectUris::AnyLoopback;
        for admitted in [
            "http://localhost:3000/auth/callback",
            "https://127.0.0.1:8443/cb?x=1",
            "http://[::1]:5000/cb",
            "http://LOCALHOST/cb",
        ] {
            assert!(loopback.admits(admitted), "{admitted}");
        }
        for refused in [
            "https://app.example/cb",
            "http://localhost.evil.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://user@localhost/cb",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "ftp://localhost/cb",
            "/cb",
            "",
        ] {
            assert!(!loopback.admits(refused), "{refused}");
        }
    }

    #[test]
    fn the_consent_policy_admits_the_redirect_uris_origin_only() {
        let policy = consent_policy("https://app.example:8443/auth/linkedin/callback?x=1");
        let policy = policy.to_str().unwrap();
        assert!(
            policy.contains("form-action 'self' https://app.example:8443;"),
            "{policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        let policy = consent_policy("not a url");
        assert!(
            policy.to_str().unwrap().contains("form-action 'self';"),
            "{policy:?}"
        );
    }
}
