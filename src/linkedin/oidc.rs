//! I/O: the relying party of "Sign In with LinkedIn using OpenID Connect" (crate
//! `openidconnect`), over the service's one upstream HTTPS client.
//!
//! It signs members in against LinkedIn as LinkedIn behaves, which is not quite as its
//! documentation reads (SPEC, "LinkedIn as it is observed"):
//! - the id_token carries no `nonce`: one is always sent, a present one must match, a missing
//!   one is accepted unless [`OidcSettings::require_nonce`];
//! - `email_verified` is the string `"true"` in the id_token (the crate's
//!   `accept-string-booleans`);
//! - discovery lists no `token_endpoint_auth_methods_supported`, yet the token endpoint wants
//!   `client_secret_post`: always used;
//! - a web app's PKCE `code_verifier` gets 401 `invalid_client`: PKCE follows
//!   [`PkceMode`], by default only when discovery lists `S256` (LinkedIn's does not);
//! - JWKS keys may lack `alg` and `use`: an RSA key is taken by `kty` and `kid`;
//! - the issuer (a path, `https://www.linkedin.com/oauth`) is compared exactly, and a refusal
//!   logs the issuer seen.
//!
//! Discovery (with the JWKS) is fetched at first use and kept for [`DISCOVERY_TTL`]; then the
//! first reader starts one refresh in the background and every reader goes on with the cached
//! copy, which a failing provider leaves in use until it is [`MAX_STALE`] old. When no usable
//! copy exists, one fetch is in flight at a time and its waiters share its result. An id_token
//! signed with a key the cached JWKS lacks triggers one JWKS refetch, at most one per
//! [`JWKS_REFETCH_COOLDOWN`] across all requests; a refetch that failed is the answer for
//! the rest of the cooldown. Deciding what the caller sees is `error`'s.
//!
//! `check-provider` reads the provider through `probe`, the same fetches as a sign-in.
//!
//! Beside the sign-in, the calls that keep a session's credentials honest
//! (`session::upkeep` decides when): [`OidcClient::refresh`], LinkedIn's refresh grant for
//! partner apps (learn.microsoft.com, "Programmatic Refresh Tokens": a plain
//! `grant_type=refresh_token` form POST to the token endpoint, whose answer carries no
//! `token_type`), and [`OidcClient::introspect`], LinkedIn's token introspection
//! (learn.microsoft.com, "Token Introspection": `active`, and `status` `active`, `expired` or
//! `revoked`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AsyncHttpClient, AuthType, AuthenticationFlow, AuthorizationCode,
    ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, DiscoveryError, ExtraTokenFields,
    HttpRequest, HttpResponse, IdTokenFields, IssuerUrl, JsonWebKeySetUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, StandardTokenResponse, TokenResponse,
};
use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use super::transport::{Transport, UpstreamError, status_error};
use crate::config::PkceMode;
use crate::secret::Secret;
use crate::text::escape_text;

/// How long discovery and the JWKS are used before a refresh is started.
pub(crate) const DISCOVERY_TTL: Duration = Duration::from_secs(3_600);
/// How long the last good discovery keeps serving while refreshes fail.
pub(crate) const MAX_STALE: Duration = Duration::from_secs(24 * 3_600);
/// The least time between two JWKS refetches for an unknown `kid`.
pub(crate) const JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(60);
/// The id_token signature algorithms accepted: asymmetric only (never `none`, never HMAC,
/// whose key would be the client secret).
const ACCEPTED: [CoreJwsSigningAlgorithm; 7] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];
/// [`ACCEPTED`] as JOSE names, for the provider check.
pub(crate) const ACCEPTED_ALGS: [&str; 7] = [
    "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];
/// How far in the future an id_token's `iat` may lie (clock skew).
const MAX_SKEW: Duration = Duration::from_secs(60);
/// LinkedIn's access tokens last 60 days; the lifetime assumed when the answer says nothing.
pub(crate) const DEFAULT_TOKEN_LIFETIME: u64 = 60 * 24 * 3_600;
/// LinkedIn's token introspection endpoint.
pub(crate) const DEFAULT_INTROSPECTION_URL: &str =
    "https://www.linkedin.com/oauth/v2/introspectToken";

/// Why a sign-in could not be finished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider failed, refused (a used or expired code), or answered nonsense.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The id_token did not pass a check; the check is named.
    #[error("the id_token was refused: {why}")]
    InvalidIdToken {
        /// The check that failed.
        reason: Refusal,
        /// The check, in words.
        why: String,
    },
}

/// The check an id_token failed: the `reason` of `lte_oidc_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `iss` is not the discovered issuer.
    Issuer,
    /// `aud` does not hold the client id.
    Audience,
    /// `exp` has passed.
    Expired,
    /// `iat` lies more than a minute ahead.
    IssuedInFuture,
    /// The signature does not verify.
    Signature,
    /// No key of the JWKS has the token's `kid`, even after a refetch.
    UnknownKid,
    /// The `alg` is not one the service accepts (`none`, HMAC).
    Algorithm,
    /// `nonce` differs from the one sent (or is missing while required).
    Nonce,
    /// The token answer holds no id_token.
    NoIdToken,
    /// Any other claim check.
    Claims,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Expired => "expired",
            Self::IssuedInFuture => "issued_in_future",
            Self::Signature => "signature",
            Self::UnknownKid => "unknown_kid",
            Self::Algorithm => "algorithm",
            Self::Nonce => "nonce",
            Self::NoIdToken => "no_id_token",
            Self::Claims => "claims",
        }
    }
}

