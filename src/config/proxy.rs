//! The values for running behind a reverse proxy, and the checks between them: `TLS`
//! ([`TlsMode`], in the listening group), `SESSION_COOKIE_DOMAIN` ([`CookieDomain`], in the
//! sessions group), `ALLOWED_REDIRECT_HOSTS` ([`AllowedHosts`], in the OpenID Connect group).
//! Parsing and checking only; what the values do is left to `server`, `session` and
//! `return_to`.

use std::str::FromStr;

use url::{Host, Url};

use super::ConfigError;

/// `TLS`: whether the server itself speaks TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(clap::ValueEnum))]
pub enum TlsMode {
    /// HTTPS with `TLS_CERT`/`TLS_KEY`.
    #[default]
    On,
    /// Plain HTTP, behind a proxy that terminates TLS.
    Off,
}

/// `SESSION_COOKIE_DOMAIN`: a domain name, with or without its leading dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieDomain(String);

impl CookieDomain {
    /// The domain as the cookie's `Domain` attribute carries it (no leading dot, lower case).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a browser on `host` accepts a cookie for this domain (RFC 6265 domain-match).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        host == self.0
            || host
                .strip_suffix(&self.0)
                .is_some_and(|rest| rest.ends_with('.'))
    }
}

impl FromStr for CookieDomain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().trim_start_matches('.');
        match Host::parse(name) {
            Ok(Host::Domain(domain)) if !domain.ends_with('.') => Ok(Self(domain)),
            _ => Err("expected a domain name, as .example.com".into()),
        }
    }
}

/// `ALLOWED_REDIRECT_HOSTS`: exact hosts, and `.example.com` suffixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Hosts allowed as they are (lower case, punycode).
    pub exact: Vec<String>,
    /// Domains whose subdomains (and the domain itself) are allowed.
    pub suffixes: Vec<String>,
}

impl AllowedHosts {
    /// Whether `host` (as the `url` crate serializes it) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        self.exact.iter().any(|h| h == host)
            || self.suffixes.iter().any(|suffix| {
                host == suffix
                    || host
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            })
    }
}

impl FromStr for AllowedHosts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut hosts = Self::default();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (suffix, name) = match entry.strip_prefix('.') {
                Some(name) => (true, name),
                None => (false, entry),
            };
            let host = Host::parse(name)
                .ok()
                .filter(|_| !name.contains(['/', ':', '@', '*']) || name.starts_with('['))
                .ok_or_else(|| {
                    format!("{entry:?} is not a host name or a .suffix (no scheme, port or path)")
                })?;
            match host {
                Host::Domain(domain) if suffix => {
                    if !domain.contains('.') {
                        return Err(format!(
                            "{entry:?} is too wide: a suffix names a domain, as .example.com"
                        ));
                    }
                    hosts.suffixes.push(domain);
                }
                _ if suffix => return Err(format!("{entry:?}: only a domain takes a suffix")),
                host => hosts.exact.push(host.to_string()),
            }
        }
        Ok(hosts)
    }
}

/// Checks the proxy settings against the public origins: with `TLS=off`, `PUBLIC_ORIGIN` must
/// be set and name only `https://` origins; a cookie domain must cover every public origin's
/// host.
pub(crate) fn check(
    tls: TlsMode,
    public_origin_set: bool,
    cookie_domain: Option<&CookieDomain>,
    public_origins: &[String],
) -> Result<(), ConfigError> {
    if tls == TlsMode::Off {
        if !public_origin_set {
            return Err(ConfigError::new(
                "PUBLIC_ORIGIN",
                "is required with TLS=off: name the https:// origin(s) the proxy serves, as https://login.example.com",
            ));
        }
        if let Some(plain) = public_origins.iter().find(|o| !o.starts_with("https://")) {
            return Err(ConfigError::new(
                "TLS",
                format!(
                    "off needs https:// origins in PUBLIC_ORIGIN (the proxy terminates TLS; the session cookie is Secure), not {plain}"
                ),
            ));
        }
    }
    if let Some(domain) = cookie_domain {
        for origin in public_origins {
            let host = Url::parse(origin)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            if !domain.covers(&host) {
                return Err(ConfigError::new(
                    "SESSION_COOKIE_DOMAIN",
                    format!(
                        "{} does not cover {origin} (browsers would refuse the cookie there)",
                        domain.as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_match_exactly_or_by_a_dotted_suffix() {
        let hosts: AllowedHosts = "app.example.org, .example.com".parse().unwrap();
        assert!(hosts.allows("app.example.org"));
        assert!(hosts.allows("a.example.com"));
        assert!(hosts.allows("b.a.example.com"));
        assert!(hosts.allows("example.com"));
        assert!(!hosts.allows("evilexample.com"));
        assert!(!hosts.allows("example.com.attacker"));
        assert!(!hosts.allows("x.app.example.org"));
        for bad in [
            "https://a.example",
            "a.example:443",
            "a.example/x",
            ".com",
            "*.example.com",
        ] {
            assert!(bad.parse::<AllowedHosts>().is_err(), "{bad}");
        }
        let upper: AllowedHosts = "App.Example.ORG".parse().unwrap();
        assert!(upper.allows("app.example.org"));
    }

    #[test]
    fn a_cookie_domain_covers_itself_and_its_subdomains_only() {
        let domain: CookieDomain = ".Example.com".parse().unwrap();
        assert_eq!(domain.as_str(), "example.com");
        assert!(domain.covers("example.com"));
        assert!(domain.covers("login.example.com"));
        assert!(!domain.covers("badexample.com"));
        assert!("https://x".parse::<CookieDomain>().is_err());
        assert!("127.0.0.1".parse::<CookieDomain>().is_err());
    }

    fn domain(d: &str) -> CookieDomain {
        d.parse().unwrap()
    }

    #[test]
    fn tls_off_needs_https_public_origins() {
        let https = ["https://login.example.com".to_owned()];
        assert!(check(TlsMode::Off, true, None, &https).is_ok());
        let err = check(TlsMode::Off, false, None, &https).unwrap_err();
        assert_eq!(err.variable, "PUBLIC_ORIGIN");
        let plain = ["http://login.example.com".to_owned()];
        let err = check(TlsMode::Off, true, None, &plain).unwrap_err();
        assert_eq!(err.variable, "TLS");
        assert!(check(TlsMode::On, true, None, &plain).is_ok());
    }

    #[test]
    fn a_cookie_domain_must_cover_every_public_origin() {
        let origins = ["https://login.example.com".to_owned()];
        let covering = domain(".example.com");
        assert!(check(TlsMode::On, true, Some(&covering), &origins).is_ok());
        let other = domain("other.example");
        let err = check(TlsMode::On, true, Some(&other), &origins).unwrap_err();
        assert_eq!(err.variable, "SESSION_COOKIE_DOMAIN");
    }
}
