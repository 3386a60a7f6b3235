//! `GET /auth/check`: forward authentication for a proxy in front of other apps (nginx
//! `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`, and Envoy's HTTP `ext_authz`
//! at `/auth/check/<original path>`). It answers whether the request's session holds a
//! signed-in member, with who they are in `X-Auth-Request-*` headers (and, with
//! `PASS_ACCESS_TOKEN=true`, an OpenID Connect member's access token in
//! `X-Auth-Request-Access-Token`: docs/security.md says what that risks; with `ASSERTION=on`,
//! a signed JWT naming the member in `X-Auth-Request-Assertion`). It reads the store and never
//! writes the session: it sits outside the session layer (so no cookie is set and no idle
//! refresh is saved) and looks the record up itself. (The load notes the session's last use
//! in the member index, at most once a minute per session: `session::backend`.)
//!
//! The check's settings come only from the auth URL that the proxy's configuration writes:
//! the query of `/auth/check?allow=…&redirect=1` (a proxy sends the client's URL in
//! `X-Forwarded-Uri`, never in this query), or for Envoy, which appends the client's path and
//! query to a fixed prefix, the parameters in the prefix's own segment
//! (`/auth/check;allow=…;redirect=1/<original>`), which the client's path cannot reach.
//! Nothing else in the request selects or changes the rule.

use std::net::SocketAddr;

use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HOST, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use time::OffsetDateTime;
use tower_http::set_header::SetResponseHeaderLayer;

use super::{Routes, Verb};
use crate::app::AppState;
use crate::assertion::{Assertions, Subject};
use crate::config::AccessRule;
use crate::error::{AppError, Result};
use crate::session::cookie::chosen_session;
use crate::session::member::member_of_record;
use crate::session::{Credentials, Member};

/// The member's id.
pub(crate) const USER: HeaderName = HeaderName::from_static("x-auth-request-user");
/// The member's email, when known.
pub(crate) const EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
/// The member's name, when known.
pub(crate) const NAME: HeaderName = HeaderName::from_static("x-auth-request-name");
/// The flow that signed the member in: `jsapi` or `oidc`.
pub(crate) const FLOW: HeaderName = HeaderName::from_static("x-auth-request-flow");
/// With `PASS_ACCESS_TOKEN=true`, an OpenID Connect member's LinkedIn access token (as
/// oauth2-proxy's `pass_access_token`); never a JSAPI member's, whose OAuth 1.0a token is
/// useless without the app's consumer secret.
pub(crate) const ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-auth-request-access-token");
/// With `ASSERTION=on`: the member, signed (a compact JWS, ES256).
pub(crate) const ASSERTION: HeaderName = HeaderName::from_static("x-auth-request-assertion");
/// On a 403: the rule the member failed, as written.
pub(crate) const DENIED: HeaderName = HeaderName::from_static("x-auth-request-denied");

/// Forward authentication's settings.
#[derive(Debug, Default)]
pub(crate) struct ForwardAuth {
    /// `AUTH_CHECK_ALLOW`: the rule of a check whose URL names none.
    pub default_rule: Option<AccessRule>,
    /// `ASSERTION=on`: the signer (and the published keys).
    pub assertions: Option<Assertions>,
    /// `PASS_ACCESS_TOKEN`: an OpenID Connect member's access token is handed on.
    pub pass_access_token: bool,
}

/// The routes of this module, answered `Cache-Control: no-store` (errors included).
pub(crate) fn router() -> Router<AppState> {
    let mut router = Router::new().at(Verb::Get, "/auth/check", check).at(
        Verb::Get,
        "/.well-known/jwks.json",
        jwks,
    );
    // Envoy asks with the original request's method.
    for verb in [Verb::Get, Verb::Post, Verb::Put, Verb::Patch, Verb::Delete] {
        router = router.at(verb, "/auth/{params}/", check_envoy).at(
            verb,
            "/auth/{params}/{*original}",
            check_envoy,
        );
    }
    router.route_layer(SetResponseHeaderLayer::overriding(
        CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ))
}

/// What the auth URL asks.
#[derive(Debug, Default)]
struct Ask {
    /// `allow=`: the rule, when the URL names one.
    rule: Option<AccessRule>,
    /// `redirect=1`: a stranger's navigation is sent to sign in.
    redirect: bool,
}

