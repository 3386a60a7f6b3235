//! Configuration: the only place that reads the environment (and `.env`, and the command line).
//!
//! [`Config`] is what a person writes, parsed into typed values ([`StoreUrl`], addresses,
//! URLs); whatever cannot be parsed stops the start with one line naming the variable
//! ([`ConfigError`]). The variables come in groups, one `clap::Args` struct each in
//! `config/` ([`Listen`], [`LinkedIn`], [`Oidc`], [`Sessions`], [`Limits`], [`Logging`],
//! [`Traces`]; the proxy-related values in [`proxy`]),
//! flattened into [`Config`]; `--help`, `.env.example` and `docs/configuration.md` must agree
//! with them (tested in `tests/api/config_docs.rs`). This module depends on no other part of
//! the crate but [`Secret`]: what depends on the bound port is resolved once by
//! `server::wiring::Resolved`, and connecting to the store is left to `session`.
//!
//! `Config`, its groups and everything clap are the `server` feature's; the plain values the
//! library's builder takes ([`RateLimit`], [`PkceMode`], [`TrustedProxies`], [`StoreUrl`],
//! [`AllowedHosts`], …) and their parsers are in every build.

#[cfg(feature = "server")]
use std::net::SocketAddr;
use std::str::FromStr;

#[cfg(feature = "server")]
use clap::Parser;
use url::Url;

use crate::secret::Secret;

/// The production LinkedIn endpoints, used when neither a URL nor the sandbox says otherwise.
pub(crate) const DEFAULT_ACCESS_TOKEN_URL: &str = "https://api.linkedin.com/uas/oauth/accessToken";
/// The production REST base.
pub(crate) const DEFAULT_API_URL: &str = "https://api.linkedin.com";
/// The production JSAPI script.
pub(crate) const DEFAULT_JSAPI_URL: &str = "https://platform.linkedin.com/in.js";
/// The fewest characters `ADMIN_TOKEN` may have.
pub const ADMIN_TOKEN_MIN_LEN: usize = 32;
/// LinkedIn's OpenID Connect issuer (a path, since April 2024).
pub(crate) const DEFAULT_OIDC_ISSUER: &str = "https://www.linkedin.com/oauth";

pub(crate) mod api_access;
#[cfg(feature = "server")]
mod forward_auth;
#[cfg(feature = "server")]
mod limits;
#[cfg(feature = "server")]
mod linkedin;
#[cfg(feature = "server")]
mod listen;
#[cfg(feature = "server")]
mod logging;
#[cfg(feature = "server")]
mod oidc;
pub(crate) mod proxy;
#[cfg(feature = "server")]
mod sessions;
mod store_url;
#[cfg(feature = "server")]
mod traces;

#[cfg(feature = "server")]
pub use api_access::ApiAccess;
#[cfg(feature = "server")]
pub use forward_auth::{AccessRule, ForwardAuth};
#[cfg(feature = "server")]
pub use limits::Limits;
#[cfg(feature = "server")]
pub use linkedin::LinkedIn;
#[cfg(feature = "server")]
pub use listen::Listen;
#[cfg(feature = "server")]
pub use logging::Logging;
#[cfg(feature = "server")]
pub use oidc::Oidc;
pub use proxy::AllowedHosts;
#[cfg(feature = "server")]
pub use sessions::Sessions;
pub(crate) use store_url::redact_debug;
use store_url::with_escaped_userinfo;
pub use store_url::{FleetKind, FleetUrl, StoreUrl, redact_urls};
#[cfg(feature = "server")]
pub use traces::Traces;

/// Everything the service can be told, from the environment or from flags of the same names,
/// in groups: each group is one `clap::Args` struct in its own file under `config/`.
#[cfg(feature = "server")]
#[derive(Parser, Clone, Debug)]
#[command(version, about)]
pub struct Config {
    /// What to run: the server (no subcommand), or a tool.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The JSAPI side: the app's key pair, the LinkedIn URLs, the sandbox.
    #[command(flatten)]
    pub linkedin: LinkedIn,

