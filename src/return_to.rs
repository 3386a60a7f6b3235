//! Where a member may be sent after signing in (`rd`): pure checks, no I/O. An `rd` is kept
//! only when it is an absolute `https://` URL on an allowed origin (a `PUBLIC_ORIGIN`, with
//! its port; or an `ALLOWED_REDIRECT_HOSTS` host on port 443) or a path on this origin, and
//! when its decoded path neither starts with `//` nor holds a backslash, and when what would
//! be sent is at most [`MAX_RETURN_TO`] characters; everything else is dropped, so the
//! callback goes to `/`. Parsing is the `url` crate's (the WHATWG rules browsers follow),
//! never a string prefix; input that browsers would read differently from the parser
//! (backslashes, control characters, whitespace) is refused before parsing.

use percent_encoding::percent_decode_str;
use url::Url;

use crate::config::proxy::AllowedHosts;

/// The longest `rd` kept, as given and as sent (the parser percent-encodes what is not
/// ASCII, so the `Location` may be longer than what came): longer ones are dropped, not
/// truncated.
pub(crate) const MAX_RETURN_TO: usize = 2048;

/// Where `rd` may lead.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReturnPolicy {
    /// The public origins (`https://host[:port]`); the first is this service's own.
    pub origins: Vec<Url>,
    /// `ALLOWED_REDIRECT_HOSTS`.
    pub allowed: AllowedHosts,
}

impl ReturnPolicy {
    /// The policy for `public_origins` (already checked origins) and `allowed` hosts.
    pub(crate) fn new(public_origins: &[String], allowed: Option<AllowedHosts>) -> Self {
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
    pub(crate) fn check(&self, rd: &str) -> Option<String> {
        self.location(rd)
            .filter(|location| location.len() <= MAX_RETURN_TO)
    }

    fn location(&self, rd: &str) -> Option<String> {
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
        // A public origin is itself allowed (scheme, host and port); an allowed host names no
        // port, so it is allowed on the scheme's, 443.
        let allowed = url.scheme() == "https"
            && url.username().is_empty()
            && url.password().is_none()
            && ((self.allowed.allows(host) && url.port().is_none())
                || self.origins.iter().any(|o| o.origin() == url.origin()));
        (allowed && safe_path(&url)).then(|| url.to_string())
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
        if !safe_path(&url) {
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

/// Whether `url`'s decoded path neither starts with `//` nor holds a backslash (or does not
/// decode): some servers and frameworks behind a proxy would read either as another host.
fn safe_path(url: &Url) -> bool {
    percent_decode_str(url.path())
        .decode_utf8()
        .is_ok_and(|decoded| !decoded.starts_with("//") && !decoded.contains('\\'))
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

    #[test]
    fn an_absolute_url_gets_the_decoded_path_check_of_a_path() {
        let p = policy();
        for trick in [
            "https://login.example.org//evil.com",
            "https://login.example.org/%2F%2Fevil.com",
            "https://login.example.org/%2f/evil.com",
            "https://login.example.org/%5C%5Cevil.com",
            "https://login.example.org/a%5Cb",
            "https://allowed.example//evil.com",
            "https://allowed.example/%2F%2Fevil.com",
            "https://wiki.apps.example.net/%5C%5Cevil.com",
            "https://allowed.example/./%2F%2Fevil.com",
        ] {
            assert_eq!(p.check(trick), None, "{trick:?}");
        }
        // Encoded slashes further in are no host switch, and stay.
        assert_eq!(
            p.check("https://allowed.example/a/%2F%2Fb").as_deref(),
            Some("https://allowed.example/a/%2F%2Fb")
        );
    }

    #[test]
    fn only_the_allowed_origins_port_is_kept() {
        let p = ReturnPolicy::new(
            &["https://login.example.org:8443".to_owned()],
            Some("allowed.example, .apps.example.net".parse().unwrap()),
        );
        assert_eq!(
            p.check("https://login.example.org:8443/x").as_deref(),
            Some("https://login.example.org:8443/x")
        );
        assert_eq!(
            p.check("https://allowed.example:443/x").as_deref(),
            Some("https://allowed.example/x")
        );
        for trick in [
            "https://login.example.org/x",
            "https://login.example.org:8444/x",
            "https://login.example.org:443/x",
            "https://allowed.example:8443/x",
            "https://wiki.apps.example.net:1/x",
        ] {
            assert_eq!(p.check(trick), None, "{trick:?}");
        }
    }

    #[test]
    fn the_limit_is_on_what_is_sent_not_on_what_came() {
        let p = policy();
        // 2,045 bytes that the parser turns into about three times as many characters.
        let prefix = "https://allowed.example/";
        let wide = format!("{prefix}{}", "é".repeat((2045 - prefix.len()) / 2));
        assert!(wide.len() <= MAX_RETURN_TO);
        assert!(p.check(&wide).is_none(), "a 2,045-byte rd sent longer");
        let path = format!("/{}", "é".repeat(1000));
        assert!(p.check(&path).is_none(), "a 2,001-byte path sent longer");
        // What fits once encoded is kept, up to the limit exactly.
        let fits = format!("{prefix}{}", "a".repeat(MAX_RETURN_TO - prefix.len()));
        assert_eq!(p.check(&fits).map(|l| l.len()), Some(MAX_RETURN_TO));
        let short = format!("/{}", "é".repeat(300));
        let kept = p.check(&short).unwrap();
        assert!(
            kept.len() <= MAX_RETURN_TO && kept.starts_with("/%C3%A9"),
            "{kept}"
        );
    }
}
