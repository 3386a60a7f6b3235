//! The sandbox's OpenID Connect provider, checked by a verifier that is not the service's:
//! its id_tokens verify, its codes and clients are checked, and it behaves as LinkedIn is
//! observed to behave (SPEC, "LinkedIn as it is observed"), each quirk with its public report.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use linkedin_token_exchange::Secret;
use serde_json::Value;
use url::Url;

use crate::oidc::{consent, location, query, start, step_by_step};
use crate::support::sandbox_rp::{
    CLIENT_SECRET, RelyingParty, SCOPE, access_token, claims_of, unix_now,
};
use crate::support::{FetchJson, TestApp, json_of, test_config};

const SANDBOX_CLIENT_ID: &str = "sandbox-rp";

/// The relying party `SANDBOX_CLIENT_ID` of a fresh sandbox.
async fn start_sandbox() -> RelyingParty {
    RelyingParty::start(SANDBOX_CLIENT_ID, |_| {}).await
}

/// The provider's checks, as this file makes them.
impl RelyingParty {
    /// Allow on the consent page for `member`: the code it sends back.
    async fn code_for(&self, member: &str) -> String {
        self.code_with(member, &[]).await
    }

    /// Allow for `member`, with `extra` parameters in the authorization request.
    async fn code_with(&self, member: &str, extra: &[(&str, &str)]) -> String {
        let page = self.authorization(SCOPE, extra).await;
        assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());
        self.allow(member, SCOPE, extra).await
    }

    async fn discovery(&self) -> Value {
        self.app
            .get("/sandbox/oauth/.well-known/openid-configuration")
            .await
            .json()
            .await
            .unwrap()
    }

    /// The id_token's claims, verified against the published JWKS with `jsonwebtoken` (not
    /// the service's verifier), for this client at the sandbox's issuer.
    async fn verified_claims(&self, id_token: &str) -> Value {
        let jwks: Value = self
            .app
            .get("/sandbox/oauth/openid/jwks")
            .await
            .json()
            .await
            .unwrap();
        let key = &jwks["keys"][0];
        let header = jsonwebtoken::decode_header(id_token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), key["kid"].as_str(), "{jwks}");
        let decoding = DecodingKey::from_rsa_components(
            key["n"].as_str().unwrap(),
            key["e"].as_str().unwrap(),
        )
        .unwrap();
        jsonwebtoken::decode::<Value>(id_token, &decoding, &self.validation())
            .unwrap()
            .claims
    }

    fn validation(&self) -> Validation {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[self.app.url("/sandbox/oauth")]);
        validation.set_audience(&[self.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation
    }

    /// Signs `member` in through the service's own OpenID Connect sign-in (the link, the
    /// consent page, the callback).
    async fn sign_in(&self, member: &str) {
        let authorization = start(&self.app, &self.browser).await;
        let callback = consent(&self.browser, &authorization, "allow", member).await;
        let response = self.browser.get(callback).send().await.unwrap();
        assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    }

    /// The text of `path` on the app.
    async fn text(&self, path: &str) -> String {
        self.app.get(path).await.text().await.unwrap()
    }
}

#[tokio::test]
async fn the_sandbox_signs_id_tokens_that_an_independent_verifier_accepts() {
    let sandbox = start_sandbox().await;
    let answer = sandbox.tokens("indie-member", SCOPE).await;
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 5_184_000);
    let id_token = answer["id_token"].as_str().expect("an id_token");
    let claims = sandbox.verified_claims(id_token).await;
    assert_eq!(claims["email"], "indie-member@sandbox.example");
    assert_eq!(claims["name"], "Sandbox indie-member");
    let userinfo = sandbox.userinfo(access_token(&answer)).await.1;
    assert_eq!(userinfo["sub"], claims["sub"], "{userinfo}");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!((iat - unix_now()).abs() < 60, "{claims}");
    assert!(exp > iat);

    // Another issuer or audience: the same verifier refuses it.
    let jwks: Value = sandbox
        .app
        .get("/sandbox/oauth/openid/jwks")
        .await
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    let decoding =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .unwrap();
    let mut wrong = sandbox.validation();
    wrong.set_issuer(&[sandbox.app.url("")]);
    assert!(jsonwebtoken::decode::<Value>(id_token, &decoding, &wrong).is_err());
    let mut wrong = sandbox.validation();
    wrong.set_audience(&["another-client"]);
    assert!(jsonwebtoken::decode::<Value>(id_token, &decoding, &wrong).is_err());

    let discovery = sandbox.discovery().await;
    assert_eq!(discovery["issuer"], sandbox.app.url("/sandbox/oauth"));
}