    /// OpenID Connect: the app's OAuth 2.0 client and the provider.
    #[command(flatten)]
    pub oidc: Oidc,

    /// Listening: addresses, certificate, public origins, connections.
    #[command(flatten)]
    pub listen: Listen,

    /// Sessions: the store, its keys, the idle limit.
    #[command(flatten)]
    pub sessions: Sessions,

    /// Rate limits, trusted proxies, upstream bounds and roots.
    #[command(flatten)]
    pub limits: Limits,

    /// Log format and filter.
    #[command(flatten)]
    pub logging: Logging,

    /// OpenTelemetry trace export.
    #[command(flatten)]
    pub traces: Traces,

    /// The member's API: the version sent, what the pass-through forwards, the token handed
    /// to the app behind the proxy.
    #[command(flatten)]
    pub api: ApiAccess,

    /// Forward authentication: the default rule, the signed identity and its keys.
    #[command(flatten)]
    pub forward_auth: ForwardAuth,
}

/// How log lines are written.
#[cfg(feature = "server")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// The tools beside the server.
#[cfg(feature = "server")]
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Checks the OpenID Connect provider (LINKEDIN_OIDC_ISSUER) before going live: fetches
    /// its discovery document and key set, prints what the service will do with it and what
    /// will fail; exits 1 on a problem.
    CheckProvider,
    /// Serves only the emulated LinkedIn (the JSAPI side and the OpenID Connect provider) on
    /// BIND, for an app in any language to test against; prints, as KEY=VALUE lines on
    /// stdout, the issuer, the client id and secret and the JSAPI key pair it registered (made
    /// up, or taken from LINKEDIN_CLIENT_ID/_SECRET, LINKEDIN_API_KEY/LINKEDIN_SECRET_KEY and
    /// LINKEDIN_OIDC_REDIRECT_URL; without the last, any loopback redirect URI is accepted).
    Sandbox,
}

/// `LINKEDIN_OIDC_PKCE`: when the sign-in sends a PKCE challenge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(clap::ValueEnum))]
pub enum PkceMode {
    /// Only when discovery lists `S256` in `code_challenge_methods_supported`.
    #[default]
    Auto,
    /// Always (S256).
    On,
    /// Never.
    Off,
}

impl FromStr for PkceMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            _ => Err("expected auto, on or off".to_owned()),
        }
    }
}

/// The scopes LinkedIn retired for new apps, with what to ask for instead.
pub(crate) const RETIRED_SCOPES: [&str; 3] = ["r_liteprofile", "r_emailaddress", "r_basicprofile"];

/// `LINKEDIN_OIDC_SCOPES` as a list: each scope once, in the order given, `openid` required,
/// LinkedIn's retired scopes refused.
pub(crate) fn oidc_scopes(value: &str) -> Result<Vec<String>, ConfigError> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in value.split_whitespace() {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    let retired: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| RETIRED_SCOPES.contains(s))
        .collect();
    if !retired.is_empty() {
        return Err(ConfigError::new(
            "LINKEDIN_OIDC_SCOPES",
            format!(
                "{} retired by LinkedIn for new apps; ask for `openid profile email` (Sign In with LinkedIn using OpenID Connect)",
                match retired.as_slice() {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(", ")),
                }
            ),
        ));
    }
    if !scopes.iter().any(|s| s == "openid") {
        return Err(ConfigError::new(
            "LINKEDIN_OIDC_SCOPES",
            "must include openid (as in `openid profile email`)",
        ));
    }
    Ok(scopes)
}

