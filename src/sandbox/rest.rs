//! The sandbox's REST side for OpenID Connect's bearer tokens, answering in LinkedIn's own
//! shapes (`{"status", "serviceErrorCode", "code", "message"}`), each rule with its source:
//! - `POST /oauth/v2/introspectToken` (form `client_id`, `client_secret`, `token`):
//!   `active`, `status` (`active`, `expired`, `revoked`), `client_id`, `authorized_at`,
//!   `created_at`, `expires_at`, `scope`, `auth_type` (learn.microsoft.com, "Token
//!   Introspection"); an unknown token is `{"active": false}`; a wrong client 401
//!   `invalid_client`;
//! - `GET /v2/me`: 403 `ACCESS_DENIED` "Not enough permissions to access: me.GET.NO_VERSION"
//!   to an OpenID Connect token (linkedin-api-python-client#49 and PR #60,
//!   linkedin-api-js-client#35); JSAPI-era callers keep `/v1/people/~`;
//! - `POST /rest/posts` and `GET /rest/posts/{id}`: `LinkedIn-Version: YYYYMM` (or
//!   `YYYYMM.RR`) and `X-Restli-Protocol-Version: 2.0.0` required; a version more than 11
//!   months old or in the future answers 426 `NONEXISTENT_VERSION` "Requested version
//!   YYYYMM01 is not active" (n8n #28660 and PR #39065, Composio #3231 and #3113: `202504`
//!   was refused from mid-April 2026), no version 400; posting needs `w_member_social` and
//!   answers 201 with the post's URN in `x-restli-id`;
//! - `GET /media/dms/image/{asset}/…/0?e=&v=beta&t=`: the member's picture (an SVG of their
//!   initials) until `e`, 403 after it or for a URL not signed here.
//!
//! Every API route counts against the member's daily quota ([`bearer`]), as LinkedIn counts
//! calls per member per day (learn.microsoft.com, "Rate Limits": they reset at midnight UTC):
//! over it, 429 in LinkedIn's words (wp-calypso#32007 quotes them), with a `Retry-After`
//! until midnight UTC that LinkedIn does not send but issue 30 asks of the sandbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json, Router};
use moka::sync::Cache;
use serde::Deserialize;
use serde_json::{Value, json};

use super::oidc::OidcSandboxConfig;
use super::tokens::{Issued, Ledger, PictureCheck, Status};
use super::{DEFAULT_MEMBER_ID, now, valid_member_id};
use crate::handlers::{Routes, Verb};

/// The scope that lets a member's token post (LinkedIn's "Share on LinkedIn" product).
const POST_SCOPE: &str = "w_member_social";
/// The Rest.li protocol version the versioned API speaks.
const RESTLI_VERSION: &str = "2.0.0";
/// How many months a version stays active, the month of its release included.
const VERSION_MONTHS: i64 = 12;
/// Bounds on memory.
const MAX_POSTS: u64 = 100_000;
const POST_TTL: Duration = Duration::from_secs(7 * 86_400);

#[derive(Clone)]
struct RestState(Arc<Inner>);

struct Inner {
    config: OidcSandboxConfig,
    ledger: Arc<Ledger>,
    posts: Cache<String, Arc<Value>>,
    next_post: AtomicU64,
}

/// The routes of this module (paths under `/sandbox`), for the OpenID Connect client of
/// `config`, on `ledger`.
pub(crate) fn router(config: OidcSandboxConfig, ledger: Arc<Ledger>) -> Router {
    let state = RestState(Arc::new(Inner {
        config,
        ledger,
        posts: Cache::builder()
            .max_capacity(MAX_POSTS)
            .time_to_live(POST_TTL)
            .build(),
        next_post: AtomicU64::new(7_100_000_000_000_000_000),
    }));
    Router::new()
        .at(Verb::Post, "/oauth/v2/introspectToken", introspect)
        .at(Verb::Get, "/v2/me", me)
        .at(Verb::Post, "/rest/posts", create_post)
        .at(Verb::Get, "/rest/posts/{id}", get_post)
        .at(
            Verb::Get,
            "/media/dms/image/{asset}/profile-displayphoto-shrink_100_100/0",
            picture,
        )
        .with_state(state)
}

/// A refusal in LinkedIn's REST shape: `{"status", "serviceErrorCode"?, "code"?, "message"}`,
/// with `Retry-After` for the quota's.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    service_code: Option<u32>,
    code: Option<&'static str>,
    message: String,
    retry_after: Option<u64>,
}

