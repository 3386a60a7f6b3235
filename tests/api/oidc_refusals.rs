//! OpenID Connect sign-ins that must fail, against a provider that misbehaves on purpose:
//! every refusal answers the code SPEC names and leaves the browser's session as it was.
//! Each refusal runs against both of the test provider's profiles (`documented::…` and
//! `observed::…`, see `support::oidc_provider`): a check that holds only against the
//! docs-shaped provider would not hold against LinkedIn.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::oidc::{query, start, step_by_step_with};
use crate::support::oidc_provider::{
    CLIENT_ID, CLIENT_SECRET, Profile, Provider, Rig, Signing, TIMEOUT_MS, TokenAnswer, s256,
    unix_now,
};

/// Runs each named test body (`async fn name(profile: Profile)`) once against each profile
/// of the test provider, as `documented::name` and `observed::name`.
macro_rules! against_both_providers {
    ($($name:ident),* $(,)?) => {
        mod documented {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Profile::Documented).await;
                }
            )*
        }
        mod observed {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Profile::Observed).await;
                }
            )*
        }
    };
}

against_both_providers!(
    an_id_token_from_another_issuer_or_linkedins_old_pathless_issuer_is_refused,
    an_id_token_for_another_audience_is_refused,
    an_id_token_expired_two_minutes_ago_is_refused,
    an_id_token_issued_more_than_a_minute_in_the_future_is_refused,
    an_id_token_signed_with_a_key_the_jwks_does_not_hold_is_refused,
    an_unsigned_id_token_with_alg_none_is_refused,
    an_hs256_id_token_keyed_with_the_providers_public_key_is_refused,
    an_unknown_kid_is_accepted_after_exactly_one_more_jwks_fetch,
    a_kid_still_unknown_after_one_refetch_is_refused_without_another,
    a_failed_jwks_refetch_answers_every_callback_within_the_cooldown_502_without_fetching_again,
    a_nonce_other_than_the_one_sent_is_refused,
    a_missing_nonce_is_accepted_by_default,
    a_missing_nonce_is_refused_with_linkedin_oidc_require_nonce,
    a_missing_forged_foreign_or_replayed_state_is_a_state_mismatch_before_any_exchange,
    a_cancelled_login_is_oidc_denied_naming_the_providers_error,
    a_code_the_token_endpoint_refuses_is_upstream_rejected_naming_invalid_grant,
    a_token_endpoint_failing_with_500_is_upstream_unavailable,
    a_token_endpoint_answering_garbage_is_upstream_malformed,
    a_token_endpoint_slower_than_the_upstream_timeout_is_upstream_timeout,
    a_code_used_twice_is_upstream_rejected_the_second_time,
);

// ---------------------------------------------------------------------------------------
// The id_token.

async fn an_id_token_from_another_issuer_or_linkedins_old_pathless_issuer_is_refused(
    profile: Profile,
) {
    let rig = Rig::signed_in(profile).await;
    for issuer in [
        "https://evil.example/oauth".to_owned(),
        rig.provider.origin(),
        format!("{}/", rig.provider.issuer),
    ] {
        rig.provider.claim("iss", json!(issuer));
        rig.id_token_refused("issuer").await;
    }
}

async fn an_id_token_for_another_audience_is_refused(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    rig.provider.claim("aud", json!("another-client"));
    rig.id_token_refused("audience").await;
    rig.provider.claim("aud", json!(["another-client"]));
    rig.id_token_refused("audience").await;
}

async fn an_id_token_expired_two_minutes_ago_is_refused(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    let now = unix_now();
    rig.provider.claim("iat", json!(now - 3_720));
    rig.provider.claim("exp", json!(now - 120));
    rig.id_token_refused("expired").await;
}

async fn an_id_token_issued_more_than_a_minute_in_the_future_is_refused(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    for ahead in [120, 86_400] {
        let iat = unix_now() + ahead;
        rig.provider.claim("iat", json!(iat));
        rig.provider.claim("exp", json!(iat + 3_600));
        rig.id_token_refused("issued in the future").await;
    }
}

async fn an_id_token_signed_with_a_key_the_jwks_does_not_hold_is_refused(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    rig.provider.set(|k| k.signing = Signing::OtherKey);
    rig.id_token_refused("signature").await;
}

async fn an_unsigned_id_token_with_alg_none_is_refused(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    rig.provider.set(|k| k.signing = Signing::Unsigned);
    rig.id_token_refused("signature").await;
}

async fn an_hs256_id_token_keyed_with_the_providers_public_key_is_refused(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    rig.provider
        .set(|k| k.signing = Signing::Hs256WithPublicKey);
    rig.id_token_refused("signature").await;
}