/// `RATE_LIMIT`: a burst, then a steady rate, per client address; or no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimit {
    /// `off`.
    Off,
    /// `BURST,PER_SECOND`.
    PerClient {
        /// Requests allowed at once.
        burst: std::num::NonZeroU32,
        /// Requests per second after the burst.
        per_second: std::num::NonZeroU32,
    },
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        let number = |part: Option<&str>| {
            part.and_then(|p| p.trim().parse::<std::num::NonZeroU32>().ok())
                .ok_or_else(|| {
                    "expected BURST,PER_SECOND (two whole numbers from 1) or off".to_owned()
                })
        };
        let mut parts = s.split(',');
        let limit = Self::PerClient {
            burst: number(parts.next())?,
            per_second: number(parts.next())?,
        };
        match parts.next() {
            None => Ok(limit),
            Some(_) => Err("expected BURST,PER_SECOND (two whole numbers from 1) or off".into()),
        }
    }
}

/// `RATE_LIMIT_STORE`: where the rate-limit budgets are kept.
#[cfg(feature = "server")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RateLimitStore {
    /// In each instance: N instances allow N times the budget.
    Local,
    /// In the session store's Redis, shared by every instance (after the local check).
    Redis,
}

/// `TRUSTED_PROXIES`: the networks whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Whether `addr` is one of the trusted proxies.
    pub fn contains(&self, addr: std::net::IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|part| {
                part.parse::<ipnet::IpNet>()
                    .or_else(|_| part.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{part:?} is not a CIDR (10.0.0.0/8) or an address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

/// A listen address: an IP address and a port; a host name is refused with a word on why.
#[cfg(feature = "server")]
fn parse_listen_addr(value: &str) -> Result<SocketAddr, String> {
    value.trim().parse::<SocketAddr>().map_err(|_| {
        "takes an IP address and a port, as 127.0.0.1:8443, 0.0.0.0:8443 or [::]:8443 \
         (not a host name: a listener binds an address)"
            .to_owned()
    })
}

/// Refuses a `RUST_LOG` that tracing would silently ignore.
#[cfg(feature = "server")]
fn parse_log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map(|_| value.to_owned())
        .map_err(|err| format!("not a tracing filter: {err}"))
}

/// An interval (`LINKEDIN_INTROSPECT_EVERY`): a whole number with its unit, `s`, `m`, `h` or
/// `d` (`30s`, `15m`, `6h`, `1d`), from a second to 30 days.
pub(crate) fn parse_interval(value: &str) -> Result<std::time::Duration, String> {
    const MAX: u64 = 30 * 86_400;
    let expected = || {
        format!(
            "expected a whole number with a unit, s, m, h or d (as 30s or 6h), from 1s to {}d",
            MAX / 86_400
        )
    };
    let value = value.trim();
    let split = value.len().saturating_sub(1);
    let (number, unit) = (
        value.get(..split).unwrap_or(""),
        value.get(split..).unwrap_or(""),
    );
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(expected()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|seconds| (1..=MAX).contains(seconds))
        .map(std::time::Duration::from_secs)
        .ok_or_else(expected)
}

/// A URL-valued variable (`LINKEDIN_OIDC_ISSUER`, the LinkedIn URLs, the OTLP endpoints), its
/// userinfo read as [`StoreUrl`] reads a store's: a password holding `/`, `?`, `#` or `@`
/// unescaped is the password, never a piece of the host or path.
pub(crate) fn parse_url(value: &str) -> Result<Url, String> {
    Url::parse(&with_escaped_userinfo(value.trim())).map_err(|e| e.to_string())
}

/// A public origin (`https://app.example.com`), as browsers send it in `Origin`: scheme,
/// host and port (none for the scheme's default), no path.
pub(crate) fn parse_origin(origin: &str) -> Result<String, String> {
    let url = Url::parse(origin).map_err(|err| format!("{origin:?} is not an origin: {err}"))?;
    if url.host().is_none() || !matches!(url.scheme(), "https" | "http") {
        return Err(format!("{origin:?} is not an http(s) origin"));
    }
    Ok(url.origin().ascii_serialization())
}

/// A JSAPI API key: it names a cookie (`linkedin_oauth_<API_KEY>`), so only letters, digits,
/// `_` and `-`.
pub(crate) fn check_api_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("must be a non-empty key of letters, digits, '_' or '-'");
    }
    Ok(())
}

