//! `none`: accepts every request. Allowed only with `insecure = true`, so it is never an accident.

use std::time::SystemTime;

use super::spec::{Issues, SECRET_KEYS, Spec};
use super::{Request, Scheme, Signed, VerifyError};
use crate::secret::Secret;

#[derive(Debug)]
pub struct Insecure;

impl Insecure {
    pub fn from_spec(raw: &Spec, p: &mut Issues) -> Option<Self> {
        if raw.insecure != Some(true) {
            p.push("insecure", "scheme \"none\" accepts unsigned requests; write insecure = true to confirm");
            return None;
        }
        for field in SECRET_KEYS {
            if raw.secrets.iter().any(|s| s.field == field) {
                p.push(field, "scheme \"none\" takes no secret");
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