async fn an_unknown_kid_is_accepted_after_exactly_one_more_jwks_fetch(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    let fetched = rig.provider.jwks_fetches();
    assert_eq!(fetched, 1, "discovery fetched the key set once");
    rig.provider.set(|k| {
        k.signing = Signing::Rotated;
        k.rotated_from_fetch = Some(fetched + 1);
    });

    let response = rig.round().await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(rig.provider.jwks_fetches(), fetched + 1, "one refetch");
    assert_eq!(rig.app.session().await["member_id"], "member-b");
    let me: Value = rig.app.get("/me").await.json().await.unwrap();
    assert_eq!(me["sub"], "member-b", "{me}");

    // The refetched set is kept: the next sign-in with the new key fetches nothing.
    rig.provider.set(|k| k.sub = "member-c".into());
    let response = rig.round().await;
    assert_eq!(response.status(), 303);
    assert_eq!(rig.provider.jwks_fetches(), fetched + 1, "no fetch");
}

async fn a_kid_still_unknown_after_one_refetch_is_refused_without_another(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    rig.provider.set(|k| k.signing = Signing::Rotated);
    let fetched = rig.provider.jwks_fetches();
    rig.id_token_refused("kid").await;
    assert_eq!(
        rig.provider.jwks_fetches(),
        fetched + 1,
        "exactly one refetch"
    );
}

/// A key-set refetch that fails (the provider answers 500) is the failure for every callback
/// within the refetch cooldown, not "no key matches its kid": those callbacks are answered
/// as the first was, and the key set is not fetched again (at most one fetch per 60 s).
async fn a_failed_jwks_refetch_answers_every_callback_within_the_cooldown_502_without_fetching_again(
    profile: Profile,
) {
    let rig = Rig::signed_in(profile).await;
    let fetched = rig.provider.jwks_fetches();
    rig.provider.set(|k| {
        k.signing = Signing::Rotated;
        k.jwks_status = Some(500);
    });
    rig.refused(502, "upstream_unavailable", rig.round()).await;
    assert_eq!(rig.provider.jwks_fetches(), fetched + 1, "one refetch");
    for _ in 0..2 {
        let message = rig.refused(502, "upstream_unavailable", rig.round()).await;
        assert!(!message.contains("kid"), "{message:?}");
        assert_eq!(
            rig.provider.jwks_fetches(),
            fetched + 1,
            "no fetch within the cooldown"
        );
    }
    // The provider answers again, but the cooldown still holds: the failure stands until it
    // ends, and nothing is fetched.
    rig.provider.set(|k| k.jwks_status = None);
    rig.refused(502, "upstream_unavailable", rig.round()).await;
    assert_eq!(rig.provider.jwks_fetches(), fetched + 1);
}

/// A `nonce` in the id_token must be the one this sign-in sent, whether or not the provider
/// usually echoes it (LinkedIn never does; an id_token with a stranger's nonce is a replay).
async fn a_nonce_other_than_the_one_sent_is_refused(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    rig.provider.claim("nonce", json!("not-the-nonce"));
    rig.id_token_refused("nonce").await;
}

/// LinkedIn never echoes the nonce (see `oidc_observed`): by default, an id_token without one
/// is accepted, from either provider.
async fn a_missing_nonce_is_accepted_by_default(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    rig.provider.set(|k| k.echo_nonce = false);
    let response = rig.round().await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(rig.app.session().await["member_id"], "member-b");
}

/// `LINKEDIN_OIDC_REQUIRE_NONCE=true`, for providers that echo it: an id_token without a
/// nonce is refused, and nothing is stored.
async fn a_missing_nonce_is_refused_with_linkedin_oidc_require_nonce(profile: Profile) {
    let provider = Provider::start(profile).await;
    // Even the observed provider echoes it here, for the first, good round.
    provider.set(|k| k.echo_nonce = true);
    let rig = Rig::start(provider, |config| config.oidc.require_nonce = true)
        .await
        .after_a_good_round()
        .await;
    rig.provider.set(|k| k.echo_nonce = false);
    rig.id_token_refused("nonce").await;
}

// ---------------------------------------------------------------------------------------
// The callback's parameters.

async fn a_missing_forged_foreign_or_replayed_state_is_a_state_mismatch_before_any_exchange(
    profile: Profile,
) {
    let rig = Rig::signed_in(profile).await;
    let exchanged = rig.provider.token_requests().len();
    let missing = rig.tampered_round(|q| {
        q.remove("state");
    });
    rig.refused(400, "oidc_state_mismatch", missing).await;
    let forged = rig.tampered_round(|q| {
        q.insert("state".into(), "forged-state".into());
    });
    rig.refused(400, "oidc_state_mismatch", forged).await;

    // A state issued to another browser is unknown to this one.
    let theirs = step_by_step_with(&rig.app, Arc::default());
    let their_callback = rig.consent(&start(&rig.app, &theirs).await).await;
    rig.refused(400, "oidc_state_mismatch", rig.callback(&their_callback))
        .await;
    assert_eq!(
        rig.provider.token_requests().len(),
        exchanged,
        "no code traded"
    );

    // A state that succeeded once, used again.
    let back = rig.authorize_and_consent().await;
    let response = rig.callback(&back).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(rig.app.session().await["member_id"], "member-b");
    rig.refused(400, "oidc_state_mismatch", rig.callback(&back))
        .await;
    assert_eq!(rig.provider.token_requests().len(), exchanged + 1);
}

