//! The shared tier of the rate limits (`RATE_LIMIT_STORE=redis`): one budget per client
//! address and per JSAPI token for every instance of the fleet, kept in the session store's
//! Redis (plain, Sentinel or Cluster).
//!
//! Each check is one Lua script on one key (GCRA: the key holds the theoretical arrival time
//! of the next request, in microseconds of the Redis server's clock), so it is atomic and
//! Cluster-safe, and it has the per-instance limiter's arithmetic: `BURST` requests at once,
//! then one every `1/PER_SECOND` s. When Redis is not connected, or does not answer within
//! [`SHARED_TIMEOUT`], the check passes (fail open): the local tier still applies, the failure is counted as
//! `lte_session_store_errors_total{operation="rate_limit"}`, and a warning is logged at most
//! every `WARN_EVERY`.
//!
//! The shared tier is the `redis` feature's: without it, [`SharedBudget`] has no value, and
//! only the per-instance tier applies.

#[cfg(feature = "redis")]
use std::sync::Mutex;
#[cfg(feature = "redis")]
use std::time::{Duration, Instant};

#[cfg(feature = "redis")]
use fred::prelude::{ClientLike, LuaInterface, Pool};

#[cfg(feature = "server")]
use crate::config::{ConfigError, RateLimit, RateLimitStore, StoreUrl};
use crate::error::AppError;
#[cfg(feature = "server")]
use crate::session::redis_fleet;
#[cfg(feature = "redis")]
use crate::telemetry::Telemetry;

/// The longest a shared check may take before it passes anyway.
#[cfg(feature = "redis")]
pub(crate) const SHARED_TIMEOUT: Duration = Duration::from_millis(500);
/// The least time between two warnings about the shared budget's store.
#[cfg(feature = "redis")]
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Clients the shared tier keeps to Redis (each one pipelines its commands).
#[cfg(feature = "server")]
const POOL_SIZE: usize = 2;
/// Where the budgets live in Redis (no `{`: each key hashes to its own cluster slot).
#[cfg(feature = "redis")]
const KEY_PREFIX: &str = "lte:ratelimit:";

/// GCRA on `KEYS[1]`: `ARGV[1]` is the interval between two requests in microseconds,
/// `ARGV[2]` the burst. Answers 0 when the request passes (and records it), otherwise the
/// microseconds until one would. The time is written with `%.0f`: Lua's own number-to-string
/// keeps 14 digits, and a time in microseconds has 16.
#[cfg(feature = "redis")]
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_from = next_tat - interval * burst
if now < allowed_from then
  return allowed_from - now
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX',
  math.ceil((next_tat - now) / 1000) + 1)
return 0
";

/// The fleet's budgets in Redis.
#[cfg(feature = "redis")]
pub(crate) struct SharedBudget {
    pool: Pool,
    interval_us: u64,
    burst: u32,
    telemetry: Telemetry,
    last_warning: Mutex<Option<Instant>>,
}

/// The fleet's budgets, in a build without Redis (feature `redis`): there are none, and no
/// value of this type.
#[cfg(not(feature = "redis"))]
#[derive(Debug)]
pub enum SharedBudget {}

#[cfg(not(feature = "redis"))]
impl SharedBudget {
    /// Never called: no budget exists without Redis.
    pub async fn check(&self, _key: &str) -> Result<(), AppError> {
        match *self {}
    }
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudget")
            .field("interval_us", &self.interval_us)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

// Made by the server's start only: with `redis` alone, nothing in the library makes one.
#[cfg(feature = "redis")]
#[cfg_attr(not(feature = "server"), allow(dead_code))]
impl SharedBudget {
    /// The shared budget `choice` asks for: `None` with `local` (or `RATE_LIMIT=off`), else
    /// a connection to the session store's Redis. A store that is not Redis, or one that
    /// cannot be reached, is an error naming `RATE_LIMIT_STORE`.
    #[cfg(feature = "server")]
    pub(crate) async fn connect(
        choice: RateLimitStore,
        limit: RateLimit,
        store: &StoreUrl,
        telemetry: Telemetry,
    ) -> Result<Option<Self>, ConfigError> {
        let RateLimit::PerClient { burst, per_second } = limit else {
            return Ok(None);
        };
        if choice == RateLimitStore::Local {
            return Ok(None);
        }
        if !store.is_redis() {
            return Err(ConfigError::new(
                "RATE_LIMIT_STORE",
                format!(
                    "redis keeps the budgets in the session store's Redis, but SESSION_STORE is \
                     {store}: use a redis://, redis-sentinel:// or redis-cluster:// store, or \
                     RATE_LIMIT_STORE=local"
                ),
            ));
        }
        let pool = redis_fleet::connect(store, POOL_SIZE).await.map_err(|e| {
            ConfigError::new(
                "RATE_LIMIT_STORE",
                format!("cannot use {store}: {}: {}", e.what, e.detail),
            )
        })?;
        Ok(Some(Self::new(
            pool,
            burst.get(),
            per_second.get(),
            telemetry,
        )))
    }

