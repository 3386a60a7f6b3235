//! The sandbox's OpenID Connect provider, emulating LinkedIn's, quirks included: the issuer
//! is a path (`…/sandbox/oauth`), discovery lists no PKCE methods and PKCE parameters are
//! refused, the token endpoint takes `client_secret_post`, codes are single use and bound to
//! the exact `redirect_uri`, and id_tokens are RS256 with a `kid`.
//!
//! It signs with code of its own (a JWS built here, signed by `ring`), not with the client's
//! verifying crate run backwards. Its RSA key is generated once per process (the `rsa`
//! crate; `ring` signs RSA but cannot generate keys). Routes, under `/sandbox`:
//! - `GET /oauth/.well-known/openid-configuration`
//! - `GET /oauth/v2/authorization` (the consent page) and `POST` (Allow or Cancel)
//! - `POST /oauth/v2/accessToken`
//! - `GET /oauth/openid/jwks`
//! - `GET /v2/userinfo`

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use moka::sync::Cache;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DEFAULT_MEMBER_ID, now, random_token};
use crate::secret::Secret;

/// How long a code may be traded.
const CODE_TTL: Duration = Duration::from_secs(600);
/// LinkedIn's access tokens: 60 days.
const ACCESS_TOKEN_TTL_SECS: u64 = 5_184_000;
/// How long an id_token is valid.
const ID_TOKEN_TTL_SECS: i64 = 3_600;
/// Bounds on memory.
const MAX_GRANTS: u64 = 200_000;

