//! `none`: accepts every request. Allowed only with `insecure = true`, so it is never an accident.

use std::time::SystemTime;

use super::{Request, Scheme, Signed, VerifyError};
use crate::config::raw::RawVerify;
use crate::config::{Problems, Secret};

#[derive(Debug)]
pub struct Insecure;

impl Insecure {
    pub fn from_config(raw: &RawVerify, at: &str, p: &mut Problems) -> Option<Self> {
        if raw.insecure != Some(true) {
            p.push(
                format!("{at}.insecure"),
                "scheme \"none\" accepts unsigned requests; write insecure = true to confirm",
            );
            return None;
        }
        for (key, present) in [
            ("secret_env", raw.secret_env.is_some()),
            ("secrets_env", !raw.secrets_env.is_empty()),
            ("secret_file", raw.secret_file.is_some()),
            ("secrets_file", !raw.secrets_file.is_empty()),
        ] {
            if present {
                p.push(format!("{at}.{key}"), "scheme \"none\" takes no secret");
            }
        }
        Some(Insecure)
    }
}

impl Scheme for Insecure {
    fn verify(&self, _req: &Request<'_>, _secrets: &[Secret], _now: SystemTime) -> Result<(), VerifyError> {
        Ok(())
    }

    fn sign(&self, req: &Request<'_>, _secret: &Secret, _now: SystemTime) -> Signed {
        Signed::headers(req, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn every_secret_key_is_refused() {
        for key in
            ["secret_env = \"X\"", "secrets_env = [\"X\"]", "secret_file = \"s.txt\"", "secrets_file = [\"s.txt\"]"]
        {
            let text = format!(
                "[[destinations]]\nname = \"d\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\n\
                 [[sources]]\nname = \"s\"\npath = \"/s\"\ndeliver_to = [\"d\"]\n\
                 verify = {{ scheme = \"none\", insecure = true, {key} }}\n"
            );
            let err = Config::from_toml(&text, Path::new("h.toml"), Path::new(".")).expect_err(key).to_string();
            let name = key.split(' ').next().unwrap_or_default();
            assert!(err.contains(&format!("verify.{name}: scheme \"none\" takes no secret")), "{key}: {err}");
        }
    }
}
