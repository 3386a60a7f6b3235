//! Redis as a fleet runs it: the `redis-sentinel://` and `redis-cluster://` store URLs
//! ([`FleetUrl`], parsed and shown without a password), and [`connect`], the one way every
//! Redis store (plain, Sentinel, Cluster) is reached: a fred [`Pool`] whose commands fail
//! within [`STORE_TIMEOUT`] and whose connections come back by themselves.
//!
//! Sentinel and Cluster are fred's own: on a lost connection a Sentinel client asks the
//! sentinels for the primary again (and checks its `ROLE`) on each reconnection, which is
//! how a promoted replica is followed when the old primary dies; a primary demoted while
//! alive is caught by asking the sentinels every second (`follow_promotions`). A Cluster
//! client follows `MOVED`/`ASK` and refreshes its slot map. What uses the store (the sessions, the shared rate-limit budget) sees the
//! same kind of client on all three.

use std::fmt;
use std::time::Duration;

use fred::prelude::{
    Client, ClientLike, Config as RedisConfig, ConnectionConfig, PerformanceConfig, Pool,
    ReconnectPolicy, Server, ServerConfig,
};
use fred::types::config::ClusterDiscoveryPolicy;
use fred::types::{ClusterHash, CustomCommand};

use super::connect::STORE_TIMEOUT;
use crate::config::StoreUrl;