impl Ask {
    /// The parameters `pairs` (`allow`, `redirect`; any other is the proxy configuration's
    /// mistake, refused so that it is seen).
    fn parse<'a>(pairs: impl Iterator<Item = (String, String)> + 'a) -> Result<Self> {
        let mut ask = Self::default();
        for (name, value) in pairs {
            match name.as_str() {
                "allow" if value.trim().is_empty() => {}
                "allow" => {
                    let rule = value.parse::<AccessRule>().map_err(|why| {
                        AppError::InvalidAuthUrl(format!("its allow= is not a rule: {why}"))
                    })?;
                    ask.rule = Some(rule);
                }
                "redirect" => ask.redirect = value == "1",
                _ => {
                    return Err(AppError::InvalidAuthUrl(format!(
                        "it names a parameter this check does not take ({:?}): allow and \
                         redirect are its parameters",
                        name.chars().take(40).collect::<String>()
                    )));
                }
            }
        }
        Ok(ask)
    }
}

/// `GET /auth/check[?allow=RULE][&redirect=1]`.
async fn check(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let ask =
        Ask::parse(url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned())?;
    let from_proxy = from_trusted_proxy(&state, peer);
    let original = header(&headers, "x-forwarded-uri").map(str::to_owned);
    decide(&state, from_proxy, &headers, ask, original).await
}

/// Envoy's `ext_authz` (HTTP): any method at `/auth/check[;PARAM…]/<original path>?<original
/// query>`. The parameters live in the prefix's own path segment, which the client's path
/// cannot reach; the client's query is the original URL's and is never read as parameters.
async fn check_envoy(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response> {
    let rest = uri.path().strip_prefix("/auth/").unwrap_or_default();
    let (segment, original_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut params = segment.split(';');
    if params.next() != Some("check") {
        return Err(AppError::NotFound);
    }
    let ask = Ask::parse(params.map(|param| {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        (decode(name), decode(value))
    }))?;
    let from_proxy = from_trusted_proxy(&state, peer);
    let original = match uri.query() {
        Some(query) => format!("{original_path}?{query}"),
        None => original_path.to_owned(),
    };
    decide(&state, from_proxy, &headers, ask, Some(original)).await
}

/// `GET /.well-known/jwks.json`: the assertion's public keys (404 with `ASSERTION=off`).
async fn jwks(State(state): State<AppState>) -> Result<Response> {
    let assertions = state
        .forward_auth
        .assertions
        .as_ref()
        .ok_or(AppError::NotFound)?;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        assertions.jwks().to_owned(),
    )
        .into_response())
}

/// The answer: 200 for a member the rule admits, 403 for one it does not, and for a stranger
/// a 302 to sign in (a navigation, when a trusted proxy asks) or 401.
async fn decide(
    state: &AppState,
    from_proxy: bool,
    headers: &HeaderMap,
    ask: Ask,
    original: Option<String>,
) -> Result<Response> {
    let Some((session, member)) = signed_in(state, headers).await? else {
        if ask.redirect && from_proxy && is_navigation(headers) {
            let location = sign_in_location(
                &state.sign_in.public_origins[0],
                headers,
                original.as_deref(),
            );
            return Ok((StatusCode::FOUND, [(LOCATION, location)]).into_response());
        }
        return Err(AppError::NotConnected);
    };
    let settings = &state.forward_auth;
    let rule = ask.rule.as_ref().or(settings.default_rule.as_ref());
    let (email, name) = match &member.credentials {
        Credentials::Oidc { email, name, .. } => (email.as_deref(), name.as_deref()),
        Credentials::Jsapi { .. } => (None, None),
    };
    let flow = member.credentials.flow().as_str();
    if let Some(rule) = rule.filter(|rule| !rule.admits(&member.member_id, email, flow)) {
        return Ok(forbidden(state, rule, headers));
    }
    let mut answer = member_headers(&member);
    if settings.pass_access_token {
        pass_access_token(&member, &mut answer);
    }
    if let Some(assertions) = &settings.assertions {
        let subject = Subject {
            member_id: &member.member_id,
            email,
            name,
            flow,
        };
        let audience = audience(state, from_proxy, headers);
        if let Some(value) = assertions.for_session(session.0, subject, &audience) {
            answer.insert(ASSERTION, value);
        }
    }
    Ok((StatusCode::OK, answer).into_response())
}