/// A configuration error: one line that names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable (and flag) at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// An error about `variable`.
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

/// Loads `.env` (looked for in the working directory, then its parents) into the
/// environment; a missing file is normal. A line that does not parse is named by its number
/// and variable, never its value (it may be a secret).
#[cfg(feature = "server")]
fn load_dotenv() -> Result<(), String> {
    let err = match dotenvy::dotenv() {
        Ok(_) => return Ok(()),
        Err(err) if err.not_found() => return Ok(()),
        Err(err) => err,
    };
    let path = std::env::current_dir().ok().and_then(|dir| {
        dir.ancestors()
            .map(|d| d.join(".env"))
            .find(|candidate| candidate.is_file())
    });
    let shown = path
        .as_deref()
        .map_or_else(|| ".env".to_owned(), |p| p.display().to_string());
    match err {
        dotenvy::Error::LineParse(text, _) => {
            let first = text.lines().next().unwrap_or("").trim();
            let number = path
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|file| file.lines().position(|l| l.trim() == first))
                .map_or_else(String::new, |n| format!(" line {}", n + 1));
            let variable = first
                .trim_start_matches("export ")
                .split('=')
                .next()
                .unwrap_or("")
                .trim();
            Err(format!(
                "{shown}{number} ({variable}=…) cannot be read: expected NAME=value, with its \
                 quotes closed (the start stops rather than skip it and every line after it)"
            ))
        }
        other => Err(format!("{shown} cannot be read: {other}")),
    }
}

