//! The client's address as the service sees it: the peer's, or, behind `TRUSTED_PROXIES`, the
//! nearest untrusted address of `X-Forwarded-For`. A leaf (it imports only the
//! [`TrustedProxies`] type of `config`), shared by the rate limits (`ratelimit`) and the
//! request logs (`telemetry`), so that neither imports the other.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

use crate::config::TrustedProxies;

/// The client's address: the peer's, or, when the peer is one of `trusted`, the nearest
/// untrusted address of its `X-Forwarded-For`. IPv4 addresses mapped into IPv6 are read as
/// IPv4 first. Rate limits and request logs both use it.
pub(crate) fn client_addr(
    trusted: Option<&TrustedProxies>,
    peer: IpAddr,
    headers: &HeaderMap,
) -> IpAddr {
    let peer = peer.to_canonical();
    let Some(trusted) = trusted else {
        return peer;
    };
    if !trusted.contains(peer) {
        return peer;
    }
    // From the right: each trusted proxy names the address it received the request from.
    // The first address that is not a trusted proxy is the client. An entry that cannot
    // be read ends the walk too: the client is unknown and counts against the proxy that
    // wrote the entry, so that garbage cannot open a fresh budget. A list made only of
    // proxies (or none at all) leaves the nearest of them.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut nearest = peer;
    for entry in entries.into_iter().rev() {
        let Some(addr) = forwarded_addr(entry) else {
            return nearest;
        };
        if !trusted.contains(addr) {
            return addr;
        }
        nearest = addr;
    }
    nearest
}

/// An `X-Forwarded-For` entry as proxies write it: `IP`, `IP:port`, `[IPv6]` or
/// `[IPv6]:port`; anything else (`unknown`, an obfuscated name) is `None`.
fn forwarded_addr(entry: &str) -> Option<IpAddr> {
    let addr = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    Some(addr.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(xff: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", xff.parse().unwrap());
        headers
    }

    #[test]
    fn only_a_trusted_peer_names_the_client_by_x_forwarded_for() {
        let trusted: TrustedProxies = "127.0.0.0/8".parse().unwrap();
        let headers = forwarded("203.0.113.9, 198.51.100.7");
        let proxy: IpAddr = "127.0.0.2".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            client_addr(Some(&trusted), proxy, &headers).to_string(),
            "198.51.100.7"
        );
        assert_eq!(client_addr(Some(&trusted), stranger, &headers), stranger);
        assert_eq!(client_addr(None, proxy, &headers), proxy);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_addr(None, mapped, &headers).to_string(), "192.0.2.1");
    }
}