impl OidcError {
    fn refused(reason: Refusal, why: impl Into<String>) -> Self {
        Self::InvalidIdToken {
            reason,
            why: why.into(),
        }
    }
}

/// What discovery says besides the standard fields: whether PKCE is offered.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct PkceMetadata {
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
}

impl AdditionalProviderMetadata for PkceMetadata {}

/// Discovery as the relying party reads it.
pub(crate) type Metadata = ProviderMetadata<
    PkceMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Where the relying party is registered, and how it treats the provider.
#[derive(Clone, Debug)]
pub(crate) struct OidcSettings {
    /// The issuer, exactly as the provider's discovery names it.
    pub issuer: Url,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The registered redirect URI.
    pub redirect_url: Url,
    /// The scopes asked for, each once, `openid` among them.
    pub scopes: Vec<String>,
    /// When PKCE is sent.
    pub pkce: PkceMode,
    /// Whether an id_token without `nonce` is refused.
    pub require_nonce: bool,
    /// The token introspection endpoint (`LINKEDIN_INTROSPECTION_URL`).
    pub introspection_url: Url,
}

/// A sign-in to send the browser to: the authorization URL and what the callback needs.
#[derive(Debug)]
pub(crate) struct Authorization {
    /// Where to send the browser.
    pub url: Url,
    /// What the session keeps until the callback.
    pub pending: PendingSignIn,
}

/// An OpenID Connect sign-in that has been started and not finished: what the callback must
/// find again. Kept in the browser's session, single use, for [`PendingSignIn::LIFETIME`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// The `state` sent to the provider.
    pub state: Secret,
    /// The `nonce` the id_token must carry.
    pub nonce: Secret,
    /// The PKCE verifier, when the provider takes PKCE.
    pub pkce_verifier: Option<Secret>,
    /// When it stops being accepted, as a Unix timestamp.
    pub expires_at: i64,
    /// Where to send the member afterwards (`rd`, already checked), if anywhere but `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_to: Option<String>,
}

impl PendingSignIn {
    /// How long a sign-in may take.
    pub const LIFETIME: Duration = Duration::from_secs(600);
}

/// A finished sign-in.
#[derive(Debug)]
pub(crate) struct SignedIn {
    /// The id_token's `sub`.
    pub subject: String,
    /// The access token, for userinfo.
    pub access_token: Secret,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The member's name.
    pub name: Option<String>,
    /// The member's email.
    pub email: Option<String>,
    /// The refresh token, when the app is a partner that gets them.
    pub refresh_token: Option<Secret>,
    /// Seconds until the refresh token expires, as the answer says (`refresh_token_expires_in`).
    pub refresh_expires_in: Option<u64>,
}

/// What LinkedIn's token answer carries beside the standard fields: for a partner app, the
/// refresh token's remaining life (learn.microsoft.com, "Programmatic Refresh Tokens").
/// Kept as any JSON value, so that an odd spelling (a string) never fails a sign-in.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct LinkedInTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token_expires_in: Option<serde_json::Value>,
}

impl ExtraTokenFields for LinkedInTokenFields {}

impl LinkedInTokenFields {
    /// `refresh_token_expires_in` in seconds, when it is a whole number (or a string of one).
    fn refresh_expires_in(&self) -> Option<u64> {
        seconds(self.refresh_token_expires_in.as_ref()?)
    }
}

/// A number of seconds, given as a JSON number or a string of digits.
fn seconds(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The token answer as the sign-in reads it: the standard fields, the id_token, LinkedIn's
/// extra field.
type Tokens = StandardTokenResponse<
    IdTokenFields<
        openidconnect::EmptyAdditionalClaims,
        LinkedInTokenFields,
        openidconnect::core::CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    openidconnect::core::CoreTokenType,
>;

/// A refreshed access token (learn.microsoft.com, "Programmatic Refresh Tokens").
#[derive(Debug)]
pub(crate) struct Refreshed {
    /// The new access token.
    pub access_token: Secret,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The refresh token the answer names, when it names one (else the one sent stays).
    pub refresh_token: Option<Secret>,
    /// Seconds until the refresh token expires, as the answer says.
    pub refresh_expires_in: Option<u64>,
}

/// What token introspection says of a token (learn.microsoft.com, "Token Introspection").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenStatus {
    /// `active: true`.
    Active,
    /// `status: revoked`: the member removed the app, or LinkedIn revoked it.
    Revoked,
    /// `status: expired`.
    Expired,
    /// `active: false` with no (or another) status.
    Inactive,
}

impl TokenStatus {
    /// The `outcome` label of `lte_introspections_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Inactive => "inactive",
        }
    }

    /// Reads an introspection answer: `status` when it names one of LinkedIn's three, else
    /// `active`. A token whose `status` says `active` while `active` is false reads as
    /// inactive: either says the token does not work.
    pub(crate) fn of_answer(body: &[u8]) -> Result<Self, UpstreamError> {
        #[derive(Deserialize)]
        struct Answer {
            active: serde_json::Value,
            #[serde(default)]
            status: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(body).map_err(|_| {
            UpstreamError::Malformed("the introspection answer has no \"active\"".into())
        })?;
        let active = match &answer.active {
            serde_json::Value::Bool(active) => *active,
            // As the id_token's `email_verified`, a string boolean is taken.
            serde_json::Value::String(s) if s == "true" => true,
            serde_json::Value::String(s) if s == "false" => false,
            _ => {
                return Err(UpstreamError::Malformed(
                    "the introspection answer's \"active\" is not a boolean".into(),
                ));
            }
        };
        Ok(match (answer.status.as_deref(), active) {
            (Some("revoked"), _) => Self::Revoked,
            (Some("expired"), _) => Self::Expired,
            (_, true) => Self::Active,
            (_, false) => Self::Inactive,
        })
    }
}

