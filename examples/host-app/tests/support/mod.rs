//! What the host-app tests share: a browser-like HTTP client, the start of a sign-in, and the
//! sandbox's consent page allowed as its form does.

// The helpers are test code too: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use reqwest::StatusCode;
use reqwest::header::LOCATION;

/// A client that keeps cookies and does not follow redirects (each test follows them).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `GET /auth/linkedin` at `origin`: the app's answer, a 302 to the provider (checked).
pub async fn start_sign_in(http: &reqwest::Client, origin: &str) -> reqwest::Response {
    let start = http
        .get(format!("{origin}/auth/linkedin"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND, "{:?}", start.headers());
    start
}

/// The `Location` of a redirect.
pub fn location(response: &reqwest::Response) -> String {
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// The `value` of the hidden input `name` in the consent page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {page}"))
        + marker.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end]
        .replace("&#x2f;", "/")
        .replace("&#x3a;", ":")
        .replace("&amp;", "&")
}

/// Loads the consent page at `authorization` and allows it (as `member`, when given), as its
/// form does: the provider's answer, a 302 back to the app.
pub async fn allow(
    http: &reqwest::Client,
    authorization: &str,
    member: Option<&str>,
) -> reqwest::Response {
    let consent = http.get(authorization).send().await.unwrap();
    assert_eq!(consent.status(), StatusCode::OK);
    let page = consent.text().await.unwrap();
    let mut form: Vec<(&str, String)> = [
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "scope",
    ]
    .into_iter()
    .map(|name| (name, hidden(&page, name)))
    .collect();
    if let Some(member) = member {
        form.push(("sandbox_member", member.to_owned()));
    }
    form.push(("decision", "allow".to_owned()));
    http.post(authorization).form(&form).send().await.unwrap()
}

/// Allows the consent page at `authorization` as SandboxAda and follows the provider's 302 to
/// the app at `origin`'s callback: the callback's answer, a 303 (checked).
pub async fn allow_and_come_back(
    http: &reqwest::Client,
    authorization: &str,
    origin: &str,
) -> reqwest::Response {
    let allowed = allow(http, authorization, Some("SandboxAda")).await;
    assert_eq!(allowed.status(), StatusCode::FOUND);
    let callback = location(&allowed);
    assert!(callback.starts_with(&format!("{origin}/auth/linkedin/callback?code=")));
    let back = http.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    back
}