/// A refusal without `Retry-After`.
fn api_error(
    status: StatusCode,
    service_code: Option<u32>,
    code: Option<&'static str>,
    message: impl Into<String>,
) -> Refusal {
    Refusal {
        status,
        service_code,
        code,
        message: message.into(),
        retry_after: None,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = json!({"status": self.status.as_u16(), "message": self.message});
        if let Some(service_code) = self.service_code {
            body["serviceErrorCode"] = json!(service_code);
        }
        if let Some(code) = self.code {
            body["code"] = json!(code);
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The caller of an API route: the active OpenID Connect token in `Authorization: Bearer`,
/// with one call counted against its member's daily quota. Otherwise LinkedIn's 401
/// (learn.microsoft.com, "Error Handling": empty token, unknown scheme, invalid, revoked or
/// expired token) or 429 with `Retry-After` until midnight UTC.
pub(crate) fn bearer(ledger: &Ledger, headers: &HeaderMap) -> Result<Arc<Issued>, Refusal> {
    let unauthorized = |service_code, message: &'static str| {
        api_error(StatusCode::UNAUTHORIZED, Some(service_code), None, message)
    };
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    if header.is_empty() {
        return Err(unauthorized(401, "Empty oauth2_access_token"));
    }
    let Some(token) = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return Err(unauthorized(401, "Unknown authentication schema"));
    };
    if token.is_empty() {
        return Err(unauthorized(401, "Empty oauth2_access_token"));
    }
    let now = now();
    let Some(access) = ledger.bearer(token) else {
        return Err(unauthorized(65600, "Invalid access token"));
    };
    match ledger.status(&access, now) {
        Status::Active => {}
        Status::Revoked => {
            return Err(unauthorized(
                65601,
                "The token used in the request has been revoked by the user",
            ));
        }
        Status::Expired => {
            return Err(unauthorized(
                65602,
                "The token used in the request has expired",
            ));
        }
    }
    if let Err(retry_after) = ledger.spend(&access.member, now) {
        return Err(Refusal {
            retry_after: Some(retry_after),
            ..api_error(
                StatusCode::TOO_MANY_REQUESTS,
                Some(101),
                None,
                "Resource level throttle limit for calls to this resource is reached.",
            )
        });
    }
    Ok(access)
}

/// The introspection request.
#[derive(Debug, Deserialize)]
struct IntrospectionRequest {
    client_id: Option<String>,
    client_secret: Option<String>,
    token: Option<String>,
}

/// `POST /oauth/v2/introspectToken`: what a token of this client is now.
async fn introspect(
    State(state): State<RestState>,
    Form(form): Form<IntrospectionRequest>,
) -> Response {
    let config = &state.0.config;
    let authenticated = form.client_id.as_deref() == Some(config.client_id.as_str())
        && form
            .client_secret
            .as_deref()
            .is_some_and(|given| config.client_secret.matches(given));
    if !authenticated {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "Client authentication failed"})),
        )
            .into_response();
    }
    let Some(token) = form.token.as_deref().filter(|t| !t.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": "A required parameter \"token\" is missing"})),
        )
            .into_response();
    };
    let ledger = &state.0.ledger;
    let Some(issued) = ledger.bearer(token).or_else(|| ledger.refresh_token(token)) else {
        return (
            [(CACHE_CONTROL, "no-store")],
            Json(json!({"active": false})),
        )
            .into_response();
    };
    let status = ledger.status(&issued, now());
    (
        [(CACHE_CONTROL, "no-store")],
        Json(json!({
            "active": status == Status::Active,
            "client_id": config.client_id,
            "authorized_at": issued.authorized_at,
            "created_at": issued.created_at,
            "status": status.as_str(),
            "expires_at": issued.expires_at,
            "scope": issued.scope,
            "auth_type": "3L",
        })),
    )
        .into_response()
}

/// `GET /v2/me`: an OpenID Connect token may not read the legacy profile.
async fn me(State(state): State<RestState>, headers: HeaderMap) -> Refusal {
    if let Err(refusal) = bearer(&state.0.ledger, &headers) {
        return refusal;
    }
    api_error(
        StatusCode::FORBIDDEN,
        Some(100),
        Some("ACCESS_DENIED"),
        "Not enough permissions to access: me.GET.NO_VERSION",
    )
}

/// What a `LinkedIn-Version` header says at a moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// No header (or an empty one).
    Missing,
    /// A version that is not served now: retired, not yet released, or no version at all.
    /// Holds the version as LinkedIn names it in its message (`202504` -> `20250401`).
    Inactive(String),
    /// Served now: holds the version as LinkedIn names it.
    Active(String),
}