/// A discovery document with its key set, and when it was fetched.
struct Discovered {
    metadata: Metadata,
    fetched: Instant,
}

/// The cached discovery, shared with the background refresh.
struct DiscoveryCache {
    upstream: Transport,
    issuer: Url,
    /// [`DISCOVERY_TTL`], and [`MAX_STALE`] (shorter in unit tests).
    ttl: Duration,
    max_stale: Duration,
    /// The copy readers use; never held across an await.
    current: RwLock<Option<Arc<Discovered>>>,
    /// Held by the one fetch in flight; keeps how the last fetch ended.
    fetching: tokio::sync::Mutex<Fetches>,
    /// Whether a background refresh is under way.
    refreshing: AtomicBool,
}

/// What the fetches so far left behind.
#[derive(Default)]
struct Fetches {
    /// When the last fetch of discovery ended, and its error if it failed.
    last_discovery: Option<(Instant, Option<UpstreamError>)>,
    /// When the key set was last refetched for an unknown `kid`, and its error if it failed:
    /// the answer for every refetch asked for within the cooldown.
    last_jwks_refetch: Option<(Instant, Option<UpstreamError>)>,
}

/// The relying party; cheap to share behind the app state, and to clone (the clones share
/// the discovery cache).
#[derive(Clone)]
pub(crate) struct OidcClient {
    settings: OidcSettings,
    cache: Arc<DiscoveryCache>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.settings.issuer.as_str())
            .field("client_id", &self.settings.client_id)
            .field("redirect_url", &self.settings.redirect_url.as_str())
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    /// A relying party for `settings`, over the `upstream` transport (its roots, timeout,
    /// no redirects, and error mapping). Nothing is fetched yet: an unreachable provider
    /// does not stop the start.
    pub(crate) fn new(upstream: Transport, settings: OidcSettings) -> Self {
        let cache = DiscoveryCache::new(upstream, settings.issuer.clone());
        Self {
            settings,
            cache: Arc::new(cache),
        }
    }

    /// What this relying party was built with (the service's sandbox registers its client).
    #[cfg(any(test, all(feature = "server", feature = "sandbox")))]
    pub(crate) fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Starts a sign-in: a fresh `state` and `nonce` (and a PKCE verifier when
    /// [`OidcSettings::pkce`] says so), and the authorization URL that carries them.
    pub(crate) async fn authorize(&self) -> Result<Authorization, UpstreamError> {
        let metadata = self.cache.metadata().await?;
        let offered = metadata
            .metadata
            .additional_metadata()
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256");
        let pkce = match self.settings.pkce {
            PkceMode::On => true,
            PkceMode::Off => false,
            PkceMode::Auto => offered,
        }
        .then(PkceCodeChallenge::new_random_sha256);
        let client = self.client(&metadata.metadata);
        let mut request = client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        // The crate always asks for `openid` itself.
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let verifier = match pkce {
            Some((challenge, verifier)) => {
                request = request.set_pkce_challenge(challenge);
                Some(verifier)
            }
            None => None,
        };
        let (url, state, nonce) = request.url();
        let expires_at = OffsetDateTime::now_utc().unix_timestamp()
            + i64::try_from(PendingSignIn::LIFETIME.as_secs()).unwrap_or(600);
        Ok(Authorization {
            url,
            pending: PendingSignIn {
                state: Secret::new(state.secret().clone()),
                nonce: Secret::new(nonce.secret().clone()),
                pkce_verifier: verifier.map(|v| Secret::new(v.secret().clone())),
                expires_at,
                return_to: None,
            },
        })
    }

    /// Trades `code` at the token endpoint and verifies the id_token against `pending`.
    pub(crate) async fn finish(
        &self,
        code: &str,
        pending: &PendingSignIn,
    ) -> Result<SignedIn, OidcError> {
        let discovered = self.cache.metadata().await?;
        let client = self.client(&discovered.metadata);
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| UpstreamError::Malformed("discovery names no token endpoint".into()))?;
        if let Some(verifier) = &pending.pkce_verifier {
            request =
                request.set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_owned()));
        }
        let http = Http::new(&self.cache.upstream);
        let started = Instant::now();
        let answer = request.request_async(&http).await;
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(_) => "error",
        };
        self.cache
            .upstream
            .record("oidc_token", outcome, started.elapsed());
        let token = answer.map_err(token_error)?;
        let id_token = token.id_token().ok_or_else(|| {
            OidcError::refused(Refusal::NoIdToken, "the token answer holds no id_token")
        })?;

        let verified = match self.verify(&client, id_token, pending) {
            Err(OidcError::InvalidIdToken {
                reason: Refusal::UnknownKid,
                ..
            }) => {
                // A key the cached JWKS lacks: the provider may have rotated.
                match self.cache.refetch_jwks(&discovered).await? {
                    Some(refreshed) => {
                        let client = self.client(&refreshed.metadata);
                        self.verify(&client, id_token, pending)
                    }
                    None => Err(OidcError::refused(
                        Refusal::UnknownKid,
                        format!(
                            "{NO_MATCHING_KEY} (the key set was refetched less than {} s ago)",
                            JWKS_REFETCH_COOLDOWN.as_secs()
                        ),
                    )),
                }
            }
            other => other,
        };
        let claims = verified.inspect_err(|err| {
            if let OidcError::InvalidIdToken { reason, why } = err {
                log_refusal(*reason, why, id_token, &discovered.metadata);
            }
        })?;
        Ok(SignedIn {
            subject: claims.0,
            access_token: Secret::new(token.access_token().secret().clone()),
            expires_in: token
                .expires_in()
                .map_or(DEFAULT_TOKEN_LIFETIME, |d| d.as_secs()),
            name: claims.1,
            email: claims.2,
            refresh_token: token
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone()))
                .filter(|t| !t.expose().is_empty()),
            refresh_expires_in: token.extra_fields().extra_fields().refresh_expires_in(),
        })
    }

    /// Trades `refresh_token` for a new access token at the discovered token endpoint:
    /// `grant_type=refresh_token` with the client's id and secret in the form, as LinkedIn
    /// documents it. A refusal (`invalid_grant`: the refresh token expired or was revoked) is
    /// `Rejected`; a 5xx or a timeout, as every upstream call's.
    pub(crate) async fn refresh(&self, refresh_token: &Secret) -> Result<Refreshed, UpstreamError> {
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<serde_json::Value>,
            #[serde(default)]
            refresh_token: Option<String>,
            #[serde(default)]
            refresh_token_expires_in: Option<serde_json::Value>,
        }
        let discovered = self.cache.metadata().await?;
        let url = discovered
            .metadata
            .token_endpoint()
            .ok_or_else(|| UpstreamError::Malformed("discovery names no token endpoint".into()))?
            .url()
            .clone();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", self.settings.client_secret.expose()),
        ];
        let upstream = &self.cache.upstream;
        let request = upstream.http().post(url).form(&form);
        upstream
            .timed("oidc_refresh", async {
                let (status, _, body) = upstream.send(request).await?;
                if status != reqwest::StatusCode::OK {
                    return Err(oauth_error(status, &body));
                }
                let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
                    UpstreamError::Malformed(
                        "the refresh answer is not JSON with an access_token".into(),
                    )
                })?;
                if answer.access_token.is_empty() {
                    return Err(UpstreamError::Malformed(
                        "the refresh answer's access_token is empty".into(),
                    ));
                }
                Ok(Refreshed {
                    access_token: Secret::new(answer.access_token),
                    expires_in: answer
                        .expires_in
                        .as_ref()
                        .and_then(seconds)
                        .unwrap_or(DEFAULT_TOKEN_LIFETIME),
                    refresh_token: answer
                        .refresh_token
                        .filter(|t| !t.is_empty())
                        .map(Secret::new),
                    refresh_expires_in: answer.refresh_token_expires_in.as_ref().and_then(seconds),
                })
            })
            .await
    }

    /// What the introspection endpoint says of `token`, asked with the client's id and
    /// secret. A 400 (LinkedIn: "invalid client id or token") or 401 ("invalid client
    /// secret") is `Rejected`, never a verdict on the token: a wrong setting must not end
    /// every session.
    pub(crate) async fn introspect(&self, token: &Secret) -> Result<TokenStatus, UpstreamError> {
        let form = [
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", self.settings.client_secret.expose()),
            ("token", token.expose()),
        ];
        let upstream = &self.cache.upstream;
        let request = upstream
            .http()
            .post(self.settings.introspection_url.clone())
            .form(&form);
        upstream
            .timed("oidc_introspect", async {
                let (status, _, body) = upstream.send(request).await?;
                if status != reqwest::StatusCode::OK {
                    return Err(oauth_error(status, &body));
                }
                TokenStatus::of_answer(&body)
            })
            .await
    }

    /// The provider's userinfo endpoint, from discovery (fetched at first use, then cached).
    pub(crate) async fn userinfo_url(&self) -> Result<Url, UpstreamError> {
        let discovered = self.cache.metadata().await?;
        Ok(discovered
            .metadata
            .userinfo_endpoint()
            .ok_or_else(|| UpstreamError::Malformed("discovery names no userinfo endpoint".into()))?
            .url()
            .clone())
    }

    /// `(sub, name, email)` of a verified id_token.
    fn verify(
        &self,
        client: &Client,
        id_token: &openidconnect::core::CoreIdToken,
        pending: &PendingSignIn,
    ) -> Result<(String, Option<String>, Option<String>), OidcError> {
        let now = OffsetDateTime::now_utc();
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(ACCEPTED)
            .set_issue_time_verifier_fn(move |iat| {
                let latest = now + MAX_SKEW;
                if iat.timestamp() > latest.unix_timestamp() {
                    Err(format!("{ISSUED_IN_THE_FUTURE} ({iat})"))
                } else {
                    Ok(())
                }
            });
        let sent = pending.nonce.clone();
        let require = self.settings.require_nonce;
        let nonce_check = move |found: Option<&Nonce>| match found {
            Some(found) if sent.matches(found.secret()) => Ok(()),
            Some(_) => Err("it differs from the nonce sent".to_owned()),
            None if require => Err("it has none, and LINKEDIN_OIDC_REQUIRE_NONCE is on".to_owned()),
            None => Ok(()),
        };
        let claims = id_token
            .claims(&verifier, nonce_check)
            .map_err(|err| describe(&err))?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned());
        let email = claims.email().map(|e| e.as_str().to_owned());
        Ok((claims.subject().as_str().to_owned(), name, email))
    }

    fn client(&self, metadata: &Metadata) -> Client {
        let redirect = RedirectUrl::from_url(self.settings.redirect_url.clone());
        Client::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(
                self.settings.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(redirect)
        // LinkedIn lists no auth methods in discovery but wants the secret in the form.
        .set_auth_type(AuthType::RequestBody)
    }
}

