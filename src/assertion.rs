//! The signed identity of forward authentication (`ASSERTION=on`): a compact JWS (ES256) that
//! `/auth/check` hands the app behind the proxy in `X-Auth-Request-Assertion`, and the public
//! keys that verify it (`GET /.well-known/jwks.json`).
//!
//! The keys are P-256 private keys: `ASSERTION_KEYS` (PEM files, PKCS#8 or SEC1; the first
//! signs, every one is published, so that a rotated-out key keeps verifying until the
//! assertions it signed have expired), or one key generated on the first start into
//! `ASSERTION_KEY_FILE`, kept like the session key file (mode 0600, written whole). A shared
//! session store needs `ASSERTION_KEYS`: every instance must sign with keys every other
//! instance publishes.
//!
//! Signing costs an ECDSA signature (tens of µs), so a session's assertion for an audience is
//! kept ([`CACHED_FOR`]) and handed out again until shortly before it expires.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::HeaderValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;

use crate::session::keys::{KeyError, KeySource};
use crate::session::private::{Place, narrow_to_owner, write_private};

/// How long an assertion is valid (`exp` − `iat`).
pub(crate) const LIFETIME: Duration = Duration::from_secs(300);
/// How long a signed assertion is handed out again: it then has at least a minute to live.
pub(crate) const CACHED_FOR: Duration = Duration::from_secs(240);
/// The most assertions kept (one per session and audience).
const CACHE_CAPACITY: u64 = 100_000;

/// Who an assertion names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    /// The member id (`sub`).
    pub member_id: &'a str,
    /// `email`, when known.
    pub email: Option<&'a str>,
    /// `name`, when known.
    pub name: Option<&'a str>,
    /// `flow`: `jsapi` or `oidc`.
    pub flow: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    flow: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// A P-256 key: its key pair and its JWK thumbprint (`kid`).
