//! The member's API: `LINKEDIN_API_VERSION` (the `LinkedIn-Version` of `/rest/` calls),
//! `LINKEDIN_API_ALLOW` (what the pass-through forwards) and `PASS_ACCESS_TOKEN` (the
//! forward-auth answer hands an OpenID Connect token on). The values and their parsers
//! ([`ApiVersion`], [`ApiAllow`]) are in every build, for the library's builder; the clap group
//! ([`ApiAccess`]) is the server's. Parsing only: what the values do is `linkedin::api`'s and
//! `handlers::api`'s.

use std::fmt;
use std::str::FromStr;

/// `LINKEDIN_API_VERSION`'s default: a version at most 6 months old at release (LinkedIn
/// keeps a version for about a year, then answers 426 `NONEXISTENT_VERSION`).
pub(crate) const DEFAULT_API_VERSION: &str = "202610";

/// `LINKEDIN_API_ALLOW`'s default: the member's own profile, through either flow, and nothing
/// else.
pub(crate) const DEFAULT_API_ALLOW: &str = "GET /v2/userinfo,GET /v1/people/~";

/// A `LinkedIn-Version`: `YYYYMM` (a month from 2020 on), or `YYYYMM.RR` for a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiVersion(String);

impl ApiVersion {
    /// The header's value.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ApiVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (month, revision) = match s.split_once('.') {
            Some((month, revision)) => (month, Some(revision)),
            None => (s, None),
        };
        let digits =
            |part: &str, n: usize| part.len() == n && part.bytes().all(|b| b.is_ascii_digit());
        let valid = digits(month, 6)
            && revision.is_none_or(|r| digits(r, 2))
            && month[..4].parse::<u16>().is_ok_and(|year| year >= 2020)
            && month[4..]
                .parse::<u8>()
                .is_ok_and(|m| (1..=12).contains(&m));
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err("expected a LinkedIn API version as YYYYMM (202610), or YYYYMM.RR".to_owned())
        }
    }
}

/// A method the pass-through forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl ApiMethod {
    /// `GET`, `POST`, …
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

impl FromStr for ApiMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "GET" => Ok(Self::Get),
            "POST" => Ok(Self::Post),
            "PUT" => Ok(Self::Put),
            "PATCH" => Ok(Self::Patch),
            "DELETE" => Ok(Self::Delete),
            _ => Err(format!(
                "{} is not GET, POST, PUT, PATCH or DELETE",
                quoted(s, 20)
            )),
        }
    }
}

/// `LINKEDIN_API_ALLOW`: a comma list of `METHOD /path-prefix`. `METHOD /<path>` is forwarded
/// when some entry has its method and a prefix of its path that ends where a path segment or
/// a LinkedIn field selector does (so `/v2/me` allows `/v2/me` and `/v2/me/x`, but not
/// `/v2/memberships`; `/v1/people/~` allows `/v1/people/~:(id)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiAllow(Vec<(ApiMethod, String)>);

impl ApiAllow {
    /// Whether `method` (`HEAD` as `GET`) on `path` (which starts with `/`, no query) is
    /// forwarded.
    pub(crate) fn allows(&self, method: &str, path: &str) -> bool {
        let method = if method == "HEAD" { "GET" } else { method };
        self.0.iter().any(|(allowed, prefix)| {
            allowed.as_str() == method
                && path.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                    prefix.ends_with('/')
                        || rest
                            .chars()
                            .next()
                            .is_none_or(|c| !(c.is_ascii_alphanumeric() || "-_.~%".contains(c)))
                })
        })
    }
}

impl fmt::Display for ApiAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|(method, prefix)| format!("{} {prefix}", method.as_str()))
            .collect();
        f.write_str(&entries.join(","))
    }
}

impl FromStr for ApiAllow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut entries = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (method, prefix) = entry
                .split_once(' ')
                .map(|(m, p)| (m.trim(), p.trim()))
                .ok_or_else(|| {
                    format!(
                        "{} is not METHOD /path-prefix, as GET /v2/userinfo",
                        quoted(entry, 80)
                    )
                })?;
            let method = method.to_ascii_uppercase().parse::<ApiMethod>()?;
            let clean = prefix.starts_with('/')
                && !prefix.starts_with("//")
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"?#\\".contains(&b))
                && !prefix
                    .split('/')
                    .any(|segment| segment == ".." || segment == ".");
            if !clean {
                return Err(format!(
                    "{} is not a path prefix: it starts with one /, and has no space, ?, #, \\, . or .. segment",
                    quoted(prefix, 80)
                ));
            }
            entries.push((method, prefix.to_owned()));
        }
        Ok(Self(entries))
    }
}