/// How long connecting may take before the start is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most time between two reconnection attempts: a promoted primary is found within it.
const MAX_RECONNECT_DELAY_MS: u32 = 1_000;
/// How often the sentinels are asked which node is the primary.
const PROMOTION_CHECK: Duration = Duration::from_secs(1);

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
        let (userinfo, after) = crate::config::split_userinfo(rest);
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

    /// The password, decoded (for tests of the parser; never shown).
    #[cfg(test)]
    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// fred's configuration for this deployment.
    fn config(&self) -> RedisConfig {
        let hosts = self
            .nodes
            .iter()
            .map(|(host, port)| Server::new(host.as_str(), *port))
            .collect();
        let (server, database) = match &self.kind {
            FleetKind::Sentinel { service, db } => (
                ServerConfig::Sentinel {
                    hosts,
                    service_name: service.clone(),
                },
                Some(*db),
            ),
            FleetKind::Cluster => (
                ServerConfig::Clustered {
                    hosts,
                    policy: ClusterDiscoveryPolicy::default(),
                },
                None,
            ),
        };
        RedisConfig {
            server,
            database,
            username: self.username.clone(),
            password: self.password.clone(),
            ..RedisConfig::default()
        }
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

/// Why a Redis store could not be reached at start.
#[derive(Debug)]
pub struct RedisConnectError {
    /// The step that failed.
    pub what: &'static str,
    /// What went wrong.
    pub detail: String,
}

/// A connected pool of `size` clients for `url` (`redis://`, `rediss://`, Sentinel or
/// Cluster), bounded: a command fails after [`STORE_TIMEOUT`] instead of queueing for a whole
/// outage, and a lost connection is retried at least every second for as long as it takes
/// (each retry asks the sentinels afresh). A store that is not Redis is an error.
pub async fn connect(url: &StoreUrl, size: usize) -> Result<Pool, RedisConnectError> {
    let config = match url {
        StoreUrl::Redis(dsn) => {
            RedisConfig::from_url(dsn.as_str()).map_err(|e| RedisConnectError {
                what: "bad URL",
                detail: e.to_string(),
            })?
        }
        StoreUrl::RedisFleet(fleet) => {
            let pool = connect_with(fleet.config(), size).await?;
            if let FleetKind::Sentinel { service, .. } = &fleet.kind {
                let sentinels = sentinel_clients(fleet).await?;
                tokio::spawn(follow_promotions(sentinels, service.clone(), pool.clone()));
            }
            return Ok(pool);
        }
        other => {
            return Err(RedisConnectError {
                what: "not Redis",
                detail: format!("{other} is not a Redis store"),
            });
        }
    };
    connect_with(config, size).await
}

/// One client per sentinel of `fleet` (each reconnecting by itself), for asking which node
/// is the primary.
async fn sentinel_clients(fleet: &FleetUrl) -> Result<Vec<Client>, RedisConnectError> {
    let mut clients = Vec::with_capacity(fleet.nodes.len());
    for (host, port) in &fleet.nodes {
        let config = RedisConfig {
            server: ServerConfig::new_centralized(host.as_str(), *port),
            username: fleet.username.clone(),
            password: fleet.password.clone(),
            fail_fast: false,
            ..RedisConfig::default()
        };
        let client = Client::new(
            config,
            Some(PerformanceConfig {
                default_command_timeout: STORE_TIMEOUT,
                ..PerformanceConfig::default()
            }),
            Some(bounded_connection()),
            Some(ReconnectPolicy::new_constant(0, MAX_RECONNECT_DELAY_MS)),
        );
        // A sentinel that is down now is tried again by its client; the others answer.
        let _task = client.init().await;
        clients.push(client);
    }
    Ok(clients)
}

/// Every [`PROMOTION_CHECK`], asks the sentinels which node is the primary of `service`;
/// when the pool holds a connection to any other node, makes it connect again (through
/// the sentinels). A primary that dies is followed by the reconnection anyway; this is for
/// the one that lives on, demoted (`SENTINEL FAILOVER`, a network partition healing): its
/// connections stay open and it keeps taking writes until Sentinel turns it into a replica,
/// which may take several seconds, and whatever it took then is lost.
async fn follow_promotions(sentinels: Vec<Client>, service: String, pool: Pool) {
    let mut ticks = tokio::time::interval(PROMOTION_CHECK);
    loop {
        ticks.tick().await;
        let mut named = None;
        for sentinel in &sentinels {
            let answer: Result<Vec<String>, _> = sentinel
                .custom(
                    CustomCommand::new_static("SENTINEL", ClusterHash::FirstKey, false),
                    vec!["GET-MASTER-ADDR-BY-NAME".to_owned(), service.clone()],
                )
                .await;
            if let Ok([host, port]) = answer.as_deref() {
                named = port.parse::<u16>().ok().map(|port| (host.clone(), port));
                break;
            }
        }
        let Some((host, port)) = named else { continue };
        let stale = pool
            .active_connections()
            .iter()
            .any(|server| *server.host != *host || server.port != port);
        if stale {
            tracing::warn!(
                primary = %format!("{host}:{port}"),
                "the sentinels name another primary: reconnecting the session store"
            );
            let _ = pool.force_reconnection().await;
        }
    }
}

fn bounded_connection() -> ConnectionConfig {
    ConnectionConfig {
        connection_timeout: Duration::from_secs(1),
        internal_command_timeout: Duration::from_secs(1),
        max_command_attempts: 1,
        ..ConnectionConfig::default()
    }
}

async fn connect_with(config: RedisConfig, size: usize) -> Result<Pool, RedisConnectError> {
    let fail = |what, detail: String| RedisConnectError { what, detail };
    let performance = PerformanceConfig {
        default_command_timeout: STORE_TIMEOUT,
        ..PerformanceConfig::default()
    };
    let connection = bounded_connection();
    // No cap on attempts: a capped policy gives up during a long failover and leaves the
    // pool dead until a restart (golemcloud/golem#3358 saw exactly that with fred).
    let policy = ReconnectPolicy::new_exponential(0, 100, MAX_RECONNECT_DELAY_MS, 2);
    let pool = Pool::new(
        config,
        Some(performance),
        Some(connection),
        Some(policy),
        size,
    )
    .map_err(|e| fail("bad configuration", e.to_string()))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, pool.init()).await {
        Ok(Ok(_task)) => Ok(pool),
        Ok(Err(e)) => Err(fail("cannot connect", e.to_string())),
        Err(_) => Err(fail("cannot connect", "no answer within 5 s".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(
            url.config().server,
            ServerConfig::Clustered { ref hosts, .. } if hosts.len() == 2
        ));
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