/// The client the sandbox provider knows.
#[derive(Clone, Debug)]
pub struct OidcSandboxConfig {
    /// The issuer: `https://localhost:PORT/sandbox/oauth`.
    pub issuer: String,
    /// The sandbox's base: `https://localhost:PORT/sandbox` (userinfo lives there).
    pub api_base: String,
    /// The registered client id.
    pub client_id: String,
    /// The registered client secret.
    pub client_secret: Secret,
    /// The one registered redirect URI.
    pub redirect_uri: String,
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

/// A code granted on Allow.
#[derive(Clone)]
struct Grant {
    member_id: String,
    redirect_uri: String,
    nonce: Option<String>,
}

#[derive(Clone)]
struct ProviderState(Arc<Provider>);

struct Provider {
    config: OidcSandboxConfig,
    codes: Cache<String, Grant>,
    access_tokens: Cache<String, String>,
}

/// The provider's routes, to be merged into the sandbox's router (paths under `/sandbox`).
/// The signing key is made at once on a thread of its own, so that neither the start nor the
/// first sign-in waits for RSA key generation.
pub fn router(config: OidcSandboxConfig) -> Router {
    std::thread::spawn(signing_key);
    let state = ProviderState(Arc::new(Provider {
        config,
        codes: Cache::builder()
            .max_capacity(MAX_GRANTS)
            .time_to_live(CODE_TTL)
            .build(),
        access_tokens: Cache::builder()
            .max_capacity(MAX_GRANTS)
            .time_to_live(Duration::from_secs(ACCESS_TOKEN_TTL_SECS))
            .build(),
    }));
    Router::new()
        .route("/oauth/.well-known/openid-configuration", get(discovery))
        .route("/oauth/v2/authorization", get(consent).post(decide))
        .route("/oauth/v2/accessToken", post(access_token))
        .route("/oauth/openid/jwks", get(jwks))
        .route("/v2/userinfo", get(userinfo))
        .with_state(state)
}

async fn discovery(State(state): State<ProviderState>) -> Json<Value> {
    let config = &state.0.config;
    Json(json!({
        "issuer": config.issuer,
        "authorization_endpoint": format!("{}/v2/authorization", config.issuer),
        "token_endpoint": format!("{}/v2/accessToken", config.issuer),
        "userinfo_endpoint": format!("{}/v2/userinfo", config.api_base),
        "jwks_uri": format!("{}/openid/jwks", config.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email"],
        "claims_supported": ["iss", "aud", "iat", "exp", "sub", "name", "given_name",
            "family_name", "picture", "email", "email_verified", "locale"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
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

/// The authorization request's parameters.
#[derive(Clone, Debug, Deserialize)]
struct AuthorizationRequest {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// Which sandbox member signs in.
    sandbox_member: Option<String>,
}

impl AuthorizationRequest {
    /// The request's own errors, which LinkedIn shows on its page rather than redirecting.
    fn check(&self, config: &OidcSandboxConfig) -> Result<(), &'static str> {
        if self.code_challenge.is_some() || self.code_challenge_method.is_some() {
            return Err("PKCE parameters (code_challenge) are not supported");
        }
        if self.client_id.as_deref() != Some(config.client_id.as_str()) {
            return Err("unknown client_id");
        }
        if self.redirect_uri.as_deref() != Some(config.redirect_uri.as_str()) {
            return Err("redirect_uri is not the one registered for this client");
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
    nonce: String,
    member: String,
}

async fn consent(
    State(state): State<ProviderState>,
    Query(request): Query<AuthorizationRequest>,
) -> Response {
    if let Err(why) = request.check(&state.0.config) {
        return refuse(why);
    }
    let page = ConsentPage {
        client_id: request.client_id.unwrap_or_default(),
        redirect_uri: request.redirect_uri.unwrap_or_default(),
        state: request.state.unwrap_or_default(),
        scope: request.scope.unwrap_or_default(),
        nonce: request.nonce.unwrap_or_default(),
        member: request
            .sandbox_member
            .filter(|m| valid_member(m))
            .unwrap_or_else(|| DEFAULT_MEMBER_ID.to_owned()),
    };
    ([(CACHE_CONTROL, "no-store")], page).into_response()
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
    let config = &state.0.config;
    if let Err(why) = form.request.check(config) {
        return refuse(why);
    }
    let request = form.request;
    let mut target = match url::Url::parse(&config.redirect_uri) {
        Ok(url) => url,
        Err(_) => return refuse("the registered redirect_uri does not parse"),
    };
    {
        let mut query = target.query_pairs_mut();
        if form.decision == "allow" {
            let member = request
                .sandbox_member
                .filter(|m| valid_member(m))
                .unwrap_or_else(|| DEFAULT_MEMBER_ID.to_owned());
            let code = random_token();
            state.0.codes.insert(
                code.clone(),
                Grant {
                    member_id: member,
                    redirect_uri: config.redirect_uri.clone(),
                    nonce: request.nonce.filter(|n| !n.is_empty()),
                },
            );
            query.append_pair("code", &code);
        } else {
            query.append_pair("error", "user_cancelled_login");
            query.append_pair("error_description", "The user cancelled LinkedIn login");
        }
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
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn access_token(
    State(state): State<ProviderState>,
    Form(form): Form<TokenRequest>,
) -> Response {
    let config = &state.0.config;
    let secret_matches = form
        .client_secret
        .as_deref()
        .is_some_and(|given| config.client_secret.matches(given));
    if form.client_id.as_deref() != Some(config.client_id.as_str()) || !secret_matches {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    if form.code_verifier.is_some() {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "PKCE is not supported",
        );
    }
    if form.grant_type.as_deref() != Some("authorization_code") {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code",
        );
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
    let Some(key) = signing_key() else {
        return unavailable();
    };
    let issued = now();
    let mut claims = profile_claims(&grant.member_id);
    // In the id_token the locale is a language tag; userinfo gives LinkedIn's object.
    claims["locale"] = json!("en-US");
    let extra = json!({
        "iss": config.issuer, "aud": config.client_id, "sub": grant.member_id,
        "iat": issued, "exp": issued + ID_TOKEN_TTL_SECS,
    });
    if let (Value::Object(claims), Value::Object(extra)) = (&mut claims, extra) {
        claims.extend(extra);
        if let Some(nonce) = grant.nonce {
            claims.insert("nonce".into(), Value::String(nonce));
        }
    }
    let Some(id_token) = sign_jws(key, &claims) else {
        return unavailable();
    };
    let token = random_token();
    state.0.access_tokens.insert(token.clone(), grant.member_id);
    (
        [(CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": token,
            "expires_in": ACCESS_TOKEN_TTL_SECS,
            "scope": "openid,profile,email",
            "token_type": "Bearer",
            "id_token": id_token,
        })),
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

/// What LinkedIn says of a member.
fn profile_claims(member_id: &str) -> Value {
    let (given, family) = if member_id == DEFAULT_MEMBER_ID {
        ("Ada", "Lovelace")
    } else {
        ("Sandbox", member_id)
    };
    json!({
        "sub": member_id,
        "name": format!("{given} {family}"),
        "given_name": given,
        "family_name": family,
        "picture": format!("https://media.licdn.com/sandbox/{member_id}.png"),
        "locale": {"country": "US", "language": "en"},
        "email": format!("{}@sandbox.example", member_id.to_ascii_lowercase()),
        "email_verified": true,
    })
}

async fn userinfo(State(state): State<ProviderState>, headers: HeaderMap) -> Response {
    let member = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| state.0.access_tokens.get(token.trim()));
    match member {
        Some(member) => Json(profile_claims(&member)).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"serviceErrorCode": 65600, "message": "Invalid access token", "status": 401})),
        )
            .into_response(),
    }
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
}
