//! I/O: the member's client, [`LinkedInApi`]: LinkedIn's API called as the connected member,
//! each call signed with the credentials of the flow that signed them in, and each answer
//! that is not the API's own typed.
//!
//! - Signing: OAuth 1.0a (HMAC-SHA1) with the app's consumer key pair and the member's token
//!   for JSAPI credentials (the query's and a form body's parameters signed, as RFC 5849
//!   section 3.4.1.3 has it); `Authorization: Bearer` for OpenID Connect.
//! - Versions: `LinkedIn-Version` (the one setting, `LINKEDIN_API_VERSION`) and
//!   `X-Restli-Protocol-Version: 2.0.0` on `/rest/` paths, LinkedIn's versioned APIs
//!   (learn.microsoft.com, "LinkedIn API Versioning").
//! - Outcomes: 401 is access withdrawn, and every session holding the token ends (through
//!   the member index when the store keeps one; this request's session always); 403 names
//!   what LinkedIn says is missing; 426 names the version setting; 429 carries `Retry-After`
//!   (LinkedIn's, or until its daily quotas reset at midnight UTC); 5xx and timeouts are the
//!   upstream errors of the rest of the crate (502/504). Any other answer is the caller's.
//!
//! Paths are relative to the REST base (`LINKEDIN_API_URL`), and only clean ones are sent:
//! no `..`, no encoded slash, no absolute URL ([`api_path`]). Which paths the pass-through
//! may send is `handlers::api`'s decision, by `LINKEDIN_API_ALLOW`.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use url::Url;

use super::client::LinkedInClient;
use super::oidc::OidcClient;
use super::transport::UpstreamError;
use crate::config::api_access::ApiVersion;
use crate::error::AppError;
use crate::session::member::Ended;
use crate::session::{Credentials, Member, MemberSession, SessionBackend};
use crate::text::escape_text;

/// `LinkedIn-Version`.
pub(crate) const LINKEDIN_VERSION: HeaderName = HeaderName::from_static("linkedin-version");
/// `X-Restli-Protocol-Version`, `2.0.0` on `/rest/`.
pub(crate) const RESTLI_PROTOCOL: HeaderName = HeaderName::from_static("x-restli-protocol-version");
/// `X-RestLi-Method`: Rest.li's real method on a `POST` (`PARTIAL_UPDATE`, `BATCH_GET`, …),
/// passed on from the caller.
pub(crate) const RESTLI_METHOD: HeaderName = HeaderName::from_static("x-restli-method");
/// `X-RestLi-Id`: the id of what a `POST` created, passed back to the caller.
pub(crate) const RESTLI_ID: HeaderName = HeaderName::from_static("x-restli-id");

/// The OAuth problems (the "OAuth Problem Reporting" extension LinkedIn's OAuth 1.0a API
/// answered with) that are the app's fault, not the member's: a 401 naming one of them is a
/// signing or key-pair fault (502 `upstream_rejected`), and ends no session.
const APP_PROBLEMS: [&str; 10] = [
    "signature_invalid",
    "signature_method_rejected",
    "timestamp_refused",
    "nonce_used",
    "parameter_absent",
    "parameter_rejected",
    "version_rejected",
    "consumer_key_unknown",
    "consumer_key_rejected",
    "consumer_key_refused",
];

/// The connected member's client for LinkedIn's API: get one from
/// [`LinkedInSignIn::api`](crate::LinkedInSignIn::api) in a handler.
///
/// Every call is signed with the member's credentials (OAuth 1.0a with the app's key pair for
/// the JSAPI flow, `Bearer` for OpenID Connect), with `LinkedIn-Version` and
/// `X-Restli-Protocol-Version: 2.0.0` on `/rest/` paths. LinkedIn's refusals come back as
/// typed [`Error`](crate::Error)s: `linkedin_access_withdrawn` (401; the session has ended),
/// `linkedin_forbidden` (403), `linkedin_version_retired` (426, naming the version setting),
/// `linkedin_rate_limited` (429, with `Retry-After`), and `upstream_unavailable` or
/// `upstream_timeout` (5xx, no answer).
pub struct LinkedInApi {
    reach: Arc<ApiReach>,
    member: Member,
    /// The request's session, ended (kept as a tombstone) when LinkedIn withdraws access.
    session: Option<MemberSession>,
    /// The store's member index, when the server's own store is in use: every session
    /// holding the withdrawn token ends.
    sessions: Option<SessionBackend>,
}

