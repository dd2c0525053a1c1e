//! Secret values and the constant-time comparisons made with them. Imports nothing of hookgate's,
//! so `config`, `verify`, `admin` and the destinations can all use it. Never reads a secret from
//! anywhere: the config's edge (`config/resolve.rs`) reads environment variables and files.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret value. The bytes leave this type only through [`Secret::expose`]; `Debug` shows
/// `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps raw bytes (the config's edge, tests and library users building a config in code).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret bytes, for computing a MAC or comparing a token.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// True if `a` equals `b`, in time that does not depend on where they differ (not on their
/// lengths: use [`ct_eq_hashed`] when the length itself is secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// True if `expected` equals one of `candidates`, each compared in constant time.
pub fn ct_eq_any(expected: &[u8], candidates: &[Vec<u8>]) -> bool {
    // Fold without short-circuit so the time does not tell which candidate matched.
    candidates.iter().fold(0u8, |acc, c| acc | expected.ct_eq(c).unwrap_u8()) == 1
}

/// True if `given` equals `secret`, in time that depends on neither's length nor content:
/// both are hashed to 32 bytes first, then compared in constant time.
pub fn ct_eq_hashed(given: &[u8], secret: &[u8]) -> bool {
    Sha256::digest(given).ct_eq(&Sha256::digest(secret)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", vec![s]), "[[redacted]]");
    }

    #[test]
    fn comparisons() {
        for (a, b, want) in [(&b"abc"[..], &b"abc"[..], true), (b"abc", b"abd", false), (b"abc", b"ab", false)] {
            assert_eq!(ct_eq(a, b), want, "ct_eq {a:?} {b:?}");
            assert_eq!(ct_eq_hashed(a, b), want, "ct_eq_hashed {a:?} {b:?}");
        }
        assert!(ct_eq_any(b"b", &[b"a".to_vec(), b"b".to_vec()]));
        assert!(!ct_eq_any(b"c", &[b"a".to_vec(), b"b".to_vec()]));
        assert!(!ct_eq_any(b"c", &[]));
    }
}
