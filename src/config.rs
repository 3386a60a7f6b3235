//! Configuration: the only place that reads the environment (and `.env`, and the command line).
//!
//! [`Config`] is what a person writes, parsed into typed values ([`StoreUrl`], addresses,
//! URLs); whatever cannot be parsed stops the start with one line naming the variable
//! ([`ConfigError`]). This module depends on no other part of the crate but [`Secret`]:
//! turning the configuration into URLs that depend on the bound port is left to `server`,
//! which knows that port, and connecting to the store is left to `session`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use url::Url;

use crate::secret::Secret;

/// The production LinkedIn endpoints, used when neither a URL nor the sandbox says otherwise.
pub const DEFAULT_ACCESS_TOKEN_URL: &str = "https://api.linkedin.com/uas/oauth/accessToken";
/// The production REST base.
pub const DEFAULT_API_URL: &str = "https://api.linkedin.com";
/// The production JSAPI script.
pub const DEFAULT_JSAPI_URL: &str = "https://platform.linkedin.com/in.js";
/// The fewest characters `ADMIN_TOKEN` may have.
pub const ADMIN_TOKEN_MIN_LEN: usize = 32;
/// LinkedIn's OpenID Connect issuer (a path, since April 2024).
pub const DEFAULT_OIDC_ISSUER: &str = "https://www.linkedin.com/oauth";

/// Everything the service can be told, from the environment or from flags of the same names.
#[derive(Parser, Clone)]
#[command(version, about)]
pub struct Config {
    /// What to run: the server (no subcommand), or a tool.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The app's API key; names the `linkedin_oauth_<API_KEY>` cookie. Unset: sandbox mode.
    #[arg(long, env = "LINKEDIN_API_KEY", value_name = "LINKEDIN_API_KEY")]
    pub linkedin_api_key: Option<String>,

