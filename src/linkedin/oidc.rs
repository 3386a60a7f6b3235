//! I/O: the relying party of "Sign In with LinkedIn using OpenID Connect" (crate
//! `openidconnect`), over the service's one upstream HTTPS client.
//!
//! Discovery (with the JWKS) is fetched at first use, cached, and refreshed after
//! [`DISCOVERY_TTL`]; an id_token signed with a key the cached JWKS lacks triggers one
//! refetch. LinkedIn's quirks: the issuer is a path (`https://www.linkedin.com/oauth`) and is
//! compared exactly; PKCE is sent only when discovery lists `S256` (LinkedIn lists nothing,
//! and refuses PKCE parameters); `client_secret_post` at the token endpoint; no refresh
//! tokens relied on. Deciding what the caller sees is `error`'s.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AsyncHttpClient, AuthType, AuthenticationFlow, AuthorizationCode,
    ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata,
    RedirectUrl, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::RwLock;
use url::Url;

use super::client::{LinkedInClient, UpstreamError, status_error};
use crate::secret::Secret;
use crate::session::member::PendingSignIn;

/// How long discovery and the JWKS are trusted before they are fetched again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3_600);
/// How far in the future an id_token's `iat` may lie (clock skew).
const MAX_SKEW: Duration = Duration::from_secs(60);
/// LinkedIn's access tokens last 60 days; the lifetime assumed when the answer says nothing.
const DEFAULT_TOKEN_LIFETIME: u64 = 60 * 24 * 3_600;

/// Why a sign-in could not be finished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider failed, refused (a used or expired code), or answered nonsense.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The id_token did not pass a check; the check is named.
    #[error("the id_token was refused: {0}")]
    InvalidIdToken(String),
}

/// What discovery says besides the standard fields: whether PKCE is offered.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PkceMetadata {
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
}

impl AdditionalProviderMetadata for PkceMetadata {}

type Metadata = ProviderMetadata<
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

/// Where the relying party is registered.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// The issuer, exactly as the provider's discovery names it.
    pub issuer: Url,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The registered redirect URI.
    pub redirect_url: Url,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

/// A sign-in to send the browser to: the authorization URL and what the callback needs.
#[derive(Debug)]
pub struct Authorization {
    /// Where to send the browser.
    pub url: Url,
    /// What the session keeps until the callback.
    pub pending: PendingSignIn,
}

/// A finished sign-in.
#[derive(Debug)]
pub struct SignedIn {
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
}

struct Discovered {
    metadata: Metadata,
    fetched: Instant,
}

/// The relying party; cheap to share behind the app state.
pub struct OidcClient {
    upstream: LinkedInClient,
    settings: OidcSettings,
    discovered: RwLock<Option<Discovered>>,
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
    /// A relying party for `settings`, over `upstream`'s HTTPS client (its roots, timeout,
    /// no redirects, and error mapping). Nothing is fetched yet: an unreachable provider
    /// does not stop the start.
    pub fn new(upstream: LinkedInClient, settings: OidcSettings) -> Self {
        Self {
            upstream,
            settings,
            discovered: RwLock::new(None),
        }
    }

    /// The registered redirect URI.
    pub fn redirect_url(&self) -> &Url {
        &self.settings.redirect_url
    }

