//! [`Secret`]: a string that never shows itself in `Debug` output, so that a secret cannot
//! reach a log line through a derived `Debug` of whatever holds it.

use std::fmt;

/// A secret string whose `Debug` never shows it (it has no `Display`).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for signing, verifying and storing only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, compared without stopping at the first difference.
    pub fn matches(&self, given: &str) -> bool {
        let (expected, given) = (self.0.as_bytes(), given.as_bytes());
        expected.len() == given.len()
            && expected
                .iter()
                .zip(given)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"[redacted]\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(\"[redacted]\")");
        assert_eq!(secret.expose(), "hunter2");
        assert!(secret.matches("hunter2"));
        assert!(!secret.matches("hunter3") && !secret.matches("hunter") && !secret.matches(""));
    }
}