    /// The app's secret key: verifies the cookie and signs OAuth requests.
    #[arg(
        long,
        env = "LINKEDIN_SECRET_KEY",
        value_name = "LINKEDIN_SECRET_KEY",
        hide_env_values = true
    )]
    pub linkedin_secret_key: Option<Secret>,

    /// The OAuth 1.0a access-token (exchange) endpoint.
    #[arg(
        long,
        env = "LINKEDIN_ACCESS_TOKEN_URL",
        value_name = "LINKEDIN_ACCESS_TOKEN_URL",
        hide_env_values = true
    )]
    pub linkedin_access_token_url: Option<Url>,

    /// The REST API base (`/v1/people/~` is appended).
    #[arg(
        long,
        env = "LINKEDIN_API_URL",
        value_name = "LINKEDIN_API_URL",
        hide_env_values = true
    )]
    pub linkedin_api_url: Option<Url>,

    /// The JSAPI script the login page embeds.
    #[arg(
        long,
        env = "LINKEDIN_JSAPI_URL",
        value_name = "LINKEDIN_JSAPI_URL",
        hide_env_values = true
    )]
    pub linkedin_jsapi_url: Option<Url>,

    /// The OAuth 2.0 client of "Sign In with LinkedIn using OpenID Connect". Unset: OpenID
    /// Connect is off (in sandbox mode: the sandbox's own client).
    #[arg(long, env = "LINKEDIN_CLIENT_ID", value_name = "LINKEDIN_CLIENT_ID")]
    pub linkedin_client_id: Option<String>,

    /// The OAuth 2.0 client's secret (sent to the token endpoint, `client_secret_post`).
    #[arg(
        long,
        env = "LINKEDIN_CLIENT_SECRET",
        value_name = "LINKEDIN_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub linkedin_client_secret: Option<Secret>,

    /// The OpenID Connect issuer; discovery is `<issuer>/.well-known/openid-configuration`.
    /// Default: LinkedIn's (`https://www.linkedin.com/oauth`), or the sandbox's.
    #[arg(
        long,
        env = "LINKEDIN_OIDC_ISSUER",
        value_name = "LINKEDIN_OIDC_ISSUER",
        hide_env_values = true
    )]
    pub linkedin_oidc_issuer: Option<Url>,

    /// The redirect URI registered with the provider. Default: the first public origin's
    /// `/auth/linkedin/callback`.
    #[arg(
        long,
        env = "LINKEDIN_OIDC_REDIRECT_URL",
        value_name = "LINKEDIN_OIDC_REDIRECT_URL",
        hide_env_values = true
    )]
    pub linkedin_oidc_redirect_url: Option<Url>,

    /// The scopes asked for, space-separated.
    #[arg(
        long,
        env = "LINKEDIN_OIDC_SCOPES",
        value_name = "LINKEDIN_OIDC_SCOPES",
        default_value = "openid profile email"
    )]
    pub linkedin_oidc_scopes: String,

    /// PKCE (S256) on the sign-in: `auto` sends it only when discovery lists `S256`
    /// (LinkedIn's lists nothing, and its token endpoint refuses a web app's `code_verifier`
    /// with 401 `invalid_client`); `on` always; `off` never.
    #[arg(
        long,
        env = "LINKEDIN_OIDC_PKCE",
        value_name = "LINKEDIN_OIDC_PKCE",
        default_value = "auto"
    )]
    pub linkedin_oidc_pkce: PkceMode,

    /// Refuse an id_token that carries no `nonce`. LinkedIn never echoes the nonce, so the
    /// default accepts its absence (a present nonce must still match); `true` is for
    /// providers that do echo it.
    #[arg(
        long,
        env = "LINKEDIN_OIDC_REQUIRE_NONCE",
        value_name = "LINKEDIN_OIDC_REQUIRE_NONCE",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub linkedin_oidc_require_nonce: bool,

    /// Mount the emulated LinkedIn under /sandbox/ and point the URLs at it.
    /// Default: true when no API key is set.
    #[arg(long, env = "SANDBOX", value_name = "SANDBOX")]
    pub sandbox: Option<bool>,

    /// Sandbox mode only: `false` makes the server speak HTTP/1.1 only and close every
    /// connection after one answer, as an HTTP/1.0-style upstream does (for benchmarks).
    #[arg(
        long,
        env = "SANDBOX_KEEP_ALIVE",
        value_name = "SANDBOX_KEEP_ALIVE",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub sandbox_keep_alive: bool,

    /// HTTPS listen address.
    #[arg(
        long,
        env = "BIND",
        value_name = "BIND",
        default_value = "127.0.0.1:8443",
        value_parser = parse_listen_addr
    )]
    pub bind: SocketAddr,

    /// PEM certificate chain; generated (self-signed) together with the key when both are missing.
    #[arg(
        long,
        env = "TLS_CERT",
        value_name = "TLS_CERT",
        default_value = "certs/localhost.pem"
    )]
    pub tls_cert: PathBuf,

    /// PEM private key.
    #[arg(
        long,
        env = "TLS_KEY",
        value_name = "TLS_KEY",
        default_value = "certs/localhost-key.pem"
    )]
    pub tls_key: PathBuf,

    /// The origin(s) browsers use, comma-separated. Default: https://localhost:<port> and
    /// https://<bind address>.
    #[arg(
        long,
        env = "PUBLIC_ORIGIN",
        value_name = "PUBLIC_ORIGIN",
        hide_env_values = true
    )]
    pub public_origin: Option<String>,

    /// `memory`, `sqlite://PATH`, `redis://HOST:PORT[/DB]` or `postgres://…`.
    #[arg(
        long,
        env = "SESSION_STORE",
        value_name = "SESSION_STORE",
        default_value = "sqlite://data/sessions.db",
        hide_env_values = true
    )]
    pub session_store: StoreUrl,

    /// The most sessions the `memory` store holds; past it, the least recently used goes.
    #[arg(long, env = "MEMORY_SESSIONS", value_name = "MEMORY_SESSIONS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub memory_sessions: u64,

    /// Keys that encrypt the sessions at rest: a comma list of base64 32-byte keys; the first
    /// encrypts, every one decrypts. Unset: a key generated into `SESSION_KEY_FILE` (memory
    /// and SQLite only).
    #[arg(
        long,
        env = "SESSION_KEYS",
        value_name = "SESSION_KEYS",
        hide_env_values = true
    )]
    pub session_keys: Option<Secret>,

    /// Where the generated session key is kept when `SESSION_KEYS` is unset.
    #[arg(
        long,
        env = "SESSION_KEY_FILE",
        value_name = "SESSION_KEY_FILE",
        default_value = "data/session.key"
    )]
    pub session_key_file: PathBuf,

    /// A session ends after this much inactivity, or when its credentials expire.
    #[arg(long, env = "SESSION_IDLE_MINUTES", value_name = "SESSION_IDLE_MINUTES", default_value_t = 1440,
          value_parser = clap::value_parser!(u64).range(1..=525_600))]
    pub session_idle_minutes: u64,

    /// Bound on each call to LinkedIn, in milliseconds.
    #[arg(long, env = "UPSTREAM_TIMEOUT_MS", value_name = "UPSTREAM_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub upstream_timeout_ms: u64,

    /// An extra PEM root to trust for the LinkedIn URLs.
    #[arg(long, env = "UPSTREAM_CA_CERT", value_name = "UPSTREAM_CA_CERT")]
    pub upstream_ca_cert: Option<PathBuf>,

    /// Connections held at once; more wait in the listen queue. Default: a safe share of the
    /// open-file limit.
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,

    /// Plain-HTTP listener serving `GET /metrics` (Prometheus text format). Unset: off.
    #[arg(long, env = "METRICS_BIND", value_name = "METRICS_BIND", value_parser = parse_listen_addr)]
    pub metrics_bind: Option<SocketAddr>,

    /// Bearer token of the admin routes on the `METRICS_BIND` listener (at least
    /// [`ADMIN_TOKEN_MIN_LEN`] characters). Unset: no admin routes.
    #[arg(
        long,
        env = "ADMIN_TOKEN",
        value_name = "ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<Secret>,

    /// Plain-HTTP listener that answers 308 to the same path and query on the HTTPS origin.
    /// Unset: off.
    #[arg(long, env = "HTTP_REDIRECT_BIND", value_name = "HTTP_REDIRECT_BIND", value_parser = parse_listen_addr)]
    pub http_redirect_bind: Option<SocketAddr>,

    /// Per client address, for the sign-in routes: `BURST,PER_SECOND`, or `off`.
    #[arg(
        long,
        env = "RATE_LIMIT",
        value_name = "RATE_LIMIT",
        default_value = "20,2"
    )]
    pub rate_limit: RateLimit,

    /// Comma list of CIDRs (or addresses) whose `X-Forwarded-For` names the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_name = "TRUSTED_PROXIES")]
    pub trusted_proxies: Option<TrustedProxies>,

    /// `text` (for people) or `json` (one JSON object a line).
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "text",
        value_enum
    )]
    pub log_format: LogFormat,

    /// The tracing filter (`info`, `debug`, `linkedin_token_exchange=trace`, …).
    #[arg(
        long,
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info",
        value_parser = parse_log_filter
    )]
    pub rust_log: String,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// The tools beside the server.
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PkceMode {
    /// Only when discovery lists `S256` in `code_challenge_methods_supported`.
    #[default]
    Auto,
    /// Always (S256).
    On,
    /// Never.
    Off,
}

