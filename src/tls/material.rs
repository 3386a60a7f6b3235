//! The server's TLS material: loading the PEM pair, or generating a self-signed one for local
//! development (rcgen) when both files are missing at the default paths (and replacing it when
//! it has expired or soon will), and turning it into a rustls server configuration whose
//! every failure names the file at fault.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use crate::config::ConfigError;

/// The HTTP versions a server offers in ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alpn {
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

/// The common name of a generated certificate: it tells a pair this service made from one the
/// operator supplied.
pub(crate) const GENERATED_NAME: &str = "linkedin-token-exchange development certificate";

/// How long a generated certificate is valid.
pub(crate) const GENERATED_VALIDITY: Duration = Duration::days(365);

/// A generated certificate that expires within this is replaced at start.
pub(crate) const RENEW_BEFORE: Duration = Duration::days(7);

/// The common name rcgen gives by default: what versions before the fourth round generated at
/// the default paths, valid until the year 4096. Such a pair is replaced like an expiring one.
const EARLIER_GENERATED_NAME: &str = "rcgen self signed cert";

/// Where the pair is, and whether the service may make it: only at the default paths.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PairPaths<'a> {
    /// `TLS_CERT`.
    pub cert: &'a Path,
    /// `TLS_KEY`.
    pub key: &'a Path,
    /// Whether both are the default paths, where a development pair is generated (and
    /// renewed); a path the operator named must exist.
    pub defaults: bool,
}

/// What [`load_or_create`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Read the files as they were.
    Loaded,
    /// Generated a new development pair (none was there).
    Generated,
    /// Replaced a generated pair that had expired or expired within [`RENEW_BEFORE`].
    Renewed {
        /// When the old certificate expired, or would have.
        expired: OffsetDateTime,
    },
}

/// A certificate chain and its key, both PEM.
pub(crate) struct TlsMaterial {
    /// The certificate chain.
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Vec<u8>,
    /// Whether this start generated them.
    pub generated: bool,
}

/// Loads the pair at `paths`. At the default paths only: when both files are missing,
/// generates a self-signed pair for localhost, 127.0.0.1 and ::1 (the key readable by its
/// owner only), and replaces a pair generated earlier (its common name is
/// [`GENERATED_NAME`]) that has expired or expires within [`RENEW_BEFORE`]. A pair the
/// operator supplied is never touched; a path the operator named that does not exist is an
/// error naming its variable, and no folder is created.
pub(crate) fn load_or_create(paths: PairPaths<'_>) -> Result<(TlsMaterial, Origin), ConfigError> {
    let PairPaths {
        cert,
        key,
        defaults,
    } = paths;
    if !defaults {
        for (path, variable) in [(cert, "TLS_CERT"), (key, "TLS_KEY")] {
            if !path.exists() {
                return Err(ConfigError::new(
                    variable,
                    format!(
                        "{} does not exist (a development certificate is generated only at the default paths, TLS_CERT=certs/localhost.pem and TLS_KEY=certs/localhost-key.pem)",
                        path.display()
                    ),
                ));
            }
        }
        return Ok((load_or_generate(cert, key)?, Origin::Loaded));
    }
    let material = load_or_generate(cert, key)?;
    if material.generated {
        return Ok((material, Origin::Generated));
    }
    let left = |expires: OffsetDateTime| expires - OffsetDateTime::now_utc();
    match generated_expiry(&material.cert_pem) {
        Some(expires)
            if left(expires) < RENEW_BEFORE
                || left(expires) > GENERATED_VALIDITY + Duration::days(1) =>
        {
            for path in [cert, key] {
                std::fs::remove_file(path).map_err(|e| {
                    ConfigError::new(
                        "TLS_CERT",
                        format!("cannot replace the expiring {}: {e}", path.display()),
                    )
                })?;
            }
            Ok((generate(cert, key)?, Origin::Renewed { expired: expires }))
        }
        _ => Ok((material, Origin::Loaded)),
    }
}

