//! The upstream client's resolver: the system's (`getaddrinfo`), with answers kept for
//! [`TTL`]. reqwest asks the resolver for every new connection, and the system lookup runs on
//! a blocking thread: through an upstream that closes its connections, that was a thread
//! hand-off and a read of `/etc/hosts` (or a query to the system's resolver) per exchange.
//! Failures are not kept; IP literals never reach a resolver (hyper parses them).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long an answer is used. `getaddrinfo` gives no TTL: this is short enough to follow a
/// DNS change within half a minute, and long enough that a busy upstream pays for one lookup
/// per host and TTL instead of one per connection.
pub(crate) const TTL: Duration = Duration::from_secs(30);
/// The most host names kept (the service talks to a handful).
const CAPACITY: u64 = 64;

/// See the module documentation.
#[derive(Clone)]
pub(crate) struct CachingResolver {
    answers: Cache<String, Arc<[SocketAddr]>>,
    lookups: Arc<AtomicU64>,
}

impl CachingResolver {
    /// A resolver that keeps each answer for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            answers: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
            lookups: Arc::default(),
        }
    }

    #[cfg(test)]
    /// How many system lookups were made.
    pub(crate) fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }
}

fn addrs(answer: Arc<[SocketAddr]>) -> Addrs {
    Box::new((0..answer.len()).map(move |i| answer[i]))
}

impl Resolve for CachingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        if let Some(answer) = self.answers.get(name.as_str()) {
            return Box::pin(std::future::ready(Ok(addrs(answer))));
        }
        let this = self.clone();
        Box::pin(async move {
            this.lookups.fetch_add(1, Ordering::Relaxed);
            let host = name.as_str().to_owned();
            let answer: Arc<[SocketAddr]> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if answer.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            this.answers.insert(host, answer.clone());
            Ok(addrs(answer))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    async fn resolve(resolver: &CachingResolver, host: &str) -> Vec<SocketAddr> {
        let name = Name::from_str(host).unwrap();
        resolver.resolve(name).await.unwrap().collect()
    }

    #[tokio::test]
    async fn an_answer_is_kept_for_its_ttl_then_looked_up_again() {
        let resolver = CachingResolver::new(Duration::from_millis(300));
        let first = resolve(&resolver, "localhost").await;
        assert!(first.iter().any(|a| a.ip().is_loopback()), "{first:?}");
        assert_eq!(resolve(&resolver, "localhost").await, first);
        assert_eq!(resolver.lookups(), 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(resolve(&resolver, "localhost").await, first);
        assert_eq!(resolver.lookups(), 2);
    }

    #[tokio::test]
    async fn a_failed_lookup_is_not_kept() {
        let resolver = CachingResolver::new(TTL);
        // A name with an empty label: getaddrinfo refuses it without asking any server.
        for _ in 0..2 {
            let name = Name::from_str("bad..name").unwrap();
            assert!(resolver.resolve(name).await.is_err());
        }
        assert_eq!(resolver.lookups(), 2);
    }
}
