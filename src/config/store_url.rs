//! The store URLs, parsed and shown without a password: [`StoreUrl`] (`SESSION_STORE`) and
//! the Sentinel and Cluster deployments of [`FleetUrl`]; and the helpers that read and hide a
//! URL's userinfo wherever a person wrote one ([`split_userinfo`], [`redact_urls`],
//! [`redact_debug`]). A leaf: it imports nothing of the crate, so that `config` (which parses
//! the URLs) and `session` and `ratelimit` (which connect to them) share it without a circle.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use url::Url;

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
    /// Redis behind Sentinel (`redis-sentinel://`) or a Redis Cluster (`redis-cluster://`).
    RedisFleet(FleetUrl),
}

impl StoreUrl {
    /// Whether several instances can share this store (and so must share its keys).
    pub fn is_shared(&self) -> bool {
        matches!(
            self,
            Self::Redis(_) | Self::RedisFleet(_) | Self::Postgres(_)
        )
    }

    /// Whether the store is Redis (plain, Sentinel or Cluster).
    pub fn is_redis(&self) -> bool {
        matches!(self, Self::Redis(_) | Self::RedisFleet(_))
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
        if let Some(fleet) = FleetUrl::parse(s) {
            return fleet.map(Self::RedisFleet);
        }
        let scheme = s.split_once("://").map_or("", |(scheme, _)| scheme);
        let parse = |what: &str| {
            Url::parse(&with_escaped_userinfo(s))
                .ok()
                .filter(|url| url.host_str().is_some_and(|h| !h.is_empty()))
                .ok_or_else(|| format!("not a {what} URL with a host"))
        };
        match scheme {
            "redis" | "rediss" => parse("Redis").map(Self::Redis),
            "postgres" | "postgresql" => parse("PostgreSQL").map(Self::Postgres),
            _ => Err("expected memory, sqlite://PATH, redis://HOST:PORT, \
                 redis-sentinel://HOST:PORT[,…]/SERVICE_NAME, redis-cluster://HOST:PORT[,…] \
                 or postgres://…"
                .into()),
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
            Self::RedisFleet(fleet) => fleet.fmt(f),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// A Redis deployment of several servers, as written in `SESSION_STORE`:
/// `redis-sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]/SERVICE_NAME[/DB]` or
/// `redis-cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]`.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetUrl {
    /// Sentinel or Cluster, with what each needs besides the nodes.
    pub kind: FleetKind,
    /// The sentinels (Sentinel) or any of the nodes (Cluster).
    pub nodes: Vec<(String, u16)>,
    /// The ACL user, when one is given.
    pub username: Option<String>,
    /// The password (sent to the sentinels and to the data nodes alike); never shown.
    password: Option<String>,
}

/// Which kind of deployment a [`FleetUrl`] names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetKind {
    /// A primary and its replicas, watched by sentinels that know it as `service`.
    Sentinel {
        /// The name the sentinels monitor the primary under.
        service: String,
        /// The database number on the primary.
        db: u8,
    },
    /// A Redis Cluster (database 0 only).
    Cluster,
}

impl FleetUrl {
    /// Parses a `redis-sentinel://` or `redis-cluster://` URL; `None` for any other scheme.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let (scheme, rest) = text.split_once("://")?;
        let sentinel = match scheme {
            "redis-sentinel" => true,
            "redis-cluster" => false,
            _ => return None,
        };
        Some(Self::parse_parts(sentinel, rest))
    }

