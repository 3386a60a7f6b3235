//! The one error type of the HTTP interface, its status and error-code mapping, and its JSON
//! rendering (`{"error": code, "message": sentence}`).
//!
//! Handlers return `Result<T>` and use `?`; they never build an error response by hand.
//! Logging is not done here: the response carries the error in an extension, and the one
//! middleware [`errors`] gives the answers that come from the framework rather than from a
//! handler (a wrong method, a body over the limit, an extractor's rejection) the same JSON
//! shape, then writes one line per failed request.

use axum::Json;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::limits::MAX_BODY_BYTES;
use crate::linkedin::cookie::CookieError;
use crate::linkedin::oidc::{OidcError, Refusal};
use crate::linkedin::transport::UpstreamError;
use crate::text::escape_text;

/// The handlers' result.
pub(crate) type Result<T, E = AppError> = std::result::Result<T, E>;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400 `missing_cookie`, 400 `malformed_cookie` or 401 `invalid_signature`.
    #[error(transparent)]
    Cookie(#[from] CookieError),
    /// 403 `cross_origin`: a state-changing request from a page of another origin.
    #[error("this request did not come from this site's page ({0})")]
    CrossOrigin(String),
    /// 401 `not_connected`: the session holds no LinkedIn credentials.
    #[error("no LinkedIn member is connected in this session: sign in first")]
    NotConnected,
    /// 502 `upstream_rejected`, 502 `upstream_unavailable`, 502 `upstream_malformed` or
    /// 504 `upstream_timeout`.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// 503 `session_store_unavailable`: the session store failed.
    #[error("the session store is unavailable; try again shortly")]
    SessionStore(#[from] tower_sessions::session_store::Error),
    /// 503 `session_layer_missing`: a programming error of the host app, not of the person
    /// asking: no session layer of this crate's tower-sessions (0.14) surrounds the route.
    /// The service itself never answers it.
    #[error(
        "no session layer of tower-sessions 0.14 surrounds this route: wrap the app in \
         `LinkedInSignIn::session_layer` (a layer of another tower-sessions version is not seen)"
    )]
    SessionLayerMissing,
    /// 500 `client_address_unknown`: a programming error of the host app: the sign-in rate
    /// limit cannot see the client's address. The service itself never answers it.
    #[error(
        "the sign-in rate limit cannot see the client's address: serve the app with \
         `into_make_service_with_connect_info::<SocketAddr>()`, or give \
         `SignInBuilder::client_address`, or turn the limit off with \
         `.rate_limit(RateLimit::Off)`"
    )]
    ClientAddressUnknown,
    /// 404 `not_found`.
    #[error("there is nothing at this address")]
    NotFound,
    /// 413 `payload_too_large`: a body over the limit.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 405 `method_not_allowed`: the route exists, but not for this method (`Allow` says
    /// which methods it takes).
    #[error("this address does not accept {method}; it accepts {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The methods the route accepts, as in `Allow`.
        allow: String,
    },
    /// 404 `oidc_not_configured`: OpenID Connect sign-in is off.
    #[error("signing in with OpenID Connect is not configured on this server")]
    OidcNotConfigured,
    /// 404 `jsapi_not_configured`: the JSAPI cookie exchange is off (no `LINKEDIN_API_KEY`
    /// outside the sandbox).
    #[error("the JSAPI cookie exchange is not configured on this server (no LINKEDIN_API_KEY)")]
    JsapiNotConfigured,
    /// 400 `oidc_state_mismatch`: the callback's `state` is missing, unknown, used or expired.
    #[error("this sign-in is unknown, expired or already used ({0}); start again")]
    OidcStateMismatch(&'static str),
    /// 400 `oidc_denied`: the provider answered with an error (named in the message).
    #[error("LinkedIn did not sign you in ({0})")]
    OidcDenied(String),
    /// 401 `oidc_invalid_id_token`: the id_token failed a check (named in the message).
    #[error("{1}")]
    OidcInvalidIdToken(Refusal, String),
    /// 429 `rate_limited`: too many sign-ins from this client (or with this cookie); the
    /// number is `Retry-After`, in seconds.
    #[error("too many sign-in attempts; try again in {0} s")]
    RateLimited(u64),
    /// 401 `unauthorized` (with `WWW-Authenticate: Bearer`): an admin route without the
    /// admin token.
    #[error("the admin routes need the admin token: {0}")]
    AdminUnauthorized(&'static str),
    /// 400 `bad_request`: a query parameter a handler cannot use (the sentence says which).
    #[error("{0}")]
    InvalidParameter(&'static str),
    /// 404 `session_not_found`: `DELETE /sessions/{handle}` names no live session of the
    /// member's (an unknown handle, one that has ended, or another member's).
    #[error("no session of yours has this handle; it may have ended already")]
    SessionNotFound,
    /// 404 `sessions_not_configured`: never from the service: a host's router has no member
    /// index to list or end the member's sessions with (a session layer over a store that is
    /// not this crate's, or no `Extension` of the `stores::SealedStore` in use).
    #[error(
        "listing and ending your sessions needs this crate's session store and its member \
         index, which this server does not give these routes"
    )]
    SessionsNotConfigured,
    /// A request the framework refused before any handler ran (a form that does not parse, a
    /// stalled body): its own status, code [`AppError::code_for`] and message.
    #[error("{message}")]
    Rejected {
        /// The framework's status.
        status: StatusCode,
        /// The framework's explanation.
        message: String,
    },
    /// 401 `linkedin_access_withdrawn`: LinkedIn answered 401 to the member's credentials
    /// (the member removed the app, or the token was revoked or expired); every session that
    /// held those credentials has ended.
    #[error(
        "LinkedIn access was withdrawn: LinkedIn no longer accepts this member's credentials \
         (the app was removed, or the token revoked or expired), so the session has ended; \
         sign in again"
    )]
    LinkedInAccessWithdrawn,
    /// 403 `linkedin_forbidden`: LinkedIn answered 403: the app lacks the scope or the
    /// product the call needs (LinkedIn's own words, when it gave them, are carried).
    #[error(
        "LinkedIn refused this call for the member's token ({0}): the app lacks the scope or \
         the product (in the LinkedIn developer portal) that grants it"
    )]
    LinkedInForbidden(String),
    /// 502 `linkedin_version_retired`: LinkedIn answered 426 to the `LinkedIn-Version` sent
    /// (`version`): a version lives about a year. A fault of the server's configuration, not
    /// of the caller, hence a 502 (a 426 would also promise an `Upgrade` the caller cannot
    /// make).
    #[error(
        "LinkedIn no longer serves API version {version} ({said}): set LINKEDIN_API_VERSION \
         (SignInBuilder::api_version) to a current YYYYMM"
    )]
    LinkedInVersionRetired {
        /// The `LinkedIn-Version` that was sent.
        version: String,
        /// What LinkedIn said (its `code` and `message`), or the status.
        said: String,
    },
    /// 429 `linkedin_rate_limited`: LinkedIn's quota for the app or the member is used up;
    /// the number is `Retry-After`, in seconds (LinkedIn's own, or until its daily quotas
    /// reset at midnight UTC).
    #[error("LinkedIn's rate limit for this app or member was reached; try again in {0} s")]
    LinkedInRateLimited(u64),
    /// 403 `api_path_not_allowed`: the pass-through does not forward this method and path
    /// (`LINKEDIN_API_ALLOW`), or the path is not one it forwards at all (`..`, an encoded
    /// slash, an absolute URL). Refused before any call to LinkedIn.
    #[error("{0}")]
    ApiPathNotAllowed(String),
    /// 403 `forbidden`: forward authentication found a signed-in member outside the rule the
    /// check names (`X-Auth-Request-Denied` carries the rule).
    #[error("you are signed in, but this address admits only members matching {0}")]
    Forbidden(String),
    /// 400 `invalid_auth_url`: the forward-auth URL (the proxy's configuration) carries a
    /// parameter `/auth/check` does not take, or a rule that does not parse.
    #[error("the forward-auth URL cannot be used: {0}")]
    InvalidAuthUrl(String),
}

