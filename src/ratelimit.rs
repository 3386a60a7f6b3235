//! Rate limits on the sign-in routes: per client address (`RATE_LIMIT`, a burst then a
//! steady rate), and per JSAPI token, so that replaying one cookie without a session cannot
//! buy unlimited upstream exchanges. The client address is the peer's, or, when the peer is
//! one of `TRUSTED_PROXIES`, the nearest untrusted address in its `X-Forwarded-For`. IPv6
//! clients share a budget per /64.
//!
//! With `RATE_LIMIT_STORE=redis` a second tier ([`shared`]) draws on one budget per client
//! and per token for the whole fleet, after the per-instance check has passed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::client_addr::client_addr;
use crate::config::{RateLimit, TrustedProxies};
use crate::error::AppError;

pub(crate) mod shared;

use shared::SharedBudget;

/// How the rate limit finds a request's client when the host says so: a function of the
/// request (the host's own rule, such as a header its proxy sets).
pub(crate) type ClientKey = Arc<dyn Fn(&Request) -> IpAddr + Send + Sync>;

/// How often the limiters forget clients that are back to a full burst.
const FORGET_INTERVAL: Duration = Duration::from_secs(60);

/// The limiters, per instance and (when configured) shared by the fleet, and how a request's
/// client is found; cheap to clone. With `RATE_LIMIT=off` every check passes.
#[derive(Clone, Default)]
pub(crate) struct RateLimits(
    Option<Arc<Inner>>,
    Option<Arc<SharedBudget>>,
    Option<ClientKey>,
);

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
    pub(crate) fn new(limit: RateLimit, trusted: Option<TrustedProxies>) -> Self {
        let RateLimit::PerClient { burst, per_second } = limit else {
            return Self(None, None, None);
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
        Self(Some(inner), None, None)
    }

    /// These limits, with clients told apart by `key` instead of the peer's address.
    pub(crate) fn with_client_key(mut self, key: Option<ClientKey>) -> Self {
        self.2 = key;
        self
    }

    /// The client of `request`: the host's key function, or the peer's address (through
    /// `TRUSTED_PROXIES`). `None` when neither can be seen: the app is not served with
    /// `into_make_service_with_connect_info`.
    fn client_of(&self, request: &Request) -> Option<IpAddr> {
        if let Some(key) = &self.2 {
            return Some(key(request));
        }
        let ConnectInfo(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
        Some(self.client_addr(peer.ip(), request.headers()))
    }

    /// These limits, then `shared` (the fleet's budgets) when there is one.
    pub(crate) fn with_shared(mut self, shared: Option<Arc<SharedBudget>>) -> Self {
        self.1 = shared;
        self
    }

    /// One request from `client`, on this instance's budget then on the fleet's.
    pub(crate) async fn admit_client(&self, client: IpAddr) -> Result<(), AppError> {
        self.check_client(client)?;
        match &self.1 {
            Some(shared) => {
                shared
                    .check(&format!("client:{}", budget_key(client)))
                    .await
            }
            None => Ok(()),
        }
    }

    /// One exchange of the JSAPI `token`, on this instance's budget then on the fleet's.
    pub(crate) async fn admit_token(&self, token: &str) -> Result<(), AppError> {
        self.check_token(token)?;
        match &self.1 {
            Some(shared) => {
                let digest = token_key(token);
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                shared.check(&format!("token:{hex}")).await
            }
            None => Ok(()),
        }
    }

    /// Whether any limit applies (`RATE_LIMIT` is not `off`).
    pub(crate) fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The client's address: the peer's, or from `X-Forwarded-For` when the peer is trusted.
    /// IPv4 addresses that arrive mapped into IPv6 (`::ffff:a.b.c.d`, a dual-stack listener)
    /// are read as IPv4 first, for the trust check as for the key.
    pub(crate) fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_addr(
            self.0.as_ref().and_then(|i| i.trusted.as_ref()),
            peer,
            headers,
        )
    }

    /// One request from `client`. IPv6 clients are counted per /64, the smallest network a
    /// provider hands out: one subscriber cannot draw a fresh budget per address.
    pub(crate) fn check_client(&self, client: IpAddr) -> Result<(), AppError> {
        let Some(inner) = &self.0 else { return Ok(()) };
        inner
            .by_client
            .check_key(&budget_key(client))
            .map_err(|not_until| AppError::RateLimited(retry_after(&inner.clock, &not_until)))
    }

    /// One exchange of the JSAPI `token` (kept as a digest, not the token).
    pub(crate) fn check_token(&self, token: &str) -> Result<(), AppError> {
        let Some(inner) = &self.0 else { return Ok(()) };
        inner
            .by_token
            .check_key(&token_key(token))
            .map_err(|not_until| AppError::RateLimited(retry_after(&inner.clock, &not_until)))
    }
}

/// What a token's budget is kept under: the first half of its SHA-256.
fn token_key(token: &str) -> [u8; 16] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest.as_ref()[..16]);
    key
}

/// What a client's budget is kept under: an IPv4 address, or an IPv6 address's /64.
fn budget_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
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

/// Refuses a client past its limit with 429 `rate_limited` and `Retry-After`. A request
/// whose client cannot be seen fails loudly with 500 `client_address_unknown` (logged once),
/// naming the fixes: the limit is never silently off.
pub(crate) async fn limit_clients(
    State(limits): State<RateLimits>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let Some(client) = limits.client_of(&request) else {
        static LOGGED: std::sync::Once = std::sync::Once::new();
        LOGGED.call_once(|| {
            tracing::error!("{} (this is logged once)", AppError::ClientAddressUnknown);
        });
        return Err(AppError::ClientAddressUnknown);
    };
    limits.admit_client(client).await?;
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

    #[tokio::test]
    async fn forwarded_entries_with_ports_brackets_or_garbage_are_read_as_proxies_write_them() {
        let limits = limits(3, Some("127.0.0.0/8"));
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let client = |xff: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", xff.parse().unwrap());
            limits.client_addr(proxy, &headers).to_string()
        };
        assert_eq!(client("10.9.8.1, 198.51.100.8:4711"), "198.51.100.8");
        assert_eq!(client("10.9.8.1, [2001:db8::1]:4711"), "2001:db8::1");
        assert_eq!(client("10.9.8.1, [2001:db8::1]"), "2001:db8::1");
        assert_eq!(client("10.9.8.1, unknown"), "127.0.0.1");
        assert_eq!(client("10.9.8.1, unknown, 127.0.0.5"), "127.0.0.5");
        assert_eq!(
            client("::ffff:127.0.0.9, ::ffff:203.0.113.4"),
            "203.0.113.4"
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.4".parse().unwrap());
        assert_eq!(
            limits.client_addr(mapped, &headers).to_string(),
            "203.0.113.4",
            "a mapped peer is matched as IPv4"
        );
        assert_eq!(
            budget_key("2001:db8:1:2:aaaa::1".parse().unwrap()).to_string(),
            "2001:db8:1:2::"
        );
    }
}
