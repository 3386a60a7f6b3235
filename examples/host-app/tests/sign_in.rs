//! A host's integration test: the sandbox mounted beside the app, a member signed in through
//! OpenID Connect with a plain HTTP client, using only the crate's public API.

// The helpers are test code too: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use std::net::SocketAddr;

use linkedin_token_exchange::sandbox::Sandbox;
use linkedin_token_exchange::{LinkedInSignIn, RateLimit, SignInBuilder};
use reqwest::StatusCode;
use support::{allow, allow_and_come_back, client, location, start_sign_in};

/// A host about to serve on a random loopback port, with the sandbox for its LinkedIn: the
/// builder already names the origin and the sandbox's client.
struct Host {
    listener: tokio::net::TcpListener,
    origin: String,
    sandbox: Sandbox,
    builder: SignInBuilder,
}

impl Host {
    async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let sandbox = Sandbox::new(format!("{origin}/sandbox").parse().unwrap());
        let builder = LinkedInSignIn::builder()
            .public_origin(&origin)
            .oidc(sandbox.client_id(), sandbox.client_secret())
            .issuer(sandbox.issuer());
        Self {
            listener,
            origin,
            sandbox,
            builder,
        }
    }

    /// Serves `app` with the sandbox under `/sandbox`, with each client's address (as a host
    /// should: the sign-in's rate limit needs it) or, `with_addresses` false, without; the
    /// origin.
    fn serve(self, app: axum::Router, with_addresses: bool) -> String {
        let app = app.nest("/sandbox", self.sandbox.router());
        let listener = self.listener;
        if with_addresses {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
        } else {
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        }
        self.origin
    }
}

/// Serves the app with the sandbox under `/sandbox` on a random loopback port; its origin.
async fn serve() -> String {
    let host = Host::bind().await;
    let sign_in = host.builder.clone().build().unwrap();
    host.serve(host_app::app(&sign_in), true)
}

