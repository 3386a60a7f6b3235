//! The one way tests build an HTTPS client: trusting only a test server's certificate (no
//! system roots), with a timeout so that a server that hangs fails the test instead of
//! stalling it. Callers add what they need: a cookie jar, no redirects, HTTP/1.1 only, a
//! source address.

use std::path::Path;
use std::time::Duration;

/// A client builder trusting only the certificate in the PEM file `cert`.
pub fn trusting(cert: &Path) -> reqwest::ClientBuilder {
    linkedin_token_exchange::server::install_crypto_provider();
    let pem = std::fs::read(cert).unwrap();
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
        .timeout(Duration::from_secs(30))
}