/// The scopes LinkedIn retired for new apps, with what to ask for instead.
pub const RETIRED_SCOPES: [&str; 3] = ["r_liteprofile", "r_emailaddress", "r_basicprofile"];

/// `LINKEDIN_OIDC_SCOPES` as a list: each scope once, in the order given, `openid` required,
/// LinkedIn's retired scopes refused.
pub fn oidc_scopes(value: &str) -> Result<Vec<String>, ConfigError> {
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
fn parse_listen_addr(value: &str) -> Result<SocketAddr, String> {
    value.trim().parse::<SocketAddr>().map_err(|_| {
        "takes an IP address and a port, as 127.0.0.1:8443, 0.0.0.0:8443 or [::]:8443 \
         (not a host name: a listener binds an address)"
            .to_owned()
    })
}

/// Refuses a `RUST_LOG` that tracing would silently ignore.
fn parse_log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map(|_| value.to_owned())
        .map_err(|err| format!("not a tracing filter: {err}"))
}

/// Where sessions live, as written in `SESSION_STORE`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// In this process only: lost at restart, not shared.
    Memory,
    /// A SQLite file (created with its folder when missing).
    Sqlite(PathBuf),
    /// A Redis server (`redis://` or `rediss://`), shared by several instances.
    Redis(Url),
    /// A PostgreSQL database, shared by several instances.
    Postgres(Url),
}