impl fmt::Debug for LinkedInApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkedInApi")
            .field("member_id", &self.member.member_id)
            .field("flow", &self.member.credentials.flow())
            .finish_non_exhaustive()
    }
}

/// What the member's client needs of the sign-in: where LinkedIn is, which flows are on, and
/// the API version. Built once per sign-in and shared by its clients.
#[derive(Debug)]
pub(crate) struct ApiReach {
    /// The client for the LinkedIn side (its transport sends the calls).
    pub linkedin: LinkedInClient,
    /// The OpenID Connect relying party, when configured.
    pub oidc: Option<OidcClient>,
    /// Whether the JSAPI flow is on.
    pub jsapi: bool,
    /// `LinkedIn-Version` on `/rest/` calls.
    pub version: ApiVersion,
}

/// A call, ready to sign.
struct Call {
    method: Method,
    /// The whole URL, its query included.
    url: Url,
    /// The path under the REST base (`/rest/…`), when the call is one of the API's (the
    /// version headers go on `/rest/`).
    api_path: Option<String>,
    /// `Content-Type`, `Accept` and `X-RestLi-Method`, from the caller.
    headers: HeaderMap,
    body: Bytes,
    /// The metrics' `endpoint`.
    endpoint: &'static str,
}

impl LinkedInApi {
    /// A client for `member`, who is signed in in `session` (ended when LinkedIn withdraws
    /// access), with `sessions` the store whose index finds the member's other sessions.
    pub(crate) fn new(
        reach: Arc<ApiReach>,
        member: Member,
        session: Option<MemberSession>,
        sessions: Option<SessionBackend>,
    ) -> Self {
        Self {
            reach,
            member,
            session,
            sessions,
        }
    }

