//! Durations written as strings in the config ("250ms", "10s", "5m", "1h", "7d").

use std::time::Duration;

/// Parses a config duration. Accepts what `humantime` accepts ("1h 30m", "250ms", "7d").
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration; write e.g. \"250ms\", \"10s\", \"5m\", \"1h\" or \"7d\"".into());
    }
    humantime::parse_duration(trimmed).map_err(|e| {
        format!("invalid duration {text:?} ({e}); write e.g. \"250ms\", \"10s\", \"5m\", \"1h\" or \"7d\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_of_the_contract() {
        for (text, want) in [
            ("250ms", Duration::from_millis(250)),
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("7d", Duration::from_secs(7 * 86400)),
        ] {
            assert_eq!(parse(text), Ok(want), "case: {text}");
        }
    }

    #[test]
    fn rejects_numbers_without_unit_and_garbage() {
        for text in ["10", "", "ten seconds", "-5s"] {
            assert!(parse(text).is_err(), "case: {text:?}");
        }
    }
}