impl AppError {
    /// The HTTP status and the stable error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Cookie(CookieError::Missing(_)) => (StatusCode::BAD_REQUEST, "missing_cookie"),
            Self::Cookie(CookieError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, "malformed_cookie")
            }
            Self::Cookie(CookieError::InvalidSignature(_)) => {
                (StatusCode::UNAUTHORIZED, "invalid_signature")
            }
            Self::CrossOrigin(_) => (StatusCode::FORBIDDEN, "cross_origin"),
            Self::NotConnected => (StatusCode::UNAUTHORIZED, "not_connected"),
            Self::Upstream(err @ UpstreamError::Timeout(_)) => {
                (StatusCode::GATEWAY_TIMEOUT, err.code())
            }
            Self::Upstream(err) => (StatusCode::BAD_GATEWAY, err.code()),
            Self::SessionStore(_) => (StatusCode::SERVICE_UNAVAILABLE, "session_store_unavailable"),
            Self::SessionLayerMissing => (StatusCode::SERVICE_UNAVAILABLE, "session_layer_missing"),
            Self::ClientAddressUnknown => {
                (StatusCode::INTERNAL_SERVER_ERROR, "client_address_unknown")
            }
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::OidcNotConfigured => (StatusCode::NOT_FOUND, "oidc_not_configured"),
            Self::JsapiNotConfigured => (StatusCode::NOT_FOUND, "jsapi_not_configured"),
            Self::OidcStateMismatch(_) => (StatusCode::BAD_REQUEST, "oidc_state_mismatch"),
            Self::OidcDenied(_) => (StatusCode::BAD_REQUEST, "oidc_denied"),
            Self::OidcInvalidIdToken(..) => (StatusCode::UNAUTHORIZED, "oidc_invalid_id_token"),
            Self::InvalidParameter(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::AdminUnauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::SessionNotFound => (StatusCode::NOT_FOUND, "session_not_found"),
            Self::SessionsNotConfigured => (StatusCode::NOT_FOUND, "sessions_not_configured"),
            Self::Rejected { status, .. } => (*status, Self::code_for(*status)),
            Self::LinkedInAccessWithdrawn => {
                (StatusCode::UNAUTHORIZED, "linkedin_access_withdrawn")
            }
            Self::LinkedInForbidden(_) => (StatusCode::FORBIDDEN, "linkedin_forbidden"),
            Self::LinkedInVersionRetired { .. } => {
                (StatusCode::BAD_GATEWAY, "linkedin_version_retired")
            }
            Self::LinkedInRateLimited(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "linkedin_rate_limited")
            }
            Self::ApiPathNotAllowed(_) => (StatusCode::FORBIDDEN, "api_path_not_allowed"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::InvalidAuthUrl(_) => (StatusCode::BAD_REQUEST, "invalid_auth_url"),
        }
    }

    /// Every error code the interface answers with, sorted, each once: the codes of
    /// `AppError::samples`, one error of each variant (and of each error a variant wraps,
    /// and of each framework status). The OpenAPI document's test holds it to this list.
    pub fn all_codes() -> Vec<&'static str> {
        let mut codes: Vec<_> = Self::samples()
            .iter()
            .map(|err| err.status_and_code().1)
            .collect();
        codes.sort_unstable();
        codes.dedup();
        codes
    }

    /// One error of each variant: a variant without one here fails
    /// `every_variant_has_a_sample` (and [`AppError::variant`] names them all, without a
    /// wildcard, so a new variant does not compile until it is numbered there).
    fn samples() -> Vec<Self> {
        let rejected = |status| Self::Rejected {
            status,
            message: String::new(),
        };
        vec![
            Self::Cookie(CookieError::Missing(String::new())),
            Self::Cookie(CookieError::Malformed(String::new())),
            Self::Cookie(CookieError::InvalidSignature(String::new())),
            Self::CrossOrigin(String::new()),
            Self::NotConnected,
            Self::Upstream(UpstreamError::Rejected {
                status: 401,
                problem: String::new(),
            }),
            Self::Upstream(UpstreamError::Unavailable(String::new())),
            Self::Upstream(UpstreamError::Malformed(String::new())),
            Self::Upstream(UpstreamError::Timeout(0)),
            Self::SessionStore(tower_sessions::session_store::Error::Backend(String::new())),
            Self::SessionLayerMissing,
            Self::ClientAddressUnknown,
            Self::NotFound,
            Self::PayloadTooLarge(0),
            Self::MethodNotAllowed {
                method: String::new(),
                allow: String::new(),
            },
            Self::OidcNotConfigured,
            Self::JsapiNotConfigured,
            Self::OidcStateMismatch(""),
            Self::OidcDenied(String::new()),
            Self::OidcInvalidIdToken(Refusal::Issuer, String::new()),
            Self::RateLimited(0),
            Self::AdminUnauthorized(""),
            Self::InvalidParameter(""),
            rejected(StatusCode::BAD_REQUEST),
            rejected(StatusCode::REQUEST_TIMEOUT),
            rejected(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            rejected(StatusCode::UNPROCESSABLE_ENTITY),
            rejected(StatusCode::TOO_MANY_REQUESTS),
            rejected(StatusCode::INTERNAL_SERVER_ERROR),
            Self::SessionNotFound,
            Self::SessionsNotConfigured,
            Self::LinkedInAccessWithdrawn,
            Self::LinkedInForbidden(String::new()),
            Self::LinkedInVersionRetired {
                version: String::new(),
                said: String::new(),
            },
            Self::LinkedInRateLimited(0),
            Self::ApiPathNotAllowed(String::new()),
            Self::Forbidden(String::new()),
            Self::InvalidAuthUrl(String::new()),
        ]
    }

    /// How many variants [`AppError::variant`] numbers.
    #[cfg(test)]
    const VARIANTS: u8 = 28;

    /// The variant's number (and the nested error's, where it carries codes of its own), for
    /// `every_variant_has_a_sample`. A new variant takes the next number, raises
    /// [`AppError::VARIANTS`] and gets a sample in [`AppError::samples`].
    #[cfg(test)]
    fn variant(&self) -> (u8, u8) {
        match self {
            Self::Cookie(err) => (
                0,
                match err {
                    CookieError::Missing(_) => 0,
                    CookieError::Malformed(_) => 1,
                    CookieError::InvalidSignature(_) => 2,
                },
            ),
            Self::CrossOrigin(_) => (1, 0),
            Self::NotConnected => (2, 0),
            Self::Upstream(err) => (
                3,
                match err {
                    UpstreamError::Rejected { .. } => 0,
                    UpstreamError::Unavailable(_) => 1,
                    UpstreamError::Malformed(_) => 2,
                    UpstreamError::Timeout(_) => 3,
                },
            ),
            Self::SessionStore(_) => (4, 0),
            Self::NotFound => (5, 0),
            Self::PayloadTooLarge(_) => (6, 0),
            Self::MethodNotAllowed { .. } => (7, 0),
            Self::OidcNotConfigured => (8, 0),
            Self::OidcStateMismatch(_) => (9, 0),
            Self::OidcDenied(_) => (10, 0),
            Self::OidcInvalidIdToken(..) => (11, 0),
            Self::RateLimited(_) => (12, 0),
            Self::AdminUnauthorized(_) => (13, 0),
            Self::InvalidParameter(_) => (14, 0),
            Self::Rejected { .. } => (15, 0),
            Self::JsapiNotConfigured => (16, 0),
            Self::SessionLayerMissing => (17, 0),
            Self::ClientAddressUnknown => (18, 0),
            Self::SessionNotFound => (19, 0),
            Self::SessionsNotConfigured => (20, 0),
            Self::LinkedInAccessWithdrawn => (21, 0),
            Self::LinkedInForbidden(_) => (22, 0),
            Self::LinkedInVersionRetired { .. } => (23, 0),
            Self::LinkedInRateLimited(_) => (24, 0),
            Self::ApiPathNotAllowed(_) => (25, 0),
            Self::Forbidden(_) => (26, 0),
            Self::InvalidAuthUrl(_) => (27, 0),
        }
    }

    /// The `reason` of `lte_oidc_refusals_total` when this error refuses a sign-in callback:
    /// the state, the provider's denial, or the id_token check that failed.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        match self {
            Self::OidcStateMismatch(_) => Some("state"),
            Self::OidcDenied(_) => Some("denied"),
            Self::OidcInvalidIdToken(reason, _) => Some(reason.label()),
            _ => None,
        }
    }

    /// The code of a framework answer with `status`.
    pub fn code_for(status: StatusCode) -> &'static str {
        // 404, 405 and 413 have variants of their own.
        match status.as_u16() {
            408 => "request_timeout",
            415 => "unsupported_media_type",
            422 => "unprocessable_entity",
            429 => "rate_limited",
            500.. => "internal_error",
            _ => "bad_request",
        }
    }

    /// The sentence for a person. Store errors are summarised: their detail goes to the log.
    fn message(&self) -> String {
        let mut message = self.to_string();
        if !message.ends_with('.') {
            message.push('.');
        }
        let mut chars = message.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => message,
        }
    }
}

