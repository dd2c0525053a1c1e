//! The admin API's query parameters. Each endpoint names the ones it accepts, and every value is
//! checked against the form docs/openapi.json gives it (names, cursors, times, limits), so what the
//! document allows is accepted and what it forbids is 400; tests/it/openapi.rs runs schemathesis
//! against a real server to hold the two together. Pure: callers pass `now`.

use std::time::{Duration, SystemTime};

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

use super::error::ApiError;
use crate::store::{Millis, millis};

/// Page size when `limit` is not given, and the largest accepted.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// What the store's cursors are: a position (`seq` or a delivery id), so decimal digits.
/// docs/openapi.json: `^[0-9]{1,19}$`.
const CURSOR_DIGITS: usize = 19;
/// Digits of a duration ago; 9 keep every value far from overflow (999999999w is ~19 million years).
const DURATION_DIGITS: usize = 9;

pub type Q = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Query parameters, checked against the names an endpoint accepts (a typo such as `stauts`
/// would otherwise silently widen the selection). An empty value or a repeated name is refused
/// for the same reason: `?destination=` must not replay every destination.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(q: Q, accepted: &[&str]) -> Result<Params, ApiError> {
        let Query(pairs) = q.map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
        for (i, (k, v)) in pairs.iter().enumerate() {
            if !accepted.contains(&k.as_str()) {
                return Err(ApiError::BadRequest(format!("unknown query parameter {k:?}; accepted: {accepted:?}")));
            }
            if v.is_empty() {
                return Err(ApiError::BadRequest(format!("empty {k}; leave the parameter out not to filter by it")));
            }
            if pairs[..i].iter().any(|(earlier, _)| earlier == k) {
                return Err(ApiError::BadRequest(format!("{k} given more than once")));
            }
        }
        Ok(Params(pairs))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A source or destination name, in the form the config allows (letters, digits, `_-.`),
    /// so nothing else reaches the store (PostgreSQL refuses a NUL in text: that would be a 503).
    pub fn name(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            Some(v) if !is_name(v) => Err(ApiError::BadRequest(format!(
                "invalid {name} {v:?}; a name has only letters, digits, '_', '-' and '.'"
            ))),
            v => Ok(v.map(str::to_string)),
        }
    }

    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            Some(v) if !allowed.contains(&v) => {
                Err(ApiError::BadRequest(format!("unknown {name} {v:?}; accepted: {allowed:?}")))
            }
            v => Ok(v.map(str::to_string)),
        }
    }

    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!("invalid limit {v:?}; a number from 1 to {MAX_LIMIT}"))),
            },
        }
    }

    /// A previous page's `next_cursor`. Any 1 to 19 digits is a position; one past the largest
    /// the store can hold reads from the newest item, as "before infinity" would.
    pub fn cursor(&self) -> Result<Option<String>, ApiError> {
        let Some(v) = self.get("cursor") else { return Ok(None) };
        if v.is_empty() || v.len() > CURSOR_DIGITS || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::BadRequest(format!(
                "invalid cursor {v:?}; pass back a page's next_cursor (1 to {CURSOR_DIGITS} digits)"
            )));
        }
        Ok(Some(v.parse::<i64>().unwrap_or(i64::MAX).to_string()))
    }

    /// A time: RFC 3339 (`2026-01-31T12:00:00Z`, any offset) or a duration ago (`15m`, `2h`, `7d`).
    pub fn time(&self, name: &str, now: SystemTime) -> Result<Option<Millis>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        if let Some(t) = parse_rfc3339(v) {
            return Ok(Some(t));
        }
        if let Some(ago) = parse_ago(v) {
            return Ok(Some(millis(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH))));
        }
        Err(ApiError::BadRequest(format!(
            "invalid {name} {v:?}; write an RFC 3339 time such as 2026-01-31T12:00:00Z, or a duration ago such as 15m"
        )))
    }
}