struct SigningKey {
    pair: EcdsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

/// The signer of assertions: the key that signs, the key set published, the issuer, and the
/// assertions kept per session.
pub(crate) struct Assertions {
    signing: SigningKey,
    jwks: String,
    issuer: String,
    rng: SystemRandom,
    hasher: std::hash::RandomState,
    /// Per session id and audience (hashed): the member and audience it was signed for (a
    /// hit is used only when both are the same), and the assertion.
    cache: moka::sync::Cache<(i128, u64), std::sync::Arc<Kept>>,
}

/// An assertion kept, with whom and what it names.
struct Kept {
    member_id: String,
    audience: String,
    value: HeaderValue,
}

impl std::fmt::Debug for Assertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertions")
            .field("signing", &self.signing)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Assertions {
    /// The signer for `issuer`, with `configured` keys (`ASSERTION_KEYS`) when given; otherwise,
    /// when the session store is not `shared`, the key in `key_file`, generated there on the
    /// first start.
    pub(crate) fn load(
        configured: &[PathBuf],
        key_file: &Path,
        shared: bool,
        issuer: String,
    ) -> Result<(Self, KeySource), KeyError> {
        let (keys, source) = if configured.is_empty() {
            if shared {
                return Err(KeyError {
                    variable: "ASSERTION_KEYS",
                    message: "is required with ASSERTION=on and a shared session store: every \
                              instance must sign with keys that every other instance publishes \
                              (make one with: openssl genpkey -algorithm EC -pkeyopt \
                              ec_paramgen_curve:P-256 -out assertion-key.pem)"
                        .into(),
                });
            }
            let (key, source) = key_from_file(key_file)?;
            (vec![key], source)
        } else {
            let keys = configured
                .iter()
                .map(|path| {
                    let pem = std::fs::read(path).map_err(|e| KeyError {
                        variable: "ASSERTION_KEYS",
                        message: format!("{}: cannot read it: {e}", path.display()),
                    })?;
                    signing_key(&pem).map_err(|message| KeyError {
                        variable: "ASSERTION_KEYS",
                        message: format!("{}: {message}", path.display()),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            (keys, KeySource::Configured(configured.len()))
        };
        let jwks = jwks(&keys);
        let signing = keys.into_iter().next().ok_or_else(|| KeyError {
            variable: "ASSERTION_KEYS",
            message: "names no key".into(),
        })?;
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_live(CACHED_FOR)
            .build();
        Ok((
            Self {
                signing,
                jwks,
                issuer,
                rng: SystemRandom::new(),
                hasher: std::hash::RandomState::new(),
                cache,
            },
            source,
        ))
    }

    /// `GET /.well-known/jwks.json`'s body.
    pub(crate) fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The assertion of `subject` in the session `session` for `audience`: the one kept, when
    /// it has at least a minute to live, else a new one (`None` only if signing failed).
    pub(crate) fn for_session(
        &self,
        session: i128,
        subject: Subject<'_>,
        audience: &str,
    ) -> Option<HeaderValue> {
        use std::hash::BuildHasher;
        let key = (session, self.hasher.hash_one(audience));
        if let Some(kept) = self.cache.get(&key)
            && kept.member_id == subject.member_id
            && kept.audience == audience
        {
            return Some(kept.value.clone());
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let token = self.sign(subject, audience, now)?;
        let mut value = HeaderValue::from_str(&token).ok()?;
        value.set_sensitive(true);
        let kept = Kept {
            member_id: subject.member_id.to_owned(),
            audience: audience.to_owned(),
            value: value.clone(),
        };
        self.cache.insert(key, std::sync::Arc::new(kept));
        Some(value)
    }

    /// A new assertion, issued at `now` (Unix seconds).
    fn sign(&self, subject: Subject<'_>, audience: &str, now: i64) -> Option<String> {
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).ok()?;
        let claims = Claims {
            iss: &self.issuer,
            aud: audience,
            sub: subject.member_id,
            email: subject.email,
            name: subject.name,
            flow: subject.flow,
            iat: now,
            exp: now + LIFETIME.as_secs() as i64,
            jti: B64URL.encode(jti),
        };
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.signing.kid});
        let mut token = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(serde_json::to_vec(&claims).ok()?)
        );
        let signature = self
            .signing
            .pair
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| tracing::warn!("signing an assertion failed"))
            .ok()?;
        token.push('.');
        token.push_str(&B64URL.encode(signature.as_ref()));
        Some(token)
    }
}

/// The published key set: every key's public half as a JWK.
fn jwks(keys: &[SigningKey]) -> String {
    let keys: Vec<_> = keys
        .iter()
        .map(|key| {
            let (x, y) = coordinates(&key.pair);
            serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": x, "y": y,
                "kid": key.kid, "alg": "ES256", "use": "sig",
            })
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// The public point's coordinates, base64url (the point is `04 || X || Y`).
fn coordinates(pair: &EcdsaKeyPair) -> (String, String) {
    let point = pair.public_key().as_ref();
    let (x, y) = point
        .get(1..)
        .unwrap_or_default()
        .split_at(32.min(point.len().saturating_sub(1)));
    (B64URL.encode(x), B64URL.encode(y))
}

/// A key from PEM text: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`), on P-256.
fn signing_key(pem: &[u8]) -> Result<SigningKey, String> {
    const NOT_P256: &str = "is not a P-256 private key in PEM (PKCS#8 \"PRIVATE KEY\" or SEC1 \
                            \"EC PRIVATE KEY\"); make one with: openssl genpkey -algorithm EC \
                            -pkeyopt ec_paramgen_curve:P-256";
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| NOT_P256.to_owned())?;
    let rng = SystemRandom::new();
    let pair = match &der {
        PrivateKeyDer::Pkcs8(der) => EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|_| NOT_P256.to_owned())?,
        PrivateKeyDer::Sec1(der) => {
            let (private, public) = sec1_parts(der.secret_sec1_der()).ok_or_else(|| {
                "is a SEC1 key without its public key; convert it with: openssl pkcs8 -topk8 \
                 -nocrypt"
                    .to_owned()
            })?;
            EcdsaKeyPair::from_private_key_and_public_key(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                private,
                public,
                &rng,
            )
            .map_err(|_| NOT_P256.to_owned())?
        }
        _ => return Err(NOT_P256.to_owned()),
    };
    let (x, y) = coordinates(&pair);
    Ok(SigningKey {
        kid: thumbprint(&x, &y),
        pair,
    })
}

/// The JWK thumbprint (RFC 7638) of a P-256 public key: SHA-256 over its members in
/// lexicographic order, base64url.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    B64URL.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// The private scalar and the public point of a SEC1 `ECPrivateKey` (RFC 5915):
/// `SEQUENCE { INTEGER 1, OCTET STRING key, [0] parameters OPTIONAL, [1] BIT STRING public }`.
fn sec1_parts(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, body, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, version, rest) = der_element(body)?;
    if tag != 0x02 || version != [1] {
        return None;
    }
    let (tag, private, mut rest) = der_element(rest)?;
    if tag != 0x04 {
        return None;
    }
    while !rest.is_empty() {
        let (tag, value, next) = der_element(rest)?;
        if tag == 0xa1 {
            let (tag, bits, _) = der_element(value)?;
            // A BIT STRING's first byte counts the unused bits: none in a point.
            return (tag == 0x03 && bits.first() == Some(&0)).then(|| (private, &bits[1..]));
        }
        rest = next;
    }
    None
}