/// The JSON body of every error.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ErrorBody {
    /// The stable code.
    pub error: &'static str,
    /// One sentence for a person.
    pub message: String,
    /// The request's id (`X-Request-Id`), added by [`errors`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// What [`errors`] finds on a failed response.
#[derive(Clone, Debug)]
pub(crate) struct LoggedError {
    code: &'static str,
    status: StatusCode,
    detail: String,
    body: ErrorBody,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let detail = match &self {
            Self::SessionStore(err) => err.to_string(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: code,
            message: self.message(),
            request_id: None,
        };
        let mut response = (status, Json(body.clone())).into_response();
        if let Self::RateLimited(seconds) | Self::LinkedInRateLimited(seconds) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        if let Self::AdminUnauthorized(_) = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response.extensions_mut().insert(LoggedError {
            code,
            status,
            detail,
            body,
        });
        response
    }
}

/// The middleware for failed answers: the framework's own get the JSON shape
/// (`framework_error_as_json`), then each failed request is logged once
/// (`log_error`). A successful answer passes at once.
pub(crate) async fn errors(request: Request, next: Next) -> Response {
    // A cheap clone (a shared header value); turned into text only for an error.
    let request_id = request
        .extensions()
        .get::<tower_http::request_id::RequestId>()
        .cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status().as_u16() < 400 {
        return response;
    }
    let response = framework_error_as_json(&method, response).await;
    log_error(request_id, response)
}