    /// Starts a sign-in: a fresh `state` and `nonce` (and a PKCE verifier when the provider
    /// takes PKCE), and the authorization URL that carries them.
    pub async fn authorize(&self) -> Result<Authorization, UpstreamError> {
        let metadata = self.metadata(false).await?;
        let pkce = metadata
            .additional_metadata()
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
            .then(PkceCodeChallenge::new_random_sha256);
        let client = self.client(&metadata)?;
        let mut request = client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.settings.scopes {
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
            },
        })
    }

    /// Trades `code` at the token endpoint and verifies the id_token against `pending`.
    pub async fn finish(&self, code: &str, pending: &PendingSignIn) -> Result<SignedIn, OidcError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata)?;
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| UpstreamError::Malformed("discovery names no token endpoint".into()))?;
        if let Some(verifier) = &pending.pkce_verifier {
            request =
                request.set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_owned()));
        }
        let http = Http(&self.upstream);
        let started = Instant::now();
        let answer = request.request_async(&http).await;
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(_) => "error",
        };
        self.upstream
            .record("oidc_token", outcome, started.elapsed());
        let token = answer.map_err(token_error)?;
        let id_token = token.id_token().ok_or_else(|| {
            OidcError::InvalidIdToken("the token answer holds no id_token".into())
        })?;
        let nonce = Nonce::new(pending.nonce.expose().to_owned());

        let claims = match self.verify(&client, id_token, &nonce) {
            Err(OidcError::InvalidIdToken(why)) if why == NO_MATCHING_KEY => {
                // A key the cached JWKS lacks: the provider may have rotated. Fetch once more.
                let metadata = self.metadata(true).await?;
                let client = self.client(&metadata)?;
                self.verify(&client, id_token, &nonce)?
            }
            other => other?,
        };
        Ok(SignedIn {
            subject: claims.0,
            access_token: Secret::new(token.access_token().secret().clone()),
            expires_in: token
                .expires_in()
                .map_or(DEFAULT_TOKEN_LIFETIME, |d| d.as_secs()),
            name: claims.1,
            email: claims.2,
        })
    }

    /// The member's userinfo, with their access token.
    pub async fn userinfo(
        &self,
        access_token: &Secret,
    ) -> Result<serde_json::Value, UpstreamError> {
        let metadata = self.metadata(false).await?;
        let url = metadata
            .userinfo_endpoint()
            .ok_or_else(|| UpstreamError::Malformed("discovery names no userinfo endpoint".into()))?
            .url()
            .clone();
        let request = self
            .upstream
            .http()
            .get(url)
            .header(AUTHORIZATION, format!("Bearer {}", access_token.expose()));
        self.upstream
            .timed("oidc_userinfo", async {
                let (status, headers, body) = self.upstream.send(request).await?;
                if status != reqwest::StatusCode::OK {
                    return Err(status_error(status, &headers, &body));
                }
                serde_json::from_slice(&body)
                    .map_err(|_| UpstreamError::Malformed("userinfo is not JSON".into()))
            })
            .await
    }

    /// `(sub, name, email)` of a verified id_token.
    fn verify(
        &self,
        client: &Client,
        id_token: &openidconnect::core::CoreIdToken,
        nonce: &Nonce,
    ) -> Result<(String, Option<String>, Option<String>), OidcError> {
        let now = OffsetDateTime::now_utc();
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs([
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
                CoreJwsSigningAlgorithm::RsaSsaPssSha256,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                CoreJwsSigningAlgorithm::EcdsaP384Sha384,
                CoreJwsSigningAlgorithm::EdDsa,
            ])
            .set_issue_time_verifier_fn(move |iat| {
                let latest = now + MAX_SKEW;
                if iat.timestamp() > latest.unix_timestamp() {
                    Err(format!("{ISSUED_IN_THE_FUTURE} ({iat})"))
                } else {
                    Ok(())
                }
            });
        let claims = id_token
            .claims(&verifier, nonce)
            .map_err(|err| OidcError::InvalidIdToken(describe(&err)))?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned());
        let email = claims.email().map(|e| e.as_str().to_owned());
        Ok((claims.subject().as_str().to_owned(), name, email))
    }

    fn client(&self, metadata: &Metadata) -> Result<Client, UpstreamError> {
        let redirect = RedirectUrl::from_url(self.settings.redirect_url.clone());
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(
                self.settings.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(AuthType::RequestBody);
        Ok(client)
    }

    /// The discovered metadata (with the JWKS): cached, refetched when stale or `refresh`.
    async fn metadata(&self, refresh: bool) -> Result<Metadata, UpstreamError> {
        if !refresh
            && let Some(found) = self.discovered.read().await.as_ref()
            && found.fetched.elapsed() < DISCOVERY_TTL
        {
            return Ok(found.metadata.clone());
        }
        let mut slot = self.discovered.write().await;
        let issuer = IssuerUrl::from_url(self.settings.issuer.clone());
        let http = Http(&self.upstream);
        let started = Instant::now();
        let fetched = match (refresh, slot.as_ref()) {
            // A refetch for an unknown key needs only the key set.
            (true, Some(found)) => {
                let keys = CoreJsonWebKeySet::fetch_async(found.metadata.jwks_uri(), &http)
                    .await
                    .map_err(discovery_error);
                keys.map(|keys| found.metadata.clone().set_jwks(keys))
            }
            _ => Metadata::discover_async(issuer, &http)
                .await
                .map_err(discovery_error),
        };
        self.upstream.record(
            "oidc_discovery",
            if fetched.is_ok() { "ok" } else { "error" },
            started.elapsed(),
        );
        let metadata = fetched?;
        *slot = Some(Discovered {
            metadata: metadata.clone(),
            fetched: Instant::now(),
        });
        Ok(metadata)
    }
}