/// docs/openapi.json: `^[A-Za-z0-9_.-]+$` (config/mod.rs `name_ok`).
fn is_name(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// A duration ago, `^[0-9]{1,9}(ms|s|m|h|d|w)$` in docs/openapi.json.
fn parse_ago(v: &str) -> Option<Duration> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > DURATION_DIGITS {
        return None;
    }
    let n: u64 = v[..digits].parse().ok()?;
    let secs = match &v[digits..] {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}

/// An RFC 3339 `date-time` (section 5.6: `T`/`Z` in either case, fractional seconds of any length,
/// `Z` or a numeric offset), as the JSON Schema `date-time` format reads it. Times before the
/// epoch are the epoch: nothing was received earlier.
fn parse_rfc3339(v: &str) -> Option<Millis> {
    let b = v.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = b.get(from..from + len)?;
        s.iter().all(u8::is_ascii_digit).then(|| s.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is a leap second; it counts as the first second of the next minute.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if sep(i, b".") {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let first3 = &b[i + 1..i + 1 + digits.min(3)];
        ms = first3.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')) * 10i64.pow(3 - first3.len() as u32);
        i += 1 + digits;
    }
    let offset_minutes = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && sep(i + 3, b":") => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'+' { oh * 60 + om } else { -(oh * 60 + om) }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some((secs * 1000 + ms).max(0))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn parsed(query: &str, accepted: &[&str]) -> Result<Params, ApiError> {
        let uri: http::Uri = format!("/x?{query}").parse().unwrap();
        Params::parse(Query::try_from_uri(&uri), accepted)
    }

    #[test]
    fn limits_and_times_are_checked() {
        assert_eq!(params(&[]).limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(params(&[("limit", "7")]).limit().unwrap(), 7);
        for bad in ["0", "-1", "x", "1001", "+5"] {
            assert!(params(&[("limit", bad)]).limit().is_err(), "{bad}");
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let p = params(&[("since", "2026-01-31T12:00:00Z"), ("until", "1h"), ("bad", "yesterday")]);
        assert_eq!(p.time("since", now).unwrap(), Some(1_769_860_800_000));
        assert_eq!(p.time("until", now).unwrap(), Some((1_000_000 - 3600) * 1000));
        assert!(p.time("bad", now).is_err());
        assert!(params(&[("status", "gone")]).one_of("status", &super::super::api::EVENT_STATUSES).is_err());
    }

    #[test]
    fn rfc3339_times_with_offsets_fractions_and_leap_days() {
        for (text, want) in [
            ("2026-01-31T12:00:00Z", Some(1_769_860_800_000)),
            ("2026-01-31t12:00:00z", Some(1_769_860_800_000)),
            ("2026-01-31T14:00:00+02:00", Some(1_769_860_800_000)),
            ("2026-01-31T11:30:00.25-00:30", Some(1_769_860_800_250)),
            ("2026-01-31T12:00:00.123456789Z", Some(1_769_860_800_123)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("0001-01-01T00:00:00Z", Some(0)),
            ("9999-12-31T23:59:59-23:59", Some(253_402_387_139_000)),
            ("2016-12-31T23:59:60Z", Some(1_483_228_800_000)),
            ("2025-02-29T00:00:00Z", None),
            ("2026-04-31T00:00:00Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-01-31 12:00:00Z", None),
            ("2026-01-31T12:00:00", None),
            ("2026-01-31T12:00:00.Z", None),
            ("2026-01-31T24:00:00Z", None),
            ("2026-01-31T12:00:00+2:00", None),
            ("2026-01-31T12:00:00+02:60", None),
            ("2026-01-31T12:00:00Z ", None),
            ("", None),
        ] {
            assert_eq!(parse_rfc3339(text), want, "case: {text:?}");
        }
    }

    #[test]
    fn durations_ago_are_digits_and_one_unit() {
        for (text, want) in [
            ("15m", Some(Duration::from_secs(900))),
            ("250ms", Some(Duration::from_millis(250))),
            ("0s", Some(Duration::ZERO)),
            ("2w", Some(Duration::from_secs(14 * 86_400))),
            ("999999999w", Some(Duration::from_secs(999_999_999 * 604_800))),
            ("1000000000s", None),
            ("15", None),
            ("m", None),
            ("1h30m", None),
            ("1 h", None),
            ("-5s", None),
            ("5S", None),
        ] {
            assert_eq!(parse_ago(text), want, "case: {text:?}");
        }
        // Longer ago than the epoch: the epoch.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_924_992_000);
        assert_eq!(params(&[("since", "999999999w")]).time("since", now).unwrap(), Some(0));
    }

    #[test]
    fn cursors_are_positions_and_names_are_config_names() {
        assert_eq!(params(&[("cursor", "42")]).cursor().unwrap().as_deref(), Some("42"));
        assert_eq!(params(&[("cursor", "0042")]).cursor().unwrap().as_deref(), Some("42"));
        assert_eq!(params(&[("cursor", "9999999999999999999")]).cursor().unwrap(), Some(i64::MAX.to_string()));
        for bad in ["-1", "+1", "1.5", "x", "12345678901234567890", "¶"] {
            assert!(params(&[("cursor", bad)]).cursor().is_err(), "{bad}");
        }
        assert_eq!(params(&[("source", "stripe.v2_eu-1")]).name("source").unwrap().as_deref(), Some("stripe.v2_eu-1"));
        for bad in ["a b", "é", "a\0", "a/b"] {
            assert!(params(&[("source", bad)]).name("source").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_empty_and_repeated_parameters_are_refused() {
        assert!(parsed("status=dead&source=s", &["status", "source"]).is_ok());
        assert!(parsed("stauts=dead", &["status"]).is_err());
        assert!(parsed("status=", &["status"]).is_err(), "empty is not absent");
        assert!(parsed("destination=a&destination=b", &["destination"]).is_err());
    }
}
