//! The limits group: the sign-in rate limit and whom to believe about client addresses, and
//! the bounds and roots of the calls to LinkedIn.

use std::path::PathBuf;
use std::time::Duration;

use super::{RateLimit, RateLimitStore, TrustedProxies};

/// Rate limits and upstream bounds.
#[derive(clap::Args, Clone, Debug)]
pub struct Limits {
    /// Per client address, for the sign-in routes: `BURST,PER_SECOND`, or `off`.
    #[arg(
        long = "rate-limit",
        env = "RATE_LIMIT",
        value_name = "RATE_LIMIT",
        default_value = "20,2"
    )]
    pub rate_limit: RateLimit,

    /// Where the `RATE_LIMIT` budgets are kept: `local` (per instance) or `redis` (one budget
    /// shared by every instance, in the session store's Redis; the local one still applies).
    #[arg(
        long = "rate-limit-store",
        env = "RATE_LIMIT_STORE",
        value_name = "RATE_LIMIT_STORE",
        default_value = "local",
        value_enum
    )]
    pub rate_limit_store: RateLimitStore,

    /// Comma list of CIDRs (or addresses) whose `X-Forwarded-For` names the client.
    #[arg(
        long = "trusted-proxies",
        env = "TRUSTED_PROXIES",
        value_name = "TRUSTED_PROXIES"
    )]
    pub trusted_proxies: Option<TrustedProxies>,

    /// Bound on each call to LinkedIn, in milliseconds.
    #[arg(long = "upstream-timeout-ms", env = "UPSTREAM_TIMEOUT_MS", value_name = "UPSTREAM_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub upstream_timeout_ms: u64,

    /// An extra PEM root to trust for the LinkedIn URLs.
    #[arg(
        long = "upstream-ca-cert",
        env = "UPSTREAM_CA_CERT",
        value_name = "UPSTREAM_CA_CERT"
    )]
    pub upstream_ca_cert: Option<PathBuf>,
}

impl Limits {
    /// The bound on each upstream call.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }
}
