//! Forward authentication: `AUTH_CHECK_ALLOW` (the rule of a check whose auth URL names none),
//! `ASSERTION` (a signed identity on every 200) and its keys (`ASSERTION_KEYS`, or the file a
//! key is generated into). The rule's grammar ([`AccessRule`]) and whom it admits are here,
//! since a rule is parsed from the environment at start and from the proxy's auth URL at each
//! check; signing is `assertion`'s, the check itself `handlers::auth_check`'s.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The most terms one rule may have: a rule is written by hand in a proxy's configuration.
const MAX_TERMS: usize = 64;

/// One term of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    /// `member:ID`: this member id, exactly.
    Member(String),
    /// `email:ADDRESS`: this address (compared without regard to ASCII case).
    Email(String),
    /// `email:@DOMAIN`: an address at this domain (without regard to ASCII case), not at a
    /// subdomain of it.
    EmailDomain(String),
    /// `flow:jsapi` or `flow:oidc`: members signed in by this flow.
    Flow(String),
}

/// A rule of `/auth/check`: `RULE[,RULE…]`, where a term is `member:ID`, `email:ADDRESS`,
/// `email:@DOMAIN` or `flow:jsapi|oidc`; a member matching any term passes. Kept as written,
/// for the `X-Auth-Request-Denied` header that names the rule a member failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRule {
    terms: Vec<Term>,
    written: String,
}

impl AccessRule {
    /// Whether the member (`member_id`, `email` when known, `flow` as `jsapi` or `oidc`) passes.
    pub fn admits(&self, member_id: &str, email: Option<&str>, flow: &str) -> bool {
        self.terms.iter().any(|term| match term {
            Term::Member(id) => id == member_id,
            Term::Email(address) => email.is_some_and(|e| e.eq_ignore_ascii_case(address)),
            Term::EmailDomain(domain) => email
                .and_then(|e| e.rsplit_once('@'))
                .is_some_and(|(_, at)| at.eq_ignore_ascii_case(domain)),
            Term::Flow(f) => f == flow,
        })
    }

    /// The rule as it was written (terms trimmed, joined by `,`).
    pub fn as_str(&self) -> &str {
        &self.written
    }
}

impl fmt::Display for AccessRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl FromStr for AccessRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut terms = Vec::new();
        let mut written = Vec::new();
        for raw in s.split(',').map(str::trim) {
            if raw.is_empty() {
                return Err("a rule has an empty term (two commas, or one at an end)".into());
            }
            if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!(
                    "the term {} holds a space or a control character",
                    quoted(raw)
                ));
            }
            let (kind, value) = raw.split_once(':').unwrap_or((raw, ""));
            let term = match (kind, value) {
                (_, "") => None,
                ("member", id) => Some(Term::Member(id.to_owned())),
                ("email", domain) if domain.starts_with('@') => {
                    let domain = &domain[1..];
                    (!domain.is_empty() && !domain.contains('@'))
                        .then(|| Term::EmailDomain(domain.to_owned()))
                }
                ("email", address) => address
                    .split_once('@')
                    .filter(|(local, domain)| !local.is_empty() && !domain.is_empty())
                    .map(|_| Term::Email(address.to_owned())),
                ("flow", flow @ ("jsapi" | "oidc")) => Some(Term::Flow(flow.to_owned())),
                _ => None,
            };
            let term = term.ok_or_else(|| {
                format!(
                    "the term {} is not member:ID, email:ADDRESS, email:@DOMAIN, flow:jsapi \
                     or flow:oidc",
                    quoted(raw)
                )
            })?;
            terms.push(term);
            written.push(raw);
        }
        if terms.len() > MAX_TERMS {
            return Err(format!("a rule has at most {MAX_TERMS} terms"));
        }
        Ok(Self {
            terms,
            written: written.join(","),
        })
    }
}

/// `text`, quoted, escaped and cut, for an error message.
fn quoted(text: &str) -> String {
    let cut: String = text.chars().take(80).collect();
    format!("{cut:?}")
}

/// Forward authentication's settings.
#[cfg(feature = "server")]
#[derive(clap::Args, Clone, Debug)]
pub struct ForwardAuth {
    /// The rule of a `/auth/check` whose URL names none (`?allow=`): a comma list of
    /// `member:ID`, `email:ADDRESS`, `email:@DOMAIN`, `flow:jsapi|oidc`; a member matching any
    /// passes, others get 403. Unset: every signed-in member passes.
    #[arg(
        long = "auth-check-allow",
        env = "AUTH_CHECK_ALLOW",
        value_name = "AUTH_CHECK_ALLOW"
    )]
    pub allow: Option<AccessRule>,

    /// `on`: every 200 of `/auth/check` carries `X-Auth-Request-Assertion`, a signed JWT
    /// (ES256) naming the member, whose keys are at `/.well-known/jwks.json`.
    #[arg(
        long = "assertion",
        env = "ASSERTION",
        value_name = "ASSERTION",
        default_value = "off",
        value_parser = parse_on_off
    )]
    pub assertion: bool,

    /// The assertion's keys: a comma list of PEM files of P-256 private keys (PKCS#8 or SEC1);
    /// the first signs, every one is published. Unset: a key generated into
    /// `ASSERTION_KEY_FILE` (memory and SQLite stores only).
    #[arg(
        long = "assertion-keys",
        env = "ASSERTION_KEYS",
        value_name = "ASSERTION_KEYS",
        value_delimiter = ','
    )]
    pub assertion_keys: Vec<PathBuf>,

    /// Where the generated assertion key is kept when `ASSERTION_KEYS` is unset.
    #[arg(
        long = "assertion-key-file",
        env = "ASSERTION_KEY_FILE",
        value_name = "ASSERTION_KEY_FILE",
        default_value = "data/assertion-key.pem"
    )]
    pub assertion_key_file: PathBuf,
}

/// `on`/`off` (also `true`/`false`).
#[cfg(feature = "server")]
fn parse_on_off(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> AccessRule {
        s.parse().expect("a rule")
    }

    #[test]
    fn a_member_matching_any_term_passes() {
        let r = rule("member:abc, email:Ann@Example.com,email:@corp.example,flow:oidc");
        assert_eq!(
            r.as_str(),
            "member:abc,email:Ann@Example.com,email:@corp.example,flow:oidc"
        );
        assert!(r.admits("abc", None, "jsapi"));
        assert!(r.admits("x", Some("ann@example.COM"), "jsapi"));
        assert!(r.admits("x", Some("bob@CORP.example"), "jsapi"));
        assert!(r.admits("x", None, "oidc"));
        assert!(!r.admits("abcd", None, "jsapi"));
        assert!(!r.admits("x", Some("bob@sub.corp.example"), "jsapi"));
        assert!(!r.admits("x", Some("bob@corp.example.evil"), "jsapi"));
        assert!(!r.admits("x", Some("corp.example@evil.example"), "jsapi"));
        assert!(!r.admits("x", None, "jsapi"));
    }

    #[test]
    fn a_rule_with_a_term_of_no_known_kind_or_no_value_is_refused() {
        for bad in [
            "",
            "member:",
            "member",
            "flow:saml",
            "email:ann",
            "email:@",
            "email:@a@b",
            "group:admins",
            "member:a,,member:b",
            "member:a b",
            "member:a\u{7}",
        ] {
            assert!(bad.parse::<AccessRule>().is_err(), "{bad:?}");
        }
        let long = vec!["member:a"; MAX_TERMS + 1].join(",");
        assert!(long.parse::<AccessRule>().is_err());
    }
}
