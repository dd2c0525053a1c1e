//! Token buckets (GCRA): a source's `rate_limit`, and `[server] verify_failures_per_client`.
//! A bucket can be looked at without taking a token ([`Bucket::peek`]), so a request is refused
//! before its body is read when it would be refused after, and only verified requests take one.
//! Pure: callers pass `now`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// `burst` requests at once, refilled at `per_second`. State is the theoretical arrival time
/// (`tat`) of the next request: None means a full bucket.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    interval: Duration,
    tolerance: Duration,
}

impl Gcra {
    fn new(r: RateLimit) -> Self {
        let interval = Duration::from_secs(1) / r.per_second.max(1);
        Gcra { interval, tolerance: interval * (r.burst.max(1) - 1) }
    }

    /// None if a request may pass at `now`; else how long until one may.
    fn wait(&self, tat: Option<Instant>, now: Instant) -> Option<Duration> {
        let ahead = tat?.saturating_duration_since(now);
        (ahead > self.tolerance).then(|| ahead - self.tolerance)
    }

    fn after_one(&self, tat: Option<Instant>, now: Instant) -> Instant {
        tat.map_or(now, |t| t.max(now)) + self.interval
    }
}

/// One bucket (a source's rate limit).
#[derive(Debug)]
pub struct Bucket {
    gcra: Gcra,
    tat: Mutex<Option<Instant>>,
}

impl Bucket {
    pub fn new(r: RateLimit) -> Self {
        Bucket { gcra: Gcra::new(r), tat: Mutex::new(None) }
    }

    /// Would a request pass at `now`? Takes nothing.
    pub fn peek(&self, now: Instant) -> Result<(), Duration> {
        let tat = *self.tat.lock().unwrap_or_else(|e| e.into_inner());
        self.gcra.wait(tat, now).map_or(Ok(()), Err)
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&self, now: Instant) -> Result<(), Duration> {
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wait) = self.gcra.wait(*tat, now) {
            return Err(wait);
        }
        *tat = Some(self.gcra.after_one(*tat, now));
        Ok(())
    }
}

/// A bucket per key (client address), charged by failures only. Keys whose bucket is full again
/// are dropped when the map is full; past `capacity` keys that are all still charged, new keys
/// go uncounted rather than grow the map without bound.
#[derive(Debug)]
pub struct Keyed<K> {
    gcra: Gcra,
    tats: Mutex<HashMap<K, Instant>>,
    capacity: usize,
}

impl<K: Eq + Hash + Copy> Keyed<K> {
    pub fn new(r: RateLimit, capacity: usize) -> Self {
        Keyed { gcra: Gcra::new(r), tats: Mutex::new(HashMap::new()), capacity }
    }

    /// Is `key`'s bucket empty at `now`? Err says for how long.
    pub fn peek(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        self.gcra.wait(tats.get(key).copied(), now).map_or(Ok(()), Err)
    }

    /// Counts one failure of `key` at `now` (even past the limit: a client that keeps failing
    /// stays refused).
    pub fn charge(&self, key: K, now: Instant) {
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        if tats.len() >= self.capacity && !tats.contains_key(&key) {
            tats.retain(|_, tat| *tat > now);
            if tats.len() >= self.capacity {
                return;
            }
        }
        let tat = self.gcra.after_one(tats.get(&key).copied(), now);
        // A failing client is refused for at most one burst's worth of time past now.
        tats.insert(key, tat.min(now + self.gcra.tolerance + self.gcra.interval));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tats.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_bucket_lets_a_burst_through_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let b = Bucket::new(RateLimit { per_second: 5, burst: 3 });
        for _ in 0..3 {
            assert_eq!(b.peek(t0), Ok(()));
            assert_eq!(b.take(t0), Ok(()));
        }
        assert_eq!(b.peek(t0), Err(200 * MS));
        assert_eq!(b.take(t0), Err(200 * MS), "a refused take takes nothing");
        assert_eq!(b.take(t0 + 199 * MS), Err(MS));
        assert_eq!(b.take(t0 + 200 * MS), Ok(()));
        assert_eq!(b.peek(t0 + 200 * MS), Err(200 * MS));
        // Idle for a while: full again, never more than the burst.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn peeking_takes_nothing() {
        let t0 = Instant::now();
        let b = Bucket::new(RateLimit { per_second: 1, burst: 1 });
        for _ in 0..100 {
            assert_eq!(b.peek(t0), Ok(()));
        }
        assert_eq!(b.take(t0), Ok(()));
        assert!(b.peek(t0).is_err());
    }

    #[test]
    fn failures_are_counted_per_key_and_forgiven_with_time() {
        let t0 = Instant::now();
        let k = Keyed::new(RateLimit { per_second: 2, burst: 3 }, 100);
        for _ in 0..3 {
            assert_eq!(k.peek(&"a", t0), Ok(()));
            k.charge("a", t0);
        }
        assert_eq!(k.peek(&"a", t0), Err(500 * MS));
        assert_eq!(k.peek(&"b", t0), Ok(()), "another key is not affected");
        // Failing on while refused does not push the refusal out for ever.
        for _ in 0..1000 {
            k.charge("a", t0);
        }
        assert_eq!(k.peek(&"a", t0), Err(500 * MS));
        assert_eq!(k.peek(&"a", t0 + 500 * MS), Ok(()));
    }

    #[test]
    fn the_key_map_stays_bounded() {
        let t0 = Instant::now();
        let k = Keyed::new(RateLimit { per_second: 1, burst: 1 }, 10);
        for i in 0..10 {
            k.charge(i, t0);
        }
        k.charge(99, t0);
        assert_eq!(k.len(), 10, "full of charged keys: a new key is not counted");
        assert_eq!(k.peek(&99, t0), Ok(()));
        // Once the old keys' buckets are full again they make room.
        k.charge(99, t0 + Duration::from_secs(2));
        assert_eq!(k.len(), 1);
        assert!(k.peek(&99, t0 + Duration::from_secs(2)).is_err());
    }
}
