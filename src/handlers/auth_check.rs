//! `GET /auth/check`: forward authentication for a proxy in front of other apps (nginx
//! `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`). It answers whether the
//! request's session holds a signed-in member, with who they are in `X-Auth-Request-*`
//! headers (and, with `PASS_ACCESS_TOKEN=true`, an OpenID Connect member's access token in
//! `X-Auth-Request-Access-Token`: docs/security.md says what that risks). It reads the store
//! and never writes the session: it sits outside the session layer (so no cookie is set and no
//! idle refresh is saved) and looks the record up itself. (The load notes the session's last
//! use in the member index, at most once a minute per session: `session::backend`.)

use std::net::SocketAddr;

use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tower_http::set_header::SetResponseHeaderLayer;

use super::{Routes, Verb};
use crate::app::AppState;
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

/// The routes of this module, answered `Cache-Control: no-store` (errors included).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .at(Verb::Get, "/auth/check", check)
        .route_layer(SetResponseHeaderLayer::overriding(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// 200 with the member's headers, or 401 `not_connected`; with `?redirect=1` from a trusted
/// proxy, a 302 to the sign-in that returns to the URL the proxy was asked for.
async fn check(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    if let Some(member) = signed_in(&state, &headers).await? {
        let mut headers = member_headers(&member);
        if state.pass_access_token {
            pass_access_token(&member, &mut headers);
        }
        return Ok((StatusCode::OK, headers).into_response());
    }
    let wants_redirect = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(name, value)| name == "redirect" && value == "1");
    let from_proxy = peer.is_some_and(|Extension(ConnectInfo(peer))| {
        state
            .trusted_proxies
            .as_ref()
            .is_some_and(|trusted| trusted.contains(peer.ip()))
    });
    if wants_redirect && from_proxy {
        return Ok((
            StatusCode::FOUND,
            [(
                LOCATION,
                sign_in_location(&state.sign_in.public_origins[0], &headers),
            )],
        )
            .into_response());
    }
    Err(AppError::NotConnected)
}

/// The member of the session the request's cookies name (the one rule of
/// [`session::cookie`](crate::session::cookie), which the session layer follows too), read
/// from the store as it is.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<Member>> {
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
    Ok(Some(member))
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

/// `<origin>/auth/linkedin?rd=<X-Forwarded-Proto>://<X-Forwarded-Host><X-Forwarded-Uri>`:
/// absolute, since the browser receives it on the protected app's host. Without the three
/// headers, no `rd` (the sign-in then returns to `/`); `rd` is checked again at the sign-in.
fn sign_in_location(origin: &str, headers: &HeaderMap) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut location = format!("{origin}/auth/linkedin");
    let forwarded = (
        header("x-forwarded-proto").filter(|p| matches!(*p, "https" | "http")),
        header("x-forwarded-host"),
        header("x-forwarded-uri"),
    );
    if let (Some(proto), Some(host), Some(uri)) = forwarded {
        let rd = format!("{proto}://{host}{uri}");
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

    #[test]
    fn the_sign_in_location_carries_the_forwarded_url_encoded() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            sign_in_location("https://login.example", &headers),
            "https://login.example/auth/linkedin"
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("app.example"));
        headers.insert("x-forwarded-uri", HeaderValue::from_static("/a?b=c&d"));
        assert_eq!(
            sign_in_location("https://login.example", &headers),
            "https://login.example/auth/linkedin?rd=https%3A%2F%2Fapp.example%2Fa%3Fb%3Dc%26d"
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
        assert_eq!(
            sign_in_location("https://login.example", &headers),
            "https://login.example/auth/linkedin"
        );
    }
}