async fn a_cancelled_login_is_oidc_denied_naming_the_providers_error(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    let message = rig
        .refused(
            400,
            "oidc_denied",
            rig.tampered_round(|q| {
                q.remove("code");
                q.insert("error".into(), "user_cancelled_login".into());
                q.insert(
                    "error_description".into(),
                    "The user cancelled LinkedIn login".into(),
                );
            }),
        )
        .await;
    assert!(message.contains("user_cancelled_login"), "{message}");
}

// ---------------------------------------------------------------------------------------
// The token endpoint.

async fn a_code_the_token_endpoint_refuses_is_upstream_rejected_naming_invalid_grant(
    profile: Profile,
) {
    let rig = Rig::signed_in(profile).await;
    rig.provider.set(|k| {
        k.token = TokenAnswer::Status(
            400,
            r#"{"error":"invalid_grant","error_description":"The code has expired"}"#,
        );
    });
    let message = rig.refused(502, "upstream_rejected", rig.round()).await;
    assert!(message.contains("invalid_grant"), "{message}");
}

async fn a_token_endpoint_failing_with_500_is_upstream_unavailable(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    rig.provider
        .set(|k| k.token = TokenAnswer::Status(500, r#"{"error":"server_error"}"#));
    rig.refused(502, "upstream_unavailable", rig.round()).await;
}

async fn a_token_endpoint_answering_garbage_is_upstream_malformed(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    rig.provider
        .set(|k| k.token = TokenAnswer::Status(200, r#"{"access_token": "#));
    rig.refused(502, "upstream_malformed", rig.round()).await;
}

async fn a_token_endpoint_slower_than_the_upstream_timeout_is_upstream_timeout(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    let late = Duration::from_millis(TIMEOUT_MS * 3);
    rig.provider.set(|k| k.token = TokenAnswer::Slow(late));
    let started = std::time::Instant::now();
    rig.refused(504, "upstream_timeout", rig.round()).await;
    assert!(started.elapsed() < late, "{:?}", started.elapsed());
}

async fn a_code_used_twice_is_upstream_rejected_the_second_time(profile: Profile) {
    let rig = Rig::signed_in(profile).await;
    let first = rig.authorize_and_consent().await;
    let response = rig.callback(&first).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let code = query(&first)["code"].clone();

    let message = rig
        .refused(
            502,
            "upstream_rejected",
            rig.tampered_round(|q| {
                q.insert("code".into(), code.clone());
            }),
        )
        .await;
    assert!(message.contains("invalid_grant"), "{message}");
    let traded: Vec<_> = rig
        .provider
        .token_requests()
        .into_iter()
        .filter(|r| r.get("code") == Some(&code))
        .collect();
    assert_eq!(traded.len(), 2, "the same code, twice");
}

// ---------------------------------------------------------------------------------------
// PKCE, against the documented provider (the observed one is in `oidc_observed`).

#[tokio::test]
async fn pkce_s256_is_used_when_discovery_lists_it() {
    let provider = Provider::start(Profile::Documented).await;
    provider.set(|k| k.pkce = true);
    let rig = Rig::start(provider, |_| {}).await;
    let authorization = start(&rig.app, &rig.browser).await;
    let asked = query(&authorization);
    assert_eq!(
        asked.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    let challenge = asked
        .get("code_challenge")
        .expect("a code_challenge")
        .clone();

    let back = rig.consent(&authorization).await;
    let response = rig.callback(&back).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let requests = rig.provider.token_requests();
    let verifier = requests[0].get("code_verifier").expect("a code_verifier");
    assert_eq!(s256(verifier), challenge);
}

#[tokio::test]
async fn pkce_is_left_out_when_discovery_lists_no_method_and_the_secret_goes_in_the_form() {
    let rig = Rig::new(Profile::Documented).await;
    let authorization = start(&rig.app, &rig.browser).await;
    let asked = query(&authorization);
    assert!(!asked.contains_key("code_challenge"), "{authorization}");
    assert!(
        !asked.contains_key("code_challenge_method"),
        "{authorization}"
    );

    let back = rig.consent(&authorization).await;
    let response = rig.callback(&back).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let request = &rig.provider.token_requests()[0];
    assert!(!request.contains_key("code_verifier"), "{request:?}");
    assert_eq!(request["client_id"], CLIENT_ID);
    assert_eq!(request["client_secret"], CLIENT_SECRET);
    assert_eq!(
        request["redirect_uri"],
        rig.app.url("/auth/linkedin/callback")
    );
    assert_eq!(
        rig.provider.token_authorization_headers(),
        vec![None],
        "the secret in the form only"
    );
}
