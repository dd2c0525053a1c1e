//! Pull destinations (CONTRACT §10): consumers claim deliveries through the admin API, and ack or
//! nack them. The same machinery as the push workers: `Store::claim` (leases, claim tokens, one
//! attempt counted per claim, delivery control), the route's transform (`transform.rs`),
//! `backoff::next_state` and `Store::record`. The workers never claim a pull destination.
//!
//! A claim is a long poll that wakes when work may be due instead of polling the database: on the
//! store's work signal (`Store::work`: an ingest commit or a replay here, or another node's
//! NOTIFY on PostgreSQL), on this process's nacks and expired leases, and at the destination's
//! next due time (`Store::next_due`: a retry, a lease running out). As a fallback it looks again
//! every [`RECHECK`] (a lost notification, a stepped clock).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::backoff;
use super::pull_leases::{Lease, Leases};
use super::transform::Transforms;
use crate::clock::SharedClock;
use crate::config::{Config, RetryPolicy, Target};
use crate::destination::excerpt;
use crate::metrics::{DestinationMetrics, Metrics};
use crate::routing::pool::Pool;
use crate::secret::Secret;
use crate::store::{
    AttemptNote, AttemptRecord, Breaker, ClaimRequest, Claimed, DeliveryStatus, Held, Millis, NextState, Outcome, Rate,
    Store, StoreError, Want, millis,
};

/// The longest a waiting claim goes without looking at the store.
pub const RECHECK: Duration = Duration::from_secs(5);
/// How long a claim waits before looking again when work is due but none could be claimed (an
/// ordering key held by a delivery in flight).
const HELD_BACK: Duration = Duration::from_millis(200);

struct PullRoute {
    policy: RetryPolicy,
    lease: Duration,
    rate: Option<Rate>,
    breaker: Option<Breaker>,
    metrics: DestinationMetrics,
    token: Option<Secret>,
}

/// A delivery handed to a consumer: what it gets, and until when it holds it.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub delivery_id: i64,
    pub event_id: String,
    pub source: String,
    pub content_type: Option<String>,
    /// The event's stored (redacted) headers, a JSON object.
    pub headers_json: String,
    /// The stored body, or what the route's transform made of it.
    pub body: Bytes,
    pub attempt: u32,
    pub lease_until: Millis,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    NotFound(String),
    /// The caller's token is another destination's.
    #[error("{0}")]
    Forbidden(String),
    /// A nack of a delivery not claimed (its lease ran out, it was acked), or an ack of one never claimed.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a delivery stands after an ack or a nack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<Millis>,
}

pub struct Puller {
    store: Arc<dyn Store>,
    clock: SharedClock,
    routes: HashMap<String, PullRoute>,
    transforms: Transforms,
    leases: Leases,
    /// Held while expired leases are recorded, so that a claim never sees one half done (the
    /// store would hand an expired, unrecorded lease out again at once, without its backoff).
    expiring: tokio::sync::Mutex<()>,
    /// Bumped when this process changed what is due (a nack, an expired lease).
    kick: watch::Sender<u64>,
    stop: CancellationToken,
}

