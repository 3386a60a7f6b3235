//! I/O: `linkedin-token-exchange check-provider`, the check a person runs before going live.
//!
//! It reads the configured issuer's discovery document and key set exactly as a sign-in does
//! (`oidc::probe`: the service's transport, its timeout, its 1 MiB cap on an answer,
//! its checks), so that a provider the service would refuse fails the check with the error a
//! sign-in would get. It then says in one line per subject what the service will do with this
//! provider and what will fail. The document is looked at as JSON too, so that a field the
//! crate would silently default (no auth methods, no scopes) is named.
//!
//! Every piece of the provider's text that is printed is escaped (a `kid` cannot move the
//! cursor or start a line of its own), and a long list is cut after ten items with a
//! count of the rest.

use std::fmt;

use serde_json::Value;
use url::Url;

use super::oidc::{self, ACCEPTED_ALGS, Metadata, Stage};
use super::transport::{Transport, UpstreamError};
use crate::config::PkceMode;
use crate::text::escape_text;

/// How many items of a provider's list are printed; the rest are counted.
const SHOWN: usize = 10;
/// How many characters of one of the provider's values (a `kid`, a scope) are printed.
const VALUE_MAX: usize = 100;

/// How one line of the report ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Works.
    Ok,
    /// Works, with something the operator should know.
    Warn,
    /// Will fail.
    Fail,
}

/// One line of the report: a subject and what was found.
#[derive(Clone, Debug)]
pub(crate) struct Finding {
    /// Whether it will work.
    pub verdict: Verdict,
    /// What it is about (`issuer`, `jwks`, `scopes`, …).
    pub subject: &'static str,
    /// What was found, for a person.
    pub text: String,
}

impl fmt::Display for Finding {
    /// One line: the provider's words in `text` are escaped where they are put in; any
    /// control or invisible character left is escaped here too, so that no line can end or
    /// rewrite another.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{verdict} {}: ", self.subject)?;
        for c in self.text.chars() {
            match c {
                '"' | '\\' | '\'' => write!(f, "{c}")?,
                c => write!(f, "{}", c.escape_debug())?,
            }
        }
        Ok(())
    }
}

/// What the check needs from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct CheckSettings {
    /// `LINKEDIN_OIDC_ISSUER` (or LinkedIn's).
    pub issuer: Url,
    /// The scopes the sign-in will ask for.
    pub scopes: Vec<String>,
    /// `LINKEDIN_OIDC_PKCE`.
    pub pkce: PkceMode,
    /// `LINKEDIN_OIDC_REQUIRE_NONCE`.
    pub require_nonce: bool,
}

/// The whole report, in order.
#[derive(Debug, Default)]
pub(crate) struct Report(pub Vec<Finding>);

impl Report {
    fn push(&mut self, verdict: Verdict, subject: &'static str, text: impl Into<String>) {
        self.0.push(Finding {
            verdict,
            subject,
            text: text.into(),
        });
    }

    /// How many lines say something will fail.
    pub(crate) fn problems(&self) -> usize {
        self.0.iter().filter(|f| f.verdict == Verdict::Fail).count()
    }
}