impl DiscoveryCache {
    fn new(upstream: Transport, issuer: Url) -> Self {
        Self {
            upstream,
            issuer,
            ttl: DISCOVERY_TTL,
            max_stale: MAX_STALE,
            current: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(Fetches::default()),
            refreshing: AtomicBool::new(false),
        }
    }

    /// The discovered metadata (with the JWKS). A fresh copy is returned at once; a stale
    /// one too, while one refresh runs in the background; without a usable copy the caller
    /// waits for the one fetch in flight, or makes it.
    async fn metadata(self: &Arc<Self>) -> Result<Arc<Discovered>, UpstreamError> {
        let asked = Instant::now();
        if let Some(found) = self.cached() {
            let age = found.fetched.elapsed();
            if age < self.ttl {
                return Ok(found);
            }
            if age < self.max_stale {
                self.refresh_in_background();
                return Ok(found);
            }
        }
        let mut fetches = self.fetching.lock().await;
        // A second look: a fetch that ended while this caller waited answers for it too.
        if let Some((ended, outcome)) = &fetches.last_discovery
            && *ended >= asked
        {
            match (outcome, self.cached()) {
                (None, Some(found)) => return Ok(found),
                (Some(err), _) => return Err(err.clone()),
                (None, None) => {}
            }
        }
        self.fetch_discovery(&mut fetches).await
    }