    fn parse_parts(sentinel: bool, rest: &str) -> Result<Self, String> {
        let shape = if sentinel {
            "redis-sentinel://HOST:PORT[,HOST:PORT…]/SERVICE_NAME[/DB]"
        } else {
            "redis-cluster://HOST:PORT[,HOST:PORT…]"
        };
        // The userinfo ends at the last `@`: a password may hold `/`, `?`, `#`, `:` and `@`
        // unescaped (as `openssl rand -base64` makes them), and a node list never holds `@`.
        // Nothing of the URL is quoted in an error: what is wrong is said by its shape.
        let (userinfo, after) = split_userinfo(rest);
        if after.contains(['?', '#']) {
            return Err(format!("takes no query or fragment: expected {shape}"));
        }
        let (hosts, path) = match after.find('/') {
            Some(at) => after.split_at(at),
            None => (after, ""),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(decode(password)?)),
                    None => (userinfo, None),
                };
                let user = decode(user)?;
                ((!user.is_empty()).then_some(user), password)
            }
        };
        let default_port = if sentinel { 26_379 } else { 6_379 };
        let nodes = hosts
            .split(',')
            .enumerate()
            .map(|(i, node)| {
                parse_node(node, default_port).map_err(|e| format!("node {}{e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{e}: expected {shape}"))?;
        let segments: Vec<&str> = path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let kind = if sentinel {
            let (service, db) = match segments.as_slice() {
                [service] => (*service, 0),
                [service, db] => (
                    *service,
                    db.parse::<u8>().map_err(|_| {
                        "the database after the service name is not a number from 0 to 255"
                            .to_owned()
                    })?,
                ),
                _ => {
                    return Err(format!(
                        "needs the primary's service name: expected {shape}"
                    ));
                }
            };
            FleetKind::Sentinel {
                service: decode(service)?,
                db,
            }
        } else {
            if !segments.is_empty() {
                return Err(format!(
                    "a cluster has database 0 only, so the URL takes no path: expected {shape}"
                ));
            }
            FleetKind::Cluster
        };
        Ok(Self {
            kind,
            nodes,
            username,
            password,
        })
    }

    /// The password, decoded (for connecting, with the `redis` feature; never shown).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

/// `%XX` escapes decoded, as in any URL's userinfo and path.
fn decode(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "a percent-escape decodes to something that is not UTF-8".to_owned())
}

/// `HOST:PORT`, `HOST` (the default port) or `[IPv6]:PORT`. An error says what is wrong
/// by shape (after "node N"), never quoting the node.
fn parse_node(node: &str, default_port: u16) -> Result<(String, u16), String> {
    let node = node.trim();
    let (host, port) = if let Some(rest) = node.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| " opens a [ without closing it".to_owned())?;
        (host, after.strip_prefix(':'))
    } else {
        match node.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (node, None),
        }
    };
    if host.is_empty() {
        return Err(" has no host: not HOST:PORT".to_owned());
    }
    if host.contains(['@', ' ', '/']) {
        return Err(" is not HOST:PORT".to_owned());
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| " has no port number from 1 to 65535".to_owned())?,
    };
    Ok((host.to_owned(), port))
}

/// Shows the scheme, the nodes and the path, never a user or password.
impl fmt::Display for FleetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            FleetKind::Sentinel { .. } => "redis-sentinel",
            FleetKind::Cluster => "redis-cluster",
        };
        write!(f, "{scheme}://")?;
        for (i, (host, port)) in self.nodes.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            if host.contains(':') {
                write!(f, "{comma}[{host}]:{port}")?;
            } else {
                write!(f, "{comma}{host}:{port}")?;
            }
        }
        match &self.kind {
            FleetKind::Sentinel { service, db } => write!(f, "/{service}/{db}"),
            FleetKind::Cluster => Ok(()),
        }
    }
}

impl fmt::Debug for FleetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FleetUrl({self})")
    }
}

/// `url` with its userinfo (everything between `://` and the last `@`) percent-escaped where
/// a URL needs it, so that a password holding `/`, `?`, `#` or `@` unescaped is read as the
/// password, not as the start of the path, query or fragment.
pub(super) fn with_escaped_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match split_userinfo(rest) {
            (Some(userinfo), host) => {
                format!("{scheme}://{}@{host}", escape_userinfo(userinfo))
            }
            (None, _) => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The userinfo of a URL written after `scheme://`, and what follows it: the userinfo is
/// everything up to the LAST `@`, since a password (as `openssl rand -base64` makes them) may
/// hold `/`, `?`, `#`, `:` and `@` unescaped, and a host, a port or a list of them never
/// holds `@`. `None` when there is no `@` at all.
pub(crate) fn split_userinfo(after_scheme: &str) -> (Option<&str>, &str) {
    match after_scheme.rfind('@') {
        Some(at) => (Some(&after_scheme[..at]), &after_scheme[at + 1..]),
        None => (None, after_scheme),
    }
}

/// `userinfo` as a URL must write it: every character that would end it or change its meaning
/// (`/ ? # @ \`, and a `%` that starts no `%XX` escape) percent-escaped, the first `:` kept as
/// the separator of user and password.
pub(crate) fn escape_userinfo(userinfo: &str) -> String {
    let bytes = userinfo.as_bytes();
    let mut out = String::with_capacity(userinfo.len());
    for (i, c) in userinfo.char_indices() {
        match c {
            '/' | '?' | '#' | '@' | '\\' => out.push_str(&format!("%{:02X}", c as u32)),
            '%' if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)) =>
            {
                out.push_str("%25");
            }
            c => out.push(c),
        }
    }
    out
}

