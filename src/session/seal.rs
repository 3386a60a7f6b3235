//! PURE: sealing session records at rest with AES-256-GCM (ring).
//!
//! A [`Keyring`] holds one or more 32-byte keys: the first seals, every one opens, so a key
//! can rotate without signing anyone out. A sealed value is text,
//! `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`: the key id (8 hex digits, derived
//! from the key) says which key sealed it, so opening tries one key, and the associated data
//! (the session id, chosen by the caller) binds it to its session. Nonces are 96 random bits,
//! fresh for every seal. Keys, nonces and associated data come in as arguments; no I/O here.
//!
//! Each key also derives a key of its own for session handles ([`Keyring::handle`]): an
//! opaque name for a session that a member may see (their own sessions' list), which no one
//! can turn back into the session id, and which every instance sharing the keys computes alike.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The length of a key.
pub(crate) const KEY_LEN: usize = 32;
/// The format's version prefix.
const VERSION: &str = "v1";

/// A key's public name: 4 bytes of SHA-256 over a label and the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyId([u8; 4]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    /// Not in the sealed format at all.
    #[error("not a sealed value")]
    Malformed,
    /// Sealed with a key this keyring does not hold.
    #[error("sealed with key {0}, which is not configured")]
    UnknownKey(String),
    /// The key is known, but the value was altered or belongs to other associated data.
    #[error("does not open with key {0}: altered, or moved from another session")]
    Rejected(String),
}

struct Key {
    id: KeyId,
    /// Derived from the key: names sessions by handle ([`Keyring::handle`]).
    handles: ring::hmac::Key,
    /// `v1.<id>.`, what every value this key seals starts with (made once, not per seal).
    prefix: String,
    aead: LessSafeKey,
}

/// The keys that seal and open records; see the module documentation.
pub(crate) struct Keyring {
    keys: Vec<Key>,
    random: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// A keyring of `keys`, the first of which seals. `None` when there is no key.
    pub(crate) fn new(keys: &[[u8; KEY_LEN]]) -> Option<Self> {
        let keys: Vec<Key> = keys
            .iter()
            .filter_map(|bytes| {
                let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).ok()?);
                let id = key_id(bytes);
                Some(Key {
                    id,
                    handles: handle_key(bytes),
                    prefix: format!("{VERSION}.{id}."),
                    aead,
                })
            })
            .collect();
        (!keys.is_empty()).then(|| Self {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// The id of the key that seals.
    pub(crate) fn sealing_key_id(&self) -> KeyId {
        self.keys[0].id
    }

    /// Seals `plaintext` for `aad` under the first key, with a fresh random nonce.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        if self.random.fill(&mut nonce).is_err() {
            // The system's randomness failing is not recoverable: never reuse a nonce.
            std::process::abort();
        }
        self.seal_with_nonce(plaintext, aad, nonce)
    }

    /// Seals with a given nonce: for known-answer tests only; a nonce must never repeat.
    pub(crate) fn seal_with_nonce(
        &self,
        plaintext: &[u8],
        aad: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> String {
        let key = &self.keys[0];
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let Ok(tag) = key.aead.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut sealed[NONCE_LEN..],
        ) else {
            // Only a plaintext over 64 GiB fails: records are a few hundred bytes.
            std::process::abort();
        };
        sealed.extend_from_slice(tag.as_ref());
        let mut text = String::with_capacity(key.prefix.len() + sealed.len().div_ceil(3) * 4);
        text.push_str(&key.prefix);
        BASE64URL.encode_string(sealed, &mut text);
        text
    }

    /// The handle of `subject` (a session id) under the sealing key: the first
    /// [`HANDLE_LEN`] bytes of HMAC-SHA256 under a key derived from it, base64url. Opaque: it
    /// tells nothing of the id, and cannot be made without the key.
    pub(crate) fn handle(&self, subject: &[u8]) -> String {
        handle_under(&self.keys[0].handles, subject)
    }

    /// Whether `handle` is `subject`'s under any key of this keyring (so that a handle shown
    /// before a rotation still names its session), compared in constant time.
    pub(crate) fn is_handle(&self, subject: &[u8], handle: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.keys.iter().fold(false, |found, key| {
            let expected = handle_under(&key.handles, subject);
            found | bool::from(expected.as_bytes().ct_eq(handle.as_bytes()))
        })
    }

    /// Opens a value sealed for `aad` by any key of this keyring.
    pub(crate) fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(OpenError::Malformed);
        };
        let (key, body) = self
            .keys
            .iter()
            .find_map(|k| Some((k, sealed.strip_prefix(k.prefix.as_str())?)))
            .ok_or_else(|| {
                OpenError::UnknownKey(id.chars().filter(char::is_ascii_hexdigit).take(8).collect())
            })?;
        let mut bytes = BASE64URL.decode(body).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(OpenError::Malformed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN])
            .map_err(|_| OpenError::Malformed)?;
        let opened = key
            .aead
            .open_in_place(nonce, Aad::from(aad), &mut bytes[NONCE_LEN..])
            .map_err(|_| OpenError::Rejected(key.id.to_string()))?;
        Ok(opened.to_vec())
    }
}