/// Reads discovery and the key set over `upstream` as a sign-in does and checks them against
/// `settings`.
pub(crate) async fn check(upstream: &Transport, settings: &CheckSettings) -> Report {
    let mut report = Report::default();
    let issuer = settings.issuer.as_str().trim_end_matches('/');
    let discovery_url = format!("{issuer}/.well-known/openid-configuration");
    let probe = oidc::probe(upstream, &settings.issuer).await;
    let mut bodies = probe.bodies.into_iter();
    let (discovery_body, jwks_body) = (bodies.next(), bodies.next());
    // The document as the crate read it, for what a sign-in got past.
    let read = || {
        discovery_body
            .as_deref()
            .and_then(|body| serde_json::from_slice::<Metadata>(body).ok())
    };
    let (metadata, keys) = match probe.outcome {
        Ok(metadata) => (metadata, Ok(jwks_body)),
        Err((Stage::Jwks, err)) => match read() {
            Some(metadata) => (metadata, Err(err)),
            None => return discovery_failed(report, &discovery_url, &err),
        },
        Err((Stage::Issuer, err)) => match read() {
            Some(metadata) => {
                // A sign-in stops here; the key set is read as a refetch would read it, to
                // say what else there is to fix.
                let (keys, body) = oidc::probe_jwks(upstream, &metadata).await;
                (metadata, keys.map(|_| body))
            }
            None => return discovery_failed(report, &discovery_url, &err),
        },
        Err((Stage::Discovery, err)) => return discovery_failed(report, &discovery_url, &err),
    };
    report.push(Verdict::Ok, "discovery", discovery_url);
    let document: Value = discovery_body
        .as_deref()
        .and_then(|body| serde_json::from_slice(body).ok())
        .unwrap_or_default();

    let named = metadata.issuer().as_str();
    if named == settings.issuer.as_str() {
        report.push(Verdict::Ok, "issuer", escape_text(named, 2 * VALUE_MAX));
    } else {
        report.push(
            Verdict::Fail,
            "issuer",
            format!(
                "discovery names {}, but LINKEDIN_OIDC_ISSUER is {} (every id_token would be refused: the issuer must match exactly)",
                escape_text(named, 2 * VALUE_MAX),
                settings.issuer
            ),
        );
    }

    let jwks_uri = escape_text(metadata.jwks_uri().url().as_str(), 2 * VALUE_MAX);
    match keys {
        Ok(body) => {
            let keys: Value = body
                .as_deref()
                .and_then(|body| serde_json::from_slice(body).ok())
                .unwrap_or_default();
            check_keys(&mut report, &jwks_uri, &keys);
        }
        Err(err) => report.push(
            Verdict::Fail,
            "jwks",
            format!("{jwks_uri}: {}", refused(&err)),
        ),
    }
    check_algorithms(&mut report, &document);
    check_auth_methods(&mut report, &document);
    check_pkce(&mut report, &document, settings.pkce);
    report.push(
        if settings.require_nonce {
            Verdict::Warn
        } else {
            Verdict::Ok
        },
        "nonce",
        if settings.require_nonce {
            "sent, and an id_token without one is refused (LINKEDIN_OIDC_REQUIRE_NONCE=true); LinkedIn never echoes it, so against LinkedIn every sign-in would fail"
        } else {
            "sent; an id_token without one is accepted (LinkedIn sends none), a different one is refused"
        },
    );
    check_scopes(&mut report, &document, &settings.scopes);
    match metadata.userinfo_endpoint() {
        Some(endpoint) => report.push(
            Verdict::Ok,
            "userinfo",
            escape_text(endpoint.url().as_str(), 2 * VALUE_MAX),
        ),
        None => report.push(
            Verdict::Fail,
            "userinfo",
            "discovery names no userinfo_endpoint: GET /me would fail for OpenID Connect sessions",
        ),
    }
    report
}

/// The report of a discovery a sign-in could not read: that one line.
fn discovery_failed(mut report: Report, url: &str, err: &UpstreamError) -> Report {
    report.push(
        Verdict::Fail,
        "discovery",
        format!("{url}: {}", refused(err)),
    );
    report
}

/// What a sign-in gets from a provider that failed with `err`: the error, and the answer.
fn refused(err: &UpstreamError) -> String {
    let status = match err {
        UpstreamError::Timeout(_) => 504,
        _ => 502,
    };
    // The provider's words in `err` were escaped where it was made; `Finding`'s display is
    // the net for anything else.
    format!("{err}; sign-ins are answered {status} {}", err.code())
}

/// The first [`SHOWN`] of `items` (the provider's words), each escaped and cut to
/// [`VALUE_MAX`] characters, joined by `separator`, then how many more there are.
fn summarised(items: &[&str], separator: &str) -> String {
    list(
        items
            .iter()
            .take(SHOWN)
            .map(|item| escape_text(item, VALUE_MAX)),
        items.len(),
        separator,
    )
}

/// `shown` (already escaped) joined by `separator`, then how many of `total` it leaves out.
fn list(shown: impl Iterator<Item = String>, total: usize, separator: &str) -> String {
    let shown: Vec<String> = shown.collect();
    let mut text = shown.join(separator);
    if total > shown.len() {
        text.push_str(separator);
        text.push_str("and ");
        text.push_str(&thousands(total - shown.len()));
        text.push_str(" more");
    }
    text
}