type Client = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
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

/// The message of a failed `iat` check (the crate reports it as `Expired`).
const ISSUED_IN_THE_FUTURE: &str = "it was issued in the future";

/// The message of a signature check that found no key for the token's `kid`.
const NO_MATCHING_KEY: &str = "no key of the provider's key set matches its kid";

/// The failed check, in words (no token content beyond the claim values the crate names).
fn describe(err: &ClaimsVerificationError) -> String {
    match err {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => NO_MATCHING_KEY.to_owned(),
        ClaimsVerificationError::SignatureVerification(other) => {
            format!("its signature does not verify ({other})")
        }
        ClaimsVerificationError::InvalidIssuer(why) => format!("wrong issuer ({why})"),
        ClaimsVerificationError::InvalidAudience(why) => format!("wrong audience ({why})"),
        ClaimsVerificationError::Expired(why) if why.starts_with(ISSUED_IN_THE_FUTURE) => {
            why.clone()
        }
        ClaimsVerificationError::Expired(why) => format!("expired ({why})"),
        ClaimsVerificationError::InvalidNonce(why) => format!("wrong or missing nonce ({why})"),
        ClaimsVerificationError::Unsupported(why) => format!("unsupported ({why})"),
        other => other.to_string(),
    }
}

fn discovery_error(err: openidconnect::DiscoveryError<HttpError>) -> UpstreamError {
    use openidconnect::DiscoveryError;
    match err {
        DiscoveryError::Request(HttpError(upstream)) => upstream,
        DiscoveryError::Response(status, _, why) if status.is_client_error() => {
            UpstreamError::Rejected {
                status: status.as_u16(),
                problem: format!("discovery: {why}"),
            }
        }
        DiscoveryError::Response(_, _, why) => {
            UpstreamError::Malformed(format!("discovery: {why}"))
        }
        DiscoveryError::Parse(err) => {
            UpstreamError::Malformed(format!("discovery does not parse: {}", err.path()))
        }
        DiscoveryError::Validation(why) => UpstreamError::Malformed(format!("discovery: {why}")),
        other => UpstreamError::Malformed(format!("discovery: {other}")),
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
            problem: printable(&match answer.error_description() {
                Some(description) => format!("{}: {description}", answer.error()),
                None => answer.error().to_string(),
            }),
        },
        RequestTokenError::Parse(err, _) => UpstreamError::Malformed(format!(
            "the token answer does not parse (at {})",
            printable(&err.path().to_string())
        )),
        RequestTokenError::Other(why) => UpstreamError::Malformed(printable(&why)),
    };
    OidcError::Upstream(upstream)
}

/// A provider's words, fit for a message and a log line: at most 200 characters, escaped as
/// request values are (see [`crate::error::escape_text`]).
pub(crate) fn printable(text: &str) -> String {
    crate::error::escape_text(text, 200)
}

/// `openidconnect`'s HTTP client: the service's reqwest client (redirects off), with its
/// timeout and error mapping. A 5xx is `upstream_unavailable` before the crate sees it.
struct Http<'a>(&'a LinkedInClient);

/// An upstream failure, as the crate's HTTP error type.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HttpError(UpstreamError);

impl<'c> AsyncHttpClient<'c> for Http<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let url = parts.uri.to_string();
            let builder = self
                .0
                .http()
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body);
            let (status, headers, body) = self.0.send(builder).await.map_err(HttpError)?;
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
