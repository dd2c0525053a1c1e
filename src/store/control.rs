//! Delivery control (CONTRACT §8), written once for every backend: a destination's stored state
//! (pause, circuit breaker, token bucket, last error and success), what a claim may take of it
//! ([`DestinationState::gate`]), what the claim leaves behind ([`DestinationState::after_claim`]) and
//! what an attempt's outcome does to it ([`DestinationState::after_attempt`]). No SQL and no clock:
//! each backend reads the row, calls these with `now`, and writes the row back in the same
//! transaction (SQLite: the writer thread's job; PostgreSQL: the row locked `FOR UPDATE`).

use std::fmt;
use std::time::Duration;

use super::Millis;

named! {
    /// A destination's circuit. Stored as its name.
    Circuit {
        Closed = "closed",
        /// No attempts until `open_until`.
        Open = "open",
        /// One trial attempt in flight (until `trial_until`, its lease).
        HalfOpen = "half_open",
    }
}

/// `circuit_breaker = { failures, cooldown }` of one destination; `max` is its `max_backoff`, the
/// longest a doubled cooldown grows to (never below `cooldown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub failures: u32,
    pub cooldown: Duration,
    pub max: Duration,
}

/// `rate_limit = { per_second, burst }` of one destination: a token bucket of `burst` tokens,
/// refilled at `per_second`; each claimed delivery takes one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// One destination's stored state. A destination never written has [`DestinationState::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationState {
    pub destination: String,
    pub paused: bool,
    pub circuit: Circuit,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// The cooldown of the current (or last) opening; 0 before the first.
    pub cooldown_ms: Millis,
    pub open_until: Millis,
    pub trial_until: Millis,
    /// The bucket's tokens at `tokens_at`; `None` is a full bucket.
    pub tokens: Option<f64>,
    pub tokens_at: Millis,
    /// The rate the bucket was last filled at (so that `next_due` knows when a token comes).
    pub per_second: Option<f64>,
    pub last_error: Option<String>,
    pub last_success_at: Option<Millis>,
}

/// How an attempt changed a destination's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitChange {
    /// A closed circuit opened.
    Opened,
    /// A failed trial opened it again (with the cooldown doubled).
    Reopened,
    /// A trial succeeded.
    Closed,
}

/// The outcome of one attempt, for the destination's state.
#[derive(Debug, Clone)]
pub struct AttemptNote {
    pub destination: String,
    pub ok: bool,
    pub error: Option<String>,
    pub at: Millis,
    /// None: the destination has `circuit_breaker = false`.
    pub breaker: Option<Breaker>,
}

/// A success is written at most this often when nothing else changes (`last_success_at` is then
/// up to a second old), so that a busy destination's row is not rewritten at every attempt.
const SUCCESS_EVERY_MS: Millis = 1000;

impl DestinationState {
    pub fn new(destination: &str) -> Self {
        DestinationState {
            destination: destination.to_string(),
            paused: false,
            circuit: Circuit::Closed,
            failures: 0,
            cooldown_ms: 0,
            open_until: 0,
            trial_until: 0,
            tokens: None,
            tokens_at: 0,
            per_second: None,
            last_error: None,
            last_success_at: None,
        }
    }