    /// Budgets of `burst` at once, then `per_second`, on `pool`.
    pub(crate) fn new(pool: Pool, burst: u32, per_second: u32, telemetry: Telemetry) -> Self {
        Self {
            pool,
            interval_us: 1_000_000 / u64::from(per_second.max(1)),
            burst,
            telemetry,
            last_warning: Mutex::new(None),
        }
    }

    /// One request on the budget `key` (`client:ADDRESS` or `token:DIGEST`): 429 with
    /// `Retry-After` when it is spent; passes when Redis cannot tell.
    pub(crate) async fn check(&self, key: &str) -> Result<(), AppError> {
        match self.wait_us(key).await {
            Ok(0) => Ok(()),
            Ok(wait_us) => Err(AppError::RateLimited(wait_us.div_ceil(1_000_000).max(1))),
            Err(why) => {
                self.telemetry.store_error("rate_limit");
                self.warn(&why);
                Ok(())
            }
        }
    }

    /// Microseconds until `key` admits a request (0: admitted now, and counted).
    pub(crate) async fn wait_us(&self, key: &str) -> Result<u64, String> {
        let key = format!("{KEY_PREFIX}{key}");
        let client = self.pool.next();
        // While the connection is being made again, fail at once rather than wait.
        if !client.is_connected() {
            return Err("not connected".to_owned());
        }
        // EVAL rather than EVALSHA: Redis caches the compiled script either way, and a
        // promoted replica or another cluster node never answers NOSCRIPT.
        let call = client.eval::<i64, _, _, _>(
            GCRA,
            key,
            vec![self.interval_us.to_string(), self.burst.to_string()],
        );
        match tokio::time::timeout(SHARED_TIMEOUT, call).await {
            Ok(Ok(wait)) => Ok(u64::try_from(wait).unwrap_or(0)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms",
                SHARED_TIMEOUT.as_millis()
            )),
        }
    }

    fn warn(&self, why: &str) {
        let Ok(mut last) = self.last_warning.lock() else {
            return;
        };
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                "the shared rate limit's Redis does not answer ({why}): only the per-instance \
                 limit applies until it does"
            );
        }
    }
}

#[cfg(test)]
#[cfg(feature = "server")]
mod tests {
    use fred::prelude::KeysInterface;

    use super::*;

    /// The script's arithmetic, against the machine's Redis (`TEST_REDIS_URL`, by default
    /// `redis://127.0.0.1:6379/1`) under a key of this run's own. Without a Redis the test
    /// says so and passes, unless `LTE_REQUIRE_ALL_TESTS=1` (CI), where it fails.
    #[tokio::test]
    async fn the_shared_budget_script_has_the_local_limiters_burst_and_refill() {
        let url = std::env::var("TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/1".to_owned());
        let url: StoreUrl = url.parse().expect("a Redis URL");
        let pool = match tokio::time::timeout(Duration::from_secs(2), redis_fleet::connect(&url, 1))
            .await
        {
            Ok(Ok(pool)) if pool.ping::<String>(None).await.is_ok() => pool,
            _ if std::env::var("LTE_REQUIRE_ALL_TESTS").as_deref() == Ok("1") => {
                panic!("no Redis at {url} (LTE_REQUIRE_ALL_TESTS=1 forbids skipping)")
            }
            _ => return eprintln!("SKIPPED: no Redis at {url}"),
        };
        let key = format!("test:{}", rand::random::<u64>());
        let other = format!("{key}:other");
        let budget = SharedBudget::new(pool.clone(), 3, 2, Telemetry::disabled());
        for _ in 0..3 {
            assert_eq!(budget.wait_us(&key).await, Ok(0));
        }
        let wait = budget.wait_us(&key).await.expect("Redis answers");
        assert!((400_000..=500_000).contains(&wait), "{wait} µs");
        assert!(matches!(
            budget.check(&key).await,
            Err(AppError::RateLimited(1))
        ));
        assert_eq!(budget.wait_us(&other).await, Ok(0), "another key");
        let stored = format!("lte:ratelimit:{key}");
        let ttl: i64 = pool.pttl(&stored).await.expect("PTTL");
        assert!(
            (1..=1_502).contains(&ttl),
            "the key lives until the budget is full: {ttl} ms"
        );
        let tat: String = pool.get(&stored).await.expect("GET");
        assert!(
            tat.len() >= 16 && tat.parse::<u64>().is_ok(),
            "the time is kept to the microsecond: {tat}"
        );
        tokio::time::sleep(Duration::from_micros(wait + 20_000)).await;
        assert_eq!(budget.wait_us(&key).await, Ok(0), "one more after 1/2 s");
        let wait = budget.wait_us(&key).await.expect("Redis answers");
        assert!(
            (1..=500_000).contains(&wait),
            "then refused again: {wait} µs"
        );
    }
}