impl Puller {
    /// One route per `type = "pull"` destination of `config`. `stop` ends waiting claims at once
    /// (shutdown) and the lease reaper.
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        metrics: &Metrics,
        clock: SharedClock,
        routing: Option<Pool>,
        stop: CancellationToken,
    ) -> Result<Self, String> {
        let mut routes = HashMap::new();
        for d in &config.destinations {
            let Target::Pull { token } = &d.target else { continue };
            let route = PullRoute {
                policy: d.policy,
                lease: d.lease,
                rate: d.rate_limit.map(|r| Rate { per_second: r.per_second as f64, burst: r.burst as f64 }),
                breaker: d.circuit_breaker.map(|b| Breaker {
                    failures: b.failures,
                    cooldown: b.cooldown,
                    max: d.policy.max_backoff,
                }),
                metrics: metrics.destination(&d.name),
                token: token.clone(),
            };
            routes.insert(d.name.clone(), route);
        }
        let transforms = Transforms::new(config, routing)?;
        Ok(Puller {
            store,
            clock,
            routes,
            transforms,
            leases: Leases::default(),
            expiring: tokio::sync::Mutex::new(()),
            kick: watch::Sender::new(0),
            stop,
        })
    }

    /// Whether the config has any pull destination.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Whether `name` is a pull destination.
    pub fn has(&self, name: &str) -> bool {
        self.routes.contains_key(name)
    }

    /// The pull destination whose own token is `given`, if any (each compared in constant time).
    pub fn token_owner(&self, given: &[u8]) -> Option<&str> {
        let mut owner = None;
        for (name, route) in &self.routes {
            if route.token.as_ref().is_some_and(|t| crate::secret::ct_eq_hashed(given, t.expose())) {
                owner = Some(name.as_str());
            }
        }
        owner
    }

    /// Up to `max` deliveries of `destination`, waiting up to `wait` for the first one.
    pub async fn claim(&self, destination: &str, max: usize, wait: Duration) -> Result<Vec<Pulled>, PullError> {
        let route = self.route(destination)?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut work = self.store.work();
        let mut kick = self.kick.subscribe();
        let want = Want { destination: destination.to_string(), max, lease: route.lease, rate: route.rate };
        let request = ClaimRequest { total: max, wants: vec![want] };
        loop {
            // Seen before the claim: a signal that comes during it wakes the wait below.
            work.borrow_and_update();
            kick.borrow_and_update();
            self.expire_due().await;
            let now = self.clock.now();
            let claimed = self.store.claim(&request, now).await?;
            let items = self.hand_out(route, claimed, millis(now)).await;
            if !items.is_empty() || tokio::time::Instant::now() >= deadline || self.stop.is_cancelled() {
                return Ok(items);
            }
            let nap = match self.store.next_due(&[destination.to_string()]).await? {
                Some(at) if at <= millis(now) => HELD_BACK,
                Some(at) => Duration::from_millis((at - millis(now)) as u64).min(RECHECK),
                None => RECHECK,
            };
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(Vec::new()),
                _ = changed(&mut work) => {}
                _ = changed(&mut kick) => {}
                _ = tokio::time::sleep(nap) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Marks a claimed delivery delivered. `scope`: the destination the caller's token is for.
    pub async fn ack(&self, delivery_id: i64, scope: Option<&str>) -> Result<Settled, PullError> {
        let (held, route) = self.held(delivery_id, scope).await?;
        if held.status == DeliveryStatus::Succeeded {
            return Ok(Settled { status: held.status, next_attempt_at: None });
        }
        if held.attempts == 0 || held.status == DeliveryStatus::Filtered {
            return Err(PullError::Conflict(format!("delivery {delivery_id} was never claimed")));
        }
        let lease = self.leases.take(delivery_id);
        let elapsed = lease.as_ref().map(|l| l.since.elapsed()).unwrap_or_default();
        let now = millis(self.clock.now());
        let record = AttemptRecord {
            delivery_id,
            claim: held.claim.unwrap_or(0),
            attempt: held.attempts,
            at: now,
            outcome: Outcome::Success,
            status_code: None,
            exit_code: None,
            error: None,
            duration_ms: elapsed.as_millis() as i64,
            next: NextState::Succeeded,
        };
        // The attempt and the destination's state in one write (SQLite: one writer job).
        let note = attempt_note(&held.destination, route, true, None, now);
        self.store.record_noted(record, Some(note)).await?;
        route.metrics.attempt(Outcome::Success.as_str(), elapsed, now);
        tracing::info!(destination = %held.destination, delivery_id, attempt = held.attempts, "pull delivery acked");
        Ok(Settled { status: DeliveryStatus::Succeeded, next_attempt_at: None })
    }

    /// A failed attempt of a claimed delivery: retried after max(backoff, `retry_after`), or dead
    /// after `max_attempts`.
    pub async fn nack(
        &self,
        delivery_id: i64,
        error: Option<&str>,
        retry_after: Option<Duration>,
        scope: Option<&str>,
    ) -> Result<Settled, PullError> {
        let (held, route) = self.held(delivery_id, scope).await?;
        let now = millis(self.clock.now());
        let (Some(claim), DeliveryStatus::InFlight) = (held.claim, held.status) else {
            return Err(PullError::Conflict(format!(
                "delivery {delivery_id} is not claimed (it is {}); only a delivery in flight can be nacked",
                held.status.as_str()
            )));
        };
        if held.lease_until.is_some_and(|until| until <= now) {
            return Err(PullError::Conflict(format!("delivery {delivery_id}'s lease ran out before the nack")));
        }
        let lease = self.leases.take(delivery_id);
        let elapsed = lease.as_ref().map(|l| l.since.elapsed()).unwrap_or_default();
        let error = format!("nacked: {}", excerpt(error.unwrap_or("no reason given").as_bytes()));
        let next = backoff::next_state(&route.policy, held.attempts, Some((retry_after, false)), now, rand::random());
        let record = AttemptRecord {
            delivery_id,
            claim,
            attempt: held.attempts,
            at: now,
            outcome: Outcome::Failure,
            status_code: None,
            exit_code: None,
            error: Some(error.clone()),
            duration_ms: elapsed.as_millis() as i64,
            next,
        };
        if !self.store.record(record).await? {
            return Err(PullError::Conflict(format!("delivery {delivery_id} was claimed again before the nack")));
        }
        route.metrics.attempt(Outcome::Failure.as_str(), elapsed, now);
        tracing::warn!(destination = %held.destination, delivery_id, attempt = held.attempts, error = %error, "pull delivery nacked");
        self.note(&held.destination, route, false, Some(error), now).await;
        self.kick.send_modify(|n| *n = n.wrapping_add(1));
        Ok(settled(next))
    }

    /// Records every lease of this process that ran out as a failed attempt (`timeout`), retried
    /// after its backoff or dead after `max_attempts`, as the workers' leases are.
    pub async fn expire_due(&self) {
        let _one_at_a_time = self.expiring.lock().await;
        let now = millis(self.clock.now());
        let expired = self.leases.take_expired(now);
        if expired.is_empty() {
            return;
        }
        for (delivery_id, lease) in expired {
            self.expire(delivery_id, lease, now).await;
        }
        self.kick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Runs until `stop`: records each lease at its end, without a consumer's request to do it.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.expire_due().await;
            let now = millis(self.clock.now());
            let nap = match self.leases.soonest() {
                Some(at) => Duration::from_millis((at - now).max(0) as u64).min(Duration::from_secs(1)),
                // The clock is an input (a test moves it): look now and then even with nothing due soon.
                None => RECHECK,
            };
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.leases.changed.notified() => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn expire(&self, delivery_id: i64, lease: Lease, now: Millis) {
        let Some(route) = self.routes.get(&lease.destination) else { return };
        let still_ours = match self.store.held(delivery_id).await {
            Ok(Some(h)) => h.status == DeliveryStatus::InFlight && h.claim == Some(lease.claim),
            Ok(None) => false,
            Err(e) => {
                // Not recorded: the lease has run out in the store all the same, so the delivery is
                // claimable again (its attempt stays counted).
                tracing::warn!(error = %e, delivery_id, "cannot look at an expired pull lease");
                false
            }
        };
        if !still_ours {
            return;
        }
        let error = "lease expired: neither acked nor nacked before lease_until".to_string();
        let next = backoff::next_state(&route.policy, lease.attempt, Some((None, false)), now, rand::random());
        let record = AttemptRecord {
            delivery_id,
            claim: lease.claim,
            attempt: lease.attempt,
            at: now,
            outcome: Outcome::Timeout,
            status_code: None,
            exit_code: None,
            error: Some(error.clone()),
            duration_ms: lease.since.elapsed().as_millis() as i64,
            next,
        };
        match self.store.record(record).await {
            Ok(_) => {
                route.metrics.attempt(Outcome::Timeout.as_str(), lease.since.elapsed(), now);
                tracing::warn!(destination = %lease.destination, delivery_id, attempt = lease.attempt, dead = next == NextState::Dead, "{error}");
            }
            Err(e) => tracing::warn!(error = %e, delivery_id, "cannot record an expired pull lease"),
        }
    }

    fn route(&self, destination: &str) -> Result<&PullRoute, PullError> {
        self.routes.get(destination).ok_or_else(|| PullError::NotFound(format!("no pull destination {destination:?}")))
    }

    /// The delivery, if it is one of a pull destination the caller may settle.
    async fn held(&self, delivery_id: i64, scope: Option<&str>) -> Result<(Held, &PullRoute), PullError> {
        let not_found = || PullError::NotFound(format!("no delivery {delivery_id} of a pull destination"));
        let held = self.store.held(delivery_id).await?.ok_or_else(not_found)?;
        let route = self.routes.get(&held.destination).ok_or_else(not_found)?;
        if scope.is_some_and(|s| s != held.destination) {
            return Err(PullError::Forbidden(format!("delivery {delivery_id} is not of this token's destination")));
        }
        Ok((held, route))
    }

    /// What the consumer gets of each claimed delivery; one that cannot be handed out (no attempt
    /// left, a transform error) is recorded dead here and left out.
    async fn hand_out(&self, route: &PullRoute, claimed: Vec<Claimed>, now: Millis) -> Vec<Pulled> {
        let lease_until = now.saturating_add(route.lease.as_millis() as i64);
        let mut items = Vec::with_capacity(claimed.len());
        for c in claimed {
            let attempt = if c.attempt > route.policy.max_attempts {
                Err("attempts exhausted (the last one was interrupted)".to_string())
            } else {
                self.transforms.attempt_of(&c, None).await
            };
            let attempt = match attempt {
                Ok(a) => a,
                Err(error) => {
                    tracing::error!(destination = %c.destination, event_id = %c.event_id, error = %error, "delivery failed; dead");
                    let record = AttemptRecord {
                        delivery_id: c.delivery_id,
                        claim: c.claim,
                        attempt: c.attempt,
                        at: now,
                        outcome: Outcome::Failure,
                        status_code: None,
                        exit_code: None,
                        error: Some(error),
                        duration_ms: 0,
                        next: NextState::Dead,
                    };
                    if let Err(e) = self.store.record(record).await {
                        tracing::warn!(error = %e, "cannot record attempt; the lease brings the delivery back");
                    }
                    continue;
                }
            };
            let lease = Lease {
                claim: c.claim,
                attempt: c.attempt,
                destination: c.destination.clone(),
                until: lease_until,
                since: Instant::now(),
            };
            self.leases.hold(c.delivery_id, lease);
            tracing::info!(destination = %c.destination, event_id = %c.event_id, attempt = c.attempt, "pull delivery claimed");
            items.push(Pulled {
                delivery_id: c.delivery_id,
                event_id: c.event_id,
                source: c.source,
                content_type: attempt.content_type,
                headers_json: c.headers_json,
                body: attempt.body,
                attempt: c.attempt,
                lease_until,
            });
        }
        items
    }

    /// The destination's stored state after an ack or nack (its circuit breaker), as the workers do.
    async fn note(&self, destination: &str, route: &PullRoute, ok: bool, error: Option<String>, at: Millis) {
        if let Err(e) = self.store.note_attempt(attempt_note(destination, route, ok, error, at)).await {
            tracing::warn!(error = %e, "cannot update the destination's state");
        }
    }
}

/// An ack's or nack's outcome, for the destination's stored state (its circuit breaker).
fn attempt_note(destination: &str, route: &PullRoute, ok: bool, error: Option<String>, at: Millis) -> AttemptNote {
    AttemptNote { destination: destination.to_string(), ok, error, at, breaker: route.breaker }
}

fn settled(next: NextState) -> Settled {
    match next {
        NextState::Succeeded => Settled { status: DeliveryStatus::Succeeded, next_attempt_at: None },
        NextState::Retry { at } => Settled { status: DeliveryStatus::Failed, next_attempt_at: Some(at) },
        NextState::Dead => Settled { status: DeliveryStatus::Dead, next_attempt_at: None },
    }
}

/// Resolves at the next change; never, once the sender is gone (the store closed).
async fn changed(rx: &mut watch::Receiver<u64>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