impl StoreUrl {
    /// Whether several instances can share this store (and so must share its keys).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Redis(_) | Self::Postgres(_))
    }
}

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            return Ok(Self::Memory);
        }
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, as in sqlite://data/sessions.db".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        let scheme = s.split_once("://").map_or("", |(scheme, _)| scheme);
        let parse = |what: &str| {
            Url::parse(s)
                .ok()
                .filter(|url| url.host_str().is_some_and(|h| !h.is_empty()))
                .ok_or_else(|| format!("not a {what} URL with a host"))
        };
        match scheme {
            "redis" | "rediss" => parse("Redis").map(Self::Redis),
            "postgres" | "postgresql" => parse("PostgreSQL").map(Self::Postgres),
            _ => Err("expected memory, sqlite://PATH, redis://HOST:PORT or postgres://…".into()),
        }
    }
}

/// Shows where the store is (scheme, host, port, database) and never a user or password.
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Redis(url) | Self::Postgres(url) => {
                write!(f, "{}://{}", url.scheme(), url.host_str().unwrap_or(""))?;
                if let Some(port) = url.port() {
                    write!(f, ":{port}")?;
                }
                f.write_str(url.path())
            }
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
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
/// keeps the reason and the allowed values, and shows no URL's password.
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
            let mut line = format!("{variable}: invalid value '{value}'");
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

/// `text` with the password of every URL in it replaced by `***`
/// (`postgres://app:***@db/x`), for messages that quote what a person configured.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| "/?#'\"<> ,;`".contains(c) || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => out.push_str(&format!("{user}:***@{host}")),
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The app's key pair, when one was configured.
#[derive(Clone, Debug)]
pub struct AppCredentials {
    /// The API key (public: it names a cookie).
    pub api_key: String,
    /// The secret key.
    pub secret_key: Secret,
}

impl Config {
    /// Reads `.env` (when present), the environment and the command line. A `.env` that cannot
    /// be read completely stops the start, naming the line.
    pub fn load() -> Result<Self, clap::Error> {
        load_dotenv().map_err(|message| clap::Error::raw(clap::error::ErrorKind::Io, message))?;
        Self::try_parse()
    }

