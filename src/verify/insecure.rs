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
        if raw.secret_env.is_some() || raw.secret_file.is_some() || !raw.secrets_env.is_empty() {
            p.push(format!("{at}.secret_env"), "scheme \"none\" takes no secret");
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