/// 403 `forbidden` naming the failed rule in `X-Auth-Request-Denied`: a short page for a
/// navigation, JSON otherwise.
fn forbidden(state: &AppState, rule: &AccessRule, headers: &HeaderMap) -> Response {
    let error = AppError::Forbidden(rule.to_string());
    let mut response = if is_navigation(headers) {
        let home = format!("{}/", state.sign_in.public_origins[0]);
        error.into_page_titled(
            "Not for this account",
            &home,
            "Sign in with another account",
        )
    } else {
        error.into_response()
    };
    if let Ok(value) = HeaderValue::from_str(rule.as_str()) {
        response.headers_mut().insert(DENIED, value);
    }
    response
}

fn from_trusted_proxy(state: &AppState, peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> bool {
    peer.is_some_and(|Extension(ConnectInfo(peer))| {
        state
            .trusted_proxies
            .as_ref()
            .is_some_and(|trusted| trusted.contains(peer.ip()))
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the original request is a page navigation (which a sign-in page can answer), not
/// an API call (which needs a status it can act on): no `X-Requested-With: XMLHttpRequest`,
/// and `Sec-Fetch-Mode: navigate`, or without `Sec-Fetch-Mode` an `Accept` that prefers HTML.
fn is_navigation(headers: &HeaderMap) -> bool {
    if header(headers, "x-requested-with").is_some_and(|v| v.eq_ignore_ascii_case("XMLHttpRequest"))
    {
        return false;
    }
    match header(headers, "sec-fetch-mode") {
        Some(mode) => mode.eq_ignore_ascii_case("navigate"),
        None => prefers_html(headers.get(ACCEPT).and_then(|v| v.to_str().ok())),
    }
}

/// Whether `Accept` names HTML (`text/html`, `application/xhtml+xml`) with a quality above
/// zero and at least that of any JSON type it names. A wildcard prefers neither.
fn prefers_html(accept: Option<&str>) -> bool {
    let (mut html, mut json) = (0.0f32, 0.0f32);
    for range in accept.unwrap_or_default().split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media == "text/html" || media == "application/xhtml+xml" {
            html = html.max(q);
        } else if media == "application/json" || media.ends_with("+json") {
            json = json.max(q);
        }
    }
    html > 0.0 && html >= json
}

/// The member of the session the request's cookies name (the one rule of
/// [`session::cookie`](crate::session::cookie), which the session layer follows too), read
/// from the store as it is, with the session's id.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(tower_sessions::session::Id, Member)>> {
    let chosen = chosen_session(&state.sessions, headers, state.session_cookie).await?;
    let now = OffsetDateTime::now_utc();
    let Some((id, Some(member))) = chosen.map(|chosen| {
        let member = chosen
            .record
            .and_then(|record| member_of_record(&record, now));
        (chosen.id, member)
    }) else {
        return Ok(None);
    };
    // Still nothing written here: a due refresh runs in the background.
    if let Some(upkeep) = state.sign_in.upkeep.get() {
        upkeep.nudge(id, &member, now.unix_timestamp());
    }
    Ok(Some((id, member)))
}

/// The assertion's `aud`: the protected site's origin as a trusted proxy names it
/// (`X-Forwarded-Proto` and `X-Forwarded-Host`, or `Host` for Envoy), else this service's
/// first public origin.
fn audience(state: &AppState, from_proxy: bool, headers: &HeaderMap) -> String {
    from_proxy
        .then(|| forwarded_origin(headers))
        .flatten()
        .unwrap_or_else(|| state.sign_in.public_origins[0].clone())
}

/// `<X-Forwarded-Proto>://<X-Forwarded-Host, or Host>`, when both are sound.
fn forwarded_origin(headers: &HeaderMap) -> Option<String> {
    let proto = header(headers, "x-forwarded-proto").filter(|p| matches!(*p, "https" | "http"))?;
    let host = header(headers, "x-forwarded-host")
        .or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok()))
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })?;
    Some(format!("{proto}://{host}"))
}

/// `X-Auth-Request-User`, `-Flow`, and `-Email`/`-Name` when known and sendable.
fn member_headers(member: &Member) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
            headers.insert(name, value);
        }
    };
    put(USER, &member.member_id);
    put(FLOW, member.credentials.flow().as_str());
    if let Credentials::Oidc { name, email, .. } = &member.credentials {
        if let Some(email) = email {
            put(EMAIL, email);
        }
        if let Some(name) = name {
            put(NAME, name);
        }
    }
    headers
}

