//! Wall-clock time, passed in. This is the one place that reads `SystemTime::now()` (the CLI's
//! `send` aside): the ingest handler, the worker, the stores, retention, the admin API and the
//! destinations take a [`SharedClock`], so tests drive time instead of sleeping on it.
//! Durations that only measure (an attempt's `duration_ms`) use `Instant` and are not time here.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where "now" comes from.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The clock every part of one gateway shares.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock: what a running gateway uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Wall time that follows tokio's clock from the moment it was made: under
/// `tokio::time::pause()`, `tokio::time::advance(d)` (or a paused runtime's auto-advance past a
/// `sleep`) moves it by `d`, and so do the retry timers the worker sleeps on.
#[derive(Debug)]
pub struct TokioClock {
    start: SystemTime,
    at: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at `start` now.
    pub fn starting_at(start: SystemTime) -> Self {
        TokioClock { start, at: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.start + self.at.elapsed()
    }
}

/// A clock set by hand, for tests without a runtime.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// Stands at `start` until moved.
    pub fn new(start: SystemTime) -> Self {
        ManualClock(Mutex::new(start))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Sets the clock to `to` (backwards too, as a stepped system clock would).
    pub fn set(&self, to: SystemTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_with_paused_time() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = TokioClock::starting_at(t0);
        assert_eq!(clock.now(), t0);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), t0 + Duration::from_secs(90));
        tokio::time::sleep(Duration::from_secs(3600)).await; // auto-advanced, no real wait
        assert_eq!(clock.now(), t0 + Duration::from_secs(3690));
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        let clock = ManualClock::new(t0);
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now(), t0 + Duration::from_millis(250));
        clock.set(t0);
        assert_eq!(clock.now(), t0);
    }
}