    /// The member whose credentials sign the calls.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// `GET` a JSON resource of the API: `path` is under the REST base, with its query
    /// (`/v2/userinfo`, `/rest/posts?author=urn%3Ali%3Aperson%3A1&q=author`). An answer
    /// other than 2xx that is not one of the typed ones is `upstream_rejected`.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, AppError> {
        let request = Request::get(path)
            .header(ACCEPT, "application/json")
            .body(Bytes::new())
            .map_err(|_| {
                AppError::ApiPathNotAllowed(format!("{:?} is not a path", escape_text(path, 100)))
            })?;
        let answer = self.send(request).await?;
        json_of(answer)
    }

    /// Sends `request` to the API as the member. Its URI is the path under the REST base,
    /// with its query; of its headers, `Content-Type`, `Accept` and `X-RestLi-Method` are
    /// sent. The answer (any status the typed errors leave) carries LinkedIn's status,
    /// `Content-Type`, `X-RestLi-Id` and body.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, AppError> {
        let (parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let (path, _) = api_path(&path_and_query)?;
        reachable(&self.member.credentials, &path)?;
        let url = self.api_url(&path_and_query)?;
        let mut headers = HeaderMap::new();
        for name in [CONTENT_TYPE, ACCEPT, RESTLI_METHOD] {
            if let Some(value) = parts.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        self.call(Call {
            method: parts.method,
            url,
            api_path: Some(path),
            headers,
            body,
            endpoint: "api",
        })
        .await
    }

    /// The member's profile: `/v1/people/~` (JSAPI, as JSON) or the provider's userinfo
    /// (OpenID Connect). What `GET /me` answers.
    pub async fn profile(&self) -> Result<serde_json::Value, AppError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let call = match &self.member.credentials {
            Credentials::Jsapi { .. } => Call {
                method: Method::GET,
                url: self.api_url("/v1/people/~?format=json")?,
                api_path: Some("/v1/people/~".to_owned()),
                headers,
                body: Bytes::new(),
                endpoint: "profile",
            },
            Credentials::Oidc { .. } => {
                let oidc = self
                    .reach
                    .oidc
                    .as_ref()
                    .ok_or(AppError::OidcNotConfigured)?;
                Call {
                    method: Method::GET,
                    url: oidc.userinfo_url().await?,
                    api_path: None,
                    headers,
                    body: Bytes::new(),
                    endpoint: "oidc_userinfo",
                }
            }
        };
        json_of(self.call(call).await?)
    }

    /// `<LINKEDIN_API_URL><path_and_query>`, on the REST base's origin and under its path.
    fn api_url(&self, path_and_query: &str) -> Result<Url, AppError> {
        let base = self.reach.linkedin.api_url();
        let joined = format!("{}{path_and_query}", base.as_str().trim_end_matches('/'));
        let refused = || {
            AppError::ApiPathNotAllowed(format!(
                "{:?} is not a path under the LinkedIn API",
                escape_text(path_and_query, 100)
            ))
        };
        let url = Url::parse(&joined).map_err(|_| refused())?;
        let under_base = url.origin() == base.origin()
            && url.path().starts_with(base.path().trim_end_matches('/'));
        if under_base { Ok(url) } else { Err(refused()) }
    }

    /// Signs and sends `call`, and types LinkedIn's answer.
    async fn call(&self, call: Call) -> Result<Response<Bytes>, AppError> {
        let started = Instant::now();
        let endpoint = call.endpoint;
        let result = self.call_once(call).await;
        let outcome = match &result {
            Ok(answer) if answer.status().is_success() => "ok",
            Ok(_) => "passed_on",
            Err(err) => err.status_and_code().1,
        };
        self.reach
            .linkedin
            .transport()
            .record(endpoint, outcome, started.elapsed());
        match result {
            Err(AppError::LinkedInAccessWithdrawn) => {
                self.withdraw().await;
                Err(AppError::LinkedInAccessWithdrawn)
            }
            other => other,
        }
    }

    async fn call_once(&self, call: Call) -> Result<Response<Bytes>, AppError> {
        let (url, authorization, body) = match &self.member.credentials {
            Credentials::Jsapi {
                oauth_token,
                oauth_token_secret,
            } => {
                // A member of the JSAPI flow on a host that turned it off (a shared store).
                if !self.reach.jsapi {
                    return Err(AppError::NotConnected);
                }
                self.oauth1(&call, oauth_token, oauth_token_secret)?
            }
            Credentials::Oidc { access_token, .. } => {
                if self.reach.oidc.is_none() {
                    return Err(AppError::OidcNotConfigured);
                }
                let bearer = format!("Bearer {}", access_token.expose());
                (call.url.clone(), bearer, call.body.clone())
            }
        };
        let transport = self.reach.linkedin.transport();
        let mut request = transport
            .http()
            .request(call.method.clone(), url)
            .header(AUTHORIZATION, authorization);
        let versioned = call
            .api_path
            .as_deref()
            .is_some_and(|path| path == "/rest" || path.starts_with("/rest/"));
        if versioned {
            request = request
                .header(LINKEDIN_VERSION, self.reach.version.as_str())
                .header(RESTLI_PROTOCOL, "2.0.0");
        }
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        let request = request.body(body);
        let (status, headers, body) = transport.send(request).await?;
        let status = StatusCode::from_u16(status.as_u16())
            .map_err(|_| UpstreamError::Malformed(format!("HTTP {}", status.as_u16())))?;
        typed(
            status,
            &headers,
            &body,
            &self.member.credentials,
            self.reach.version.as_str(),
        )?;
        let mut answer = Response::new(Bytes::from(body));
        *answer.status_mut() = status;
        for name in [CONTENT_TYPE, RESTLI_ID] {
            if let Some(value) = headers.get(&name) {
                answer.headers_mut().insert(name, value.clone());
            }
        }
        Ok(answer)
    }

    /// The URL (its query re-encoded as signed), the OAuth 1.0a `Authorization` header and the
    /// body (a form re-encoded as signed) of `call`, signed with the app's key pair and the
    /// member's token. The query's and a form body's parameters are signed, sorted by their
    /// encoded names and values (RFC 5849 section 3.4.1.3.2), and sent in that order, encoded
    /// as they were signed. Parameter names are letters, digits, `-`, `.`, `_` and `~` only
    /// (what the signing crate writes as it is): any other is refused.
    fn oauth1(
        &self,
        call: &Call,
        token: &str,
        token_secret: &crate::secret::Secret,
    ) -> Result<(Url, String, Bytes), AppError> {
        let is_form = call
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| {
                essence
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let query = signable(call.url.query_pairs().into_owned().collect())?;
        let form = if is_form {
            signable(
                url::form_urlencoded::parse(&call.body)
                    .into_owned()
                    .collect(),
            )?
        } else {
            Vec::new()
        };
        let mut all: Vec<&(String, String)> = query.iter().chain(&form).collect();
        all.sort_by(|a, b| (&a.0, rfc3986(&a.1)).cmp(&(&b.0, rfc3986(&b.1))));
        let mut bare = call.url.clone();
        bare.set_query(None);
        let signed = oauth1_request::request::AssertSorted::new(
            all.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let authorization = self.reach.linkedin.member_authorization(
            call.method.as_str(),
            bare.as_str(),
            &signed,
            token,
            token_secret,
        );
        let mut url = bare;
        if !query.is_empty() {
            url.set_query(Some(&encoded(&query)));
        }
        let body = if is_form {
            Bytes::from(encoded(&form))
        } else {
            call.body.clone()
        };
        Ok((url, authorization, body))
    }

    /// LinkedIn withdrew the member's token: every session holding it ends, through the
    /// store's member index when there is one, and this request's session in any case, each
    /// leaving a tombstone that says why for a while. A store that fails here is logged: the
    /// answer is still "withdrawn", and the next call tries again.
    async fn withdraw(&self) {
        let why = Ended::LinkedinAccessWithdrawn;
        let mut ended = 0;
        let this_one = self.session.as_ref().and_then(MemberSession::id);
        if let Some(sessions) = &self.sessions {
            match sessions
                .end_sessions_holding(&self.member, why, this_one)
                .await
            {
                Ok(n) => ended = n,
                Err(err) => tracing::warn!(
                    %err,
                    "LinkedIn withdrew a member's access, but their sessions could not all be ended"
                ),
            }
        }
        // This request's session: its tombstone (already in the store with a member index),
        // written again by its save.
        if let Some(session) = &self.session {
            match session.end_because(why).await {
                Ok(()) if self.sessions.is_none() => ended = 1,
                Ok(()) => {}
                Err(err) => tracing::warn!(
                    %err,
                    "LinkedIn withdrew a member's access, but this session could not be ended"
                ),
            }
        }
        tracing::info!(
            member_id = %self.member.member_id.escape_debug(),
            flow = self.member.credentials.flow().as_str(),
            sessions_ended = ended,
            "LinkedIn answered 401: the member's access was withdrawn, and the sessions holding the token ended"
        );
    }
}

/// LinkedIn's answer typed: `Err` for the statuses with a meaning of their own, `Ok` for any
/// other (the caller's to read).
fn typed(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    credentials: &Credentials,
    version: &str,
) -> Result<(), AppError> {
    match status.as_u16() {
        401 => {
            // OAuth 1.0a: a signing or key-pair problem is the app's, not a withdrawal.
            let said = said(headers, body);
            if matches!(credentials, Credentials::Jsapi { .. })
                && let Some(problem) = APP_PROBLEMS.iter().find(|p| said.contains(*p))
            {
                return Err(AppError::Upstream(UpstreamError::Rejected {
                    status: 401,
                    problem: (*problem).to_owned(),
                }));
            }
            Err(AppError::LinkedInAccessWithdrawn)
        }
        403 => Err(AppError::LinkedInForbidden(missing(headers, body))),
        426 => Err(AppError::LinkedInVersionRetired {
            version: version.to_owned(),
            said: match said(headers, body) {
                said if said.is_empty() => "HTTP 426".to_owned(),
                said => said,
            },
        }),
        429 => Err(AppError::LinkedInRateLimited(retry_after(
            headers,
            time::OffsetDateTime::now_utc().unix_timestamp(),
        ))),
        500.. => Err(AppError::Upstream(UpstreamError::Unavailable(format!(
            "HTTP {}",
            status.as_u16()
        )))),
        _ => Ok(()),
    }
}

/// What LinkedIn said: its JSON error's `code` and `message` (`NONEXISTENT_VERSION: Requested
/// version 20200101 is not active`), or a form's `oauth_problem`, or `WWW-Authenticate`;
/// escaped, at most 200 characters; empty when it said nothing.
fn said(headers: &reqwest::header::HeaderMap, body: &[u8]) -> String {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let text = match (field("code"), field("message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (None, Some(message)) => message,
        (Some(code), None) => code,
        (None, None) => {
            let form = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
                .ok()
                .and_then(|pairs| {
                    pairs
                        .into_iter()
                        .find(|(k, _)| k == "oauth_problem")
                        .map(|(_, v)| v)
                });
            let header = headers
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            form.or(header).unwrap_or_default()
        }
    };
    escape_text(&text, 200)
}

/// What a 403 says is missing: the `scope` of `WWW-Authenticate: Bearer
/// error="insufficient_scope"` (RFC 6750 section 3.1), else LinkedIn's own words ("Not enough
/// permissions to access: me.GET.NO_VERSION", linkedin-api-python-client PR #60), else
/// "HTTP 403".
fn missing(headers: &reqwest::header::HeaderMap, body: &[u8]) -> String {
    let scope = headers
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("scope=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .filter(|scope| !scope.is_empty());
    if let Some(scope) = scope {
        return format!("it needs the scope {}", escape_text(scope, 100));
    }
    match said(headers, body) {
        said if said.is_empty() => "HTTP 403".to_owned(),
        said => said,
    }
}

/// Seconds until LinkedIn takes calls again: its `Retry-After` in seconds, else (none, or a
/// date) until its daily quotas reset, at midnight UTC (learn.microsoft.com, "API Rate
/// Limiting"). At least 1.
fn retry_after(headers: &reqwest::header::HeaderMap, now: i64) -> u64 {
    const DAY: i64 = 86_400;
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| (DAY - now.rem_euclid(DAY)).unsigned_abs())
        .max(1)
}

/// The JSON body of a 2xx answer; any other status LinkedIn refused with is
/// `upstream_rejected`, naming what it said.
fn json_of(answer: Response<Bytes>) -> Result<serde_json::Value, AppError> {
    let status = answer.status();
    if !status.is_success() {
        let said = said(&reqwest::header::HeaderMap::new(), answer.body());
        return Err(AppError::Upstream(UpstreamError::Rejected {
            status: status.as_u16(),
            problem: if said.is_empty() {
                format!("HTTP {}", status.as_u16())
            } else {
                said
            },
        }));
    }
    serde_json::from_slice(answer.body())
        .map_err(|_| AppError::Upstream(UpstreamError::Malformed("the answer is not JSON".into())))
}

/// The path of `path_and_query` (which must start with `/`) and its query, when it is one the
/// client sends: no `.` or `..` segment (encoded or not), no empty segment (`//`), no encoded
/// slash or backslash, no backslash, no control character, and nothing that reads as an
/// absolute URL (`https:…`). Anything else is 403 `api_path_not_allowed`.
pub(crate) fn api_path(path_and_query: &str) -> Result<(String, Option<String>), AppError> {
    let refuse = |why: &str| {
        Err(AppError::ApiPathNotAllowed(format!(
            "the path {:?} is not forwarded to LinkedIn: {why}",
            escape_text(path_and_query, 100)
        )))
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (path_and_query, None),
    };
    if !path.starts_with('/') {
        return refuse("it does not start with /");
    }
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'\\' || b == b'#' || b == b' ')
    {
        return refuse("it holds a backslash, a space or a control character");
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return refuse("it holds an encoded slash");
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    if segments.first().is_some_and(|first| is_scheme(first)) {
        return refuse("it is an absolute URL");
    }
    for (i, segment) in segments.iter().enumerate() {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        if decoded == "." || decoded == ".." {
            return refuse("it holds a . or .. segment");
        }
        // An empty segment (`//`): only the last one may be empty (a trailing `/`).
        if segment.is_empty() && i + 1 != segments.len() {
            return refuse("it holds an empty segment (//)");
        }
    }
    Ok((path.to_owned(), query))
}

/// RFC 3986's percent-encoding of OAuth 1.0a (RFC 5849 section 3.6): all but letters, digits,
/// `-`, `.`, `_` and `~`.
fn rfc3986(value: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, RESERVED).to_string()
}

/// `pairs` sorted as OAuth 1.0a signs them (by name, then by encoded value), when every name
/// is one the signature can carry as it is.
fn signable(mut pairs: Vec<(String, String)>) -> Result<Vec<(String, String)>, AppError> {
    if let Some((name, _)) = pairs
        .iter()
        .find(|(name, _)| name.is_empty() || rfc3986(name) != *name)
    {
        return Err(AppError::ApiPathNotAllowed(format!(
            "the parameter {:?} cannot be signed with OAuth 1.0a here: names are letters, \
             digits, -, ., _ and ~",
            escape_text(name, 50)
        )));
    }
    pairs.sort_by(|a, b| (&a.0, rfc3986(&a.1)).cmp(&(&b.0, rfc3986(&b.1))));
    Ok(pairs)
}

/// `pairs` as `name=value&…`, each value encoded as OAuth 1.0a signs it.
fn encoded(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", rfc3986(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Refuses `path` for credentials LinkedIn does not take there: OAuth 1.0a credentials (the
/// JSAPI flow) reach LinkedIn's `/v1/` API only, OAuth 2.0 bearer tokens (OpenID Connect)
/// its `/v2/` and versioned `/rest/` APIs, never `/v1/` (learn.microsoft.com, "Authenticating
/// with OAuth 2.0"). Sent anyway, LinkedIn's 401 would read as a withdrawal and end a sound
/// session.
pub(crate) fn reachable(credentials: &Credentials, path: &str) -> Result<(), AppError> {
    let v1 = path == "/v1" || path.starts_with("/v1/");
    match (credentials, v1) {
        (Credentials::Jsapi { .. }, false) => Err(AppError::ApiPathNotAllowed(format!(
            "{} is not forwarded for this member: they signed in through the JSAPI, whose \
             OAuth 1.0a credentials LinkedIn takes on its /v1/ API only (sign in with OpenID \
             Connect for the others)",
            escape_text(path, 100)
        ))),
        (Credentials::Oidc { .. }, true) => Err(AppError::ApiPathNotAllowed(format!(
            "{} is not forwarded for this member: LinkedIn's /v1/ API takes the JSAPI flow's \
             OAuth 1.0a credentials, not an OpenID Connect token",
            escape_text(path, 100)
        ))),
        _ => Ok(()),
    }
}

/// Whether `segment` starts like a URL's scheme (`https:`, `javascript:`).
fn is_scheme(segment: &str) -> bool {
    let Some((scheme, _)) = segment.split_once(':') else {
        return false;
    };
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_pass_and_dirty_ones_are_refused() {
        for good in [
            "/v2/userinfo",
            "/v1/people/~:(id,first-name)?format=json",
            "/rest/posts/urn%3Ali%3Ashare%3A1",
            "/rest/posts?q=author&author=urn%3Ali%3Aperson%3A1",
            "/v2/me/",
        ] {
            assert!(api_path(good).is_ok(), "{good}");
        }
        assert_eq!(
            api_path("/rest/posts?q=author").unwrap(),
            ("/rest/posts".to_owned(), Some("q=author".to_owned()))
        );
        for bad in [
            "/v2/../admin",
            "/v2/%2e%2E/admin",
            "/v2/./me",
            "/v2/me%2Fx",
            "/v2/me%2fx",
            "/v2/me%5cx",
            "/v2/me\\x",
            "//evil.example/v2/me",
            "/https://evil.example/x",
            "/https:evil.example",
            "/v2//me",
            "v2/me",
            "/v2/me\u{7f}",
        ] {
            let err = api_path(bad).unwrap_err();
            assert_eq!(err.status_and_code().1, "api_path_not_allowed", "{bad}");
        }
    }

    #[test]
    fn oauth_parameters_sort_by_encoded_value_and_travel_as_signed() {
        let pairs = signable(vec![
            ("note".into(), "a b+c".into()),
            ("format".into(), "json".into()),
            ("note".into(), "\u{2713}".into()),
        ])
        .unwrap();
        // "%E2%9C%93" sorts before "a%20b%2Bc": encoded, not raw (RFC 5849 3.4.1.3.2).
        assert_eq!(encoded(&pairs), "format=json&note=%E2%9C%93&note=a%20b%2Bc");
        for name in ["a b", "ids[0]", "", "c@"] {
            let err = signable(vec![(name.into(), "1".into())]).unwrap_err();
            assert_eq!(err.status_and_code().1, "api_path_not_allowed", "{name:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> reqwest::header::HeaderMap {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn oidc() -> Credentials {
        Credentials::Oidc {
            access_token: crate::secret::Secret::new("t"),
            name: None,
            email: None,
            refresh_token: None,
            refresh_expires_at: None,
            issued_at: None,
        }
    }

    fn jsapi() -> Credentials {
        Credentials::Jsapi {
            oauth_token: "t".into(),
            oauth_token_secret: crate::secret::Secret::new("s"),
        }
    }

    #[test]
    fn each_refusal_of_linkedin_is_typed() {
        let none = headers(&[]);
        let code = |status: u16, h: &reqwest::header::HeaderMap, body: &[u8], c: &Credentials| {
            typed(StatusCode::from_u16(status).unwrap(), h, body, c, "202610")
                .err()
                .map(|e| e.status_and_code())
        };
        assert_eq!(
            code(401, &none, b"", &oidc()).map(|s| s.1),
            Some("linkedin_access_withdrawn")
        );
        assert_eq!(
            code(401, &none, br#"{"message":"[unauthorized]. The token used in the request has been revoked by the user"}"#, &jsapi()).map(|s| s.1),
            Some("linkedin_access_withdrawn")
        );
        // A signing fault of the app is no withdrawal.
        assert_eq!(
            code(
                401,
                &none,
                br#"{"message":"[unauthorized]. OAuth problem: signature_invalid; x"}"#,
                &jsapi()
            ),
            Some((StatusCode::BAD_GATEWAY, "upstream_rejected"))
        );
        assert_eq!(
            code(403, &none, b"{}", &oidc()),
            Some((StatusCode::FORBIDDEN, "linkedin_forbidden"))
        );
        assert_eq!(
            code(426, &none, b"{}", &oidc()),
            Some((StatusCode::BAD_GATEWAY, "linkedin_version_retired"))
        );
        assert_eq!(
            code(429, &none, b"{}", &oidc()),
            Some((StatusCode::TOO_MANY_REQUESTS, "linkedin_rate_limited"))
        );
        assert_eq!(
            code(503, &none, b"", &oidc()),
            Some((StatusCode::BAD_GATEWAY, "upstream_unavailable"))
        );
        for passed in [200, 201, 204, 301, 400, 404, 409, 422] {
            assert_eq!(code(passed, &none, b"{}", &oidc()), None, "{passed}");
        }
    }

    #[test]
    fn a_403_names_the_scope_or_linkedin_s_words() {
        let body = br#"{"serviceErrorCode":100,"code":"ACCESS_DENIED","message":"Not enough permissions to access: me.GET.NO_VERSION","status":403}"#;
        assert_eq!(
            missing(&headers(&[]), body),
            "ACCESS_DENIED: Not enough permissions to access: me.GET.NO_VERSION"
        );
        let bearer = headers(&[(
            "www-authenticate",
            r#"Bearer error="insufficient_scope", scope="w_member_social""#,
        )]);
        assert_eq!(missing(&bearer, b""), "it needs the scope w_member_social");
        assert_eq!(missing(&headers(&[]), b"<html>"), "HTTP 403");
    }

    #[test]
    fn retry_after_is_linkedin_s_or_until_midnight_utc() {
        assert_eq!(retry_after(&headers(&[("retry-after", "120")]), 0), 120);
        // 2026-12-01T23:00:00Z: an hour to midnight.
        let late = 1_764_630_000;
        assert_eq!(late % 86_400, 82_800);
        assert_eq!(retry_after(&headers(&[]), late), 3_600);
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")]),
                late
            ),
            3_600
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "0")]), late), 1);
    }
}