/// Loads `cert` and `key`; when both are missing, generates a self-signed pair for
/// localhost, 127.0.0.1 and ::1 and writes it there (the key readable by its owner only).
pub(crate) fn load_or_generate(cert: &Path, key: &Path) -> Result<TlsMaterial, ConfigError> {
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
    pub(crate) fn server_config(&self, alpn: Alpn) -> Result<Arc<ServerConfig>, ConfigError> {
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

/// When the first certificate of `pem` expires, if it is one this service generated (its
/// subject holds [`GENERATED_NAME`], or the name earlier versions generated it with); `None`
/// for any other, or one that does not parse.
pub(crate) fn generated_expiry(pem: &[u8]) -> Option<OffsetDateTime> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (subject, not_after) = der::subject_and_not_after(&der)?;
    [GENERATED_NAME, EARLIER_GENERATED_NAME]
        .iter()
        .any(|name| subject.windows(name.len()).any(|w| w == name.as_bytes()))
        .then_some(not_after)
}

/// A development pair for localhost, 127.0.0.1 and ::1, named [`GENERATED_NAME`], valid from
/// a day ago (clocks differ) for [`GENERATED_VALIDITY`], in PEM: the certificate and its key.
pub(crate) fn development_pair(validity: Duration) -> Result<(String, String), rcgen::Error> {
    let names: Vec<String> = LOCAL_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(names)?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, GENERATED_NAME);
    params.distinguished_name = name;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + validity;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn generate(cert: &Path, key: &Path) -> Result<TlsMaterial, ConfigError> {
    let (cert_pem, key_pem) = development_pair(GENERATED_VALIDITY)
        .map_err(|e| ConfigError::new("TLS_CERT", format!("cannot generate a certificate: {e}")))?;
    let (cert_pem, key_pem) = (cert_pem.into_bytes(), key_pem.into_bytes());
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

/// Just enough DER to read a certificate's subject and `notAfter` (RFC 5280 section 4.1).
mod der {
    use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

    /// One element: its tag, its contents, and what follows it.
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// The subject (its DER contents) and the `notAfter` of the certificate `der`.
    pub(super) fn subject_and_not_after(der: &[u8]) -> Option<(&[u8], OffsetDateTime)> {
        let (0x30, certificate, _) = element(der)? else {
            return None;
        };
        let (0x30, tbs, _) = element(certificate)? else {
            return None;
        };
        // The version (when present, tagged [0]), then the serial number.
        let (tag, _, mut rest) = element(tbs)?;
        if tag == 0xa0 {
            (_, _, rest) = element(rest)?;
        }
        let (_, _, rest) = element(rest)?; // the signature algorithm
        let (_, _, rest) = element(rest)?; // the issuer
        let (0x30, validity, rest) = element(rest)? else {
            return None;
        };
        let (0x30, subject, _) = element(rest)? else {
            return None;
        };
        let (_, _, after) = element(validity)?; // notBefore
        let (tag, not_after, _) = element(after)?;
        Some((subject, time_of(tag, not_after)?))
    }

    /// A UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, 0x18).
    fn time_of(tag: u8, text: &[u8]) -> Option<OffsetDateTime> {
        let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
        let digits = |range: std::ops::Range<usize>| text.get(range)?.parse::<u16>().ok();
        let (year, rest) = match (tag, text.len()) {
            (0x17, 12) => {
                let yy = i32::from(digits(0..2)?);
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
            }
            (0x18, 14) => (i32::from(digits(0..4)?), 4),
            _ => return None,
        };
        let at =
            |i: usize| digits(rest + 2 * i..rest + 2 * i + 2).and_then(|v| u8::try_from(v).ok());
        let date = Date::from_calendar_date(year, Month::try_from(at(0)?).ok()?, at(1)?).ok()?;
        let time = Time::from_hms(at(2)?, at(3)?, at(4)?).ok()?;
        Some(PrimitiveDateTime::new(date, time).assume_utc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_named_for_the_service_and_valid_for_at_most_a_year() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let material = load_or_generate(&cert, &key).unwrap();
        let der = CertificateDer::pem_slice_iter(&material.cert_pem)
            .next()
            .unwrap()
            .unwrap();
        let (subject, not_after) = der::subject_and_not_after(&der).unwrap();
        assert!(
            String::from_utf8_lossy(subject).contains(GENERATED_NAME),
            "{subject:?}"
        );
        let left = not_after - OffsetDateTime::now_utc();
        assert!(
            left <= Duration::days(365) && left > Duration::days(364),
            "valid for {left}"
        );
        assert_eq!(generated_expiry(&material.cert_pem), Some(not_after));
    }

    #[test]
    fn a_certificate_of_another_name_is_not_ours() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, "mkcert development certificate");
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().unwrap();
        let other = params.self_signed(&key).unwrap();
        assert_eq!(generated_expiry(other.pem().as_bytes()), None);
        assert_eq!(generated_expiry(b"garbage"), None);
    }

    #[test]
    fn what_earlier_versions_generated_is_ours_and_valid_until_4096() {
        let earlier = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let expires = generated_expiry(earlier.cert.pem().as_bytes()).unwrap();
        assert_eq!(expires.year(), 4096);
    }

    #[test]
    fn der_times_read_both_encodings() {
        // Before 2050 rcgen writes a UTCTime (the test above); after, a GeneralizedTime.
        let (cert, _) = development_pair(Duration::days(40_000)).unwrap();
        // 2136 or so: past 2049, rcgen writes a GeneralizedTime.
        let expires = generated_expiry(cert.as_bytes()).unwrap();
        assert!(expires.year() > 2100, "{expires}");
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