/// `n` with a comma every three digits: `9,990`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The signature keys of the key set the service read (`keys`, from `jwks_uri`).
fn check_keys(report: &mut Report, jwks_uri: &str, keys: &Value) {
    let keys = keys["keys"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let signing: Vec<&Value> = keys
        .iter()
        .filter(|k| matches!(k["kty"].as_str(), Some("RSA" | "EC" | "OKP")))
        .filter(|k| k["use"].as_str().is_none_or(|u| u == "sig"))
        .collect();
    if signing.is_empty() {
        report.push(
            Verdict::Fail,
            "jwks",
            format!("{jwks_uri} holds no signature key (RSA, EC or OKP)"),
        );
        return;
    }
    let field = |key: &Value, name: &str, missing: &str| {
        key[name]
            .as_str()
            .map_or_else(|| missing.to_owned(), |v| escape_text(v, VALUE_MAX))
    };
    let described = signing.iter().take(SHOWN).map(|k| {
        format!(
            "{} {} ({})",
            field(k, "kty", "?"),
            field(k, "kid", "no kid"),
            field(k, "alg", "no alg: taken by kty and kid"),
        )
    });
    report.push(
        Verdict::Ok,
        "jwks",
        format!(
            "{} signature key(s): {}",
            thousands(signing.len()),
            list(described, signing.len(), ", ")
        ),
    );
}

fn strings<'a>(document: &'a Value, field: &str) -> Option<Vec<&'a str>> {
    document[field]
        .as_array()
        .map(|values| values.iter().filter_map(Value::as_str).collect())
}

fn check_algorithms(report: &mut Report, document: &Value) {
    let listed = strings(document, "id_token_signing_alg_values_supported").unwrap_or_default();
    let usable: Vec<&str> = listed
        .iter()
        .copied()
        .filter(|alg| ACCEPTED_ALGS.contains(alg))
        .collect();
    if usable.is_empty() {
        report.push(
            Verdict::Fail,
            "algorithms",
            format!(
                "discovery lists {}; the service accepts only {}",
                if listed.is_empty() {
                    "none".to_owned()
                } else {
                    summarised(&listed, ", ")
                },
                ACCEPTED_ALGS.join(", ")
            ),
        );
    } else {
        report.push(Verdict::Ok, "algorithms", summarised(&usable, ", "));
    }
}

fn check_auth_methods(report: &mut Report, document: &Value) {
    match strings(document, "token_endpoint_auth_methods_supported") {
        None => report.push(
            Verdict::Ok,
            "auth method",
            "client_secret_post (discovery lists no token_endpoint_auth_methods_supported, as LinkedIn's; the secret goes in the form)",
        ),
        Some(methods) if methods.contains(&"client_secret_post") => {
            report.push(Verdict::Ok, "auth method", "client_secret_post")
        }
        Some(methods) => report.push(
            Verdict::Fail,
            "auth method",
            format!(
                "the service sends client_secret_post; discovery lists only {}",
                summarised(&methods, ", ")
            ),
        ),
    }
}

fn check_pkce(report: &mut Report, document: &Value, mode: PkceMode) {
    let offered = strings(document, "code_challenge_methods_supported")
        .is_some_and(|methods| methods.contains(&"S256"));
    let (verdict, text) = match (mode, offered) {
        (PkceMode::Auto, true) => (
            Verdict::Ok,
            "S256 (LINKEDIN_OIDC_PKCE=auto; discovery lists it)",
        ),
        (PkceMode::Auto, false) => (
            Verdict::Ok,
            "not sent (LINKEDIN_OIDC_PKCE=auto; discovery lists no S256, as LinkedIn's)",
        ),
        (PkceMode::On, true) => (Verdict::Ok, "S256 (LINKEDIN_OIDC_PKCE=on)"),
        (PkceMode::On, false) => (
            Verdict::Warn,
            "S256 sent (LINKEDIN_OIDC_PKCE=on) though discovery lists no S256; LinkedIn answers a web app's code_verifier with 401 invalid_client",
        ),
        (PkceMode::Off, _) => (Verdict::Ok, "not sent (LINKEDIN_OIDC_PKCE=off)"),
    };
    report.push(verdict, "pkce", text);
}