/// Signs a member in through the sandbox; what `/private` then answers.
async fn sign_in_and_open_private(http: &reqwest::Client, origin: &str) -> String {
    let start = start_sign_in(http, origin).await;
    allow_and_come_back(http, &location(&start), origin).await;
    let after = http.get(format!("{origin}/private")).send().await.unwrap();
    after.text().await.unwrap()
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

    let start = start_sign_in(&http, &origin).await;
    let authorization = location(&start);
    assert!(authorization.starts_with(&format!("{origin}/sandbox/oauth/v2/authorization")));

    let back = allow_and_come_back(&http, &authorization, &origin).await;
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
    let start = start_sign_in(&alice, &origin).await;
    let authorization = location(&start);
    let allowed = allow(&alice, &authorization, None).await;
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

/// Serves the sandbox alone on a second loopback port (another origin, as LinkedIn is), and
/// the host app on a first one; the app's origin and the sandbox's.
async fn serve_with_the_sandbox_elsewhere() -> (String, String) {
    let sandbox_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox_origin = format!("http://{}", sandbox_listener.local_addr().unwrap());
    let sandbox = Sandbox::new(format!("{sandbox_origin}/sandbox").parse().unwrap());
    let sandbox_app = axum::Router::new().nest("/sandbox", sandbox.router());
    tokio::spawn(async move { axum::serve(sandbox_listener, sandbox_app).await.unwrap() });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    assert_ne!(origin, sandbox_origin);
    let sign_in = LinkedInSignIn::builder()
        .public_origin(&origin)
        .oidc(sandbox.client_id(), sandbox.client_secret())
        .issuer(sandbox.issuer())
        .session_idle(std::time::Duration::from_secs(5 * 60))
        .build()
        .unwrap();
    let service = host_app::app(&sign_in).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    (origin, sandbox_origin)
}

#[tokio::test]
async fn a_member_signs_in_through_a_sandbox_on_another_origin_with_the_ready_made_layer() {
    let (origin, sandbox_origin) = serve_with_the_sandbox_elsewhere().await;
    let http = client();

    let start = start_sign_in(&http, &origin).await;
    // The session cookie as `LinkedInSignIn::session_layer` makes it: a browser sends it
    // back on the provider's top-level redirect (Lax, not Strict), only over HTTPS (or
    // loopback), never to scripts, and only to this host.
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["__Host-", "SameSite=Lax", "Secure", "HttpOnly", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let authorization = location(&start);
    assert!(
        authorization.starts_with(&format!("{sandbox_origin}/sandbox/oauth/v2/authorization")),
        "{authorization}"
    );
    allow_and_come_back(&http, &authorization, &origin).await;

    // The host's own handler, beside the library's routes and with nothing added by hand,
    // applies the builder's idle limit (5 minutes) to the session it extends.
    let after = http.get(format!("{origin}/private")).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    let extended = after.headers()["set-cookie"].to_str().unwrap().to_owned();
    let max_age: u64 = extended
        .split("; ")
        .find_map(|attribute| attribute.strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("Max-Age in {extended}"))
        .parse()
        .unwrap();
    assert!((250..=300).contains(&max_age), "{extended}");
    assert_eq!(after.text().await.unwrap(), "Hello, Ada Lovelace");
}

#[tokio::test]
async fn a_host_without_a_session_layer_is_told_the_cause() {
    let host = Host::bind().await;
    let sign_in = host.builder.clone().build().unwrap();
    async fn private(
        linkedin_token_exchange::Connected(member): linkedin_token_exchange::Connected,
    ) -> String {
        member.member_id
    }
    // The sign-in routes and a handler of the host's, with no session layer around them.
    let app = axum::Router::new()
        .route("/private", axum::routing::get(private))
        .merge(sign_in.router());
    let origin = host.serve(app, true);
    let http = client();
    for path in ["/private", "/auth/linkedin", "/session"] {
        let response = http.get(format!("{origin}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let body = response.text().await.unwrap();
        assert!(body.contains("\"session_layer_missing\""), "{path}: {body}");
        assert!(body.contains("tower-sessions 0.14"), "{path}: {body}");
        assert!(body.contains("session_layer"), "{path}: {body}");
        assert!(!body.contains("try again"), "{path}: {body}");
    }
}

/// Served with plain `axum::serve` (no client address), the rate-limited sign-in routes fail
/// loudly, naming the fixes, instead of running without a limit; the host's own routes and
/// the unlimited ones still work, and `rate_limit(Off)` is one of the fixes.
#[tokio::test]
async fn a_host_served_without_client_addresses_is_told_how_to_keep_its_rate_limit() {
    let host = Host::bind().await;
    let sign_in = host.builder.clone().build().unwrap();
    let origin = host.serve(host_app::app(&sign_in), false);
    let http = client();
    let response = http
        .get(format!("{origin}/auth/linkedin"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.text().await.unwrap();
    assert!(body.contains("\"client_address_unknown\""), "{body}");
    for fix in [
        "into_make_service_with_connect_info",
        "client_address",
        "RateLimit::Off",
    ] {
        assert!(body.contains(fix), "{fix} in {body}");
    }
    let home = http.get(format!("{origin}/")).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::OK);

    // The limit said off, out loud: the sign-in starts.
    let host = Host::bind().await;
    let sign_in = host
        .builder
        .clone()
        .rate_limit(RateLimit::Off)
        .build()
        .unwrap();
    let origin = host.serve(host_app::app(&sign_in), false);
    start_sign_in(&http, &origin).await;
}

/// A host keeps its sessions in the library's sealed SQLite store: a member signs in, and the
/// database holds their session sealed (their name nowhere in the file); a key that is not
/// one is refused at connect, and the error does not repeat it.
#[tokio::test]
async fn a_host_keeps_its_sessions_in_a_sealed_sqlite_store() {
    use linkedin_token_exchange::Secret;
    use linkedin_token_exchange::stores::{SealedStore, StoreUrl};

    let dir = std::env::temp_dir().join(format!("host-app-sealed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url: StoreUrl = format!("sqlite://{}", dir.join("sessions.db").display())
        .parse()
        .unwrap();
    let err = SealedStore::connect(&url, &Secret::new("not-a-key"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not base64"), "{err}");
    assert!(!err.to_string().contains("not-a-key"), "{err}");

    // 32 bytes of 7, in base64.
    let keys = Secret::new("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
    let store = SealedStore::connect(&url, &keys).await.unwrap();
    let host = Host::bind().await;
    let sign_in = host.builder.clone().build().unwrap();
    let origin = host.serve(host_app::app_with_store(&sign_in, store), true);
    assert_eq!(
        sign_in_and_open_private(&client(), &origin).await,
        "Hello, Ada Lovelace"
    );

    let mut stored = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        stored.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(
        stored.len() > 4096,
        "the database and its log hold the session"
    );
    assert!(
        !stored.windows(8).any(|w| w == b"Lovelace"),
        "the member's name lies in the store in clear"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
