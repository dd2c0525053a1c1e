//! The claims this process handed to pull consumers and not yet saw acked or nacked, so that a
//! lease that runs out is recorded as a failed attempt at its time (`Puller::expire_due`). Memory
//! only: after a restart (SQLite puts in-flight deliveries back in the queue) or on another node
//! (PostgreSQL: an expired lease is claimable by any node) the store's lease rules still hold.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use crate::store::Millis;

#[derive(Debug, Clone)]
pub(super) struct Lease {
    pub claim: i64,
    pub attempt: u32,
    pub destination: String,
    pub until: Millis,
    /// When it was handed out: an ack's or nack's duration is measured from here.
    pub since: Instant,
}

#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<i64, Lease>>,
    /// A new lease was handed out: the reaper may have to wake sooner.
    pub changed: Notify,
}

impl Leases {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Lease>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn hold(&self, delivery_id: i64, lease: Lease) {
        self.map().insert(delivery_id, lease);
        self.changed.notify_one();
    }

    /// Forgets the lease of `delivery_id` (acked or nacked); whoever takes it records the outcome.
    pub fn take(&self, delivery_id: i64) -> Option<Lease> {
        self.map().remove(&delivery_id)
    }

    /// Takes every lease that ran out by `now`.
    pub fn take_expired(&self, now: Millis) -> Vec<(i64, Lease)> {
        let mut map = self.map();
        let ids: Vec<i64> = map.iter().filter(|(_, l)| l.until <= now).map(|(id, _)| *id).collect();
        ids.into_iter().filter_map(|id| map.remove(&id).map(|l| (id, l))).collect()
    }

    /// When the next lease runs out.
    pub fn soonest(&self) -> Option<Millis> {
        self.map().values().map(|l| l.until).min()
    }
}