fn check_scopes(report: &mut Report, document: &Value, scopes: &[String]) {
    let Some(offered) = strings(document, "scopes_supported") else {
        report.push(
            Verdict::Warn,
            "scopes",
            format!(
                "{} (discovery lists no scopes_supported: not checked)",
                scopes.join(" ")
            ),
        );
        return;
    };
    let missing: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !offered.contains(s))
        .collect();
    if missing.is_empty() {
        report.push(Verdict::Ok, "scopes", scopes.join(" "));
    } else {
        report.push(
            Verdict::Fail,
            "scopes",
            format!(
                "{} not offered (discovery lists {})",
                missing.join(", "),
                summarised(&offered, " ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verdicts(report: &Report) -> Vec<(Verdict, &'static str)> {
        report.0.iter().map(|f| (f.verdict, f.subject)).collect()
    }

    #[test]
    fn linkedins_discovery_needs_no_auth_methods_and_no_pkce() {
        let linkedin = json!({
            "scopes_supported": ["openid", "profile", "email"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let mut report = Report::default();
        check_algorithms(&mut report, &linkedin);
        check_auth_methods(&mut report, &linkedin);
        check_pkce(&mut report, &linkedin, PkceMode::Auto);
        check_scopes(&mut report, &linkedin, &["openid".into(), "profile".into()]);
        assert_eq!(report.problems(), 0, "{report:?}");
        check_pkce(&mut report, &linkedin, PkceMode::On);
        assert_eq!(report.0.last().map(|f| f.verdict), Some(Verdict::Warn));
    }

    #[test]
    fn counts_have_a_comma_every_three_digits() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (9_990, "9,990"),
            (1_234_567, "1,234,567"),
        ];
        for (n, text) in cases {
            assert_eq!(thousands(n), text);
        }
    }

    #[test]
    fn a_long_list_shows_ten_escaped_items_and_counts_the_rest() {
        let items: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        let items: Vec<&str> = items.iter().map(String::as_str).collect();
        assert_eq!(
            summarised(&items, ", "),
            "k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, and 9,990 more"
        );
        assert_eq!(summarised(&items[..2], " "), "k0 k1");
        assert_eq!(
            summarised(&["a\u{1b}[2K\r\nok   x", &"y".repeat(500)], ", "),
            format!("a\\u{{1b}}[2K\\r\\nok   x, {}", "y".repeat(VALUE_MAX))
        );
    }

    #[test]
    fn a_finding_prints_as_one_line_whatever_its_text_holds() {
        let finding = Finding {
            verdict: Verdict::Ok,
            subject: "jwks",
            text: "RSA \u{1b}[2K\r\nFAIL x\u{2028}\u{202e} \"quoted\" C:\\".into(),
        };
        assert_eq!(
            finding.to_string(),
            r#"ok   jwks: RSA \u{1b}[2K\r\nFAIL x\u{2028}\u{202e} "quoted" C:\"#
        );
    }

    #[test]
    fn a_sign_in_is_answered_504_for_a_timeout_and_502_for_the_rest() {
        assert!(refused(&UpstreamError::Timeout(5_000)).ends_with("504 upstream_timeout"));
        let too_large = refused(&UpstreamError::Malformed(
            "the answer is larger than 1 MiB".into(),
        ));
        assert!(
            too_large.contains("larger than 1 MiB")
                && too_large.ends_with("502 upstream_malformed"),
            "{too_large}"
        );
    }

    #[test]
    fn a_key_set_is_described_escaped_and_summarised() {
        let mut keys =
            vec![json!({"kty": "RSA", "kid": "\u{1b}[31mred\n", "n": "AQAB", "e": "AQAB"})];
        keys.extend((1..25).map(|i| json!({"kty": "EC", "kid": format!("k{i}"), "alg": "ES256"})));
        keys.push(json!({"kty": "oct", "kid": "hmac"}));
        keys.push(json!({"kty": "RSA", "kid": "enc", "use": "enc"}));
        let mut report = Report::default();
        check_keys(&mut report, "https://p/jwks", &json!({ "keys": keys }));
        let line = report.0[0].to_string();
        assert!(
            line.starts_with(
                r"ok   jwks: 25 signature key(s): RSA \u{1b}[31mred\n (no alg: taken by kty and kid), EC k1 (ES256),"
            ),
            "{line}"
        );
        assert!(line.ends_with("EC k9 (ES256), and 15 more"), "{line}");

        let mut report = Report::default();
        check_keys(
            &mut report,
            "https://p/jwks",
            &json!({"keys": [{"kty": "oct"}]}),
        );
        assert_eq!(report.problems(), 1);
    }

    #[test]
    fn scopes_not_offered_algorithms_not_accepted_and_basic_auth_only_fail() {
        let document = json!({
            "scopes_supported": ["openid"],
            "id_token_signing_alg_values_supported": ["HS256", "none"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        });
        let mut report = Report::default();
        check_scopes(
            &mut report,
            &document,
            &["openid".into(), "r_liteprofile".into()],
        );
        check_algorithms(&mut report, &document);
        check_auth_methods(&mut report, &document);
        assert_eq!(
            verdicts(&report),
            [
                (Verdict::Fail, "scopes"),
                (Verdict::Fail, "algorithms"),
                (Verdict::Fail, "auth method")
            ]
        );
        assert!(report.0[0].text.contains("r_liteprofile"), "{report:?}");
    }
}