#[tokio::test]
async fn the_sandbox_refuses_reused_codes_other_redirect_uris_and_wrong_secrets() {
    let sandbox = start_sandbox().await;
    let invalid_grant = |(status, body): (u16, Value)| {
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
    };

    let code = sandbox.code_for("member-x").await;
    assert_eq!(sandbox.trade(&code, &[]).await.0, 200);
    invalid_grant(sandbox.trade(&code, &[]).await);

    let code = sandbox.code_for("member-x").await;
    let elsewhere = sandbox.app.url("/elsewhere");
    invalid_grant(sandbox.trade(&code, &[("redirect_uri", &elsewhere)]).await);
    invalid_grant(sandbox.trade(&code, &[]).await);

    let code = sandbox.code_for("member-x").await;
    let (status, body) = sandbox
        .trade(&code, &[("client_secret", "not-the-secret")])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
}

#[tokio::test]
async fn the_id_token_never_carries_a_nonce_even_when_the_request_sent_one() {
    // LinkedIn omits nonce: python-social-auth/social-core#833, authlib/authlib#763,
    // linkedin-developers/linkedin-api-js-client#34, spring-projects/spring-security#7696,
    // directus/directus#23645.
    let sandbox = start_sandbox().await;
    let answer = sandbox.tokens("nonce-member", SCOPE).await;
    let claims = sandbox
        .verified_claims(answer["id_token"].as_str().unwrap())
        .await;
    assert!(
        sandbox.asked(SCOPE, &[]).iter().any(|(k, _)| k == "nonce"),
        "the request sent a nonce"
    );
    assert!(claims.get("nonce").is_none(), "{claims}");

    // Nor through the service's own sign-in, which always sends one.
    let authorization = start(&sandbox.app, &sandbox.browser).await;
    assert!(
        query(&authorization)
            .get("nonce")
            .is_some_and(|n| !n.is_empty()),
        "{authorization}"
    );
}

#[tokio::test]
async fn email_verified_and_locale_take_linkedins_two_shapes() {
    // LinkedIn's id_token says email_verified "true" (a string), its userinfo true (a
    // boolean): logto-io/logto#6843. locale: a string in the id_token, an object in userinfo
    // (the same reports).
    let sandbox = start_sandbox().await;
    let answer = sandbox.tokens("shape-member", SCOPE).await;
    let claims = claims_of(&answer);
    assert_eq!(claims["email_verified"], Value::from("true"), "{claims}");
    assert_eq!(claims["locale"], Value::from("en_US"), "{claims}");
    let userinfo = sandbox.userinfo(access_token(&answer)).await.1;
    assert_eq!(userinfo["email_verified"], Value::Bool(true), "{userinfo}");
    assert_eq!(
        userinfo["locale"],
        serde_json::json!({"country": "US", "language": "en"}),
        "{userinfo}"
    );
    for field in ["name", "given_name", "family_name", "picture", "email"] {
        assert_eq!(userinfo[field], claims[field], "{field}");
    }
}

#[tokio::test]
async fn discovery_lists_neither_auth_methods_nor_pkce_methods() {
    // LinkedIn's discovery lists no token_endpoint_auth_methods_supported, yet its token
    // endpoint wants client_secret_post: linkedin-developers/linkedin-api-python-client#63,
    // pretix/pretix#4459. And no code_challenge_methods_supported: nextauthjs/next-auth#8831.
    let sandbox = start_sandbox().await;
    let discovery = sandbox.discovery().await;
    assert!(
        discovery
            .get("token_endpoint_auth_methods_supported")
            .is_none(),
        "{discovery}"
    );
    assert!(
        discovery.get("code_challenge_methods_supported").is_none(),
        "{discovery}"
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"][0],
        "RS256"
    );
    // client_secret_post works all the same.
    assert_eq!(
        sandbox.tokens("post-member", SCOPE).await["token_type"],
        "Bearer"
    );
}

