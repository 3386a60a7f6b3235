//! Where the [`Keyring`] comes from: `SESSION_KEYS`, or for a store of this machine alone
//! (memory, SQLite) a key generated once into a file readable by its owner only.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::{SecureRandom, SystemRandom};

use super::private::{self, Place, write_private};
use super::seal::{KEY_LEN, Keyring, parse_keys};
use crate::config::StoreUrl;

/// Why the keys (the session's, or the assertion's) cannot be had; `variable` names the
/// setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct KeyError {
    /// `SESSION_KEYS` or `SESSION_KEY_FILE` (`ASSERTION_KEYS` or `ASSERTION_KEY_FILE`).
    pub variable: &'static str,
    /// What is wrong (never a key).
    pub message: String,
}

/// Where the keys came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// `SESSION_KEYS` (`ASSERTION_KEYS`), with this many keys.
    Configured(usize),
    /// Generated at this start into the file.
    Generated(PathBuf),
    /// Read from the file generated at an earlier start.
    Loaded(PathBuf),
}

/// The keyring for `store`: `configured` (`SESSION_KEYS`) when given; otherwise, for a store
/// that is not shared, the key in `key_file`, generated there on the first start. A shared
/// store (Redis, PostgreSQL) needs `SESSION_KEYS`: every instance must hold the same keys.
pub(crate) fn keyring(
    configured: Option<&str>,
    store: &StoreUrl,
    key_file: &Path,
) -> Result<(Keyring, KeySource), KeyError> {
    let keys_error = |message: String| KeyError {
        variable: "SESSION_KEYS",
        message,
    };
    if let Some(list) = configured {
        let keys = parse_keys(list).map_err(keys_error)?;
        let count = keys.len();
        let keyring = Keyring::new(&keys).ok_or_else(|| keys_error("names no key".into()))?;
        return Ok((keyring, KeySource::Configured(count)));
    }
    if store.is_shared() {
        return Err(keys_error(format!(
            "is required with {store}: every instance must share the keys that encrypt sessions \
             (make one with: openssl rand -base64 32)"
        )));
    }
    let file_error = |message: String| KeyError {
        variable: "SESSION_KEY_FILE",
        message: format!("{}: {message}", key_file.display()),
    };
    let (key, source) = match std::fs::read_to_string(key_file) {
        Ok(text) if !text.trim().is_empty() => {
            let keys = parse_keys(&text).map_err(file_error)?;
            private::narrow_to_owner(key_file).map_err(|e| file_error(e.to_string()))?;
            (keys[0], KeySource::Loaded(key_file.to_owned()))
        }
        // Empty: left by a crash of a version that wrote the file in place. No session can
        // have been sealed under a key that was never written, so a new one replaces it.
        Ok(_) => {
            tracing::warn!(
                path = %key_file.display(),
                "the session key file is empty (an interrupted first start): a new key replaces it"
            );
            let key = generate().map_err(file_error)?;
            write_private(key_file, key_line(&key).as_bytes(), Place::Replace)
                .map_err(|e| file_error(format!("cannot write it: {e}")))?;
            (key, KeySource::Generated(key_file.to_owned()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = generate().map_err(file_error)?;
            match write_private(key_file, key_line(&key).as_bytes(), Place::IfAbsent) {
                Ok(()) => (key, KeySource::Generated(key_file.to_owned())),
                // Another instance starting at the same moment wrote its key first: use it.
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(key_file)
                        .map_err(|e| file_error(format!("cannot read it: {e}")))?;
                    let keys = parse_keys(&text).map_err(file_error)?;
                    (keys[0], KeySource::Loaded(key_file.to_owned()))
                }
                Err(err) => return Err(file_error(format!("cannot write it: {err}"))),
            }
        }
        Err(err) => return Err(file_error(format!("cannot read it: {err}"))),
    };
    let keyring = Keyring::new(&[key]).ok_or_else(|| file_error("holds no key".into()))?;
    Ok((keyring, source))
}

/// The key file's one line: the key, base64.
fn key_line(key: &[u8; KEY_LEN]) -> String {
    format!("{}\n", BASE64.encode(key))
}

fn generate() -> Result<[u8; KEY_LEN], String> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| "the system gave no randomness".to_owned())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_local_store_gets_a_generated_key_once_then_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data/session.key");
        let (first, source) = keyring(None, &StoreUrl::Memory, &file).unwrap();
        assert_eq!(source, KeySource::Generated(file.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&file), 0o600);
            assert_eq!(mode(file.parent().unwrap()), 0o700);
        }
        let (second, source) = keyring(None, &StoreUrl::Memory, &file).unwrap();
        assert_eq!(source, KeySource::Loaded(file));
        assert_eq!(first.sealing_key_id(), second.sealing_key_id());
    }

    #[test]
    fn a_shared_store_needs_session_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store: StoreUrl = "redis://127.0.0.1:6379".parse().unwrap();
        let err = keyring(None, &store, &dir.path().join("k")).unwrap_err();
        assert_eq!(err.variable, "SESSION_KEYS");
        assert!(
            !dir.path().join("k").exists(),
            "no key file for a shared store"
        );
        let key = BASE64.encode([5u8; 32]);
        let (_, source) = keyring(Some(&key), &store, &dir.path().join("k")).unwrap();
        assert_eq!(source, KeySource::Configured(1));
    }

    #[test]
    fn a_malformed_key_names_the_variable_and_not_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = keyring(Some("c2VjcmV0"), &StoreUrl::Memory, &dir.path().join("k")).unwrap_err();
        assert_eq!(err.variable, "SESSION_KEYS");
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn instances_starting_at_once_all_end_with_the_same_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let file = Arc::new(dir.path().join("data/session.key"));
            let barrier = Arc::new(std::sync::Barrier::new(6));
            let ids: Vec<_> = (0..6)
                .map(|_| {
                    let (file, barrier) = (file.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        keyring(None, &StoreUrl::Memory, &file)
                            .unwrap()
                            .0
                            .sealing_key_id()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert!(ids.windows(2).all(|w| w[0] == w[1]), "one key for all");
            let (again, _) = keyring(None, &StoreUrl::Memory, &file).unwrap();
            assert_eq!(again.sealing_key_id(), ids[0], "the key in the file");
            let names: Vec<_> = std::fs::read_dir(file.parent().unwrap()).unwrap().collect();
            assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
        }
    }

    #[test]
    fn an_empty_key_file_is_replaced_by_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("session.key");
        std::fs::write(&file, "").unwrap();
        let (first, source) = keyring(None, &StoreUrl::Memory, &file).unwrap();
        assert_eq!(source, KeySource::Generated(file.clone()));
        let (second, source) = keyring(None, &StoreUrl::Memory, &file).unwrap();
        assert_eq!(source, KeySource::Loaded(file));
        assert_eq!(first.sealing_key_id(), second.sealing_key_id());
    }
}