/// One DER element: its tag, its value and what follows it (definite lengths of up to two
/// bytes, all a key needs).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => (usize::from(*rest.first()?), rest.get(1..)?),
        0x82 => (
            usize::from(*rest.first()?) << 8 | usize::from(*rest.get(1)?),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// The key in `path`, generated there (PKCS#8 PEM, mode 0600) when there is none.
fn key_from_file(path: &Path) -> Result<(SigningKey, KeySource), KeyError> {
    let file_error = |message: String| KeyError {
        variable: "ASSERTION_KEY_FILE",
        message: format!("{}: {message}", path.display()),
    };
    let loaded = |pem: &[u8]| signing_key(pem).map_err(file_error);
    match std::fs::read(path) {
        Ok(pem) if !pem.iter().all(u8::is_ascii_whitespace) => {
            narrow_to_owner(path).map_err(|e| file_error(e.to_string()))?;
            Ok((loaded(&pem)?, KeySource::Loaded(path.to_owned())))
        }
        // Empty: left by an interrupted start; nothing was signed with a key never written.
        Ok(_) => {
            let pem = generate().map_err(file_error)?;
            write_private(path, pem.as_bytes(), Place::Replace)
                .map_err(|e| file_error(format!("cannot write it: {e}")))?;
            Ok((
                loaded(pem.as_bytes())?,
                KeySource::Generated(path.to_owned()),
            ))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let pem = generate().map_err(file_error)?;
            match write_private(path, pem.as_bytes(), Place::IfAbsent) {
                Ok(()) => Ok((
                    loaded(pem.as_bytes())?,
                    KeySource::Generated(path.to_owned()),
                )),
                // Another instance starting at the same moment wrote its key first: use it.
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pem = std::fs::read(path)
                        .map_err(|e| file_error(format!("cannot read it: {e}")))?;
                    Ok((loaded(&pem)?, KeySource::Loaded(path.to_owned())))
                }
                Err(err) => Err(file_error(format!("cannot write it: {err}"))),
            }
        }
        Err(err) => Err(file_error(format!("cannot read it: {err}"))),
    }
}