#[tokio::test]
async fn pkce_is_ignored_at_authorization_and_a_code_verifier_is_invalid_client() {
    // A web app's PKCE: LinkedIn's token endpoint answers 401 invalid_client to a request
    // carrying code_verifier: nextauthjs/next-auth#8831, directus/directus#23645.
    let sandbox = start_sandbox().await;
    let pkce = [
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
    ];
    let code = sandbox.code_with("pkce-member", &pkce).await;
    let (status, body) = sandbox
        .trade(
            &code,
            &[(
                "code_verifier",
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            )],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // The same code without the verifier is good: PKCE was simply ignored.
    let (status, answer) = sandbox.trade(&code, &[]).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn sub_is_pairwise_stable_for_a_member_and_different_per_client_id() {
    // LinkedIn's sub differs per app (pairwise): SPEC, "LinkedIn as it is observed".
    let first = start_sandbox().await;
    let second = RelyingParty::start("sandbox-rp-other", |_| {}).await;
    let sub = |answer: &Value| claims_of(answer)["sub"].as_str().unwrap().to_owned();

    let ada = first.tokens("Ada-pairwise", SCOPE).await;
    let ada_sub = sub(&ada);
    assert_eq!(ada_sub.len(), 10, "{ada_sub}");
    assert!(
        ada_sub
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{ada_sub}"
    );
    assert_ne!(ada_sub, "Ada-pairwise");
    assert_eq!(
        first.userinfo(access_token(&ada)).await.1["sub"],
        ada_sub.as_str()
    );
    assert_eq!(sub(&first.tokens("Ada-pairwise", SCOPE).await), ada_sub);
    assert_ne!(sub(&first.tokens("Grace-pairwise", SCOPE).await), ada_sub);

    let elsewhere = second.tokens("Ada-pairwise", SCOPE).await;
    assert_ne!(sub(&elsewhere), ada_sub, "another client id, another sub");
    assert_eq!(
        second.userinfo(access_token(&elsewhere)).await.1["sub"],
        sub(&elsewhere).as_str()
    );
}

#[tokio::test]
async fn the_browser_is_sent_to_the_first_public_origin_and_may_return_to_the_redirect_uri() {
    // The browser-facing URL (the consent page) is on the first PUBLIC_ORIGIN; the server's
    // own calls stay where it reaches itself; the consent form may lead to the registered
    // redirect URI, on another origin.
    let sandbox = RelyingParty::start(SANDBOX_CLIENT_ID, |config| {
        config.listen.public_origin = Some("https://login.example, https://localhost:1".into());
        config.oidc.redirect_url = Some(
            "https://app.example:8443/auth/linkedin/callback"
                .parse()
                .unwrap(),
        );
    })
    .await;
    let discovery = sandbox.discovery().await;
    assert_eq!(
        discovery["authorization_endpoint"], "https://login.example/sandbox/oauth/v2/authorization",
        "{discovery}"
    );
    let own = sandbox.app.url("/sandbox");
    assert_eq!(discovery["issuer"], format!("{own}/oauth"));
    assert_eq!(
        discovery["token_endpoint"],
        format!("{own}/oauth/v2/accessToken")
    );
    assert_eq!(discovery["jwks_uri"], format!("{own}/oauth/openid/jwks"));
    assert_eq!(discovery["userinfo_endpoint"], format!("{own}/v2/userinfo"));

    // The service sends the browser there too.
    let authorization = start(&sandbox.app, &sandbox.browser).await;
    assert_eq!(
        authorization.origin().ascii_serialization(),
        "https://login.example",
        "{authorization}"
    );
    assert_eq!(authorization.path(), "/sandbox/oauth/v2/authorization");

    // The consent page (reached here directly) lets its form lead to the redirect URI.
    let mut page = Url::parse(&sandbox.app.url("/sandbox/oauth/v2/authorization")).unwrap();
    page.set_query(authorization.query());
    let response = sandbox.browser.get(page).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let form_action = policy
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("form-action"))
        .unwrap_or_else(|| panic!("no form-action in {policy}"));
    assert_eq!(
        form_action, "form-action 'self' https://app.example:8443",
        "{policy}"
    );
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let html = response.text().await.unwrap();
    assert!(
        html.contains(r#"<link rel="icon" href="data:,">"#),
        "{html}"
    );
    // The app's own pages keep the app's policy.
    let login = sandbox.app.get("/").await;
    let app_policy = login.headers()["content-security-policy"].to_str().unwrap();
    assert!(app_policy.contains("form-action 'self';"), "{app_policy}");
}

#[tokio::test]
async fn sandbox_member_on_the_page_reaches_the_openid_connect_sign_in() {
    let sandbox = start_sandbox().await;
    let page = sandbox
        .app
        .get("/?sandbox_member=Grace")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"href="/auth/linkedin?sandbox_member=Grace""#),
        "{page}"
    );
    let page = sandbox.app.get("/").await.text().await.unwrap();
    assert!(page.contains(r#"href="/auth/linkedin""#), "{page}");
    // An invalid one is left off the link, and refused by the sign-in.
    let page = sandbox
        .app
        .get("/?sandbox_member=a%20b")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"href="/auth/linkedin""#), "{page}");
    let refused = sandbox
        .browser
        .get(sandbox.app.url("/auth/linkedin?sandbox_member=a%20b"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(refused).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("sandbox_member"),
        "{body}"
    );

    // The sign-in forwards it to the consent page, which offers that member.
    let response = sandbox
        .browser
        .get(sandbox.app.url("/auth/linkedin?sandbox_member=Grace"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let authorization = location(&response);
    assert_eq!(query(&authorization)["sandbox_member"], "Grace");
    let consent_page = sandbox
        .browser
        .get(authorization.clone())
        .fetch_text()
        .await;
    assert!(consent_page.contains(r#"value="Grace""#), "{consent_page}");
    let callback = consent(&sandbox.browser, &authorization, "allow", "Grace").await;
    assert!(query(&callback).contains_key("code"), "{callback}");
}

#[tokio::test]
async fn sandbox_member_is_ignored_outside_sandbox_mode() {
    // A provider (another server's sandbox) and an app in real mode that signs in there.
    let provider = start_sandbox().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.linkedin.sandbox = Some(false);
    config.oidc.client_id = Some(SANDBOX_CLIENT_ID.into());
    config.oidc.client_secret = Some(Secret::new(CLIENT_SECRET));
    config.oidc.issuer = Some(provider.app.url("/sandbox/oauth").parse().unwrap());
    config.limits.upstream_ca_cert = Some(provider.app.dir.path().join("cert.pem"));
    let app = TestApp::start(config, dir).await;
    let browser = step_by_step(&app);

    let page = app
        .get("/?sandbox_member=Grace")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"href="/auth/linkedin""#), "{page}");
    assert!(!page.contains("sandbox_member"), "{page}");
    for asked in ["Grace", "not%20a%20member"] {
        let response = browser
            .get(app.url(&format!("/auth/linkedin?sandbox_member={asked}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "{asked}");
        let authorization = location(&response);
        assert!(
            authorization
                .as_str()
                .starts_with(&provider.app.url("/sandbox/oauth/v2/authorization")),
            "{authorization}"
        );
        assert!(
            !query(&authorization).contains_key("sandbox_member"),
            "{authorization}"
        );
    }
}

/// The start tag of the element whose `id` is `id` in `html`.
fn start_tag<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let open = html[..at].rfind('<').unwrap();
    let close = at + html[at..].find('>').unwrap();
    &html[open..=close]
}

/// The text of the element whose `id` is `id` (up to its first closing tag).
fn text_of<'a>(html: &'a str, id: &str) -> &'a str {
    let tag = start_tag(html, id);
    let after = html.find(tag).unwrap() + tag.len();
    let end = after + html[after..].find("</").unwrap();
    html[after..end].trim()
}

/// The declarations of the rule for exactly `selector` in `css`.
fn css_rule<'a>(css: &'a str, selector: &str) -> &'a str {
    let start = css
        .lines()
        .find(|line| line.trim_start().starts_with(&format!("{selector} {{")))
        .unwrap_or_else(|| panic!("no rule for `{selector}` in {css}"));
    let open = start.find('{').unwrap();
    let close = start.rfind('}').unwrap();
    &start[open + 1..close]
}

#[tokio::test]
async fn the_page_names_an_openid_connect_member_by_name_not_by_the_pairwise_sub() {
    let sandbox = start_sandbox().await;
    sandbox.sign_in("Named").await;
    let session = sandbox.app.session().await;
    assert_eq!(session["flow"], "oidc", "{session}");
    let sub = session["member_id"].as_str().unwrap().to_owned();
    assert_eq!(sub.len(), 10, "the pairwise sub: {session}");
    let page = sandbox.text("/").await;
    assert_eq!(text_of(&page, "member"), "Sandbox Named", "{page}");
    assert!(!page.contains(&sub), "the page shows the sub {sub}: {page}");
}

#[tokio::test]
async fn the_page_says_which_sign_in_to_use_and_styles_the_two_apart() {
    let sandbox = start_sandbox().await;
    let page = sandbox.text("/").await;
    // OpenID Connect comes first, described as the one to use.
    let oidc = page
        .find(r#"id="oidc-sign-in""#)
        .expect("the OpenID Connect link");
    let jsapi = page.find(r#"type="IN/Login""#).expect("the JSAPI button");
    assert!(oidc < jsapi, "OpenID Connect first: {page}");
    let link = start_tag(&page, "oidc-sign-in");
    assert!(link.contains(r#"aria-describedby="oidc-note""#), "{link}");
    let oidc_note = text_of(&page, "oidc-note");
    assert!(
        oidc_note.contains("current sign-in") && oidc_note.contains("Use this one"),
        "{oidc_note}"
    );
    // The JSAPI button is said to be the retired flow, for the sites that still have it.
    let jsapi_note = text_of(&page, "jsapi-note");
    assert!(
        jsapi_note.contains("retired") && jsapi_note.contains("sites that still have it"),
        "{jsapi_note}"
    );
    assert_ne!(oidc_note, jsapi_note);

    // The stylesheet draws the JSAPI button (which the script renders as `button.in-login`
    // after the OpenID Connect choice) as a secondary one: white, not LinkedIn blue.
    let css = sandbox.text("/static/app.css").await;
    let primary = css_rule(&css, ".in-login");
    assert!(primary.contains("background: #0a66c2"), "{primary}");
    let secondary = css_rule(&css, "#oidc-choice ~ #login .in-login");
    assert!(
        secondary.contains("background: #fff") && secondary.contains("color: #0a66c2"),
        "{secondary}"
    );
    assert!(page.contains(r#"id="oidc-choice""#), "{page}");
}

#[tokio::test]
async fn the_consent_pages_member_field_is_styled_by_the_stylesheet_it_links() {
    let sandbox = start_sandbox().await;
    let page = sandbox.authorization(SCOPE, &[]).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<link rel="stylesheet" href="/static/app.css">"#),
        "{html}"
    );
    let input = start_tag(&html, "sandbox-member");
    assert!(input.contains(r#"class="field""#), "{input}");
    let cancel = start_tag(&html, "cancel");
    assert!(cancel.contains(r#"class="secondary""#), "{cancel}");
    let css = sandbox.text("/static/app.css").await;
    let field = css_rule(&css, ".field");
    for declaration in ["border:", "padding:", "border-radius:", "font: inherit"] {
        assert!(field.contains(declaration), "{declaration} in {field}");
    }
    let secondary = css_rule(&css, ".secondary");
    assert!(secondary.contains("background: #fff"), "{secondary}");
}

#[tokio::test]
async fn invalid_client_says_linkedin_wants_client_secret_post_when_the_secret_is_not_in_the_form()
{
    let sandbox = start_sandbox().await;
    let token_url = sandbox.app.url("/sandbox/oauth/v2/accessToken");
    let form = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", sandbox.redirect_uri()),
            ("client_id", SANDBOX_CLIENT_ID.to_owned()),
        ]
    };
    let code = sandbox.code_for("basic-member").await;
    // HTTP Basic (client_secret_basic), as most OAuth libraries send by default.
    let basic = sandbox
        .browser
        .post(&token_url)
        .basic_auth(SANDBOX_CLIENT_ID, Some(CLIENT_SECRET))
        .form(&form(&code))
        .send()
        .await
        .unwrap();
    let no_secret = sandbox
        .browser
        .post(&token_url)
        .form(&form(&code))
        .send()
        .await
        .unwrap();
    for (how, response) in [("basic", basic), ("no secret", no_secret)] {
        let (status, body) = json_of(response).await;
        assert_eq!(status, 401, "{how}: {body}");
        // LinkedIn's JSON error shape, and nothing else.
        assert_eq!(body["error"], "invalid_client", "{how}: {body}");
        let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["error", "error_description"], "{how}: {body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.contains("client_secret_post")
                && description.contains("client_id and client_secret in the form body"),
            "{how}: {description}"
        );
    }
    // The code was not spent: the same request with the secret in the form is good.
    let (status, answer) = sandbox.trade(&code, &[]).await;
    assert_eq!(status, 200, "{answer}");
    // A wrong secret in the form is LinkedIn's plain answer.
    let code = sandbox.code_for("basic-member").await;
    let (status, body) = sandbox.trade(&code, &[("client_secret", "wrong")]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error_description"], "Client authentication failed");
}