/// Writes one log line for a failed request (in the request's span, so with its id): server
/// and upstream faults at `warn`, the caller's mistakes at `info`. Messages never hold
/// secrets, and values from the request are escaped where they are put into a message, so
/// they can be logged whole. Adds the request id to the error body.
fn log_error(
    request_id: Option<tower_http::request_id::RequestId>,
    response: Response,
) -> Response {
    let Some(err) = response.extensions().get::<LoggedError>().cloned() else {
        return response;
    };
    let request_id = request_id.and_then(|id| id.header_value().to_str().ok().map(str::to_owned));
    let status = err.status.as_u16();
    if err.status.is_server_error() {
        tracing::warn!(status, code = err.code, "{}", err.detail);
    } else {
        tracing::info!(status, code = err.code, "{}", err.detail);
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if request_id.is_none() || !is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let body = ErrorBody {
        request_id,
        ..err.body
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut rendered = Json(body).into_response();
    *rendered.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        rendered.headers_mut().insert(name.clone(), value.clone());
    }
    *rendered.extensions_mut() = parts.extensions;
    rendered
}

impl From<OidcError> for AppError {
    fn from(err: OidcError) -> Self {
        match err {
            OidcError::Upstream(err) => Self::Upstream(err),
            OidcError::InvalidIdToken { reason, why } => {
                Self::OidcInvalidIdToken(reason, format!("the id_token was refused: {why}"))
            }
        }
    }
}

/// The page a person sees when a sign-in fails in the browser: the message, the code and a
/// way back.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    /// "Sign-in cancelled" for a deliberate cancel, "Sign-in failed" otherwise.
    title: &'a str,
    message: String,
    code: &'static str,
    /// The way back: its address and its words.
    back: &'a str,
    back_text: &'a str,
}

