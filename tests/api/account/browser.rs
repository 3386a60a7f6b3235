//! `/account` in a real browser (headless Chromium over WebDriver, the harness of
//! `support::chromium`): a member signed in in Chromium and on two other devices (HTTPS
//! clients with cookie jars of their own) opens the page from the login page's link, sees
//! the three sessions with this device marked, ends one other device's session (which is then
//! signed out) and then "all other sessions", under the page's Content-Security-Policy.

use serde_json::json;

use super::{CHROME_ON_WINDOWS, SAFARI_ON_IOS};
use crate::support::chromium::start_or_skip;
use crate::support::device::Device;

/// The number of session rows the page shows.
const ROWS: &str = "document.querySelectorAll('#session-rows tr').length";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_ends_another_devices_session_from_the_account_page_in_chromium() {
    const TEST: &str =
        "account::browser::a_member_ends_another_devices_session_from_the_account_page_in_chromium";
    let Some((app, browser)) = start_or_skip(TEST).await else {
        return;
    };

    // This device: Chromium signs in with the sandbox's JSAPI button.
    browser.goto("open the login page", &app.url("/")).await;
    let sign_in = browser.jsapi_button("the JSAPI renders its button").await;
    browser
        .click("click “Sign in with LinkedIn”", sign_in)
        .await;
    browser
        .wait_for(
            "the page to say connected as SandboxAda, with the link to the account page",
            "const s = document.getElementById('status'), l = document.getElementById('account-link');
             return !!s && s.dataset.state === 'connected' && !!l && !l.hidden;",
        )
        .await;

    // Two other devices of the same member.
    let desktop = Device::with_user_agent(&app, CHROME_ON_WINDOWS);
    desktop.sign_in_jsapi(&app, "SandboxAda").await;
    let phone = Device::with_user_agent(&app, SAFARI_ON_IOS);
    phone.sign_in_jsapi(&app, "SandboxAda").await;

    let link = browser
        .find_css("find the link to the account page", "#account-link a")
        .await;
    browser
        .click("click “Your sessions on every device”", link)
        .await;
    browser
        .wait_for(
            "the account page to list three sessions",
            &format!("return location.pathname === '/account' && {ROWS} === 3;"),
        )
        .await;

    // This device is marked, once: Chromium's own session, described from its User-Agent.
    let listed = browser.fetch_json("/sessions").await;
    let own = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap_or_else(|| panic!("no current session: {listed}"))
        .clone();
    assert_eq!(own["browser"], "Chrome on Linux", "{listed}");
    let marked = browser
        .execute(
            "read the marked rows",
            "return [...document.querySelectorAll('#session-rows tr')]
               .filter(r => r.querySelector('.this-device'))
               .map(r => [r.dataset.handle, r.querySelector('.browser').textContent,
                          !!r.querySelector('button.end-session')]);",
        )
        .await;
    assert_eq!(
        marked,
        json!([[own["handle"], "Chrome on Linux (this device)", false]]),
        "the one row marked “this device”, without an end button"
    );
    let shown = browser
        .execute(
            "read the rows",
            "return [...document.querySelectorAll('#session-rows tr')]
               .map(r => [r.querySelector('.browser').textContent,
                          r.querySelector('.flow').textContent])
               .sort();",
        )
        .await;
    assert_eq!(
        shown,
        json!([
            ["Chrome on Linux (this device)", "JavaScript API"],
            ["Chrome on Windows", "JavaScript API"],
            ["Safari on iOS", "JavaScript API"]
        ])
    );

    // End the desktop's session with its row's button.
    let desktop_handle = desktop.own_handle(&app).await;
    let end = browser
        .find_css(
            "find the desktop's “End session” button",
            &format!("button.end-session[data-handle='{desktop_handle}']"),
        )
        .await;
    browser
        .click("click the desktop's “End session”", end)
        .await;
    browser
        .wait_for(
            "the page to say the session ended and list two",
            &format!(
                "const m = document.getElementById('account-message');
                 return {ROWS} === 2 && m.dataset.state === 'done' && m.textContent === 'Session ended.';"
            ),
        )
        .await;
    assert_eq!(
        desktop.session(&app).await,
        json!({"connected": false}),
        "the desktop is signed out"
    );
    assert_eq!(phone.session(&app).await["member_id"], "SandboxAda");
    let still_listed = browser
        .execute(
            "read the handles left",
            "return [...document.querySelectorAll('#session-rows tr')].map(r => r.dataset.handle);",
        )
        .await;
    assert!(
        !still_listed
            .as_array()
            .unwrap()
            .contains(&json!(desktop_handle)),
        "{still_listed}"
    );

    // "End all other sessions": the phone goes, this device stays.
    let end_others = browser
        .find("find “End all other sessions”", "end-others")
        .await;
    browser
        .click("click “End all other sessions”", end_others)
        .await;
    browser
        .wait_for(
            "the page to list this device only",
            &format!(
                "const m = document.getElementById('account-message');
                 return {ROWS} === 1 && m.textContent === 'Ended 1 other session.'
                   && document.getElementById('end-others').hidden
                   && !!document.querySelector('#session-rows tr.current .this-device');"
            ),
        )
        .await;
    assert_eq!(phone.session(&app).await, json!({"connected": false}));
    let session = browser.fetch_json("/session").await;
    assert_eq!(
        session["member_id"], "SandboxAda",
        "this device stays: {session}"
    );

    // Reloaded, the server draws the same page the script left.
    browser.reload().await;
    browser
        .wait_for(
            "the reloaded page to list this device only",
            &format!("return {ROWS} === 1 && document.getElementById('end-others').hidden;"),
        )
        .await;

    let console = browser
        .console_without_csp_violations("the account page's Content-Security-Policy")
        .await;
    let errors: Vec<_> = console
        .iter()
        .filter(|line| line.contains("[SEVERE]"))
        .collect();
    assert!(errors.is_empty(), "errors in the console:\n{errors:#?}");

    browser.close("the account page in Chromium").await;
    app.stop().await;
}
