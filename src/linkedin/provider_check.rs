//! I/O: `linkedin-token-exchange check-provider`, the check a person runs before going live.
//!
//! It fetches the configured issuer's discovery document and key set, reads them as the
//! relying party ([`super::oidc`]) will, and says in one line per subject what the service
//! will do with this provider and what will fail. The document is looked at as JSON too, so
//! that a field the crate would silently default (no auth methods, no scopes) is named.

use std::fmt;

use openidconnect::core::CoreJsonWebKeySet;
use serde_json::Value;
use url::Url;

use super::oidc::{ACCEPTED_ALGS, Metadata};
use crate::config::PkceMode;

/// How one line of the report ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Works.
    Ok,
    /// Works, with something the operator should know.
    Warn,
    /// Will fail.
    Fail,
}

/// One line of the report: a subject and what was found.
#[derive(Clone, Debug)]
pub struct Finding {
    /// Whether it will work.
    pub verdict: Verdict,
    /// What it is about (`issuer`, `jwks`, `scopes`, …).
    pub subject: &'static str,
    /// What was found, for a person.
    pub text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{verdict} {}: {}", self.subject, self.text)
    }
}

/// What the check needs from the configuration.
#[derive(Clone, Debug)]
pub struct CheckSettings {
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
pub struct Report(pub Vec<Finding>);

impl Report {
    fn push(&mut self, verdict: Verdict, subject: &'static str, text: impl Into<String>) {
        self.0.push(Finding {
            verdict,
            subject,
            text: text.into(),
        });
    }

    /// How many lines say something will fail.
    pub fn problems(&self) -> usize {
        self.0.iter().filter(|f| f.verdict == Verdict::Fail).count()
    }
}

/// Fetches discovery and the key set with `http` and checks them against `settings`.
pub async fn check(http: &reqwest::Client, settings: &CheckSettings) -> Report {
    let mut report = Report::default();
    let issuer = settings.issuer.as_str().trim_end_matches('/');
    let discovery_url = format!("{issuer}/.well-known/openid-configuration");
    let document = match fetch_json(http, &discovery_url).await {
        Ok(document) => document,
        Err(why) => {
            report.push(
                Verdict::Fail,
                "discovery",
                format!("{discovery_url}: {why}"),
            );
            return report;
        }
    };
    let metadata: Metadata = match serde_json::from_value(document.clone()) {
        Ok(metadata) => metadata,
        Err(err) => {
            report.push(
                Verdict::Fail,
                "discovery",
                format!("{discovery_url} does not read as OpenID Connect discovery: {err}"),
            );
            return report;
        }
    };
    report.push(Verdict::Ok, "discovery", discovery_url);

    let named = metadata.issuer().as_str();
    if named == settings.issuer.as_str() {
        report.push(Verdict::Ok, "issuer", named);
    } else {
        report.push(
            Verdict::Fail,
            "issuer",
            format!(
                "discovery names {named}, but LINKEDIN_OIDC_ISSUER is {} (every id_token would be refused: the issuer must match exactly)",
                settings.issuer
            ),
        );
    }

    check_keys(&mut report, http, metadata.jwks_uri().url().as_str()).await;
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
        Some(endpoint) => report.push(Verdict::Ok, "userinfo", endpoint.url().as_str()),
        None => report.push(
            Verdict::Fail,
            "userinfo",
            "discovery names no userinfo_endpoint: GET /me would fail for OpenID Connect sessions",
        ),
    }
    report
}

async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http.get(url).send().await.map_err(|err| {
        if err.is_timeout() {
            "no answer within UPSTREAM_TIMEOUT_MS".to_owned()
        } else if err.is_connect() {
            format!("cannot connect ({})", root_cause(&err))
        } else {
            root_cause(&err)
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("answered HTTP {}", status.as_u16()));
    }
    let body = response.bytes().await.map_err(|err| root_cause(&err))?;
    serde_json::from_slice(&body).map_err(|_| "the answer is not JSON".to_owned())
}

/// The innermost cause of an error, which names what actually went wrong.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

async fn check_keys(report: &mut Report, http: &reqwest::Client, jwks_uri: &str) {
    let document = match fetch_json(http, jwks_uri).await {
        Ok(document) => document,
        Err(why) => {
            report.push(Verdict::Fail, "jwks", format!("{jwks_uri}: {why}"));
            return;
        }
    };
    if let Err(err) = serde_json::from_value::<CoreJsonWebKeySet>(document.clone()) {
        report.push(
            Verdict::Fail,
            "jwks",
            format!("{jwks_uri} does not read as a key set: {err}"),
        );
        return;
    }
    let keys = document["keys"].as_array().cloned().unwrap_or_default();
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
    let described: Vec<String> = signing
        .iter()
        .map(|k| {
            format!(
                "{} {} ({})",
                k["kty"].as_str().unwrap_or("?"),
                k["kid"].as_str().unwrap_or("no kid"),
                k["alg"].as_str().unwrap_or("no alg: taken by kty and kid"),
            )
        })
        .collect();
    report.push(
        Verdict::Ok,
        "jwks",
        format!(
            "{} signature key(s): {}",
            signing.len(),
            described.join(", ")
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
                "discovery lists {:?}; the service accepts only {}",
                listed,
                ACCEPTED_ALGS.join(", ")
            ),
        );
    } else {
        report.push(Verdict::Ok, "algorithms", usable.join(", "));
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
                methods.join(", ")
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
                offered.join(" ")
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