    fn cached(&self) -> Option<Arc<Discovered>> {
        self.current.read().ok().and_then(|slot| slot.clone())
    }

    fn store(&self, metadata: Metadata) -> Arc<Discovered> {
        let discovered = Arc::new(Discovered {
            metadata,
            fetched: Instant::now(),
        });
        if let Ok(mut slot) = self.current.write() {
            *slot = Some(discovered.clone());
        }
        discovered
    }

    /// Starts a refresh unless one is under way; readers keep the stale copy meanwhile.
    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let mut fetches = cache.fetching.lock().await;
            let stale = cache
                .cached()
                .is_none_or(|d| d.fetched.elapsed() >= cache.ttl);
            if stale && let Err(err) = cache.fetch_discovery(&mut fetches).await {
                let age = cache.cached().map_or(0, |d| d.fetched.elapsed().as_secs());
                tracing::warn!(
                    issuer = %crate::config::redact_urls(cache.issuer.as_str()),
                    %err,
                    age_seconds = age,
                    "OpenID Connect discovery could not be refreshed; the last good copy serves until it is 24 h old"
                );
            }
            drop(fetches);
            cache.refreshing.store(false, Ordering::Release);
        });
    }

    /// Fetches discovery and the JWKS, under the fetch lock.
    async fn fetch_discovery(
        &self,
        fetches: &mut Fetches,
    ) -> Result<Arc<Discovered>, UpstreamError> {
        let http = Http::new(&self.upstream);
        let started = Instant::now();
        let fetched = discover(&http, &self.issuer).await.map_err(discovery_error);
        self.upstream.record(
            "oidc_discovery",
            if fetched.is_ok() { "ok" } else { "error" },
            started.elapsed(),
        );
        fetches.last_discovery = Some((Instant::now(), fetched.as_ref().err().cloned()));
        fetched.map(|metadata| self.store(metadata))
    }

    /// Refetches the key set after `seen` failed to name a token's `kid`: `None` when the
    /// cooldown forbids a fetch and no newer key set has arrived meanwhile; within the
    /// cooldown of a refetch that failed, that failure (the provider is not asked again).
    async fn refetch_jwks(
        &self,
        seen: &Arc<Discovered>,
    ) -> Result<Option<Arc<Discovered>>, UpstreamError> {
        let mut fetches = self.fetching.lock().await;
        if let Some(newer) = self.cached().filter(|c| c.fetched > seen.fetched) {
            return Ok(Some(newer));
        }
        if let Some((at, failed)) = &fetches.last_jwks_refetch
            && at.elapsed() < JWKS_REFETCH_COOLDOWN
        {
            return match failed {
                Some(err) => Err(err.clone()),
                None => Ok(None),
            };
        }
        let started = Instant::now();
        let keys = fetch_jwks(&Http::new(&self.upstream), seen.metadata.jwks_uri()).await;
        self.upstream.record(
            "oidc_jwks",
            if keys.is_ok() { "ok" } else { "error" },
            started.elapsed(),
        );
        fetches.last_jwks_refetch = Some((started, keys.as_ref().err().cloned()));
        Ok(Some(self.store(seen.metadata.clone().set_jwks(keys?))))
    }
}