/// The provider's `error=` codes for a member who chose not to sign in (LinkedIn's: Cancel
/// on the sign-in page, or on the consent screen).
const CANCELLED: [&str; 2] = ["user_cancelled_login", "user_cancelled_authorize"];

impl AppError {
    /// Whether the member cancelled on purpose: the provider's `error=` is a cancel.
    fn is_cancel(&self) -> bool {
        let Self::OidcDenied(said) = self else {
            return false;
        };
        let error = said.split(':').next().unwrap_or_default().trim();
        CANCELLED.contains(&error)
    }

    /// This error as an HTML page for a person (same status, logged the same way).
    pub fn into_page(self) -> Response {
        let title = if self.is_cancel() {
            "Sign-in cancelled"
        } else {
            "Sign-in failed"
        };
        self.into_page_titled(title, "/", "Back to the sign-in page")
    }

    /// This error as an HTML page titled `title`, with a link `back_text` to `back`.
    pub(crate) fn into_page_titled(self, title: &str, back: &str, back_text: &str) -> Response {
        let json = self.into_response();
        let (parts, _) = json.into_parts();
        let Some(logged) = parts.extensions.get::<LoggedError>().cloned() else {
            return Response::from_parts(parts, axum::body::Body::empty());
        };
        let page = ErrorPage {
            title,
            message: logged.body.message.clone(),
            code: logged.code,
            back,
            back_text,
        };
        let mut response = page.into_response();
        *response.status_mut() = parts.status;
        response.extensions_mut().insert(logged);
        response
    }
}
/// Marks an answer of LinkedIn's that the pass-through hands on as it came (status, type,
/// body): never rewritten into this crate's error shape, whatever its status.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PassedOn;