/// A new P-256 key, as PKCS#8 PEM.
fn generate() -> Result<String, String> {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map(|key| key.serialize_pem())
        .map_err(|e| format!("cannot make a key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `der` as PEM with `label`.
    fn pem(label: &str, der: &[u8]) -> String {
        pem::encode(&pem::Pem::new(label, der))
    }

    /// A new key as PKCS#8 PEM, and the same key as SEC1 PEM (`openssl ec` writes SEC1 with
    /// its parameters; the API tests run that on openssl's own keys): the `ECPrivateKey`
    /// inside the PKCS#8 `PrivateKeyInfo` (RFC 5208: version, algorithm, key).
    fn pkcs8_and_sec1() -> (String, String) {
        let pkcs8 = generate().expect("key");
        let der = PrivateKeyDer::from_pem_slice(pkcs8.as_bytes()).expect("pem");
        let PrivateKeyDer::Pkcs8(der) = der else {
            panic!("not PKCS#8")
        };
        let (_, info, _) = der_element(der.secret_pkcs8_der()).expect("sequence");
        let (_, _, rest) = der_element(info).expect("version");
        let (_, _, rest) = der_element(rest).expect("algorithm");
        let (tag, sec1, _) = der_element(rest).expect("key");
        assert_eq!(tag, 0x04);
        (pkcs8, pem("EC PRIVATE KEY", sec1))
    }

    #[test]
    fn a_sec1_key_and_its_pkcs8_form_are_one_key() {
        let (pkcs8, sec1) = pkcs8_and_sec1();
        let sec1 = signing_key(sec1.as_bytes()).expect("SEC1");
        let pkcs8 = signing_key(pkcs8.as_bytes()).expect("PKCS#8");
        assert_eq!(sec1.kid, pkcs8.kid);
        assert_eq!(
            sec1.pair.public_key().as_ref(),
            pkcs8.pair.public_key().as_ref()
        );
        assert_eq!(sec1.pair.public_key().as_ref().len(), 65);
    }

    #[test]
    fn what_is_not_a_p256_private_key_is_refused_with_how_to_make_one() {
        for bad in ["", "not a key", pem("PRIVATE KEY", &[0, 0, 0]).as_str()] {
            let err = signing_key(bad.as_bytes()).expect_err(bad);
            assert!(err.contains("openssl genpkey"), "{err}");
        }
    }

    #[test]
    fn the_thumbprint_is_rfc_7638s() {
        // RFC 7517 appendix A.1's EC public key. RFC 7638 has no EC example: the value is
        // `printf %s '{"crv":"P-256","kty":"EC","x":"…","y":"…"}' | openssl dgst -sha256
        // -binary | basenc --base64url`, without the padding.
        let kid = thumbprint(
            "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
            "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
        );
        assert_eq!(kid, "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s");
    }

    #[test]
    fn an_assertion_is_a_jws_of_the_claims_and_is_kept_per_session_and_audience() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("k.pem");
        let (assertions, source) =
            Assertions::load(&[], &file, false, "https://login.example".into()).expect("keys");
        assert_eq!(source, KeySource::Generated(file.clone()));
        let subject = Subject {
            member_id: "m1",
            email: Some("ann@example.com"),
            name: None,
            flow: "oidc",
        };
        let first = assertions
            .for_session(1, subject, "https://app.example")
            .expect("signed");
        let again = assertions
            .for_session(1, subject, "https://app.example")
            .expect("kept");
        assert_eq!(first, again, "kept for the same session and audience");
        let other = assertions
            .for_session(1, subject, "https://other.example")
            .expect("signed");
        assert_ne!(first, other, "another audience, another assertion");
        let someone_else = Subject {
            member_id: "m2",
            ..subject
        };
        let theirs = assertions
            .for_session(1, someone_else, "https://app.example")
            .expect("signed");
        assert_ne!(
            first, theirs,
            "another member in the session, another assertion"
        );
        let token = first.to_str().expect("ascii");
        let parts: Vec<_> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(parts[0]).expect("b64")).expect("json");
        let claims: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(header["alg"], "ES256");
        let jwks: serde_json::Value = serde_json::from_str(assertions.jwks()).expect("jwks");
        assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
        assert_eq!(claims["iss"], "https://login.example");
        assert_eq!(claims["aud"], "https://app.example");
        assert_eq!(claims["sub"], "m1");
        assert_eq!(claims["email"], "ann@example.com");
        assert!(claims.get("name").is_none());
        assert_eq!(claims["flow"], "oidc");
        assert_eq!(
            claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
            300
        );
        assert_eq!(B64URL.decode(parts[2]).expect("b64").len(), 64);
        // The signature verifies with the published key.
        let x = B64URL
            .decode(jwks["keys"][0]["x"].as_str().expect("x"))
            .expect("x");
        let y = B64URL
            .decode(jwks["keys"][0]["y"].as_str().expect("y"))
            .expect("y");
        let point = [&[4u8][..], &x, &y].concat();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &B64URL.decode(parts[2]).expect("b64"),
            )
            .expect("verifies");
        // The file is reused at the next start.
        let (reloaded, source) =
            Assertions::load(&[], &file, false, "https://login.example".into()).expect("keys");
        assert_eq!(source, KeySource::Loaded(file));
        assert_eq!(reloaded.jwks(), assertions.jwks());
    }

    #[test]
    fn every_configured_key_is_published_and_the_first_signs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("old.pem");
        let new = dir.path().join("new.pem");
        let (_, sec1) = pkcs8_and_sec1();
        std::fs::write(&old, &sec1).expect("write");
        std::fs::write(&new, generate().expect("key")).expect("write");
        let (assertions, source) = Assertions::load(
            &[new.clone(), old.clone()],
            Path::new("unused"),
            true,
            "https://login.example".into(),
        )
        .expect("keys");
        assert_eq!(source, KeySource::Configured(2));
        let jwks: serde_json::Value = serde_json::from_str(assertions.jwks()).expect("jwks");
        let kids: Vec<_> = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_owned())
            .collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[1], signing_key(sec1.as_bytes()).expect("key").kid);
        assert_eq!(assertions.signing.kid, kids[0]);
    }

    #[test]
    fn a_shared_store_needs_configured_keys() {
        let err = Assertions::load(&[], Path::new("x"), true, "https://l.example".into())
            .expect_err("shared");
        assert_eq!(err.variable, "ASSERTION_KEYS");
    }
}