/// Discovery with its key set, fetched and read as every sign-in reads it: the crate's
/// status, content type, parse and issuer checks over `http`.
async fn discover(http: &Http<'_>, issuer: &Url) -> Result<Metadata, DiscoveryError<HttpError>> {
    Metadata::discover_async(IssuerUrl::from_url(issuer.clone()), http).await
}

/// The key set at `url`, fetched and read as a refetch reads it.
async fn fetch_jwks(
    http: &Http<'_>,
    url: &JsonWebKeySetUrl,
) -> Result<CoreJsonWebKeySet, UpstreamError> {
    CoreJsonWebKeySet::fetch_async(url, http)
        .await
        .map_err(discovery_error)
}

/// What of the provider failed a [`probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Discovery could not be fetched or read.
    Discovery,
    /// Discovery names another issuer.
    Issuer,
    /// The key set could not be fetched or read.
    Jwks,
}

/// The provider as a sign-in reads it, for `check-provider`.
#[derive(Debug)]
pub(crate) struct Probe {
    /// Discovery with its key set, or what failed and the error a sign-in would get.
    pub outcome: Result<Metadata, (Stage, UpstreamError)>,
    /// The answers' bodies, in order (discovery, then the key set), each as the service read
    /// it: whole, and never more than the transport's cap.
    pub bodies: Vec<Vec<u8>>,
}

/// Reads `issuer`'s discovery and key set exactly as a sign-in does (over `upstream`: its
/// timeout, its cap on an answer's size, its error mapping), keeping the bodies read.
pub(crate) async fn probe(upstream: &Transport, issuer: &Url) -> Probe {
    let read = Mutex::new(Read::default());
    let outcome = discover(&Http::recording(upstream, &read), issuer).await;
    let read = read
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let outcome = outcome.map_err(|err| {
        let stage = match err {
            DiscoveryError::Validation(_) => Stage::Issuer,
            _ if read.calls > 1 => Stage::Jwks,
            _ => Stage::Discovery,
        };
        (stage, discovery_error(err))
    });
    Probe {
        outcome,
        bodies: read.bodies,
    }
}

/// Reads the key set of `metadata` exactly as a refetch does, with the body read (if one
/// was): for `check-provider`, after discovery named another issuer.
pub(crate) async fn probe_jwks(
    upstream: &Transport,
    metadata: &Metadata,
) -> (Result<CoreJsonWebKeySet, UpstreamError>, Option<Vec<u8>>) {
    let read = Mutex::new(Read::default());
    let keys = fetch_jwks(&Http::recording(upstream, &read), metadata.jwks_uri()).await;
    let read = read
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (keys, read.bodies.into_iter().next())
}

/// What a recording [`Http`] saw.
#[derive(Default)]
struct Read {
    /// The calls made.
    calls: usize,
    /// The bodies read.
    bodies: Vec<Vec<u8>>,
}

/// Logs a refused id_token at warn: the check, and for the issuer the one seen, so that an
/// operator notices when the provider changes its issuer.
fn log_refusal(
    reason: Refusal,
    why: &str,
    id_token: &openidconnect::core::CoreIdToken,
    metadata: &Metadata,
) {
    if reason == Refusal::Issuer {
        tracing::warn!(
            reason = reason.label(),
            issuer_seen = %escape_text(&unverified_issuer(id_token).unwrap_or_default(), 200),
            issuer_expected = %metadata.issuer().as_str(),
            "id_token refused: {why}"
        );
    } else {
        tracing::warn!(reason = reason.label(), "id_token refused: {why}");
    }
}