/// The fallback for unknown routes.
pub(crate) async fn not_found() -> AppError {
    AppError::NotFound
}

/// The largest framework error text kept as the message.
const MAX_REJECTION_TEXT: usize = 300;

/// Renders the framework's own error answers (plain text or empty, with a 4xx or 5xx status)
/// in the JSON shape of [`AppError`], keeping their status and headers (`Allow`). Answers
/// that already are JSON, or carry a content type of their own (the sandbox emulating
/// LinkedIn), pass untouched.
/// [`errors`] calls it for failed answers only.
async fn framework_error_as_json(method: &Method, response: Response) -> Response {
    let status = response.status();
    if response.extensions().get::<LoggedError>().is_some()
        || response.extensions().get::<PassedOn>().is_some()
    {
        return response;
    }
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|t| t.as_bytes().starts_with(b"text/plain"));
    if !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4 * MAX_REJECTION_TEXT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let error = match status {
        StatusCode::NOT_FOUND => AppError::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge(MAX_BODY_BYTES),
        StatusCode::METHOD_NOT_ALLOWED => AppError::MethodNotAllowed {
            method: method.to_string(),
            allow: parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no method")
                .to_owned(),
        },
        status => AppError::Rejected {
            status,
            message: rejection_message(status, &text),
        },
    };
    let mut rendered = error.into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            rendered.headers_mut().insert(name, value.clone());
        }
    }
    rendered
}

/// The framework's text (escaped) when it is a short sentence, else the status's reason.
fn rejection_message(status: StatusCode, text: &str) -> String {
    let text = text.trim();
    if !text.is_empty() && text.len() <= MAX_REJECTION_TEXT {
        escape_text(text, MAX_REJECTION_TEXT)
    } else {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_sample() {
        let sampled: std::collections::BTreeSet<_> =
            AppError::samples().iter().map(AppError::variant).collect();
        // Every variant, and every kind of the cookie's (0) and the upstream's (3) errors.
        let kinds = |variant| match variant {
            0 => 3,
            3 => 4,
            _ => 1,
        };
        let expected: std::collections::BTreeSet<_> = (0..AppError::VARIANTS)
            .flat_map(|variant| (0..kinds(variant)).map(move |kind| (variant, kind)))
            .collect();
        assert_eq!(sampled, expected);
        // Every status class the framework's answers map to.
        for status in [400, 408, 413, 415, 422, 429, 500, 503] {
            let code = AppError::code_for(StatusCode::from_u16(status).unwrap());
            assert!(
                status == 413 || AppError::all_codes().contains(&code),
                "{code}"
            );
        }
    }

    #[test]
    fn every_upstream_fault_is_a_502_or_504() {
        let cases = [
            (
                UpstreamError::Rejected {
                    status: 401,
                    problem: "token_rejected".into(),
                },
                502,
                "upstream_rejected",
            ),
            (
                UpstreamError::Unavailable("x".into()),
                502,
                "upstream_unavailable",
            ),
            (
                UpstreamError::Malformed("x".into()),
                502,
                "upstream_malformed",
            ),
            (UpstreamError::Timeout(10), 504, "upstream_timeout"),
        ];
        for (err, status, code) in cases {
            let (s, c) = AppError::from(err).status_and_code();
            assert_eq!((s.as_u16(), c), (status, code));
        }
    }

    #[test]
    fn messages_are_sentences_and_name_the_problem() {
        let err = AppError::from(UpstreamError::Rejected {
            status: 401,
            problem: "token_rejected".into(),
        });
        assert_eq!(
            err.message(),
            "LinkedIn refused the request (token_rejected)."
        );
        assert_eq!(
            AppError::NotConnected.message(),
            "No LinkedIn member is connected in this session: sign in first."
        );
    }
}
