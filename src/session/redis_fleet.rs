//! Redis as a fleet runs it: the `redis-sentinel://` and `redis-cluster://` store URLs
//! ([`FleetUrl`], parsed and shown without a password), and [`connect`], the one way every
//! Redis store (plain, Sentinel, Cluster) is reached: a fred [`Pool`] whose commands fail
//! within `STORE_TIMEOUT` and whose connections come back by themselves.
//!
//! Sentinel and Cluster are fred's own: on a lost connection a Sentinel client asks the
//! sentinels for the primary again (and checks its `ROLE`) on each reconnection, which is
//! how a promoted replica is followed when the old primary dies; a primary demoted while
//! alive is caught by asking the sentinels every second (`follow_promotions`). A Cluster
//! client follows `MOVED`/`ASK` and refreshes its slot map. What uses the store (the sessions, the shared rate-limit budget) sees the
//! same kind of client on all three.

use std::time::Duration;

use fred::prelude::{
    Client, ClientLike, Config as RedisConfig, ConnectionConfig, PerformanceConfig, Pool,
    ReconnectPolicy, Server, ServerConfig,
};
use fred::types::config::ClusterDiscoveryPolicy;
use fred::types::{ClusterHash, CustomCommand};

use crate::config::{FleetKind, FleetUrl, StoreUrl};
use crate::limits::STORE_TIMEOUT;

/// How long connecting may take before the start is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most time between two reconnection attempts: a promoted primary is found within it.
const MAX_RECONNECT_DELAY_MS: u32 = 1_000;
/// How often the sentinels are asked which node is the primary.
const PROMOTION_CHECK: Duration = Duration::from_secs(1);

/// How fred reaches a fleet: built here, beside the connection, not with the URL's parsing
/// (`config::store_url`).
impl FleetUrl {
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
            password: self.password().map(str::to_owned),
            ..RedisConfig::default()
        }
    }
}

/// Why a Redis store could not be reached at start.
#[derive(Debug)]
pub(crate) struct RedisConnectError {
    /// The step that failed.
    pub what: &'static str,
    /// What went wrong.
    pub detail: String,
}

/// A connected pool of `size` clients for `url` (`redis://`, `rediss://`, Sentinel or
/// Cluster), bounded: a command fails after `STORE_TIMEOUT` instead of queueing for a whole
/// outage, and a lost connection is retried at least every second for as long as it takes
/// (each retry asks the sentinels afresh). A store that is not Redis is an error.
pub(crate) async fn connect(url: &StoreUrl, size: usize) -> Result<Pool, RedisConnectError> {
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
            password: fleet.password().map(str::to_owned),
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

    #[test]
    fn fred_is_given_every_node_and_the_password() {
        let fleet = |text: &str| match FleetUrl::parse(text) {
            Some(Ok(url)) => url,
            other => panic!("{text}: {other:?}"),
        };
        let cluster = fleet("redis-cluster://a:7000,b:7001").config();
        assert!(matches!(
            cluster.server,
            ServerConfig::Clustered { ref hosts, .. } if hosts.len() == 2
        ));
        let sentinel = fleet("redis-sentinel://app:s%40cret@s1:1,s2:2/svc/3").config();
        assert!(matches!(
            sentinel.server,
            ServerConfig::Sentinel { ref hosts, ref service_name } if hosts.len() == 2 && service_name == "svc"
        ));
        assert_eq!(sentinel.database, Some(3));
        assert_eq!(sentinel.username.as_deref(), Some("app"));
        assert_eq!(sentinel.password.as_deref(), Some("s@cret"));
    }
}