/// `X-Auth-Request-Access-Token` for an OpenID Connect member (marked sensitive, so that no
/// layer logs it); nothing for a JSAPI member.
fn pass_access_token(member: &Member, headers: &mut HeaderMap) {
    if let Credentials::Oidc { access_token, .. } = &member.credentials
        && let Ok(mut value) = HeaderValue::from_str(access_token.expose())
    {
        value.set_sensitive(true);
        headers.insert(ACCESS_TOKEN, value);
    }
}

/// `<origin>/auth/linkedin?rd=<forwarded origin><original>` (the original being
/// `X-Forwarded-Uri`, or Envoy's path): absolute, since the browser receives it on the
/// protected app's host. Without them, no `rd` (the sign-in then returns to `/`); `rd` is
/// checked again at the sign-in.
fn sign_in_location(origin: &str, headers: &HeaderMap, original: Option<&str>) -> String {
    let mut location = format!("{origin}/auth/linkedin");
    if let (Some(site), Some(uri)) = (forwarded_origin(headers), original) {
        let rd = format!("{site}{uri}");
        location.push('?');
        location.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .append_pair("rd", &rd)
                .finish(),
        );
    }
    location
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn the_sign_in_location_carries_the_forwarded_url_encoded() {
        let origin = "https://login.example";
        assert_eq!(
            sign_in_location(origin, &HeaderMap::new(), Some("/a")),
            "https://login.example/auth/linkedin"
        );
        let mut forwarded = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example"),
        ]);
        assert_eq!(
            sign_in_location(origin, &forwarded, Some("/a?b=c&d")),
            "https://login.example/auth/linkedin?rd=https%3A%2F%2Fapp.example%2Fa%3Fb%3Dc%26d"
        );
        assert_eq!(
            sign_in_location(origin, &forwarded, None),
            "https://login.example/auth/linkedin"
        );
        // Envoy names the site in Host.
        let envoy = headers(&[("x-forwarded-proto", "https"), ("host", "app.example:8443")]);
        assert_eq!(
            sign_in_location(origin, &envoy, Some("/")),
            "https://login.example/auth/linkedin?rd=https%3A%2F%2Fapp.example%3A8443%2F"
        );
        forwarded.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
        assert_eq!(
            sign_in_location(origin, &forwarded, Some("/a")),
            "https://login.example/auth/linkedin"
        );
        let odd = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example/@app.example"),
        ]);
        assert_eq!(forwarded_origin(&odd), None);
    }

    #[test]
    fn a_navigation_is_told_from_an_api_call_as_browsers_send_them() {
        // Chromium's own headers: a page load, then fetch() and XMLHttpRequest from a page.
        let page = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                    image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
        assert!(is_navigation(&headers(&[
            ("sec-fetch-mode", "navigate"),
            ("accept", page)
        ])));
        assert!(!is_navigation(&headers(&[
            ("sec-fetch-mode", "cors"),
            ("accept", "*/*")
        ])));
        assert!(!is_navigation(&headers(
            &[("sec-fetch-mode", "websocket"),]
        )));
        assert!(!is_navigation(&headers(&[
            ("sec-fetch-mode", "navigate"),
            ("x-requested-with", "XMLHttpRequest"),
        ])));
        // Without Fetch metadata (an older browser, a script): the Accept decides.
        assert!(is_navigation(&headers(&[("accept", page)])));
        assert!(!is_navigation(&headers(&[("accept", "*/*")])));
        assert!(!is_navigation(&HeaderMap::new()));
        assert!(!is_navigation(&headers(&[(
            "accept",
            "application/json, text/html;q=0.5"
        )])));
        assert!(!is_navigation(&headers(&[("accept", "text/html;q=0")])));
        assert!(is_navigation(&headers(&[(
            "accept",
            "application/json;q=0.5, text/html"
        )])));
    }

    #[test]
    fn the_auth_url_takes_allow_and_redirect_and_refuses_anything_else() {
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
                .into_iter()
        };
        let ask = Ask::parse(pairs(&[("allow", "flow:oidc"), ("redirect", "1")])).expect("ask");
        assert_eq!(ask.rule.expect("rule").as_str(), "flow:oidc");
        assert!(ask.redirect);
        let ask = Ask::parse(pairs(&[("allow", ""), ("redirect", "0")])).expect("ask");
        assert!(ask.rule.is_none() && !ask.redirect);
        for bad in [[("allow", "group:x")], [("rd", "https://evil.example")]] {
            let err = Ask::parse(pairs(&bad)).expect_err("refused");
            assert_eq!(err.status_and_code().1, "invalid_auth_url");
        }
    }
}