/// A command-line or environment error as one line that names the variable (not the flag),
/// keeps the reason and the allowed values, and shows no URL's password: the value itself is
/// left out when it is a URL or the variable's value is hidden in `--help` (a secret), since a
/// value that did not parse cannot be told apart into user, password and host.
#[cfg(feature = "server")]
pub fn describe_parse_error(err: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(text)) => Some(text.as_str()),
        _ => None,
    };
    let variable = context(ContextKind::InvalidArg).map(|arg| {
        arg.split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map_or(arg, |(name, _)| name)
    });
    let line = match (err.kind(), variable, context(ContextKind::InvalidValue)) {
        (ErrorKind::InvalidValue | ErrorKind::ValueValidation, Some(variable), Some(value)) => {
            let mut line = if withheld(variable, value) {
                format!("{variable}: invalid value ({})", shape_of(value))
            } else {
                format!("{variable}: invalid value '{value}'")
            };
            if let Some(reason) = std::error::Error::source(err) {
                line.push_str(&format!(": {reason}"));
            }
            if let Some(ContextValue::Strings(allowed)) = err.get(ContextKind::ValidValue) {
                line.push_str(&format!(" (one of: {})", allowed.join(", ")));
            }
            line
        }
        _ => err
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
            .map(|l| l.strip_prefix("error: ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("; "),
    };
    redact_urls(&line)
}

/// Whether the value of `variable` that did not parse is left out of the message: a URL (it
/// may hold a password), or the value of a variable `--help` hides (a secret).
#[cfg(feature = "server")]
fn withheld(variable: &str, value: &str) -> bool {
    use clap::CommandFactory;
    let hidden = Config::command().get_arguments().any(|arg| {
        arg.is_hide_env_values_set()
            && arg
                .get_env()
                .is_some_and(|env| env.to_string_lossy() == variable)
    });
    hidden || value.contains("://") || value.contains('@')
}

/// What a withheld value looks like, without any of its characters but a URL's scheme.
#[cfg(feature = "server")]
fn shape_of(value: &str) -> String {
    match value.split_once("://") {
        Some((scheme, _)) if is_scheme(scheme) => {
            format!("a {scheme}:// URL, not shown: it may hold a password")
        }
        _ => format!("{} characters, not shown", value.chars().count()),
    }
}

/// Whether `text` is a URL scheme: a letter, then letters, digits, `+`, `-` or `.`.
#[cfg(feature = "server")]
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The app's key pair, when one was configured.
#[derive(Clone, Debug)]
pub struct AppCredentials {
    /// The API key (public: it names a cookie).
    pub api_key: String,
    /// The secret key.
    pub secret_key: Secret,
}

#[cfg(feature = "server")]
impl Config {
    /// Reads `.env` (when present), the environment and the command line. A `.env` that cannot
    /// be read completely stops the start, naming the line.
    #[cfg(feature = "server")]
    pub fn load() -> Result<Self, clap::Error> {
        load_dotenv().map_err(|message| clap::Error::raw(clap::error::ErrorKind::Io, message))?;
        Self::try_parse()
    }

    /// The log format asked for, read on its own: for reporting a configuration that did not
    /// parse in the format the operator expects.
    #[cfg(feature = "server")]
    pub fn log_format_hint() -> LogFormat {
        let _ = dotenvy::dotenv();
        match std::env::var("LOG_FORMAT") {
            Ok(format) if format.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }

    /// A configuration with every default, for tests to adjust: parsed from no argument, so a
    /// variable set in the process still applies (the service's tests set none).
    pub fn defaults() -> Self {
        Self::parse_from(["linkedin-token-exchange"])
    }
}

#[cfg(test)]
#[cfg(feature = "server")]
mod tests {
    use super::store_url::tests::assert_no_piece;
    use super::*;
    use std::time::Duration;

    #[test]
    fn intervals_take_a_unit_and_stay_within_a_second_and_30_days() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval(" 15m "), Ok(Duration::from_secs(900)));
        assert_eq!(parse_interval("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse_interval("30d"), Ok(Duration::from_secs(2_592_000)));
        for bad in [
            "",
            "s",
            "30",
            "0s",
            "31d",
            "1.5h",
            "-1h",
            "6H",
            "6 h",
            "99999999999999999999d",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad:?}");
        }
    }

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["linkedin-token-exchange"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).unwrap()
    }

    #[test]
    fn no_configuration_means_sandbox_mode_with_the_documented_defaults() {
        let config = Config::defaults();
        assert!(config.linkedin.sandbox_enabled(&config.oidc));
        assert_eq!(config.listen.bind.to_string(), "127.0.0.1:8443");
        assert_eq!(config.sessions.idle(), Duration::from_secs(1440 * 60));
        assert_eq!(
            config
                .linkedin
                .app_credentials()
                .unwrap()
                .map(|c| c.api_key),
            None
        );
    }

    #[test]
    fn a_short_admin_token_or_one_without_the_metrics_listener_is_refused_naming_it() {
        let long = "a".repeat(ADMIN_TOKEN_MIN_LEN);
        let short = "a".repeat(ADMIN_TOKEN_MIN_LEN - 1);
        let metrics = ["--metrics-bind", "127.0.0.1:0"];
        let err = parse(&[&["--admin-token", short.as_str()][..], &metrics].concat())
            .listen
            .admin_token()
            .unwrap_err();
        assert_eq!(err.variable, "ADMIN_TOKEN");
        assert!(!err.to_string().contains(&short), "{err}");
        let err = parse(&["--admin-token", long.as_str()])
            .listen
            .admin_token()
            .unwrap_err();
        assert!(err.to_string().contains("METRICS_BIND"), "{err}");
        let config = parse(&[&["--admin-token", long.as_str()][..], &metrics].concat());
        assert_eq!(config.listen.admin_token().unwrap().unwrap().expose(), long);
        assert!(!format!("{config:?}").contains(&long));
        assert_eq!(parse(&[]).listen.admin_token().unwrap(), None);
    }

    #[test]
    fn a_key_without_a_secret_is_refused_naming_the_secret() {
        let err = parse(&["--linkedin-api-key", "abc"])
            .linkedin
            .app_credentials()
            .unwrap_err();
        assert_eq!(err.variable, "LINKEDIN_SECRET_KEY");
        let config = parse(&["--linkedin-api-key", "abc"]);
        assert!(!config.linkedin.sandbox_enabled(&config.oidc));
    }

    #[test]
    fn closing_connections_is_for_the_sandbox_only() {
        let defaults = Config::defaults();
        assert!(defaults.linkedin.keep_alive(&defaults.oidc).unwrap());
        let closing = parse(&["--sandbox-keep-alive", "false"]);
        assert!(!closing.linkedin.keep_alive(&closing.oidc).unwrap());
        let config = parse(&[
            "--linkedin-api-key",
            "abc",
            "--linkedin-secret-key",
            "s",
            "--sandbox-keep-alive",
            "false",
        ]);
        let err = config.linkedin.keep_alive(&config.oidc).unwrap_err();
        assert_eq!(err.variable, "SANDBOX_KEEP_ALIVE");
    }

    #[test]
    fn an_unparsable_address_or_url_names_the_variable() {
        let argv = ["x", "--bind", "nowhere"];
        let message = Config::try_parse_from(argv).err().unwrap().to_string();
        assert!(message.contains("BIND"), "{message}");
        let argv = ["x", "--linkedin-api-url", "not a url"];
        let message = Config::try_parse_from(argv).err().unwrap().to_string();
        assert!(message.contains("LINKEDIN_API_URL"), "{message}");
    }

    #[test]
    fn public_origins_default_to_localhost_and_the_bind_address() {
        let config = Config::defaults();
        let origins = config
            .listen
            .public_origins("127.0.0.1:9000".parse().unwrap())
            .unwrap();
        assert_eq!(
            origins,
            ["https://localhost:9000", "https://127.0.0.1:9000"]
        );
        let config = parse(&[
            "--public-origin",
            "https://example.com/, https://a.example:8443",
        ]);
        let origins = config
            .listen
            .public_origins("127.0.0.1:9000".parse().unwrap())
            .unwrap();
        assert_eq!(origins, ["https://example.com", "https://a.example:8443"]);
    }

    #[test]
    fn the_default_https_port_is_left_out_of_the_default_origins() {
        let origins = Config::defaults()
            .listen
            .public_origins("127.0.0.1:443".parse().unwrap())
            .unwrap();
        assert_eq!(origins, ["https://localhost", "https://127.0.0.1"]);
        let origins = Config::defaults()
            .listen
            .public_origins("[::]:8443".parse().unwrap())
            .unwrap();
        assert_eq!(
            origins,
            [
                "https://localhost:8443",
                "https://127.0.0.1:8443",
                "https://[::1]:8443"
            ]
        );
    }

    #[test]
    fn a_value_clap_refuses_is_not_echoed_when_it_is_a_url_or_a_secret() {
        for (variable, value) in [
            ("--session-store", "postgress://app:Qx7k/Vz9w@db/x"),
            ("--session-store", "redis-cluster://u:Qx7k@Vz9w/x@a:1"),
            ("--linkedin-oidc-issuer", "https://u:Qx7k/Vz9w@h:x/oauth"),
            ("--otel-exporter-otlp-endpoint", "http://u:Qx7k#Vz9w@[::1"),
            ("--session-keys", "Qx7k@Vz9w-not-base64"),
            ("--memory-sessions", "Qx7k@Vz9w"),
        ] {
            let Err(err) = Config::try_parse_from(["x", variable, value]) else {
                // Parsed: its own check (later, naming the variable) refuses it.
                continue;
            };
            let line = describe_parse_error(&err);
            assert_no_piece("Qx7k/Vz9w", &line);
            assert_no_piece("Qx7k@Vz9w", &line);
            assert_no_piece("Qx7k#Vz9w", &line);
            let env = variable
                .trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase();
            assert!(
                line.starts_with(&format!("{env}: invalid value (")),
                "{line}"
            );
        }
        let err = Config::try_parse_from(["x", "--bind", "nowhere"]).unwrap_err();
        assert!(
            describe_parse_error(&err).starts_with("BIND: invalid value 'nowhere'"),
            "values that are neither URLs nor secrets are still quoted"
        );
    }

    #[test]
    #[cfg(feature = "server")]
    fn an_invalid_log_filter_is_refused_naming_rust_log() {
        let argv = ["x", "--rust-log", "info,[=bad"];
        let message = Config::try_parse_from(argv).err().unwrap().to_string();
        assert!(message.contains("RUST_LOG"), "{message}");
        assert!(
            parse(&["--rust-log", "warn,linkedin_token_exchange=debug"])
                .logging
                .filter
                .contains("debug")
        );
    }

    #[test]
    fn rate_limits_and_trusted_proxies_parse() {
        assert_eq!(
            Config::defaults().limits.rate_limit.to_string_for_test(),
            "20,2"
        );
        assert_eq!("off".parse::<RateLimit>(), Ok(RateLimit::Off));
        for bad in ["", "5", "0,1", "1,0", "1,2,3", "x,y"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
        let proxies: TrustedProxies = "10.0.0.0/8, 127.0.0.2".parse().unwrap();
        assert!(proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(proxies.contains("127.0.0.2".parse().unwrap()));
        assert!(!proxies.contains("127.0.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
    }

    impl RateLimit {
        fn to_string_for_test(self) -> String {
            match self {
                RateLimit::Off => "off".into(),
                RateLimit::PerClient { burst, per_second } => format!("{burst},{per_second}"),
            }
        }
    }

    #[test]
    fn debug_output_shows_no_secret_and_no_store_password() {
        let config = parse(&[
            "--linkedin-api-key",
            "k",
            "--linkedin-secret-key",
            "hunter2-app-secret",
            "--linkedin-client-id",
            "client",
            "--linkedin-client-secret",
            "hunter3-client-secret",
            "--session-keys",
            "hunter4-session-key",
            "--session-store",
            "postgres://app:hunter5-db-password@db.example/sessions",
        ]);
        let shown = format!("{config:?}");
        for secret in [
            "hunter2-app-secret",
            "hunter3-client-secret",
            "hunter4-session-key",
            "hunter5-db-password",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("redacted"), "{shown}");
        assert!(shown.contains("db.example"), "{shown}");
        assert!(shown.contains("idle_minutes: 1440"), "{shown}");
    }

    #[test]
    fn every_flag_is_its_variable_in_kebab_case() {
        use clap::CommandFactory;
        let command = Config::command();
        let mut seen = 0;
        for arg in command.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let env = env.to_string_lossy();
            let flag = env.to_lowercase().replace('_', "-");
            assert_eq!(arg.get_long(), Some(flag.as_str()), "{env}");
            assert_eq!(
                arg.get_value_names().map(|names| names[0].to_string()),
                Some(env.to_string())
            );
            seen += 1;
        }
        assert!(seen >= 32, "only {seen} variables found in the groups");
    }

    #[test]
    fn a_url_variables_password_is_read_whole_whatever_it_holds() {
        for password in ["Qx7k/Vz9w", "a#b", "a?b", "Qx7k@Vz9w/Jm4p@Hr6t"] {
            let url = parse_url(&format!("https://user:{password}@issuer.example/oauth")).unwrap();
            assert_eq!(url.host_str(), Some("issuer.example"), "{password}");
            assert_eq!(url.path(), "/oauth", "{password}");
            assert!(url.password().is_some(), "{password}");
        }
    }
}