    /// The log format asked for, read on its own: for reporting a configuration that did not
    /// parse in the format the operator expects.
    pub fn log_format_hint() -> LogFormat {
        let _ = dotenvy::dotenv();
        match std::env::var("LOG_FORMAT") {
            Ok(format) if format.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }

    /// A configuration with every default and no environment: the base that tests adjust.
    pub fn defaults() -> Self {
        Self::parse_from(["linkedin-token-exchange"])
    }

    /// The configured key pair; a key without a secret (or the reverse) is an error.
    pub fn app_credentials(&self) -> Result<Option<AppCredentials>, ConfigError> {
        match (&self.linkedin_api_key, &self.linkedin_secret_key) {
            (None, None) => Ok(None),
            (Some(key), Some(secret)) => {
                if key.is_empty()
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(ConfigError::new(
                        "LINKEDIN_API_KEY",
                        "must be a non-empty key of letters, digits, '_' or '-'",
                    ));
                }
                if secret.expose().is_empty() {
                    return Err(ConfigError::new("LINKEDIN_SECRET_KEY", "must not be empty"));
                }
                Ok(Some(AppCredentials {
                    api_key: key.clone(),
                    secret_key: secret.clone(),
                }))
            }
            (Some(_), None) => Err(ConfigError::new(
                "LINKEDIN_SECRET_KEY",
                "is required when LINKEDIN_API_KEY is set",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "LINKEDIN_API_KEY",
                "is required when LINKEDIN_SECRET_KEY is set",
            )),
        }
    }

    /// The OpenID Connect client, when one was configured; an id without a secret (or the
    /// reverse) is an error.
    pub fn oidc_client(&self) -> Result<Option<(String, Secret)>, ConfigError> {
        match (&self.linkedin_client_id, &self.linkedin_client_secret) {
            (None, None) => Ok(None),
            (Some(id), Some(secret)) if !id.trim().is_empty() && !secret.expose().is_empty() => {
                Ok(Some((id.trim().to_owned(), secret.clone())))
            }
            (Some(id), Some(_)) if id.trim().is_empty() => {
                Err(ConfigError::new("LINKEDIN_CLIENT_ID", "must not be empty"))
            }
            (Some(_), Some(_)) => Err(ConfigError::new(
                "LINKEDIN_CLIENT_SECRET",
                "must not be empty",
            )),
            (Some(_), None) => Err(ConfigError::new(
                "LINKEDIN_CLIENT_SECRET",
                "is required when LINKEDIN_CLIENT_ID is set",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "LINKEDIN_CLIENT_ID",
                "is required when LINKEDIN_CLIENT_SECRET is set",
            )),
        }
    }

    /// Whether the emulated LinkedIn is mounted: `SANDBOX`, or else "no API key".
    /// The `sandbox` command always mounts it.
    pub fn sandbox_enabled(&self) -> bool {
        self.command == Some(Command::Sandbox)
            || self.sandbox.unwrap_or(self.linkedin_api_key.is_none())
    }

    /// Whether connections are kept open between requests: always, unless the sandbox is told
    /// otherwise by `SANDBOX_KEEP_ALIVE=false` (which outside sandbox mode is an error).
    pub fn keep_alive(&self) -> Result<bool, ConfigError> {
        if !self.sandbox_keep_alive && !self.sandbox_enabled() {
            return Err(ConfigError::new(
                "SANDBOX_KEEP_ALIVE",
                "applies only in sandbox mode (SANDBOX=true)",
            ));
        }
        Ok(self.sandbox_keep_alive)
    }

