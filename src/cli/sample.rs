//! The sample body `send` and `route` take: `--data JSON`, `--data @FILE` (such as the payloads in
//! examples/payloads/), or, without `--data`, a typical event of the source's provider.

use anyhow::Context;

use super::Failure;

/// The body and its default Content-Type.
pub fn read(data: Option<&str>, verifier: &hookgate::verify::Verifier) -> Result<(&'static str, Vec<u8>), Failure> {
    Ok(match data {
        Some(d) if d.starts_with('@') => (
            "application/json",
            std::fs::read(&d[1..]).with_context(|| format!("reading {}", &d[1..])).map_err(Failure::user)?,
        ),
        Some(d) => ("application/json", d.as_bytes().to_vec()),
        None => verifier.test_event(),
    })
}
