//! A host's integration test: the sandbox mounted beside the app, a member signed in through
//! OpenID Connect with a plain HTTP client, using only the crate's public API.

// The helpers are test code too: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use linkedin_token_exchange::LinkedInSignIn;
use linkedin_token_exchange::sandbox::Sandbox;
use reqwest::StatusCode;
use reqwest::header::LOCATION;

/// Serves the app with the sandbox under `/sandbox` on a random loopback port; its origin.
async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new(format!("{origin}/sandbox").parse().unwrap());
    let sign_in = LinkedInSignIn::builder()
        .public_origin(&origin)
        .oidc(sandbox.client_id(), sandbox.client_secret())
        .issuer(sandbox.issuer())
        .build()
        .unwrap();
    let app = host_app::app(&sign_in, false).nest("/sandbox", sandbox.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    origin
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// The `value` of the hidden input `name` in the consent page.
fn hidden(page: &str, name: &str) -> String {
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

#[tokio::test]
async fn a_member_signs_in_through_the_sandbox_and_reaches_the_private_page() {
    let origin = serve().await;
    let http = client();

    let home = http.get(format!("{origin}/")).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    let before = http.get(format!("{origin}/private")).send().await.unwrap();
    assert_eq!(before.status(), StatusCode::UNAUTHORIZED);
    assert!(before.text().await.unwrap().contains("not_connected"));

    let start = http
        .get(format!("{origin}/auth/linkedin"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    let authorization = location(&start);
    assert!(authorization.starts_with(&format!("{origin}/sandbox/oauth/v2/authorization")));

    let consent = http.get(&authorization).send().await.unwrap();
    assert_eq!(consent.status(), StatusCode::OK);
    let page = consent.text().await.unwrap();
    let form: Vec<(&str, String)> = [
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "scope",
    ]
    .into_iter()
    .map(|name| (name, hidden(&page, name)))
    .chain([
        ("sandbox_member", "SandboxAda".to_owned()),
        ("decision", "allow".to_owned()),
    ])
    .collect();
    assert_eq!(form[2].1, format!("{origin}/auth/linkedin/callback"));
    let allowed = http.post(&authorization).form(&form).send().await.unwrap();
    assert_eq!(allowed.status(), StatusCode::FOUND);
    let callback = location(&allowed);
    assert!(callback.starts_with(&format!("{origin}/auth/linkedin/callback?code=")));

    let back = http.get(&callback).send().await.unwrap();
    assert_eq!(
        back.status(),
        StatusCode::SEE_OTHER,
        "{}",
        back.text().await.unwrap()
    );
    assert_eq!(location(&back), "/");

    let after = http.get(format!("{origin}/private")).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(after.text().await.unwrap(), "Hello, Ada Lovelace");

    let session = http.get(format!("{origin}/session")).send().await.unwrap();
    assert!(session.text().await.unwrap().contains("\"flow\":\"oidc\""));
}

#[tokio::test]
async fn a_sign_in_from_another_browser_does_not_open_the_private_page() {
    let origin = serve().await;
    let (alice, mallory) = (client(), client());
    let start = alice
        .get(format!("{origin}/auth/linkedin"))
        .send()
        .await
        .unwrap();
    let authorization = location(&start);
    let page = alice
        .get(&authorization)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let form: Vec<(&str, String)> = [
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "scope",
    ]
    .into_iter()
    .map(|name| (name, hidden(&page, name)))
    .chain([("decision", "allow".to_owned())])
    .collect();
    let allowed = alice.post(&authorization).form(&form).send().await.unwrap();
    // The callback carried to a browser that did not start the sign-in.
    let stolen = mallory
        .get(location(&allowed))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), StatusCode::BAD_REQUEST);
    assert!(stolen.text().await.unwrap().contains("oidc_state_mismatch"));
    let private = mallory
        .get(format!("{origin}/private"))
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), StatusCode::UNAUTHORIZED);
}