    /// The admin routes' token, when they are on: it must be long enough to resist guessing,
    /// and needs the listener they are served on.
    pub fn admin_token(&self) -> Result<Option<Secret>, ConfigError> {
        let Some(token) = &self.admin_token else {
            return Ok(None);
        };
        if token.expose().chars().count() < ADMIN_TOKEN_MIN_LEN
            || token
                .expose()
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::new(
                "ADMIN_TOKEN",
                format!(
                    "must be at least {ADMIN_TOKEN_MIN_LEN} characters, without spaces (e.g. `openssl rand -hex 32`)"
                ),
            ));
        }
        if self.metrics_bind.is_none() {
            return Err(ConfigError::new(
                "ADMIN_TOKEN",
                "the admin routes are served on the METRICS_BIND listener only: set METRICS_BIND too",
            ));
        }
        Ok(Some(token.clone()))
    }

    /// The inactivity limit of a session.
    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(self.session_idle_minutes * 60)
    }

    /// The bound on each upstream call.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    /// The origins allowed to POST, given the port actually bound: `PUBLIC_ORIGIN`, or else
    /// `https://localhost:<port>` and the bound address (`127.0.0.1` and `[::1]` for an
    /// unspecified one). Port 443 is left out, as browsers leave it out of `Origin`.
    pub fn public_origins(&self, bound: SocketAddr) -> Result<Vec<String>, ConfigError> {
        let Some(list) = &self.public_origin else {
            let port = bound.port();
            let hosts = if bound.ip().is_unspecified() {
                vec!["localhost".to_owned(), "127.0.0.1".into(), "[::1]".into()]
            } else {
                let ip = SocketAddr::new(bound.ip(), 0).to_string();
                vec!["localhost".to_owned(), ip.trim_end_matches(":0").to_owned()]
            };
            return Ok(hosts
                .into_iter()
                .map(|host| match port {
                    443 => format!("https://{host}"),
                    port => format!("https://{host}:{port}"),
                })
                .collect());
        };
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|origin| {
                let url = Url::parse(origin).map_err(|err| {
                    ConfigError::new(
                        "PUBLIC_ORIGIN",
                        format!("{origin:?} is not an origin: {err}"),
                    )
                })?;
                if url.host().is_none() || !matches!(url.scheme(), "https" | "http") {
                    return Err(ConfigError::new(
                        "PUBLIC_ORIGIN",
                        format!("{origin:?} is not an http(s) origin"),
                    ));
                }
                Ok(url.origin().ascii_serialization())
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|origins| {
                if origins.is_empty() {
                    Err(ConfigError::new("PUBLIC_ORIGIN", "names no origin"))
                } else {
                    Ok(origins)
                }
            })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("linkedin_api_key", &self.linkedin_api_key)
            .field("linkedin_secret_key", &self.linkedin_secret_key)
            .field("linkedin_access_token_url", &self.linkedin_access_token_url)
            .field("linkedin_api_url", &self.linkedin_api_url)
            .field("linkedin_jsapi_url", &self.linkedin_jsapi_url)
            .field("linkedin_client_id", &self.linkedin_client_id)
            .field("linkedin_client_secret", &self.linkedin_client_secret)
            .field("linkedin_oidc_issuer", &self.linkedin_oidc_issuer)
            .field(
                "linkedin_oidc_redirect_url",
                &self.linkedin_oidc_redirect_url,
            )
            .field("linkedin_oidc_scopes", &self.linkedin_oidc_scopes)
            .field("sandbox", &self.sandbox)
            .field("bind", &self.bind)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("public_origin", &self.public_origin)
            .field("session_store", &self.session_store)
            .field("memory_sessions", &self.memory_sessions)
            .field("session_keys", &self.session_keys)
            .field("session_key_file", &self.session_key_file)
            .field("session_idle_minutes", &self.session_idle_minutes)
            .field("upstream_timeout_ms", &self.upstream_timeout_ms)
            .field("upstream_ca_cert", &self.upstream_ca_cert)
            .field("max_connections", &self.max_connections)
            .field("metrics_bind", &self.metrics_bind)
            .field("admin_token", &self.admin_token)
            .field("http_redirect_bind", &self.http_redirect_bind)
            .field("rate_limit", &self.rate_limit)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("log_format", &self.log_format)
            .field("rust_log", &self.rust_log)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["linkedin-token-exchange"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).unwrap()
    }

    #[test]
    fn no_configuration_means_sandbox_mode_with_the_documented_defaults() {
        let config = Config::defaults();
        assert!(config.sandbox_enabled());
        assert_eq!(config.bind.to_string(), "127.0.0.1:8443");
        assert_eq!(config.session_idle(), Duration::from_secs(1440 * 60));
        assert_eq!(config.app_credentials().unwrap().map(|c| c.api_key), None);
    }

    #[test]
    fn a_short_admin_token_or_one_without_the_metrics_listener_is_refused_naming_it() {
        let long = "a".repeat(ADMIN_TOKEN_MIN_LEN);
        let short = "a".repeat(ADMIN_TOKEN_MIN_LEN - 1);
        let metrics = ["--metrics-bind", "127.0.0.1:0"];
        let err = parse(&[&["--admin-token", short.as_str()][..], &metrics].concat())
            .admin_token()
            .unwrap_err();
        assert_eq!(err.variable, "ADMIN_TOKEN");
        assert!(!err.to_string().contains(&short), "{err}");
        let err = parse(&["--admin-token", long.as_str()])
            .admin_token()
            .unwrap_err();
        assert!(err.to_string().contains("METRICS_BIND"), "{err}");
        let config = parse(&[&["--admin-token", long.as_str()][..], &metrics].concat());
        assert_eq!(config.admin_token().unwrap().unwrap().expose(), long);
        assert!(!format!("{config:?}").contains(&long));
        assert_eq!(parse(&[]).admin_token().unwrap(), None);
    }

    #[test]
    fn a_key_without_a_secret_is_refused_naming_the_secret() {
        let err = parse(&["--linkedin-api-key", "abc"])
            .app_credentials()
            .unwrap_err();
        assert_eq!(err.variable, "LINKEDIN_SECRET_KEY");
        assert!(!parse(&["--linkedin-api-key", "abc"]).sandbox_enabled());
    }

    #[test]
    fn closing_connections_is_for_the_sandbox_only() {
        assert!(Config::defaults().keep_alive().unwrap());
        assert!(
            !parse(&["--sandbox-keep-alive", "false"])
                .keep_alive()
                .unwrap()
        );
        let err = parse(&[
            "--linkedin-api-key",
            "abc",
            "--linkedin-secret-key",
            "s",
            "--sandbox-keep-alive",
            "false",
        ])
        .keep_alive()
        .unwrap_err();
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
            .public_origins("127.0.0.1:9000".parse().unwrap())
            .unwrap();
        assert_eq!(origins, ["https://example.com", "https://a.example:8443"]);
    }

    #[test]
    fn the_default_https_port_is_left_out_of_the_default_origins() {
        let origins = Config::defaults()
            .public_origins("127.0.0.1:443".parse().unwrap())
            .unwrap();
        assert_eq!(origins, ["https://localhost", "https://127.0.0.1"]);
        let origins = Config::defaults()
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
    fn store_urls_parse_and_show_host_port_and_database_but_no_password() {
        assert_eq!("memory".parse::<StoreUrl>(), Ok(StoreUrl::Memory));
        assert_eq!(
            "sqlite://data/sessions.db".parse::<StoreUrl>(),
            Ok(StoreUrl::Sqlite("data/sessions.db".into()))
        );
        let pg: StoreUrl = "postgres://user:pw@db.example:6543/app".parse().unwrap();
        assert_eq!(pg.to_string(), "postgres://db.example:6543/app");
        let redis: StoreUrl = "rediss://:pw@cache.example:6380/2".parse().unwrap();
        assert_eq!(redis.to_string(), "rediss://cache.example:6380/2");
        assert!(!format!("{redis:?}").contains("pw"));
        for bad in ["mysql://x", "sqlite://", "redis://", "postgres://:5432/x"] {
            assert!(bad.parse::<StoreUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_invalid_log_filter_is_refused_naming_rust_log() {
        let argv = ["x", "--rust-log", "info,[=bad"];
        let message = Config::try_parse_from(argv).err().unwrap().to_string();
        assert!(message.contains("RUST_LOG"), "{message}");
        assert!(
            parse(&["--rust-log", "warn,linkedin_token_exchange=debug"])
                .rust_log
                .contains("debug")
        );
    }

    #[test]
    fn rate_limits_and_trusted_proxies_parse() {
        assert_eq!(Config::defaults().rate_limit.to_string_for_test(), "20,2");
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
    fn debug_output_redacts_the_secret() {
        let config = parse(&[
            "--linkedin-api-key",
            "k",
            "--linkedin-secret-key",
            "hunter2",
        ]);
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