    /// The state the admin API shows: paused, else the circuit's (`active` when closed).
    pub fn shown(&self) -> &'static str {
        match (self.paused, self.circuit) {
            (true, _) => "paused",
            (false, Circuit::Closed) => "active",
            (false, Circuit::Open) => "open",
            (false, Circuit::HalfOpen) => "half_open",
        }
    }

    /// The bucket's tokens at `now`.
    fn tokens_at(&self, rate: &Rate, now: Millis) -> f64 {
        match self.tokens {
            None => rate.burst,
            Some(t) => (t + (now - self.tokens_at).max(0) as f64 / 1000.0 * rate.per_second).min(rate.burst),
        }
    }

    /// How many deliveries a claim at `now` may take of this destination (before its own `max`):
    /// none while paused, open in its cooldown, or a trial in flight; one as the trial when the
    /// cooldown is over (or the last trial's lease ran out); else what the bucket holds.
    pub fn gate(&self, rate: Option<&Rate>, now: Millis) -> usize {
        let circuit = match self.circuit {
            _ if self.paused => 0,
            Circuit::Open if now < self.open_until => 0,
            Circuit::HalfOpen if now < self.trial_until => 0,
            Circuit::Open | Circuit::HalfOpen => 1,
            Circuit::Closed => usize::MAX,
        };
        match rate {
            None => circuit,
            Some(r) => circuit.min(self.tokens_at(r, now).floor().max(0.0) as usize),
        }
    }

    /// Whether a claim must lock and rewrite the row: it takes tokens, or may start a trial.
    pub fn claim_writes(&self, rate: Option<&Rate>, now: Millis) -> bool {
        rate.is_some() || (self.gate(None, now) > 0 && self.circuit != Circuit::Closed)
    }

    /// The state after a claim at `now` took `n` deliveries (leased for `lease_ms`): tokens taken,
    /// and a first delivery taken of an open circuit is its trial (half_open until its lease ends).
    /// None when nothing changes.
    pub fn after_claim(&self, n: usize, rate: Option<&Rate>, lease_ms: Millis, now: Millis) -> Option<Self> {
        let mut s = self.clone();
        if let Some(r) = rate {
            s.tokens = Some(self.tokens_at(r, now) - n as f64);
            s.tokens_at = now;
            s.per_second = Some(r.per_second);
        }
        if n > 0 && self.circuit != Circuit::Closed {
            s.circuit = Circuit::HalfOpen;
            s.trial_until = now + lease_ms;
        }
        (s != *self).then_some(s)
    }

    /// The state after an attempt's outcome, and how the circuit changed. A success closes the
    /// circuit and clears the failures; a failure counts, opens a closed circuit at `failures` in
    /// a row (for `cooldown`), and reopens a half-open one with the cooldown doubled (at most
    /// `max`, never below `cooldown`). Without a breaker only the last error and success are kept.
    /// None when nothing is worth writing.
    pub fn after_attempt(&self, note: &AttemptNote) -> Option<(Self, Option<CircuitChange>)> {
        let mut s = self.clone();
        let now = note.at;
        let mut change = None;
        if note.ok {
            let quiet = self.circuit == Circuit::Closed
                && self.failures == 0
                && self.last_success_at.is_some_and(|t| now - t < SUCCESS_EVERY_MS && now >= t);
            if quiet {
                return None;
            }
            if self.circuit != Circuit::Closed {
                change = Some(CircuitChange::Closed);
            }
            s.circuit = Circuit::Closed;
            s.failures = 0;
            s.cooldown_ms = 0;
            s.last_success_at = Some(now);
            return Some((s, change));
        }
        s.failures = self.failures.saturating_add(1);
        s.last_error = note.error.clone();
        if let Some(b) = note.breaker {
            let base = b.cooldown.as_millis() as Millis;
            let max = (b.max.as_millis() as Millis).max(base);
            match self.circuit {
                Circuit::Closed if s.failures >= b.failures.max(1) => {
                    s.circuit = Circuit::Open;
                    s.cooldown_ms = base;
                    s.open_until = now + base;
                    change = Some(CircuitChange::Opened);
                }
                // A failure while open is a straggler claimed before it opened: it counts, no more.
                Circuit::HalfOpen => {
                    s.circuit = Circuit::Open;
                    s.cooldown_ms = self.cooldown_ms.max(base).saturating_mul(2).min(max);
                    s.open_until = now + s.cooldown_ms;
                    change = Some(CircuitChange::Reopened);
                }
                _ => {}
            }
        }
        Some((s, change))
    }

    /// When this destination may next be claimed, for a delivery due at `due`: never while paused;
    /// not before the cooldown ends or the trial's lease runs out; not before the bucket has a token.
    pub fn not_before(&self, due: Millis) -> Option<Millis> {
        if self.paused {
            return None;
        }
        let mut at = match self.circuit {
            Circuit::Open => due.max(self.open_until),
            Circuit::HalfOpen => due.max(self.trial_until),
            Circuit::Closed => due,
        };
        if let (Some(t), Some(per_second)) = (self.tokens, self.per_second)
            && t < 1.0
            && per_second > 0.0
        {
            at = at.max(self.tokens_at + ((1.0 - t) / per_second * 1000.0).ceil() as Millis);
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(ok: bool, at: Millis) -> AttemptNote {
        let breaker = Breaker { failures: 3, cooldown: Duration::from_secs(10), max: Duration::from_secs(25) };
        AttemptNote { destination: "d".into(), ok, error: (!ok).then(|| "500".into()), at, breaker: Some(breaker) }
    }

    #[test]
    fn the_breaker_opens_trials_doubles_and_closes() {
        let mut s = DestinationState::new("d");
        for i in 0..2 {
            s = s.after_attempt(&note(false, i)).unwrap().0;
            assert_eq!(s.circuit, Circuit::Closed);
        }
        let (opened, change) = s.after_attempt(&note(false, 2)).unwrap();
        assert_eq!((opened.circuit, change, opened.open_until), (Circuit::Open, Some(CircuitChange::Opened), 10_002));
        assert_eq!(opened.gate(None, 10_001), 0, "no claims during the cooldown");
        assert_eq!(opened.gate(None, 10_002), 1, "one trial after it");
        let trial = opened.after_claim(1, None, 5_000, 10_002).unwrap();
        assert_eq!((trial.circuit, trial.gate(None, 10_003)), (Circuit::HalfOpen, 0));
        let (reopened, change) = trial.after_attempt(&note(false, 10_100)).unwrap();
        assert_eq!((reopened.cooldown_ms, change), (20_000, Some(CircuitChange::Reopened)));
        let again =
            reopened.after_claim(1, None, 5_000, 30_100).unwrap().after_attempt(&note(false, 30_200)).unwrap().0;
        assert_eq!(again.cooldown_ms, 25_000, "doubled up to max_backoff");
        let (closed, change) =
            again.after_claim(1, None, 5_000, 55_200).unwrap().after_attempt(&note(true, 55_300)).unwrap();
        assert_eq!((closed.circuit, closed.failures, change), (Circuit::Closed, 0, Some(CircuitChange::Closed)));
        assert_eq!(closed.gate(None, 55_301), usize::MAX);
    }

    #[test]
    fn the_bucket_refills_at_its_rate_up_to_burst() {
        let rate = Rate { per_second: 10.0, burst: 5.0 };
        let s = DestinationState::new("d");
        assert_eq!(s.gate(Some(&rate), 0), 5);
        let s = s.after_claim(5, Some(&rate), 1000, 0).unwrap();
        assert_eq!(s.gate(Some(&rate), 99), 0);
        assert_eq!(s.not_before(0), Some(100));
        assert_eq!(s.gate(Some(&rate), 100), 1);
        assert_eq!(s.gate(Some(&rate), 60_000), 5, "never above burst");
    }

    #[test]
    fn a_paused_destination_is_never_due() {
        let s = DestinationState { paused: true, ..DestinationState::new("d") };
        assert_eq!((s.gate(None, 0), s.not_before(0), s.shown()), (0, None, "paused"));
    }
}