/// Reads `LinkedIn-Version` (`YYYYMM` or `YYYYMM.RR`) at `now` (unix seconds): active for the
/// month of its release and the 11 after (LinkedIn keeps a version about a year: `202504`
/// answered 426 from mid-April 2026, n8n #28660; the month is the sandbox's unit).
pub(crate) fn check_version(header: Option<&str>, now: i64) -> Version {
    let value = header.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Version::Missing;
    }
    let (month, revision) = match value.split_once('.') {
        Some((month, revision)) => (month, Some(revision)),
        None => (value, None),
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(month, 6) || revision.is_some_and(|r| !digits(r, 2)) {
        return Version::Inactive(value.to_owned());
    }
    let named = match revision {
        Some(revision) => format!("{month}.{revision}"),
        None => format!("{month}01"),
    };
    let (Ok(year), Ok(number)) = (month[..4].parse::<i64>(), month[4..].parse::<i64>()) else {
        return Version::Inactive(named);
    };
    let Ok(today) = time::OffsetDateTime::from_unix_timestamp(now) else {
        return Version::Inactive(named);
    };
    let current = i64::from(today.year()) * 12 + i64::from(u8::from(today.month())) - 1;
    let age = current - (year * 12 + number - 1);
    if (1..=12).contains(&number) && (0..VERSION_MONTHS).contains(&age) {
        Version::Active(named)
    } else {
        Version::Inactive(named)
    }
}

/// The versioned API's headers: the version (400 without, 426 for one not served) and the
/// Rest.li protocol version (400 without 2.0.0). Answers the version as LinkedIn names it.
fn versioned(headers: &HeaderMap) -> Result<String, Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let version = match check_version(header("linkedin-version"), now()) {
        Version::Active(version) => version,
        Version::Missing => {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                None,
                Some("VERSION_MISSING"),
                "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
            ));
        }
        Version::Inactive(version) => {
            return Err(api_error(
                StatusCode::UPGRADE_REQUIRED,
                None,
                Some("NONEXISTENT_VERSION"),
                format!("Requested version {version} is not active"),
            ));
        }
    };
    if header("x-restli-protocol-version").map(str::trim) != Some(RESTLI_VERSION) {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            None,
            None,
            "X-Restli-Protocol-Version: 2.0.0 is required on this resource",
        ));
    }
    Ok(version)
}

/// A required field of a post, as LinkedIn's validation names it.
fn missing(field: &str) -> Refusal {
    api_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        None,
        None,
        format!("ERROR :: /{field} :: field is required but not found and has no default value"),
    )
}

/// `POST /rest/posts`: a post by the token's member (`w_member_social`), answered 201 with
/// its URN in `x-restli-id`.
async fn create_post(
    State(state): State<RestState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let access = bearer(&state.0.ledger, &headers)?;
    let version = versioned(&headers)?;
    let forbidden = |message: String| {
        api_error(
            StatusCode::FORBIDDEN,
            Some(100),
            Some("ACCESS_DENIED"),
            message,
        )
    };
    if !access.scope.split(',').any(|scope| scope == POST_SCOPE) {
        return Err(forbidden(format!(
            "Not enough permissions to access: partnerApiPostsExternal.CREATE.{version}"
        )));
    }
    let Ok(Value::Object(mut post)) = serde_json::from_slice::<Value>(&body) else {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            None,
            None,
            "Unable to parse the request body as a JSON object",
        ));
    };
    for field in ["author", "commentary", "visibility", "lifecycleState"] {
        if !post.get(field).is_some_and(Value::is_string) {
            return Err(missing(field));
        }
    }
    let enumerated = [
        (
            "visibility",
            &["PUBLIC", "CONNECTIONS", "LOGGED_IN", "CONTAINER"][..],
        ),
        ("lifecycleState", &["PUBLISHED", "DRAFT"][..]),
    ];
    for (field, symbols) in enumerated {
        let value = post[field].as_str().unwrap_or_default();
        if !symbols.contains(&value) {
            return Err(api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                None,
                format!("ERROR :: /{field} :: \"{value}\" is not an enum symbol"),
            ));
        }
    }
    let author = format!(
        "urn:li:person:{}",
        super::oidc::subject(&state.0.config, &access.member)
    );
    if post["author"].as_str() != Some(author.as_str()) {
        return Err(forbidden(format!(
            "The author must be the authenticated member, {author}"
        )));
    }
    let id = format!(
        "urn:li:share:{}",
        state.0.next_post.fetch_add(1, Ordering::Relaxed)
    );
    let at = now() * 1000;
    post.insert("id".into(), json!(id));
    post.insert("createdAt".into(), json!(at));
    post.insert("lastModifiedAt".into(), json!(at));
    if post["lifecycleState"] == "PUBLISHED" {
        post.insert("publishedAt".into(), json!(at));
    }
    post.entry("isReshareDisabledByAuthor")
        .or_insert(json!(false));
    state
        .0
        .posts
        .insert(id.clone(), Arc::new(Value::Object(post)));
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-restli-id"), value);
    }
    Ok(response)
}