/// What the member's credentials may be used for.
#[cfg(feature = "server")]
#[derive(clap::Args, Clone, Debug)]
pub struct ApiAccess {
    /// `LinkedIn-Version` sent on `/rest/` calls (YYYYMM); LinkedIn retires a version after
    /// about a year (426 NONEXISTENT_VERSION), so keep it within the last few months.
    #[arg(
        long = "linkedin-api-version",
        env = "LINKEDIN_API_VERSION",
        value_name = "LINKEDIN_API_VERSION",
        default_value = DEFAULT_API_VERSION,
        value_parser = parse_api_version,
    )]
    pub api_version: String,

    /// What `/linkedin/api/…` forwards to LinkedIn with the member's credentials: a comma list
    /// of `METHOD /path-prefix`; anything else is refused (403 api_path_not_allowed) before
    /// LinkedIn is called.
    #[arg(
        long = "linkedin-api-allow",
        env = "LINKEDIN_API_ALLOW",
        value_name = "LINKEDIN_API_ALLOW",
        default_value = DEFAULT_API_ALLOW,
        value_parser = parse_api_allow,
    )]
    pub api_allow: String,

    /// `true`: `/auth/check` adds `X-Auth-Request-Access-Token` (the member's LinkedIn access
    /// token) for an OpenID Connect member, for the app behind the proxy. Read
    /// docs/security.md first.
    #[arg(
        long = "pass-access-token",
        env = "PASS_ACCESS_TOKEN",
        value_name = "PASS_ACCESS_TOKEN",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub pass_access_token: bool,
}

/// `LINKEDIN_API_VERSION`, checked.
#[cfg(feature = "server")]
fn parse_api_version(value: &str) -> Result<String, String> {
    value.parse::<ApiVersion>().map(|v| v.0)
}

/// `LINKEDIN_API_ALLOW`, checked.
#[cfg(feature = "server")]
fn parse_api_allow(value: &str) -> Result<String, String> {
    value.parse::<ApiAllow>().map(|allow| allow.to_string())
}

/// `text`'s first `max` characters, quoted and escaped as Rust's `Debug` does (control and
/// invisible characters as `\u{…}`): a value from the environment, fit for an error line.
fn quoted(text: &str, max: usize) -> String {
    let cut: String = text.chars().take(max).collect();
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_a_month_of_linkedin_s_versioned_apis() {
        for good in ["202610", "202001", "202412.01", " 202610 "] {
            assert!(good.parse::<ApiVersion>().is_ok(), "{good}");
        }
        for bad in [
            "2026-10", "202613", "202600", "201912", "20261", "202610.1", "v202610", "",
        ] {
            assert!(bad.parse::<ApiVersion>().is_err(), "{bad}");
        }
        assert!(DEFAULT_API_VERSION.parse::<ApiVersion>().is_ok());
    }

    #[test]
    fn the_allow_list_matches_method_and_a_prefix_ending_at_a_boundary() {
        let allow: ApiAllow = DEFAULT_API_ALLOW.parse().unwrap();
        assert!(allow.allows("GET", "/v2/userinfo"));
        assert!(allow.allows("HEAD", "/v2/userinfo"));
        assert!(allow.allows("GET", "/v1/people/~"));
        assert!(allow.allows("GET", "/v1/people/~:(id,first-name)"));
        assert!(!allow.allows("POST", "/v2/userinfo"));
        assert!(!allow.allows("GET", "/v2/userinfoX"));
        assert!(!allow.allows("GET", "/v2/me"));
        assert!(!allow.allows("GET", "/rest/posts"));
        let allow: ApiAllow = "get /v2/me, POST /rest/posts/".parse().unwrap();
        assert!(allow.allows("GET", "/v2/me"));
        assert!(allow.allows("GET", "/v2/me/x"));
        assert!(!allow.allows("GET", "/v2/memberships"));
        assert!(!allow.allows("GET", "/v2/me%2Fx"));
        assert!(allow.allows("POST", "/rest/posts/urn%3Ali%3Ashare%3A1"));
        assert!(!allow.allows("POST", "/rest/posts"));
        assert_eq!(allow.to_string(), "GET /v2/me,POST /rest/posts/");
        assert_eq!("".parse::<ApiAllow>().unwrap(), ApiAllow(Vec::new()));
    }

    #[test]
    fn an_allow_list_entry_is_a_known_method_and_a_clean_path() {
        for bad in [
            "GET",
            "GET v2/me",
            "TRACE /v2/me",
            "GET //evil.example/x",
            "GET /v2/../admin",
            "GET /v2/me?x=1",
            "GET /a\\b",
        ] {
            assert!(bad.parse::<ApiAllow>().is_err(), "{bad}");
        }
    }
}
