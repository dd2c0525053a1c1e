//! Retry timing, pure maths: exponential backoff with jitter, capped, and Retry-After.

use std::time::Duration;

use crate::config::RetryPolicy;
use crate::store::{Millis, NextState};

/// Retry-After is honoured up to this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The wait after failed attempt number `attempt` (1-based): `initial * 2^(attempt-1)`, capped at
/// `max_backoff`, then "equal jitter" (half fixed, half random by `jitter` in [0, 1)) so that
/// many deliveries failing together do not retry in lockstep.
pub fn delay(policy: &RetryPolicy, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let base = policy.initial_backoff.saturating_mul(1u32 << exp.min(31)).min(policy.max_backoff);
    let half = base / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// What happens after an attempt. `failed = None` means success; otherwise `retry_after` is the
/// destination's request to wait and `permanent` says retrying cannot help.
pub fn next_state(
    policy: &RetryPolicy,
    attempt: u32,
    failure: Option<(Option<Duration>, bool)>,
    now: Millis,
    jitter: f64,
) -> NextState {
    let Some((retry_after, permanent)) = failure else { return NextState::Succeeded };
    if permanent || attempt >= policy.max_attempts {
        return NextState::Dead;
    }
    let wait = delay(policy, attempt, jitter).max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER));
    NextState::Retry { at: now.saturating_add(wait.as_millis() as i64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy =
        RetryPolicy { max_attempts: 5, initial_backoff: Duration::from_secs(10), max_backoff: Duration::from_secs(60) };

    #[test]
    fn doubles_then_caps() {
        for (attempt, jitter, want) in
            [(1, 1.0, 10), (2, 1.0, 20), (3, 1.0, 40), (4, 1.0, 60), (30, 1.0, 60), (1, 0.0, 5), (3, 0.0, 20)]
        {
            assert_eq!(delay(&P, attempt, jitter), Duration::from_secs(want), "attempt {attempt} jitter {jitter}");
        }
    }

    #[test]
    fn states() {
        assert_eq!(next_state(&P, 1, None, 0, 1.0), NextState::Succeeded);
        assert_eq!(next_state(&P, 1, Some((None, false)), 1000, 1.0), NextState::Retry { at: 11_000 });
        assert_eq!(next_state(&P, 5, Some((None, false)), 0, 1.0), NextState::Dead, "last attempt");
        assert_eq!(next_state(&P, 1, Some((None, true)), 0, 1.0), NextState::Dead, "permanent");
        let ra = Some((Some(Duration::from_secs(120)), false));
        assert_eq!(next_state(&P, 1, ra, 0, 1.0), NextState::Retry { at: 120_000 }, "retry-after wins");
        let huge = Some((Some(Duration::from_secs(10 * 86400)), false));
        assert_eq!(next_state(&P, 1, huge, 0, 1.0), NextState::Retry { at: 86_400_000 }, "retry-after capped");
    }
}
