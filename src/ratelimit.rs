//! Rate limits on the sign-in routes: per client address (`RATE_LIMIT`, a burst then a
//! steady rate), and per JSAPI token, so that replaying one cookie without a session cannot
//! buy unlimited upstream exchanges. The client address is the peer's, or, when the peer is
//! one of `TRUSTED_PROXIES`, the nearest untrusted address in its `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{RateLimit, TrustedProxies};
use crate::error::AppError;

/// How often the limiters forget clients that are back to a full burst.
const FORGET_INTERVAL: Duration = Duration::from_secs(60);

/// The limiters; cheap to clone. With `RATE_LIMIT=off` every check passes.
#[derive(Clone, Default)]
pub struct RateLimits(Option<Arc<Inner>>);

struct Inner {
    by_client: DefaultKeyedRateLimiter<IpAddr>,
    by_token: DefaultKeyedRateLimiter<[u8; 16]>,
    trusted: Option<TrustedProxies>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RateLimits")
            .field(&self.0.is_some())
            .finish()
    }
}

impl RateLimits {
    /// Limiters for `limit`, believing `X-Forwarded-For` from `trusted` peers only. Starts a
    /// task that forgets idle clients (needs a Tokio runtime).
    pub fn new(limit: RateLimit, trusted: Option<TrustedProxies>) -> Self {
        let RateLimit::PerClient { burst, per_second } = limit else {
            return Self(None);
        };
        let quota = Quota::per_second(per_second).allow_burst(burst);
        let inner = Arc::new(Inner {
            by_client: RateLimiter::keyed(quota),
            by_token: RateLimiter::keyed(quota),
            trusted,
            clock: DefaultClock::default(),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(FORGET_INTERVAL);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.by_client.retain_recent();
                inner.by_client.shrink_to_fit();
                inner.by_token.retain_recent();
                inner.by_token.shrink_to_fit();
            }
        });
        Self(Some(inner))
    }

    /// Whether any limit applies (`RATE_LIMIT` is not `off`).
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The client's address: the peer's, or from `X-Forwarded-For` when the peer is trusted.
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let Some(trusted) = self.0.as_ref().and_then(|i| i.trusted.as_ref()) else {
            return peer;
        };
        if !trusted.contains(peer) {
            return peer;
        }
        // The rightmost address that is not a trusted proxy is the client; a list made only
        // of proxies (or none at all) leaves the peer.
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect();
        forwarded
            .into_iter()
            .rev()
            .find(|addr| !trusted.contains(*addr))
            .unwrap_or(peer)
    }

    /// One request from `client`.
    pub fn check_client(&self, client: IpAddr) -> Result<(), AppError> {
        let Some(inner) = &self.0 else { return Ok(()) };
        inner
            .by_client
            .check_key(&client)
            .map_err(|not_until| AppError::RateLimited(retry_after(&inner.clock, &not_until)))
    }

    /// One exchange of the JSAPI `token` (kept as a digest, not the token).
    pub fn check_token(&self, token: &str) -> Result<(), AppError> {
        let Some(inner) = &self.0 else { return Ok(()) };
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.as_ref()[..16]);
        inner
            .by_token
            .check_key(&key)
            .map_err(|not_until| AppError::RateLimited(retry_after(&inner.clock, &not_until)))
    }
}

/// Whole seconds until the next request would pass, at least 1.
fn retry_after(
    clock: &DefaultClock,
    not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>,
) -> u64 {
    not_until
        .wait_time_from(clock.now())
        .as_secs_f64()
        .ceil()
        .max(1.0) as u64
}

/// Refuses a client past its limit with 429 `rate_limited` and `Retry-After`.
pub async fn limit_clients(
    State(limits): State<RateLimits>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        limits.check_client(limits.client_addr(peer.ip(), request.headers()))?;
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32, trusted: Option<&str>) -> RateLimits {
        RateLimits::new(
            RateLimit::PerClient {
                burst: burst.try_into().unwrap(),
                per_second: 1.try_into().unwrap(),
            },
            trusted.map(|t| t.parse().unwrap()),
        )
    }

    #[tokio::test]
    async fn a_burst_passes_then_the_client_waits_and_others_do_not() {
        let limits = limits(3, None);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            limits.check_client(a).unwrap();
        }
        assert!(matches!(
            limits.check_client(a),
            Err(AppError::RateLimited(1))
        ));
        limits.check_client(b).unwrap();
        assert!(
            RateLimits::new(RateLimit::Off, None)
                .check_client(a)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn forwarded_addresses_count_only_from_trusted_proxies() {
        let limits = limits(3, Some("127.0.0.2"));
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        let proxy: IpAddr = "127.0.0.2".parse().unwrap();
        let stranger: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            limits.client_addr(proxy, &headers),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(limits.client_addr(stranger, &headers), stranger);
        headers.insert("x-forwarded-for", "127.0.0.2".parse().unwrap());
        assert_eq!(limits.client_addr(proxy, &headers), proxy);
    }

    #[tokio::test]
    async fn one_token_has_its_own_budget() {
        let limits = limits(2, None);
        limits.check_token("token-a").unwrap();
        limits.check_token("token-a").unwrap();
        assert!(limits.check_token("token-a").is_err());
        limits.check_token("token-b").unwrap();
    }
}