/// The `iss` an id_token claims, read without verifying it: for the log only.
fn unverified_issuer(id_token: &openidconnect::core::CoreIdToken) -> Option<String> {
    let compact = id_token.to_string();
    let payload = compact.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

type Client = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    Tokens,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// An OAuth error answer (`{"error","error_description"}`) as an upstream error: a 4xx is
/// `Rejected` naming the error, a 5xx `Unavailable`.
fn oauth_error(status: reqwest::StatusCode, body: &[u8]) -> UpstreamError {
    #[derive(Deserialize)]
    struct Problem {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    match serde_json::from_slice::<Problem>(body) {
        Ok(problem) if status.is_client_error() => UpstreamError::Rejected {
            status: status.as_u16(),
            problem: escape_text(
                &match problem.error_description {
                    Some(description) => format!("{}: {description}", problem.error),
                    None => problem.error,
                },
                200,
            ),
        },
        _ => status_error(status, &reqwest::header::HeaderMap::new(), body),
    }
}

/// The message of a failed `iat` check (the crate reports it as `Expired`).
const ISSUED_IN_THE_FUTURE: &str = "it was issued in the future";

/// The message of a signature check that found no key for the token's `kid`.
const NO_MATCHING_KEY: &str = "no key of the provider's key set matches its kid";

/// The failed check, with its words (no token content beyond the claim values the crate
/// names).
fn describe(err: &ClaimsVerificationError) -> OidcError {
    use SignatureVerificationError as Sig;
    let (reason, why) = match err {
        ClaimsVerificationError::SignatureVerification(Sig::NoMatchingKey) => {
            (Refusal::UnknownKid, NO_MATCHING_KEY.to_owned())
        }
        ClaimsVerificationError::SignatureVerification(
            other @ (Sig::DisallowedAlg(_) | Sig::UnsupportedAlg(_) | Sig::NoSignature),
        ) => (
            Refusal::Algorithm,
            format!("its signature does not verify ({other})"),
        ),
        ClaimsVerificationError::SignatureVerification(other) => (
            Refusal::Signature,
            format!("its signature does not verify ({other})"),
        ),
        ClaimsVerificationError::InvalidIssuer(why) => {
            (Refusal::Issuer, format!("wrong issuer ({why})"))
        }
        ClaimsVerificationError::InvalidAudience(why) => {
            (Refusal::Audience, format!("wrong audience ({why})"))
        }
        ClaimsVerificationError::Expired(why) if why.starts_with(ISSUED_IN_THE_FUTURE) => {
            (Refusal::IssuedInFuture, why.clone())
        }
        ClaimsVerificationError::Expired(why) => (Refusal::Expired, format!("expired ({why})")),
        ClaimsVerificationError::InvalidNonce(why) => {
            (Refusal::Nonce, format!("wrong or missing nonce ({why})"))
        }
        ClaimsVerificationError::Unsupported(why) => {
            (Refusal::Algorithm, format!("unsupported ({why})"))
        }
        other => (Refusal::Claims, other.to_string()),
    };
    OidcError::refused(reason, why)
}

/// A failed fetch of discovery or the key set, as the caller sees it. Every word of the
/// provider's in it (a content type, an issuer, a field's path) is escaped.
fn discovery_error(err: DiscoveryError<HttpError>) -> UpstreamError {
    let theirs = |why: &str| escape_text(why, 300);
    match err {
        DiscoveryError::Request(HttpError(upstream)) => upstream,
        DiscoveryError::Response(status, _, why) if status.is_client_error() => {
            UpstreamError::Rejected {
                status: status.as_u16(),
                problem: format!("discovery: {}", theirs(&why)),
            }
        }
        DiscoveryError::Response(_, _, why) => {
            UpstreamError::Malformed(format!("discovery: {}", theirs(&why)))
        }
        DiscoveryError::Parse(err) => UpstreamError::Malformed(format!(
            "discovery does not parse: {}",
            theirs(&err.path().to_string())
        )),
        DiscoveryError::Validation(why) => {
            UpstreamError::Malformed(format!("discovery: {}", theirs(&why)))
        }
        other => UpstreamError::Malformed(format!("discovery: {}", theirs(&other.to_string()))),
    }
}

fn token_error(
    err: RequestTokenError<
        HttpError,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> OidcError {
    let upstream = match err {
        RequestTokenError::Request(HttpError(upstream)) => upstream,
        RequestTokenError::ServerResponse(answer) => UpstreamError::Rejected {
            status: 400,
            problem: escape_text(
                &match answer.error_description() {
                    Some(description) => format!("{}: {description}", answer.error()),
                    None => answer.error().to_string(),
                },
                200,
            ),
        },
        RequestTokenError::Parse(err, _) => UpstreamError::Malformed(format!(
            "the token answer does not parse (at {})",
            escape_text(&err.path().to_string(), 200)
        )),
        RequestTokenError::Other(why) => UpstreamError::Malformed(escape_text(&why, 200)),
    };
    OidcError::Upstream(upstream)
}

/// `openidconnect`'s HTTP client: the service's reqwest client (redirects off), with its
/// timeout, its cap on an answer's size and its error mapping. A 5xx is
/// `upstream_unavailable` before the crate sees it.
struct Http<'a> {
    upstream: &'a Transport,
    /// Where the calls and the bodies read are counted and kept, for `check-provider`.
    read: Option<&'a Mutex<Read>>,
}

impl<'a> Http<'a> {
    fn new(upstream: &'a Transport) -> Self {
        Self {
            upstream,
            read: None,
        }
    }

    fn recording(upstream: &'a Transport, read: &'a Mutex<Read>) -> Self {
        Self {
            upstream,
            read: Some(read),
        }
    }

    fn note(&self, note: impl FnOnce(&mut Read)) {
        if let Some(read) = self.read {
            note(&mut read.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        }
    }
}

/// An upstream failure, as the crate's HTTP error type.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct HttpError(UpstreamError);

impl<'c> AsyncHttpClient<'c> for Http<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let url = parts.uri.to_string();
            let builder = self
                .upstream
                .http()
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body);
            self.note(|read| read.calls += 1);
            let (status, headers, body) = self.upstream.send(builder).await.map_err(HttpError)?;
            self.note(|read| read.bodies.push(body.clone()));
            if status.is_server_error() {
                return Err(HttpError(UpstreamError::Unavailable(format!(
                    "HTTP {}",
                    status.as_u16()
                ))));
            }
            let mut response = openidconnect::http::Response::builder().status(status);
            if let Some(kind) = headers.get(CONTENT_TYPE) {
                response = response.header(CONTENT_TYPE, kind);
            }
            response
                .body(body)
                .map_err(|e| HttpError(UpstreamError::Malformed(e.to_string())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache whose copy went stale at once, and a provider that no longer answers.
    fn stale_cache(max_stale: Duration) -> Arc<DiscoveryCache> {
        crate::tls::install_crypto_provider();
        let dead: Url = "http://127.0.0.1:9/oauth".parse().unwrap();
        let upstream = Transport::new(Duration::from_secs(2), &[]).unwrap();
        let mut cache = DiscoveryCache::new(upstream, dead.clone());
        cache.ttl = Duration::ZERO;
        cache.max_stale = max_stale;
        let metadata: Metadata = serde_json::from_value(serde_json::json!({
            "issuer": dead,
            "authorization_endpoint": "http://127.0.0.1:9/oauth/v2/authorization",
            "jwks_uri": "http://127.0.0.1:9/oauth/openid/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }))
        .unwrap();
        cache.store(metadata);
        Arc::new(cache)
    }

    #[tokio::test]
    async fn a_stale_copy_serves_at_once_while_the_refresh_fails_in_the_background() {
        let cache = stale_cache(Duration::from_secs(3_600));
        let before = cache.cached().unwrap();
        let started = Instant::now();
        for _ in 0..5 {
            let served = cache.metadata().await.unwrap();
            assert!(Arc::ptr_eq(&served, &before));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no reader waited"
        );
        // One refresh ran (the flag was taken once), failed, and left the copy in place.
        for _ in 0..100 {
            if !cache.refreshing.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let fetches = cache.fetching.lock().await;
        assert!(matches!(fetches.last_discovery, Some((_, Some(_)))));
        drop(fetches);
        assert!(Arc::ptr_eq(&cache.cached().unwrap(), &before));
    }

    #[tokio::test]
    async fn a_copy_older_than_the_stale_limit_is_not_served() {
        let cache = stale_cache(Duration::ZERO);
        let Err(err) = cache.metadata().await else {
            panic!("a copy past the stale limit was served");
        };
        assert!(matches!(err, UpstreamError::Unavailable(_)), "{err:?}");
    }

    /// learn.microsoft.com, "Token Introspection": `active` (required) and `status`
    /// (`active`, `expired`, `revoked`).
    #[test]
    fn an_introspection_answer_reads_as_linkedin_documents_it() {
        let read = |body: &str| TokenStatus::of_answer(body.as_bytes());
        let documented = r#"{"active": true, "client_id": "x", "authorized_at": 1493055596,
            "created_at": 1493055596, "status": "active", "expires_at": 1497497620,
            "scope": "r_liteprofile,r_emailaddress,w_member_social", "auth_type": "3L"}"#;
        assert_eq!(read(documented), Ok(TokenStatus::Active));
        assert_eq!(
            read(r#"{"active": false, "status": "revoked"}"#),
            Ok(TokenStatus::Revoked)
        );
        assert_eq!(
            read(r#"{"active": false, "status": "expired"}"#),
            Ok(TokenStatus::Expired)
        );
        // `status` is optional: `active` decides; a string boolean is taken.
        assert_eq!(read(r#"{"active": false}"#), Ok(TokenStatus::Inactive));
        assert_eq!(read(r#"{"active": "true"}"#), Ok(TokenStatus::Active));
        assert_eq!(
            read(r#"{"active": false, "status": "active"}"#),
            Ok(TokenStatus::Inactive)
        );
        for bad in ["", "[]", r#"{"status": "active"}"#, r#"{"active": 1}"#] {
            assert!(
                matches!(read(bad), Err(UpstreamError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert_eq!(TokenStatus::Revoked.label(), "revoked");
    }

    #[test]
    fn an_oauth_error_answer_names_the_error_and_a_5xx_is_unavailable() {
        let refused = oauth_error(
            reqwest::StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        );
        assert_eq!(
            refused,
            UpstreamError::Rejected {
                status: 400,
                problem: "invalid_grant: Token has been expired or revoked.".into()
            }
        );
        assert!(matches!(
            oauth_error(reqwest::StatusCode::BAD_GATEWAY, b"{}"),
            UpstreamError::Unavailable(_)
        ));
        assert!(matches!(
            oauth_error(reqwest::StatusCode::UNAUTHORIZED, b"not json"),
            UpstreamError::Rejected { status: 401, .. }
        ));
    }

    /// The token answer of a partner app (learn.microsoft.com, "Programmatic Refresh
    /// Tokens") parses, `refresh_token_expires_in` included; without it, as LinkedIn's answer
    /// to other apps, it parses too.
    #[test]
    fn a_partner_apps_token_answer_carries_the_refresh_tokens_life() {
        let answer: Tokens = serde_json::from_value(serde_json::json!({
            "access_token": "AQX", "expires_in": 5184000, "token_type": "Bearer",
            "refresh_token": "AQW", "refresh_token_expires_in": 31535999,
            "scope": "openid,profile,email",
        }))
        .unwrap();
        assert_eq!(answer.refresh_token().unwrap().secret(), "AQW");
        assert_eq!(
            answer.extra_fields().extra_fields().refresh_expires_in(),
            Some(31_535_999)
        );
        let plain: Tokens = serde_json::from_value(serde_json::json!({
            "access_token": "AQX", "expires_in": 5184000, "token_type": "Bearer",
        }))
        .unwrap();
        assert_eq!(
            plain.extra_fields().extra_fields().refresh_expires_in(),
            None
        );
        assert_eq!(seconds(&serde_json::json!("60")), Some(60));
        assert_eq!(seconds(&serde_json::json!(-1)), None);
    }

    #[test]
    fn the_accepted_algorithms_have_the_names_the_provider_check_uses() {
        let names: Vec<String> = ACCEPTED
            .iter()
            .map(|alg| {
                serde_json::to_value(alg)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(names, ACCEPTED_ALGS);
    }
}