/// `GET /rest/posts/{id}` (the URN, percent-encoded): a post made here, to any active token of
/// the app (the sandbox does not emulate `r_member_social`).
async fn get_post(
    State(state): State<RestState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refusal> {
    bearer(&state.0.ledger, &headers)?;
    versioned(&headers)?;
    match state.0.posts.get(&id) {
        Some(post) => Ok(Json((*post).clone())),
        None => Err(api_error(
            StatusCode::NOT_FOUND,
            None,
            Some("NOT_FOUND"),
            format!("Post {id} not found"),
        )),
    }
}

/// A picture URL's query.
#[derive(Debug, Deserialize)]
struct PictureQuery {
    e: Option<i64>,
    t: Option<String>,
}

/// `GET /media/dms/image/{asset}/profile-displayphoto-shrink_100_100/0`: the picture until its
/// `e`, 403 after it or for a URL not signed here (as LinkedIn's media host refuses them).
async fn picture(
    State(state): State<RestState>,
    Path(asset): Path<String>,
    Query(query): Query<PictureQuery>,
) -> Response {
    let forbidden = |message: &str| {
        (
            StatusCode::FORBIDDEN,
            [(CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<!doctype html><title>403 Forbidden</title><h1>403 Forbidden</h1><p>{message}</p>"
            ),
        )
            .into_response()
    };
    let (Some(expires), Some(signature)) = (query.e, query.t.as_deref()) else {
        return forbidden("URL signature missing");
    };
    if !valid_member_id(&asset) {
        return forbidden("URL signature mismatch");
    }
    match state
        .0
        .ledger
        .check_picture(&asset, expires, signature, now())
    {
        PictureCheck::Valid => (
            [
                (CONTENT_TYPE, "image/svg+xml"),
                (CACHE_CONTROL, "private, no-cache"),
            ],
            initials_svg(&asset),
        )
            .into_response(),
        PictureCheck::Expired => forbidden("URL signature expired"),
        PictureCheck::Forged => forbidden("URL signature mismatch"),
    }
}

/// A 100×100 picture of a member's initials (letters and digits only, so nothing to escape).
fn initials_svg(member_id: &str) -> String {
    let initials = if member_id == DEFAULT_MEMBER_ID {
        "AL".to_owned()
    } else {
        let first = member_id
            .chars()
            .find(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase());
        format!("S{}", first.map(String::from).unwrap_or_default())
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100\" height=\"100\" viewBox=\"0 0 100 100\">\
         <rect width=\"100\" height=\"100\" fill=\"#0a66c2\"/>\
         <text x=\"50\" y=\"62\" font-family=\"sans-serif\" font-size=\"36\" fill=\"#fff\" \
         text-anchor=\"middle\">{initials}</text></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-04-16T12:00:00Z, the day after `202504` was retired (n8n #28660).
    const APRIL_2026: i64 = 1_776_340_800;

    #[test]
    fn a_version_lives_its_month_and_the_eleven_after() {
        let at = |v: &str| check_version(Some(v), APRIL_2026);
        assert_eq!(at("202604"), Version::Active("20260401".into()));
        assert_eq!(at("202505"), Version::Active("20250501".into()));
        assert_eq!(at(" 202601 "), Version::Active("20260101".into()));
        assert_eq!(at("202511.01"), Version::Active("202511.01".into()));
        // Retired: twelve months old and more (n8n #28660: "Requested version 20250401 is
        // not active"; Composio #3231).
        assert_eq!(at("202504"), Version::Inactive("20250401".into()));
        assert_eq!(at("202411"), Version::Inactive("20241101".into()));
        // Not released yet.
        assert_eq!(at("202605"), Version::Inactive("20260501".into()));
        // Not versions.
        assert_eq!(at("202613"), Version::Inactive("20261301".into()));
        assert_eq!(at("2026-04"), Version::Inactive("2026-04".into()));
        assert_eq!(at("20260401"), Version::Inactive("20260401".into()));
        assert_eq!(at("202604.1"), Version::Inactive("202604.1".into()));
        assert_eq!(check_version(None, APRIL_2026), Version::Missing);
        assert_eq!(check_version(Some("  "), APRIL_2026), Version::Missing);
    }

    #[test]
    fn the_year_boundary_counts_months_not_years() {
        // 2027-01-10: 202602 is 11 months old, 202601 twelve.
        let january = 1_799_582_400;
        assert_eq!(
            check_version(Some("202602"), january),
            Version::Active("20260201".into())
        );
        assert_eq!(
            check_version(Some("202601"), january),
            Version::Inactive("20260101".into())
        );
        assert_eq!(
            check_version(Some("202701"), january),
            Version::Active("20270101".into())
        );
    }

    #[test]
    fn pictures_show_initials_only() {
        assert!(initials_svg(DEFAULT_MEMBER_ID).contains(">AL</text>"));
        assert!(initials_svg("grace").contains(">SG</text>"));
        assert!(initials_svg("_-x").contains(">SX</text>"));
    }
}
