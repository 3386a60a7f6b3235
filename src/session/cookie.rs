//! Which session a request names when its `Cookie` headers carry the session cookie more
//! than once (with `SESSION_COOKIE_DOMAIN`, a browser sends one per matching domain and
//! path): one rule, [`chosen_session`], for every reader. `/auth/check` reads the session
//! it picks, and [`one_session_cookie`], in front of the session layer, leaves the layer only
//! that cookie, so the page, `/session` and `POST /logout` see the same member.
//!
//! The rule: of the first few well-formed ids, in the order the browser sent them, the
//! first whose record is in the store and unexpired; when none is, the first well-formed
//! one. A cookie whose session has ended (a logout, an expiry, a revocation) so never hides a
//! live one behind it, whatever order the browser uses.

use axum::extract::Request;
use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::SessionBackend;
use crate::error::AppError;
use crate::gate::{GateLayer, Verdict};

/// The most session cookies of one request that are looked at (a browser sends one, or one
/// per cookie domain; more is someone trying).
pub(crate) const MAX_SESSION_COOKIES: usize = 4;

/// The session a request names: its id, and its record when the store holds it.
#[derive(Debug)]
pub(crate) struct Chosen {
    /// The session id.
    pub id: Id,
    /// Its unexpired record, when the store holds one.
    pub record: Option<Record>,
}

/// The values of the cookies named `name` in `headers`, in the order sent (every `Cookie`
/// header, then each pair in it).
fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, value)| value.trim())
}

/// The well-formed session ids under `name` in `headers`, in the order sent, at most
/// [`MAX_SESSION_COOKIES`].
pub(crate) fn session_ids(headers: &HeaderMap, name: &str) -> Vec<Id> {
    values(headers, name)
        .filter_map(|value| value.parse::<Id>().ok())
        .take(MAX_SESSION_COOKIES)
        .collect()
}

/// The session the request's cookies under `name` name (see the module's rule), or `None`
/// when none is well formed. Reads the store once per id until one is found.
pub(crate) async fn chosen_session(
    store: &SessionBackend,
    headers: &HeaderMap,
    name: &str,
) -> session_store::Result<Option<Chosen>> {
    let ids = session_ids(headers, name);
    let now = OffsetDateTime::now_utc();
    for id in &ids {
        if let Some(record) = store.load(id).await?
            && record.expiry_date > now
        {
            return Ok(Some(Chosen {
                id: *id,
                record: Some(record),
            }));
        }
    }
    Ok(ids.first().map(|id| Chosen {
        id: *id,
        record: None,
    }))
}

/// The gate in front of the session layer (a [`GateLayer`]): when the request carries the
/// session cookie `name` more than once, it leaves only the one [`chosen_session`] picks (or
/// none when none is well formed), so the layer (which would take the last) follows the same
/// rule as `/auth/check`. A request with one session cookie, or none, passes untouched, at
/// once.
pub(crate) fn one_session_cookie(
    store: SessionBackend,
    name: &'static str,
) -> GateLayer<(SessionBackend, &'static str)> {
    GateLayer::new((store, name), one_session_cookie_of)
}

fn one_session_cookie_of(
    (store, name): &(SessionBackend, &'static str),
    mut request: Request,
) -> Verdict {
    let name = *name;
    if values(request.headers(), name).nth(1).is_none() {
        return Verdict::Pass(request);
    }
    let store = store.clone();
    Verdict::Later(Box::pin(async move {
        let chosen = match chosen_session(&store, request.headers(), name).await {
            Ok(chosen) => chosen,
            Err(err) => return Err(AppError::SessionStore(err).into_response()),
        };
        keep_only(request.headers_mut(), name, chosen.map(|c| c.id));
        Ok(request)
    }))
}

/// Rewrites the `Cookie` headers: every pair named `name` goes, then `name=id` is added
/// back when `id` is given. Other cookies keep their order; headers that are not text stay
/// as they are (no reader takes a session id from them).
fn keep_only(headers: &mut HeaderMap, name: &str, id: Option<Id>) {
    let mut pairs = Vec::new();
    let mut opaque = Vec::new();
    for value in headers.get_all(COOKIE) {
        match value.to_str() {
            Ok(text) => pairs.extend(
                text.split(';')
                    .map(str::trim)
                    .filter(|pair| !pair.is_empty())
                    .filter(|pair| pair.split_once('=').is_none_or(|(n, _)| n != name))
                    .map(str::to_owned),
            ),
            Err(_) => opaque.push(value.clone()),
        }
    }
    if let Some(id) = id {
        pairs.push(format!("{name}={id}"));
    }
    headers.remove(COOKIE);
    if let Ok(value) = HeaderValue::from_str(&pairs.join("; "))
        && !pairs.is_empty()
    {
        headers.append(COOKIE, value);
    }
    for value in opaque {
        headers.append(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "__Host-lte_session";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(COOKIE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn only_the_named_cookie_is_read_in_order_and_only_a_few_of_them() {
        let (a, b) = (Id::default(), Id::default());
        let h = headers(&[
            &format!("x=1; {NAME}={a}; other={b}"),
            &format!("{NAME}={b}"),
        ]);
        assert_eq!(session_ids(&h, NAME), vec![a, b]);
        assert_eq!(session_ids(&h, "__Secure-lte_session"), vec![]);
        let h = headers(&[&format!("{NAME}=junk; {NAME}={b}")]);
        assert_eq!(session_ids(&h, NAME), vec![b]);
        let many = vec![format!("{NAME}={a}"); 10].join("; ");
        assert_eq!(
            session_ids(&headers(&[&many]), NAME).len(),
            MAX_SESSION_COOKIES
        );
    }

    #[test]
    fn keeping_one_session_cookie_leaves_the_other_cookies_in_order() {
        let (a, b) = (Id::default(), Id::default());
        let mut h = headers(&[
            &format!("x=1; {NAME}={a}; y=2"),
            &format!("{NAME}={b}; z=3"),
        ]);
        keep_only(&mut h, NAME, Some(b));
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0], format!("x=1; y=2; z=3; {NAME}={b}").as_str());
        assert_eq!(session_ids(&h, NAME), vec![b]);

        let mut h = headers(&[&format!("{NAME}=junk; {NAME}=also-junk")]);
        keep_only(&mut h, NAME, None);
        assert!(h.get(COOKIE).is_none());
    }
}