/// A key's id: the first 4 bytes of SHA-256("linkedin-token-exchange session key" ‖ key).
pub(crate) fn key_id(key: &[u8; KEY_LEN]) -> KeyId {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"linkedin-token-exchange session key");
    context.update(key);
    let digest = context.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest.as_ref()[..4]);
    KeyId(id)
}

/// How many bytes of the MAC a handle keeps (128 bits: 22 characters of base64url).
pub(crate) const HANDLE_LEN: usize = 16;

/// The handle key of `key`: HMAC-SHA256(key, "linkedin-token-exchange session handle"), so that
/// handles share nothing with the sealing or the key id.
fn handle_key(key: &[u8; KEY_LEN]) -> ring::hmac::Key {
    let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let derived = ring::hmac::sign(&derive, b"linkedin-token-exchange session handle");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
}

fn handle_under(key: &ring::hmac::Key, subject: &[u8]) -> String {
    let tag = ring::hmac::sign(key, subject);
    BASE64URL.encode(&tag.as_ref()[..HANDLE_LEN])
}

/// Parses `SESSION_KEYS`: a comma list of base64 32-byte keys. The error never holds a key.
pub(crate) fn parse_keys(list: &str) -> Result<Vec<[u8; KEY_LEN]>, String> {
    let keys: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect();
    if keys.is_empty() {
        return Err("names no key".into());
    }
    keys.iter()
        .enumerate()
        .map(|(i, text)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
                .map_err(|_| format!("key {} of {} is not base64", i + 1, keys.len()))?;
            <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
                format!(
                    "key {} of {} is {} bytes, not {KEY_LEN} (make one with: openssl rand -base64 32)",
                    i + 1,
                    keys.len(),
                    bytes.len()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The body of a sealed value: nonce, ciphertext, tag.
    fn body(sealed: &str) -> Vec<u8> {
        BASE64URL
            .decode(sealed.rsplit('.').next().unwrap())
            .unwrap()
    }

    #[test]
    fn known_answers_from_the_gcm_specification() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13, 14 and 16.
        let zero = Keyring::new(&[[0; 32]]).unwrap();
        assert_eq!(
            body(&zero.seal_with_nonce(&[], &[], [0; 12]))[12..],
            hex("530f8afbc74536b9a963b4f1c4cb738b")
        );
        assert_eq!(
            body(&zero.seal_with_nonce(&[0; 16], &[], [0; 12]))[12..],
            hex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919")
        );
        let key: [u8; 32] = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .try_into()
            .unwrap();
        let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let plaintext = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let keyring = Keyring::new(&[key]).unwrap();
        let sealed = keyring.seal_with_nonce(&plaintext, &aad, nonce);
        assert_eq!(
            body(&sealed)[12..],
            hex(
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f66276fc6ece0f4e1768cddf8853bb2d551b"
            )
        );
        assert_eq!(keyring.open(&sealed, &aad).unwrap(), plaintext);
    }

    #[test]
    fn every_seal_has_a_fresh_nonce_and_names_its_key() {
        let keyring = Keyring::new(&[[7; 32]]).unwrap();
        let (a, b) = (keyring.seal(b"same", b"s"), keyring.seal(b"same", b"s"));
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("v1.{}.", key_id(&[7; 32]))));
        assert_eq!(keyring.open(&a, b"s").unwrap(), b"same");
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let (k1, k2) = ([1; 32], [2; 32]);
        let old = Keyring::new(&[k1]).unwrap().seal(b"record", b"id");
        let rotated = Keyring::new(&[k2, k1]).unwrap();
        assert_eq!(rotated.open(&old, b"id").unwrap(), b"record");
        let new = rotated.seal(b"record", b"id");
        assert!(new.starts_with(&format!("v1.{}.", key_id(&k2))));
        let only_new = Keyring::new(&[k2]).unwrap();
        assert_eq!(only_new.open(&new, b"id").unwrap(), b"record");
        assert_eq!(
            only_new.open(&old, b"id"),
            Err(OpenError::UnknownKey(key_id(&k1).to_string()))
        );
    }

    #[test]
    fn other_associated_data_or_an_altered_byte_does_not_open() {
        let keyring = Keyring::new(&[[3; 32]]).unwrap();
        let sealed = keyring.seal(b"record", b"session-a");
        assert!(matches!(
            keyring.open(&sealed, b"session-b"),
            Err(OpenError::Rejected(_))
        ));
        let mut altered = body(&sealed);
        *altered.last_mut().unwrap() ^= 1;
        let prefix = sealed.rsplit_once('.').unwrap().0;
        let altered = format!("{prefix}.{}", BASE64URL.encode(altered));
        assert!(matches!(
            keyring.open(&altered, b"session-a"),
            Err(OpenError::Rejected(_))
        ));
        for junk in ["", "v1", "v1.x", "v2.00000000.AAAA", "v1.zz.%%%"] {
            assert!(keyring.open(junk, b"session-a").is_err(), "{junk}");
        }
    }

    #[test]
    fn a_handle_is_opaque_stable_per_key_and_recognised_after_a_rotation() {
        let (k1, k2) = ([1; 32], [2; 32]);
        let old = Keyring::new(&[k1]).unwrap();
        let handle = old.handle(b"session-a");
        assert_eq!(handle.len(), 22, "{handle}");
        assert!(
            handle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(!handle.contains("session"));
        // The same on every instance with the key; another session, another handle.
        assert_eq!(Keyring::new(&[k1]).unwrap().handle(b"session-a"), handle);
        assert_ne!(old.handle(b"session-b"), handle);
        assert!(old.is_handle(b"session-a", &handle));
        assert!(!old.is_handle(b"session-b", &handle));
        assert!(!old.is_handle(b"session-a", &handle[..21]));
        assert!(!old.is_handle(b"session-a", ""));
        // Not the sealing key's MAC itself: derived.
        let plain = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k1),
            b"session-a",
        );
        assert_ne!(BASE64URL.encode(&plain.as_ref()[..HANDLE_LEN]), handle);
        // After a rotation the new key names sessions, and the old handles still match.
        let rotated = Keyring::new(&[k2, k1]).unwrap();
        assert_ne!(rotated.handle(b"session-a"), handle);
        assert!(rotated.is_handle(b"session-a", &handle));
        assert!(rotated.is_handle(b"session-a", &rotated.handle(b"session-a")));
        assert!(
            !Keyring::new(&[k2])
                .unwrap()
                .is_handle(b"session-a", &handle)
        );
    }

    #[test]
    fn keys_parse_from_base64_and_errors_never_show_a_key() {
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert_eq!(parse_keys(&format!(" {key} ,{key}")).unwrap().len(), 2);
        let short = base64::engine::general_purpose::STANDARD.encode([9u8; 16]);
        let err = parse_keys(&format!("{key},{short}")).unwrap_err();
        assert!(err.contains("key 2 of 2 is 16 bytes"), "{err}");
        assert!(!err.contains(&short) && !err.contains(&key));
        let err = parse_keys("%%secret%%").unwrap_err();
        assert_eq!(err, "key 1 of 1 is not base64");
        assert!(parse_keys(" , ").is_err());
    }
}