/// A URL's userinfo as it may be shown: the user when it is a plain name, never the password
/// (`app:***`, `:***`, or `***` when there is no `:` or the user is not a plain name).
fn hide_userinfo(userinfo: &str) -> String {
    match userinfo.split_once(':') {
        Some((user, _)) if user.chars().all(is_plain_name_char) => format!("{user}:***"),
        _ => "***".to_owned(),
    }
}

fn is_plain_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~')
}

/// `text` with the userinfo of every URL in it hidden (`postgres://app:***@db/x`), for
/// messages that quote what a person configured. A URL runs from its `scheme://` to the next
/// whitespace; its userinfo is everything up to its last `@`, so that a
/// password holding `/ ? # @ : %` is hidden whole. Hiding too much (a path holding `@`) is
/// preferred to showing a piece of a password.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let url = &after[..end];
        match split_userinfo(url) {
            (Some(userinfo), host) => {
                out.push_str(&hide_userinfo(userinfo));
                out.push('@');
                out.push_str(host);
            }
            (None, _) => out.push_str(url),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `debug` (a value's `{:?}`) with every URL's userinfo hidden, as [`redact_urls`] does, and
/// the password of every `url::Url` written out field by field (`password: Some("…")`)
/// replaced by `***`.
pub(crate) fn redact_debug(debug: &str) -> String {
    const FIELD: &str = "password: Some(\"";
    let text = redact_urls(debug);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(FIELD) {
        let (before, after) = rest.split_at(at + FIELD.len());
        out.push_str(before);
        out.push_str("***");
        // The string ends at the first quote not escaped by a backslash.
        let mut escaped = false;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map_or(after.len(), |(i, _)| i);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

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
    fn sentinel_and_cluster_store_urls_parse_and_their_passwords_are_never_shown() {
        let sentinel = "redis-sentinel://:pa,ss@s1:26379,s2:26380/mymaster/1";
        let parsed: StoreUrl = sentinel.parse().unwrap();
        assert!(parsed.is_shared() && parsed.is_redis());
        assert_eq!(
            parsed.to_string(),
            "redis-sentinel://s1:26379,s2:26380/mymaster/1"
        );
        assert!(!format!("{parsed:?}").contains("pa"));
        assert_eq!(
            redact_urls(&format!("cannot use {sentinel}: refused")),
            "cannot use redis-sentinel://:***@s1:26379,s2:26380/mymaster/1: refused"
        );
        let cluster: StoreUrl = "redis-cluster://app:pw@n1:7000,n2:7001".parse().unwrap();
        assert_eq!(cluster.to_string(), "redis-cluster://n1:7000,n2:7001");
        let err = "redis-sentinel://s1:26379".parse::<StoreUrl>().unwrap_err();
        assert!(err.contains("SERVICE_NAME"), "{err}");
    }

    /// Passwords holding each character that ends an authority or a userinfo, and mixes.
    const HARD_PASSWORDS: [&str; 10] = [
        "Qx7k/Vz9w",
        "Qx7k#Vz9w",
        "Qx7k?Vz9w",
        "Qx7k@Vz9w",
        "Qx7k:Vz9w",
        "Qx7k%Vz9w",
        "Qx7k%2FVz9w",
        "Qx7k/Vz9w#Jm4p?Hr6t@Lb3n:Yc8d%Ge5f",
        "Qx7k@Vz9w/Jm4p@Hr6t",
        "Qx7k:Vz9w@Jm4p:Hr6t/",
    ];

    /// Fails when `shown` holds any piece of 3 characters or more of `password`.
    pub(in crate::config) fn assert_no_piece(password: &str, shown: &str) {
        let chars: Vec<char> = password.chars().collect();
        for start in 0..chars.len() {
            for end in start + 3..=chars.len() {
                let piece: String = chars[start..end].iter().collect();
                assert!(
                    !shown.contains(&piece),
                    "{piece:?} of {password:?} in {shown}"
                );
            }
        }
    }

    #[test]
    fn redaction_hides_every_password_whole_for_every_scheme() {
        let schemes = [
            ("redis", "127.0.0.1:6379/0"),
            ("rediss", "cache.example:6380/2"),
            ("redis-sentinel", "s1:26379,s2:26380/mymaster/1"),
            ("redis-cluster", "n1:7000,[::1]:7001"),
            ("postgres", "db.example:5432/app?sslmode=require"),
            ("postgresql", "db.example/app"),
            ("sqlite", "data/sessions.db"),
            ("http", "collector:4318/v1/traces"),
            ("https", "www.linkedin.com/oauth"),
        ];
        for (scheme, host) in schemes {
            for password in HARD_PASSWORDS {
                for (userinfo, user_shown) in [
                    (format!(":{password}"), ":***"),
                    (format!("app:{password}"), "app:***"),
                    (password.to_owned(), "***"),
                ] {
                    if user_shown == "***" && password.contains(':') {
                        // `Qx7k:Vz9w@` is user `Qx7k`, password `Vz9w`: the user is shown.
                        continue;
                    }
                    let url = format!("{scheme}://{userinfo}@{host}");
                    for text in [
                        url.clone(),
                        format!("cannot use {url}: refused"),
                        format!("invalid value '{url}'"),
                        format!("{{\"issuer\": \"{url}\", \"next\": 1}}"),
                    ] {
                        let shown = redact_urls(&text);
                        assert_no_piece(password, &shown);
                        assert!(
                            shown.contains(&format!("{scheme}://{user_shown}@{host}")),
                            "{text} -> {shown}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn debug_output_of_urls_shows_no_password() {
        for password in HARD_PASSWORDS
            .iter()
            .chain(&["Qx7k\"Vz9w\\", "Qx7k\\\"Vz9w"])
        {
            let encoded: String =
                percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            let url = Url::parse(&format!("https://app:{encoded}@h.example/x")).unwrap();
            let mut with_raw = url.clone();
            // The url crate escapes what it must; a raw password as set by a program.
            let _ = with_raw.set_password(Some(password));
            for value in [url, with_raw] {
                let debug = format!(
                    "Settings {{ url: {value:?}, as_text: {:?} }}",
                    value.as_str()
                );
                let shown = redact_debug(&debug);
                assert_no_piece(password, &shown);
                assert_no_piece(&encoded, &shown);
                assert!(shown.contains("password: Some(\"***\")"), "{shown}");
                assert!(
                    shown.contains("host: Some(Domain(\"h.example\"))"),
                    "{shown}"
                );
            }
        }
    }

    #[test]
    fn redaction_leaves_urls_without_userinfo_and_the_text_around_them_alone() {
        for text in [
            "no URL here: a@b, c:d",
            "cannot use redis://127.0.0.1:1/0: cannot connect: connection refused",
            "https://www.linkedin.com/oauth and http://collector:4318/v1/traces",
        ] {
            assert_eq!(redact_urls(text), text);
        }
        assert_eq!(
            redact_urls("a redis://u:p@h:1/0 and a postgres://v:q@db/x."),
            "a redis://u:***@h:1/0 and a postgres://v:***@db/x."
        );
        // A user that is not a plain name may be a piece of the password: hidden too.
        assert_eq!(redact_urls("redis://a/b:c@h"), "redis://***@h");
    }

    #[test]
    fn store_urls_read_an_unescaped_password_up_to_the_last_at_sign() {
        for password in HARD_PASSWORDS {
            for url in [
                format!("redis://app:{password}@127.0.0.1:1/0"),
                format!("rediss://:{password}@cache.example:6380/2"),
                format!("postgres://app:{password}@db.example:5432/sessions"),
                format!("redis-sentinel://app:{password}@s1:26379,s2/mymaster/1"),
                format!("redis-cluster://:{password}@n1:7000,n2:7001"),
            ] {
                let store: StoreUrl = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
                let shown = format!("{store} {store:?}");
                assert_no_piece(password, &shown);
                let decoded = percent_encoding::percent_decode_str(password)
                    .decode_utf8_lossy()
                    .into_owned();
                let expected = if password.contains("%Vz") {
                    // A `%` that starts no escape is a `%`.
                    password.to_owned()
                } else {
                    decoded
                };
                match &store {
                    StoreUrl::Redis(dsn) | StoreUrl::Postgres(dsn) => {
                        let read = percent_encoding::percent_decode_str(dsn.password().unwrap())
                            .decode_utf8()
                            .unwrap();
                        assert_eq!(read, expected, "{url}");
                        assert!(!dsn.host_str().unwrap().contains("Qx7"), "{url}");
                    }
                    StoreUrl::RedisFleet(fleet) => {
                        assert_eq!(fleet.password(), Some(expected.as_str()), "{url}");
                    }
                    other => panic!("{url}: {other:?}"),
                }
            }
        }
    }

    fn parse(text: &str) -> Result<FleetUrl, String> {
        FleetUrl::parse(text).expect("a fleet scheme")
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_the_service_and_a_database() {
        let url = parse("redis-sentinel://:s%40cret@10.0.0.1:26380,sentinel-b,[::1]:5/mymaster/3")
            .unwrap();
        assert_eq!(
            url.nodes,
            [
                ("10.0.0.1".to_owned(), 26_380),
                ("sentinel-b".to_owned(), 26_379),
                ("::1".to_owned(), 5)
            ]
        );
        assert_eq!(
            url.kind,
            FleetKind::Sentinel {
                service: "mymaster".into(),
                db: 3
            }
        );
        assert_eq!(url.password.as_deref(), Some("s@cret"));
        assert_eq!(url.username, None);
        let shown = format!("{url} {url:?}");
        assert_eq!(
            url.to_string(),
            "redis-sentinel://10.0.0.1:26380,sentinel-b:26379,[::1]:5/mymaster/3"
        );
        assert!(!shown.contains("cret"), "{shown}");
        assert_eq!(
            parse("redis-sentinel://app:pw@h:1/svc").unwrap().kind,
            FleetKind::Sentinel {
                service: "svc".into(),
                db: 0
            }
        );
    }

    #[test]
    fn cluster_urls_name_nodes_and_nothing_else() {
        let url = parse("redis-cluster://a:7000,b:7001").unwrap();
        assert_eq!(url.kind, FleetKind::Cluster);
        assert_eq!(url.to_string(), "redis-cluster://a:7000,b:7001");
    }

    #[test]
    fn malformed_fleet_urls_are_refused_with_the_expected_shape() {
        for bad in [
            "redis-sentinel://h:1",
            "redis-sentinel://h:1/",
            "redis-sentinel://h:1/svc/db9",
            "redis-sentinel://h:1/svc/0/x",
            "redis-sentinel://h:0/svc",
            "redis-sentinel://h:x/svc",
            "redis-sentinel:///svc",
            "redis-sentinel://a:1,,b:2/svc",
            "redis-cluster://a:1/0",
            "redis-cluster://a:1?x=y",
            "redis-cluster://[::1:7000",
            "redis-cluster://",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("expected") || err.contains("database"),
                "{bad}: {err}"
            );
        }
        assert!(FleetUrl::parse("redis://h:1").is_none());
    }

    #[test]
    fn errors_say_what_is_wrong_by_shape_and_quote_no_piece_of_the_url() {
        // Before, `"user:hun" has no port number…`: the authority ended at the first `/`.
        for (bad, says) in [
            (
                "redis-sentinel://user:hun/ter2@h:x/svc",
                "node 1 has no port number",
            ),
            ("redis-sentinel://user:hun/ter2@h:1", "service name"),
            ("redis-sentinel://user:hun?ter2@h:1/svc/db9", "database"),
            (
                "redis-cluster://user:hun#ter2@a:1,,b:2",
                "node 2 has no host",
            ),
            (
                "redis-cluster://user:hun@ter2@a:1,[::1:2",
                "node 2 opens a [",
            ),
            ("redis-cluster://user:hun:ter2@a:1?x=y", "no query"),
            ("redis-cluster://user:hun%ter2@a:1/0", "no path"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
            for piece in ["user", "hun", "ter2", "svc", "db9"] {
                assert!(!err.contains(piece), "{bad}: {piece} in {err}");
            }
        }
    }

    #[test]
    fn a_password_holding_slash_hash_question_at_colon_or_percent_is_read_whole() {
        for (raw, read) in [
            ("a/b", "a/b"),
            ("a#b", "a#b"),
            ("a?b", "a?b"),
            ("a@b", "a@b"),
            ("a:b", "a:b"),
            ("a%2Fb", "a/b"),
            ("a/b#c?d@e:f", "a/b#c?d@e:f"),
        ] {
            let url = parse(&format!("redis-sentinel://app:{raw}@h1:1,h2:2/svc/3")).unwrap();
            assert_eq!(url.password.as_deref(), Some(read), "{raw}");
            assert_eq!(url.username.as_deref(), Some("app"));
            assert_eq!(url.to_string(), "redis-sentinel://h1:1,h2:2/svc/3");
            let url = parse(&format!("redis-cluster://:{raw}@n:7000")).unwrap();
            assert_eq!(url.password.as_deref(), Some(read), "{raw}");
        }
    }
}
