//! Where a member may be sent after signing in (`rd`): pure checks, no I/O. An `rd` is kept
//! only when it is an absolute `https://` URL on an allowed host (a `PUBLIC_ORIGIN` host or
//! one of `ALLOWED_REDIRECT_HOSTS`) or a path on this origin; everything else is dropped, so
//! the callback goes to `/`. Parsing is the `url` crate's (the WHATWG rules browsers follow),
//! never a string prefix; input that browsers would read differently from the parser
//! (backslashes, control characters, whitespace) is refused before parsing.

use percent_encoding::percent_decode_str;
use url::Url;

use crate::config::proxy::AllowedHosts;

/// The longest `rd` kept (longer ones are dropped, not truncated).
pub const MAX_RETURN_TO: usize = 2048;

/// Where `rd` may lead.
#[derive(Clone, Debug, Default)]
pub struct ReturnPolicy {
    /// The public origins (`https://host[:port]`); the first is this service's own.
    pub origins: Vec<Url>,
    /// `ALLOWED_REDIRECT_HOSTS`.
    pub allowed: AllowedHosts,
}

impl ReturnPolicy {
    /// The policy for `public_origins` (already checked origins) and `allowed` hosts.
    pub fn new(public_origins: &[String], allowed: Option<AllowedHosts>) -> Self {
        Self {
            origins: public_origins
                .iter()
                .filter_map(|o| Url::parse(o).ok())
                .collect(),
            allowed: allowed.unwrap_or_default(),
        }
    }

    /// `rd` as a `Location` when it may be followed (an absolute URL, or a path on this
    /// origin as the parser normalised it); `None` otherwise.
    pub fn check(&self, rd: &str) -> Option<String> {
        if rd.is_empty()
            || rd.len() > MAX_RETURN_TO
            || rd
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
        {
            return None;
        }
        if rd.starts_with('/') {
            return self.path_on_this_origin(rd);
        }
        let url = Url::parse(rd).ok()?;
        let host = url.host_str()?;
        let allowed = url.scheme() == "https"
            && url.username().is_empty()
            && url.password().is_none()
            && (self.allowed.allows(host)
                || self.origins.iter().any(|o| o.host_str() == Some(host)));
        allowed.then(|| url.to_string())
    }

    /// A path (with its query) on this origin: it must stay on the origin once resolved, and
    /// its decoded path may not start with `//` or hold a backslash (which some servers and
    /// frameworks behind a proxy would turn into another host).
    fn path_on_this_origin(&self, rd: &str) -> Option<String> {
        if rd.starts_with("//") {
            return None;
        }
        let base = self.origins.first()?;
        let url = base.join(rd).ok()?;
        if url.origin() != base.origin() {
            return None;
        }
        let decoded = percent_decode_str(url.path()).decode_utf8().ok()?;
        if decoded.starts_with("//") || decoded.contains('\\') {
            return None;
        }
        let mut location = url.path().to_owned();
        if let Some(query) = url.query() {
            location.push('?');
            location.push_str(query);
        }
        if let Some(fragment) = url.fragment() {
            location.push('#');
            location.push_str(fragment);
        }
        Some(location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReturnPolicy {
        ReturnPolicy::new(
            &["https://login.example.org".to_owned()],
            Some("allowed.example, .apps.example.net".parse().unwrap()),
        )
    }

    #[test]
    fn paths_and_allowed_hosts_are_kept() {
        let p = policy();
        assert_eq!(p.check("/app/x?y=1#z").as_deref(), Some("/app/x?y=1#z"));
        assert_eq!(
            p.check("https://allowed.example/a?b=c").as_deref(),
            Some("https://allowed.example/a?b=c")
        );
        assert_eq!(
            p.check("https://wiki.apps.example.net/").as_deref(),
            Some("https://wiki.apps.example.net/")
        );
        assert_eq!(
            p.check("https://login.example.org/here").as_deref(),
            Some("https://login.example.org/here")
        );
    }

    #[test]
    fn open_redirect_tricks_are_dropped() {
        let p = policy();
        let long = format!("/{}", "a".repeat(10_000));
        for trick in [
            "//evil.example",
            "///evil.example",
            "https://evil.example.com.attacker",
            "https://allowed.example.attacker/",
            "https:evil",
            "/\\evil",
            "\\\\evil",
            "https://a@evil.example",
            "https://allowed.example@evil.example",
            "https://user:pw@allowed.example/",
            "/%2F%2Fevil",
            "/%2f/evil",
            "/%5Cevil",
            "http://allowed.example/",
            "javascript:alert(1)",
            "data:text/html,hi",
            " /app",
            "/app\n",
            "\t//evil",
            "/a\u{0}b",
            "evil.example",
            "ftp://allowed.example/",
            long.as_str(),
            "",
        ] {
            assert_eq!(p.check(trick), None, "{trick:?}");
        }
    }
}
