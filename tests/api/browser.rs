//! A real browser (headless Chromium over WebDriver), on `https://127.0.0.1:PORT` (the only
//! public origin), signs in with the sandbox's JSAPI, reloads and signs out; then signs in
//! with OpenID Connect through the sandbox's consent page, as another member through
//! `?sandbox_member=`, and cancels once. The Chromium harness is `support::chromium`.

use std::net::SocketAddr;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};

use crate::support::chromium::{Browser, STEP_TIMEOUT, start_or_skip};
use crate::support::{API_KEY, FetchJson, TestApp, encode_cookie};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_and_out_in_a_real_browser() {
    const TEST: &str = "browser::a_person_signs_in_and_out_in_a_real_browser";
    let Some((app, browser)) = start_or_skip(TEST).await else {
        return;
    };
    let metrics = app.metrics.expect("the metrics listener");
    let cookie_name = format!("linkedin_oauth_{API_KEY}");

    // The login page, before anything: not connected, the JSAPI renders its button.
    browser.goto("open the login page", &app.url("/")).await;
    browser
        .wait_for(
            "the page says it is not connected",
            "const s = document.getElementById('status');
             return !!s && s.dataset.state === 'disconnected' && s.textContent.includes('Not connected');",
        )
        .await;
    let sign_in = browser
        .jsapi_button("the JSAPI renders the “Sign in with LinkedIn” button")
        .await;
    assert_eq!(
        browser
            .step("read the sign-in button", sign_in.text().await)
            .await,
        "Sign in with LinkedIn"
    );
    browser.expect_signed_out("before signing in").await;
    // OpenID Connect is drawn as the primary choice, the JSAPI button as the secondary one.
    let colours = browser
        .execute(
            "read the two buttons' colours",
            "const bg = e => getComputedStyle(e).backgroundColor;
             return [bg(document.getElementById('oidc-sign-in')),
                     bg(document.querySelector('button.in-login'))];",
        )
        .await;
    assert_eq!(
        colours,
        json!(["rgb(10, 102, 194)", "rgb(255, 255, 255)"]),
        "[OpenID Connect link, JSAPI button] backgrounds"
    );

    // Sign in: the sandbox writes the JSAPI cookie, onAuth exchanges it and shows the member.
    browser
        .click("click “Sign in with LinkedIn”", sign_in)
        .await;
    browser
        .wait_for(
            "#status to say connected as SandboxAda after signing in",
            "const s = document.getElementById('status'), m = document.getElementById('member');
             return !!s && s.dataset.state === 'connected' && !!m && m.textContent === 'SandboxAda';",
        )
        .await;
    browser
        .wait_for(
            "the profile to show “Ada Lovelace”",
            "const p = document.getElementById('profile'), n = document.getElementById('profile-name');
             return !!p && !p.hidden && !!n && n.textContent === 'Ada Lovelace';",
        )
        .await;
    let status = browser.text_of("status").await;
    assert_eq!(
        status, "Connected as SandboxAda.",
        "the status line after signing in"
    );
    // Without a reload: Sign out, and neither sign-in button.
    browser.expect_signed_in("after the JSAPI sign-in").await;
    assert_eq!(
        browser.text_of("flow").await,
        "Signed in through the JavaScript API."
    );

    // The server agrees, as seen from the page.
    let session = browser.fetch_json("/session").await;
    assert_eq!(
        session["connected"], true,
        "/session from the browser after signing in: {session}"
    );
    assert_eq!(
        session["member_id"], "SandboxAda",
        "/session from the browser after signing in: {session}"
    );
    assert!(
        session["expires_at"]
            .as_i64()
            .is_some_and(|at| at > 1_700_000_000),
        "/session from the browser has no plausible expires_at: {session}"
    );

    // The cookies the browser holds: the JSAPI's credentials cookie and the session cookie.
    let jsapi = browser
        .step(
            &format!("read the {cookie_name} cookie"),
            browser.client.get_named_cookie(&cookie_name).await,
        )
        .await;
    assert_eq!(
        jsapi.secure(),
        Some(true),
        "the {cookie_name} cookie is not Secure: {jsapi}"
    );
    assert_eq!(
        jsapi.path(),
        Some("/"),
        "the {cookie_name} cookie's path: {jsapi}"
    );
    let decoded = percent_encoding::percent_decode_str(jsapi.value())
        .decode_utf8()
        .unwrap_or_else(|e| {
            panic!("the {cookie_name} cookie is not percent-encoded UTF-8 ({e}): {jsapi}")
        });
    let credentials: Value = serde_json::from_str(&decoded).unwrap_or_else(|e| {
        panic!("the {cookie_name} cookie does not decode to JSON ({e}): {decoded}")
    });
    assert_eq!(
        credentials["signature_method"], "HMAC-SHA1",
        "the JSAPI cookie: {credentials}"
    );
    assert_eq!(
        credentials["member_id"], "SandboxAda",
        "the JSAPI cookie: {credentials}"
    );
    assert!(
        credentials["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "the JSAPI cookie has no access_token: {credentials}"
    );
    let session_cookie = browser
        .step(
            "read the __Host-lte_session cookie",
            browser.client.get_named_cookie("__Host-lte_session").await,
        )
        .await;
    assert_eq!(
        session_cookie.http_only(),
        Some(true),
        "__Host-lte_session is not HttpOnly: {session_cookie}"
    );
    assert_eq!(
        session_cookie.secure(),
        Some(true),
        "__Host-lte_session is not Secure: {session_cookie}"
    );
    let script_cookies = browser
        .execute("read document.cookie", "return document.cookie;")
        .await;
    assert!(
        !script_cookies
            .as_str()
            .unwrap_or_default()
            .contains("__Host-lte_session"),
        "scripts can read the session cookie: {script_cookies}"
    );

    // Reload: the server renders the page connected, and the JSAPI restores its sign-in and
    // fires `auth` again; the page, already showing this member, exchanges nothing more.
    let exchanges = metric_lines(metrics, "lte_exchanges_total").await;
    browser.reload().await;
    let rendered = browser
        .execute_async(
            "fetch the login page's HTML from the browser",
            "fetch('/', { credentials: 'same-origin' })
               .then(r => r.text())
               .then(html => {
                 const s = new DOMParser().parseFromString(html, 'text/html').getElementById('status');
                 done(s ? { state: s.dataset.state, text: s.textContent } : { error: 'no #status in ' + html });
               }, e => done({ error: String(e) }));",
        )
        .await;
    assert_eq!(
        rendered["state"], "connected",
        "the server-rendered page after reload: {rendered}"
    );
    assert_eq!(
        rendered["text"], "Connected as SandboxAda.",
        "the server-rendered page after reload: {rendered}"
    );
    browser
        .wait_for(
            "the reloaded page to show connected as SandboxAda with the profile, the JSAPI signed in",
            "const s = document.getElementById('status'), m = document.getElementById('member'),
                   n = document.getElementById('profile-name');
             return !!s && s.dataset.state === 'connected' && !!m && m.textContent === 'SandboxAda'
               && !!n && n.textContent === 'Ada Lovelace' && !document.getElementById('profile').hidden
               && !!window.IN && IN.User.isAuthorized();",
        )
        .await;
    // Room for a redundant exchange to arrive, were one sent.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let posted = browser
        .execute(
            "list the page's requests",
            "return performance.getEntriesByType('resource').map(e => e.name)
               .filter(n => n.includes('/token-exchange'));",
        )
        .await;
    assert_eq!(
        posted,
        json!([]),
        "the reloaded page posted /token-exchange"
    );
    assert_eq!(
        metric_lines(metrics, "lte_exchanges_total").await,
        exchanges,
        "the reload made an exchange"
    );
    assert!(
        !exchanges.iter().any(|l| l.contains("already_connected")),
        "{exchanges:?}"
    );
    browser.expect_signed_in("on the reloaded page").await;
    assert_eq!(
        browser.text_of("flow").await,
        "Signed in through the JavaScript API.",
        "#flow on the reloaded page"
    );

    // Sign out: the JSAPI expires its cookie, onLogout ends the session.
    let sign_out = browser.find("find the sign-out button", "sign-out").await;
    browser.click("click “Sign out”", sign_out).await;
    browser
        .wait_for(
            "#status to say not connected after signing out",
            "const s = document.getElementById('status');
             return !!s && s.dataset.state === 'disconnected' && s.textContent === 'Not connected.';",
        )
        .await;
    let session = browser.fetch_json("/session").await;
    assert_eq!(
        session,
        json!({"connected": false}),
        "/session from the browser after signing out"
    );
    browser.expect_signed_out("after signing out").await;
    let profile = browser.find("find the profile", "profile").await;
    assert!(
        !browser
            .step("look at the profile", profile.is_displayed().await)
            .await,
        "the profile is still visible after signing out"
    );
    match browser.client.get_named_cookie(&cookie_name).await {
        Err(e) if e.is_no_such_cookie() => {}
        other => panic!("the {cookie_name} cookie survived signing out: {other:?}"),
    }

    // And the server renders the page signed out.
    browser.reload().await;
    browser
        .wait_for(
            "the reloaded page to say not connected",
            "const s = document.getElementById('status');
             return !!s && s.dataset.state === 'disconnected' && s.textContent.includes('Not connected');",
        )
        .await;
    browser
        .expect_signed_out("on the reloaded page, signed out")
        .await;

    // OpenID Connect, into the same session: the link, the provider's consent page (on the
    // page's own origin), Allow.
    browser.oidc_consent(&app, "SandboxAda").await;
    let allow = browser.find("find Allow", "allow").await;
    browser.click("click Allow", allow).await;
    browser
        .wait_for(
            "the page to say connected through OpenID Connect, with the userinfo",
            "const s = document.getElementById('status'), m = document.getElementById('member'),
                   f = document.getElementById('flow'), n = document.getElementById('profile-name');
             return location.pathname === '/' && !!s && s.dataset.state === 'connected'
               && !!m && !!f && f.textContent.includes('OpenID Connect')
               && !!n && n.textContent === 'Ada Lovelace';",
        )
        .await;
    let session = browser.fetch_json("/session").await;
    assert_eq!(session["flow"], "oidc", "{session}");
    assert_eq!(
        browser.text_of("status").await,
        "Connected as Ada Lovelace.",
        "the page names the member, not the pairwise sub {}",
        session["member_id"]
    );
    let me = browser.fetch_json("/me").await;
    assert_eq!(me["email"], "sandboxada@sandbox.example", "{me}");
    assert_eq!(me["sub"], session["member_id"], "{me}");
    browser
        .expect_signed_in("after the OpenID Connect sign-in")
        .await;
    browser.sign_out("after the OpenID Connect sign-in").await;

    // `?sandbox_member=` on the page reaches the OpenID Connect link.
    browser
        .goto(
            "open the login page for Grace",
            &app.url("/?sandbox_member=Grace"),
        )
        .await;
    browser.oidc_consent(&app, "Grace").await;
    let allow = browser.find("find Allow", "allow").await;
    browser.click("click Allow", allow).await;
    browser
        .wait_for(
            "the page to say connected as Grace through OpenID Connect",
            "const s = document.getElementById('status'), n = document.getElementById('profile-name');
             return location.pathname === '/' && !!s && s.dataset.state === 'connected'
               && !!n && n.textContent === 'Sandbox Grace';",
        )
        .await;
    assert_eq!(
        browser.text_of("status").await,
        "Connected as Sandbox Grace."
    );
    let session = browser.fetch_json("/session").await;
    assert_eq!(session["name"], "Sandbox Grace", "{session}");
    assert_eq!(session["email"], "grace@sandbox.example", "{session}");

    // "Sign out everywhere" ends Grace's session in another browser too (the JSAPI flow).
    let grace = session["member_id"].as_str().unwrap().to_owned();
    let (other, other_jar) = app.new_browser();
    let payload: Value = other
        .post(app.url("/sandbox/oauth2/authorize"))
        .form(&[("api_key", API_KEY), ("member_id", grace.as_str())])
        .fetch_json()
        .await;
    app.set_jsapi_cookie(&other_jar, &encode_cookie(&payload.to_string()));
    assert_eq!(app.post_from(&other, "/token-exchange").await.status(), 200);
    let everywhere = browser
        .find("find the sign-out-everywhere button", "sign-out-everywhere")
        .await;
    browser
        .click("click “Sign out everywhere”", everywhere)
        .await;
    browser
        .wait_for(
            "the page to say signed out of both sessions",
            "const s = document.getElementById('status');
             return !!s && s.dataset.state === 'disconnected'
               && s.textContent === 'Signed out everywhere (2 sessions).';",
        )
        .await;
    assert_eq!(
        browser.fetch_json("/session").await,
        json!({"connected": false})
    );
    let elsewhere: Value = other.get(app.url("/session")).fetch_json().await;
    assert_eq!(
        elsewhere,
        json!({"connected": false}),
        "the other browser is signed out too"
    );
    browser
        .expect_signed_out("after signing out everywhere")
        .await;

    // Cancel at the provider: a page titled as such, with a way back.
    browser.oidc_consent(&app, "SandboxAda").await;
    let cancel = browser.find("find Cancel", "cancel").await;
    browser.click("click Cancel", cancel).await;
    browser
        .wait_for(
            "the page that says the sign-in was cancelled",
            "const h = document.querySelector('h1'), c = document.getElementById('code');
             return location.pathname === '/auth/linkedin/callback' && !!h && !!c
               && c.textContent === 'oidc_denied';",
        )
        .await;
    let title = browser
        .execute(
            "read the title",
            "return [document.title, document.querySelector('h1').textContent];",
        )
        .await;
    assert_eq!(
        title,
        json!(["Sign-in cancelled", "Sign-in cancelled"]),
        "the cancel page"
    );
    assert_eq!(
        browser.fetch_json("/session").await,
        json!({"connected": false})
    );

    // No page asked for /favicon.ico: the consent and error pages name an icon of their own.
    let not_found = metric_lines(metrics, "lte_http_requests_total")
        .await
        .into_iter()
        .filter(|line| line.contains(r#"status="404""#))
        .collect::<Vec<_>>();
    assert!(
        not_found.is_empty(),
        "requests answered 404 (a favicon?): {not_found:?}"
    );

    // The pages ran under their Content-Security-Policy the whole time, and broke none of it.
    let page = app.get("/").await;
    let policy = page
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_owned())
        .expect("the page has a Content-Security-Policy");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    browser.console_without_csp_violations(&policy).await;

    browser
        .close("browser part of the sign-in/sign-out test")
        .await;
    app.stop().await;
}

/// The lines of the metric `name` (not its `# HELP` and `# TYPE` lines).
async fn metric_lines(metrics: SocketAddr, name: &str) -> Vec<String> {
    let (text, _) = crate::support::scrape(metrics).await;
    text.lines()
        .filter(|line| line.starts_with(name))
        .map(str::to_owned)
        .collect()
}

/// The login page's own checks.
impl Browser {
    /// Which of the JSAPI button, the OpenID Connect link and "Sign out" are visible.
    async fn buttons(&self) -> [bool; 3] {
        let mut shown = [false; 3];
        for (i, (what, locator)) in [
            ("the JSAPI button", Locator::Css("button.in-login")),
            ("the OpenID Connect link", Locator::Id("oidc-sign-in")),
            ("the sign-out button", Locator::Id("sign-out")),
        ]
        .into_iter()
        .enumerate()
        {
            let element = self
                .step(&format!("find {what}"), self.client.find(locator).await)
                .await;
            shown[i] = self
                .step(&format!("look at {what}"), element.is_displayed().await)
                .await;
        }
        shown
    }

    /// Signed out, both sign-in buttons show and "Sign out" does not.
    async fn expect_signed_out(&self, when: &str) {
        assert_eq!(
            self.buttons().await,
            [true, true, false],
            "[JSAPI button, OpenID Connect link, Sign out] visible {when}"
        );
    }

    /// Signed in, "Sign out" shows and neither sign-in button does.
    async fn expect_signed_in(&self, when: &str) {
        assert_eq!(
            self.buttons().await,
            [false, false, true],
            "[JSAPI button, OpenID Connect link, Sign out] visible {when}"
        );
    }

    /// Clicks the OpenID Connect link and waits for the sandbox's consent page, on the page's
    /// own origin, offering `member`.
    async fn oidc_consent(&self, app: &TestApp, member: &str) {
        let link = self
            .find(
                "find “Sign in with LinkedIn (OpenID Connect)”",
                "oidc-sign-in",
            )
            .await;
        self.click("click the OpenID Connect link", link).await;
        self.step(
            "the sandbox's consent page offers Allow",
            self.client
                .wait()
                .at_most(STEP_TIMEOUT)
                .for_element(Locator::Id("allow"))
                .await,
        )
        .await;
        let url = self
            .step(
                "read the consent page's URL",
                self.client.current_url().await,
            )
            .await;
        assert_eq!(
            url.origin().ascii_serialization(),
            app.base,
            "the consent page is on another origin than the page: {url}"
        );
        let offered = self
            .execute(
                "read the member offered",
                "return document.getElementById('sandbox-member').value;",
            )
            .await;
        assert_eq!(offered, json!(member), "the consent page's member");
    }

    /// Clicks "Sign out" and waits for the page to say so.
    async fn sign_out(&self, when: &str) {
        let sign_out = self.find("find the sign-out button", "sign-out").await;
        self.click("click “Sign out”", sign_out).await;
        self.wait_for(
            "the page to say not connected",
            "const s = document.getElementById('status');
             return !!s && s.dataset.state === 'disconnected';",
        )
        .await;
        assert_eq!(
            self.fetch_json("/session").await,
            json!({"connected": false}),
            "/session {when}"
        );
        self.expect_signed_out(&format!("after signing out {when}"))
            .await;
    }
}
