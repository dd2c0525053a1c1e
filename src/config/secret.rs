//! Secrets: read from an environment variable or a file, never from the config itself.
//! `Secret` never prints its value: `Debug` shows `[redacted]`.

use std::fmt;
use std::path::Path;

/// A secret value. The bytes leave this type only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps raw bytes (tests and library users building a config in code).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret bytes, for computing a MAC or comparing a token.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Reads `name` from the environment. Missing or empty is an error naming the variable.
    pub fn from_env(name: &str) -> Result<Secret, String> {
        match std::env::var_os(name) {
            None => Err(format!("environment variable {name} is not set")),
            Some(v) if v.is_empty() => Err(format!("environment variable {name} is empty")),
            Some(v) => Ok(Secret(v.into_encoded_bytes())),
        }
    }

    /// Reads a secret file (Docker/Kubernetes secrets). One trailing newline is dropped.
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(format!("secret file {} is empty", path.display()));
        }
        Ok(Secret(bytes))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
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
    fn file_secret_drops_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "abc\r\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), b"abc");
        std::fs::write(&p, "\n").unwrap();
        assert!(Secret::from_file(&p).unwrap_err().contains("empty"));
    }
}
