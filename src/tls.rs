//! TLS material: loading the PEM pair, or generating a self-signed one for local development
//! (rcgen) when both files are missing, and turning it into a rustls server configuration
//! whose every failure names the file at fault; and the process's one crypto provider.
//! Listening is `server`'s business.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CipherSuite, ServerConfig};

use crate::config::ConfigError;

/// ring, with the AES-128-GCM suites ahead of their AES-256 siblings, as browsers order them.
/// Both sides of a handshake here (this server for its clients, the upstream client for
/// LinkedIn) follow the client's order, so the key schedule runs on SHA-256, which the CPU
/// computes in hardware, instead of SHA-384: through an upstream that closes its connections,
/// 5 % fewer instructions per exchange (docs/performance.md). Every suite stays offered.
pub fn crypto_provider() -> CryptoProvider {
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

/// Makes [`crypto_provider`] the process's default, used by every rustls configuration built
/// without one (reqwest's among them). A second call, or a provider installed before, wins
/// nothing and harms nothing.
pub fn install_crypto_provider() {
    let _ = crypto_provider().install_default();
}

/// The HTTP versions a server offers in ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2, then HTTP/1.1: the server's own.
    Http2AndHttp1,
    /// HTTP/1.1 only: a sandbox that closes every connection (`SANDBOX_KEEP_ALIVE=false`).
    Http1Only,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Self::Http2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Self::Http1Only => vec![b"http/1.1".to_vec()],
        }
    }
}

/// The names a generated certificate is valid for.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate chain and its key, both PEM.
pub struct TlsMaterial {
    /// The certificate chain.
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Vec<u8>,
    /// Whether this start generated them.
    pub generated: bool,
}

/// Loads `cert` and `key`; when both are missing, generates a self-signed pair for
/// localhost, 127.0.0.1 and ::1 and writes it there (the key readable by its owner only).
pub fn load_or_generate(cert: &Path, key: &Path) -> Result<TlsMaterial, ConfigError> {
    match (cert.exists(), key.exists()) {
        (true, true) => {
            let cert_pem = std::fs::read(cert).map_err(|e| {
                ConfigError::new("TLS_CERT", format!("cannot read {}: {e}", cert.display()))
            })?;
            let key_pem = std::fs::read(key).map_err(|e| {
                ConfigError::new("TLS_KEY", format!("cannot read {}: {e}", key.display()))
            })?;
            Ok(TlsMaterial {
                cert_pem,
                key_pem,
                generated: false,
            })
        }
        (false, false) => generate(cert, key),
        (false, true) => Err(ConfigError::new(
            "TLS_CERT",
            format!(
                "{} is missing but its key exists; provide both or neither",
                cert.display()
            ),
        )),
        (true, false) => Err(ConfigError::new(
            "TLS_KEY",
            format!(
                "{} is missing but its certificate exists; provide both or neither",
                key.display()
            ),
        )),
    }
}

impl TlsMaterial {
    /// The rustls configuration for this pair, offering `alpn`. A certificate
    /// that does not parse names `TLS_CERT`; a key that does not parse, or does not belong to
    /// the certificate, names `TLS_KEY`.
    pub fn server_config(&self, alpn: Alpn) -> Result<Arc<ServerConfig>, ConfigError> {
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new("TLS_CERT", format!("not a PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(ConfigError::new("TLS_CERT", "holds no PEM certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| ConfigError::new("TLS_KEY", format!("not a PEM private key: {e}")))?;
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                ConfigError::new(
                    "TLS_KEY",
                    format!("unusable with the certificate of TLS_CERT: {e}"),
                )
            })?;
        config.alpn_protocols = alpn.protocols();
        Ok(Arc::new(config))
    }
}

fn generate(cert: &Path, key: &Path) -> Result<TlsMaterial, ConfigError> {
    let names: Vec<String> = LOCAL_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ConfigError::new("TLS_CERT", format!("cannot generate a certificate: {e}")))?;
    let cert_pem = certified.cert.pem().into_bytes();
    let key_pem = certified.signing_key.serialize_pem().into_bytes();
    write_file(cert, &cert_pem, 0o644).map_err(|e| ConfigError::new("TLS_CERT", e))?;
    write_file(key, &key_pem, 0o600).map_err(|e| ConfigError::new("TLS_KEY", e))?;
    Ok(TlsMaterial {
        cert_pem,
        key_pem,
        generated: true,
    })
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(contents).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn generates_a_pair_once_then_loads_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c/cert.pem"), dir.path().join("c/key.pem"));
        let first = load_or_generate(&cert, &key).unwrap();
        assert!(first.generated);
        assert!(String::from_utf8_lossy(&first.cert_pem).contains("BEGIN CERTIFICATE"));
        let second = load_or_generate(&cert, &key).unwrap();
        assert!(!second.generated);
        assert_eq!(first.cert_pem, second.cert_pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn a_garbage_or_foreign_key_names_the_key_and_a_garbage_certificate_names_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let pair = |name: &str| {
            load_or_generate(
                &dir.path().join(format!("{name}.pem")),
                &dir.path().join(format!("{name}-key.pem")),
            )
            .unwrap()
        };
        let refused = |material: &TlsMaterial| {
            material
                .server_config(Alpn::Http2AndHttp1)
                .err()
                .unwrap()
                .variable
        };
        let (a, b) = (pair("a"), pair("b"));
        assert!(a.server_config(Alpn::Http2AndHttp1).is_ok());
        let foreign = TlsMaterial {
            cert_pem: a.cert_pem.clone(),
            key_pem: b.key_pem.clone(),
            generated: false,
        };
        assert_eq!(refused(&foreign), "TLS_KEY");
        let garbage_key = TlsMaterial {
            key_pem: b"garbage".to_vec(),
            ..foreign
        };
        assert_eq!(refused(&garbage_key), "TLS_KEY");
        let garbage_cert = TlsMaterial {
            cert_pem: b"garbage".to_vec(),
            key_pem: a.key_pem.clone(),
            generated: false,
        };
        assert_eq!(refused(&garbage_cert), "TLS_CERT");
    }

    #[test]
    fn a_key_without_its_certificate_names_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "x").unwrap();
        let err = load_or_generate(&dir.path().join("cert.pem"), &key)
            .err()
            .unwrap();
        assert_eq!(err.variable, "TLS_CERT");
    }
}
