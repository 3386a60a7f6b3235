//! TLS: the process's one crypto provider (ring), which the upstream client needs in every
//! build; and, with the `server` feature, the server's TLS material: loading the PEM pair,
//! or generating a self-signed one for local development (rcgen) when both files are missing
//! at the default paths (and replacing it when it has expired or soon will), and turning it
//! into a rustls server configuration whose every failure names the file at fault.
//! Listening is `server`'s business.

use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;

#[cfg(feature = "server")]
mod material;

#[cfg(feature = "server")]
pub(crate) use material::*;

/// ring, with the AES-128-GCM suites ahead of their AES-256 siblings, as browsers order them.
/// Both sides of a handshake here (this server for its clients, the upstream client for
/// LinkedIn) follow the client's order, so the key schedule runs on SHA-256, which the CPU
/// computes in hardware, instead of SHA-384: through an upstream that closes its connections,
/// 5 % fewer instructions per exchange (docs/performance.md). Every suite stays offered.
pub(crate) fn crypto_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    provider
}

/// Makes rustls' `ring` provider the process's default, used by every rustls configuration built
/// without one (reqwest's among them). A second call, or a provider installed before, wins
/// nothing and harms nothing.
pub fn install_crypto_provider() {
    let _ = crypto_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn aes_128_gcm_leads_and_every_suite_is_still_offered() {
        let ours: Vec<_> = super::crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(ours[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut all: Vec<_> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let mut sorted = ours.clone();
        sorted.sort_by_key(|s| u16::from(*s));
        all.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted, all);
    }
}
