//! The delivery loop. One [`Dispatcher`] per process: it claims as many due deliveries as it has
//! free slots (`[delivery] concurrency`), and of each destination with a `concurrency` of its own
//! only as many as that destination has free permits, so every claimed delivery starts at once
//! and its lease never runs while it waits. It runs each in its own task, and sleeps until the
//! next delivery is due, a delivery finishes or the store signals new work. Nothing is lost if the
//! process dies: a claimed delivery whose lease runs out is claimed again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::alerts::{Alert, Alerter};
use super::backoff;
use super::transform::Transforms;
use crate::clock::SharedClock;
use crate::config::{Config, RetryPolicy, Target};
use crate::destination::exec::ExecDestination;
use crate::destination::function::{FunctionDestination, Handler};
use crate::destination::http::{self as http_destination, HttpDestination, client};
use crate::destination::{AttemptResult, Deliver};
use crate::metrics::{DestinationMetrics, Metrics};
use crate::routing::pool::Pool;
use crate::store::{
    AttemptNote, AttemptRecord, Breaker, CircuitChange, ClaimRequest, Claimed, Millis, NextState, Park, Rate, Store,
    StoreError, Want, millis,
};
use crate::telemetry::traces;

/// Most deliveries claimed in one round trip.
const CLAIM_BATCH: usize = 256;
/// Even with no signal, look for due work this often (another node's retries, clock drift).
const IDLE_POLL: Duration = Duration::from_secs(5);

struct Route {
    deliver: Box<dyn Deliver>,
    policy: RetryPolicy,
    /// The destination's own `concurrency`, if it has one.
    limit: Option<Arc<Semaphore>>,
    lease: Duration,
    metrics: DestinationMetrics,
    /// `rate_limit`, taken from by the claim (CONTRACT §8).
    rate: Option<Rate>,
    /// `circuit_breaker`, applied by the store to each attempt's outcome.
    breaker: Option<Breaker>,
}

/// What a claim found, for the loop's next step.
struct Outcome {
    /// It got as many as it asked for: there may be more.
    full: bool,
    got: usize,
    /// The destinations that could have taken more than they got.
    room: Vec<String>,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    routes: HashMap<String, Route>,
    /// Each (source, destination)'s transform, run at every attempt.
    transforms: Transforms,
    /// `[alerts]`, if the config has it.
    alerts: Option<Alerter>,
    /// The destinations in config order: each claim round starts one further along, so that when
    /// free slots are few every destination's backlog gets its turn.
    order: Vec<String>,
    default_policy: RetryPolicy,
    clock: SharedClock,
    slots: Arc<Semaphore>,
    concurrency: usize,
    /// Signalled when a delivery of a destination with its own concurrency finishes (it has room
    /// again), or when an attempt is to be retried (it may be due sooner than we planned).
    rescan: Notify,
    /// The loop found due work it could not claim (an ordering key held): every finished
    /// delivery then signals `rescan`, as it may release a key.
    stuck: std::sync::atomic::AtomicBool,
    /// `[telemetry] otlp_endpoint` is set: each attempt of an event with a trace is a span of it.
    traces: bool,
}

impl Dispatcher {
    /// Builds one route per destination. A `rust` destination needs its handler in `handlers`.
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        handlers: &HashMap<String, Handler>,
        metrics: &Metrics,
        clock: SharedClock,
        routing: Option<Pool>,
    ) -> Result<Self, String> {
        let http = client()?;
        let mut routes = HashMap::new();
        let hidden_env: Arc<[String]> = config.secret_env_vars.clone().into();
        for d in &config.destinations {
            let deliver: Box<dyn Deliver> = match &d.target {
                Target::Http { url, method, headers, sign } => {
                    let options = http_destination::Options {
                        method: method.clone(),
                        headers: headers.clone(),
                        sign: sign.clone(),
                    };
                    let destination = HttpDestination::new(&http, url.clone(), options, d.timeout, clock.clone())
                        .map_err(|e| format!("destination {:?}: {e}", d.name))?;
                    Box::new(destination)
                }
                Target::Exec { program, args } => Box::new(ExecDestination::new(
                    program.clone(),
                    args.clone(),
                    d.timeout,
                    config.base_dir.clone(),
                    hidden_env.clone(),
                )),
                // Consumers claim these through the admin API (`pull.rs`); the workers never do.
                Target::Pull { .. } => continue,
                Target::Broker(b) => crate::destination::broker::build(b, &d.name, d.timeout, clock.clone()),
                Target::Rust { handler } => match handlers.get(handler) {
                    Some(h) => Box::new(FunctionDestination::new(h.clone(), d.timeout)),
                    None => {
                        return Err(format!(
                            "destination {:?} has type = \"rust\" but no handler named {handler:?} is registered",
                            d.name
                        ));
                    }
                },
            };
            let limit = d.concurrency.map(|n| Arc::new(Semaphore::new(n)));
            let metrics = metrics.destination(&d.name);
            let rate = d.rate_limit.map(|r| Rate { per_second: r.per_second as f64, burst: r.burst as f64 });
            let breaker = d.circuit_breaker.map(|b| Breaker {
                failures: b.failures,
                cooldown: b.cooldown,
                max: d.policy.max_backoff,
            });
            routes.insert(
                d.name.clone(),
                Route { deliver, policy: d.policy, limit, lease: d.lease, metrics, rate, breaker },
            );
        }
        let transforms = Transforms::new(config, routing.clone())?;
        Ok(Dispatcher {
            alerts: Alerter::new(config, store.clone(), routing.clone()),
            store,
            routes,
            transforms,
            order: config.destinations.iter().map(|d| d.name.clone()).collect(),
            default_policy: config.delivery.policy,
            clock,
            slots: Arc::new(Semaphore::new(config.delivery.concurrency)),
            concurrency: config.delivery.concurrency,
            rescan: Notify::new(),
            stuck: Default::default(),
            traces: config.telemetry.traces(),
        })
    }

    /// Runs until `stop` is cancelled. Delivery tasks are spawned on `tracker`, so the caller can
    /// wait for the ones in flight.
    ///
    /// Under a backlog two claims are out at once: the next is sent as soon as slots are free,
    /// while the last is still in the writer's queue (a claim waits there behind the attempt
    /// records, ~0.5 ms at 30,000 deliveries/s, and slots freed meanwhile would otherwise idle).
    /// Each claim starts its own deliveries (`claim_and_start`); the loop reads a claim's outcome
    /// only to decide whether there is a backlog. The store serializes claims, so two never take
    /// the same delivery and each sees the other's ordering keys and rate limits.
    pub async fn run(self: Arc<Self>, stop: CancellationToken, tracker: TaskTracker) {
        let wakeup = self.store.wakeup();
        let mut errors = 0u32;
        let mut backlog = false;
        let mut round = 0usize;
        // Rounds in a row that found due work but could claim none of it.
        let mut unclaimable = 0u32;
        // Half the slots: with two claims out, waiting for more slots costs less than the claims
        // it saves (docs/PERFORMANCE.md, "Session 11": a quarter measured 0.91-0.97 of this).
        let batch_min = (self.concurrency / 2).clamp(1, 32);
        let mut out: std::collections::VecDeque<tokio::task::JoinHandle<Result<Outcome, StoreError>>> =
            Default::default();
        // The queue ran dry: the next claim parks in the store (`Store::claim_or_park`) until
        // new deliveries are handed to it, or until this instant (the next due), whichever first.
        let mut park_until: Option<tokio::time::Instant> = None;
        let mut waiting = None;
        loop {
            // Wait for at least one free slot, then take whatever else is free.
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                p = self.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            // Under a backlog, claim in batches rather than one slot at a time: one round trip
            // to the store then serves many deliveries. Bounded by a short wait.
            if backlog && self.slots.available_permits() + 1 < batch_min {
                let more = self.slots.acquire_many(batch_min as u32 - 1);
                let _ = tokio::time::timeout(Duration::from_millis(2), more).await;
            }
            let mut permits = vec![first];
            while permits.len() < CLAIM_BATCH {
                match self.slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            round = round.wrapping_add(1);
            let (request, held) = self.claim_request(permits.len(), round);
            if request.wants.is_empty() {
                // Every destination is at its own concurrency: wait for a delivery to finish (or
                // first read the outcome of the claim still out).
                drop(permits);
                if out.is_empty() {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = self.rescan.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                    continue;
                }
            } else {
                let park = park_until.take().map(|until| (Park::new(), until));
                let claim = self.clone().claim_and_start(
                    request,
                    permits,
                    held,
                    tracker.clone(),
                    park.as_ref().map(|p| p.0.clone()),
                );
                out.push_back(tracker.spawn(claim));
                // With a backlog, read the older claim's outcome only once the next one is out.
                if backlog && out.len() < 2 {
                    continue;
                }
                waiting = park;
            }
            let Some(oldest) = out.pop_front() else { continue };
            // A parked claim answered by itself: handed new deliveries, or (with none) the store
            // would not park it (every destination it could take is gated).
            let (joined, by_itself, parked_until) = match waiting.take() {
                Some((park, until)) => {
                    let (joined, by_itself) = self.parked(oldest, &park, until, &stop, &wakeup).await;
                    (joined, by_itself, Some(until))
                }
                None => (oldest.await, false, None),
            };
            let mut outcome = match joined.unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string()))) {
                Ok(outcome) => {
                    errors = 0;
                    outcome
                }
                Err(e) => {
                    errors = errors.saturating_add(1);
                    backlog = false;
                    // Back off while the store is down, but never longer than the idle poll, and
                    // wake at once when the store says work arrived (it is back).
                    let wait = Duration::from_millis(100u64 << errors.min(6)).min(IDLE_POLL);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot claim deliveries");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = wakeup.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            backlog = outcome.full;
            if backlog {
                continue;
            }
            // The queue ran dry: what the claims still out found decides how long to sleep.
            while let Some(next) = out.pop_front() {
                if let Ok(Ok(more)) = next.await {
                    outcome.got += more.got;
                    outcome.room.extend(more.room);
                }
            }
            outcome.room.sort();
            outcome.room.dedup();
            // Handed deliveries: nothing else became due meanwhile (that wakes the loop), so the
            // parked claim's deadline stands.
            let handed_until = parked_until.filter(|_| by_itself && outcome.got > 0);
            let wait = match handed_until {
                Some(until) => until.saturating_duration_since(tokio::time::Instant::now()),
                None => match self.store.next_due(&outcome.room).await {
                    Ok(Some(at)) => Duration::from_millis((at - millis(self.clock.now())).max(0) as u64).min(IDLE_POLL),
                    Ok(None) => IDLE_POLL,
                    Err(_) => Duration::from_secs(1),
                },
            };
            if wait.is_zero() && outcome.got == 0 {
                // Due work we could not claim (another worker holds it, or an earlier delivery of
                // its ordering key is still open): don't spin. Look again sooner when one of ours
                // finishes (it may release a key), else back off up to a second.
                let pause = Duration::from_millis(50u64 << unclaimable.min(4)).min(Duration::from_secs(1));
                unclaimable = unclaimable.saturating_add(1);
                self.stuck.store(true, Ordering::Relaxed);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.rescan.notified() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
            unclaimable = 0;
            self.stuck.store(false, Ordering::Relaxed);
            let declined = by_itself && outcome.got == 0;
            if self.store.parks() && !declined && !wait.is_zero() {
                park_until = Some(tokio::time::Instant::now() + wait);
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wakeup.notified() => {}
                _ = self.rescan.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Waits for a parked claim's outcome; takes the claim back (`Store::unpark`) when the loop must
    /// look at the queue itself: shutdown, a wake-up, a rescan, or the next due at `until`.
    /// Whether it was answered by itself.
    async fn parked(
        &self,
        mut claim: tokio::task::JoinHandle<Result<Outcome, StoreError>>,
        park: &Park,
        until: tokio::time::Instant,
        stop: &CancellationToken,
        wakeup: &Notify,
    ) -> (Result<Result<Outcome, StoreError>, tokio::task::JoinError>, bool) {
        tokio::select! {
            joined = &mut claim => return (joined, true),
            _ = stop.cancelled() => {}
            _ = wakeup.notified() => {}
            _ = self.rescan.notified() => {}
            _ = tokio::time::sleep_until(until) => {}
        }
        self.store.unpark(park).await;
        (claim.await, false)
    }

    /// One claim: the deliveries it gets start at once, each with one of `permits` (and its
    /// destination's own permit from `held`); the rest of the permits are returned.
    async fn claim_and_start(
        self: Arc<Self>,
        request: ClaimRequest,
        mut permits: Vec<OwnedSemaphorePermit>,
        mut held: HashMap<String, Vec<OwnedSemaphorePermit>>,
        tracker: TaskTracker,
        park: Option<Park>,
    ) -> Result<Outcome, StoreError> {
        let claimed = match park {
            Some(park) => self.store.claim_or_park(&request, self.clock.now(), &park).await?,
            None => self.store.claim(&request, self.clock.now()).await?,
        };
        let full = claimed.len() == permits.len();
        let got = claimed.len();
        let mut taken: HashMap<String, usize> = HashMap::new();
        for (c, permit) in claimed.into_iter().zip(permits.drain(..)) {
            *taken.entry(c.destination.clone()).or_default() += 1;
            let own = held.get_mut(c.destination.as_str()).and_then(Vec::pop);
            let this = self.clone();
            tracker.spawn(async move { this.deliver_one(c, permit, own).await });
        }
        // Only destinations that could have taken more: the others wake the loop when one of
        // their deliveries finishes.
        let room = request
            .wants
            .iter()
            .filter(|w| taken.get(w.destination.as_str()).copied().unwrap_or(0) < w.max)
            .map(|w| w.destination.clone())
            .collect();
        Ok(Outcome { full, got, room })
    }

    /// What this round may claim: up to `total` in all, and of each destination with a
    /// `concurrency` of its own only as many as it has free permits, which are taken now (and
    /// returned with `held`) so that each claimed delivery starts at once.
    fn claim_request(&self, total: usize, round: usize) -> (ClaimRequest, HashMap<String, Vec<OwnedSemaphorePermit>>) {
        let mut wants = Vec::with_capacity(self.order.len());
        let mut held = HashMap::new();
        let n = self.order.len().max(1);
        for name in self.order.iter().cycle().skip(round % n).take(self.order.len()) {
            let Some(route) = self.routes.get(name) else { continue };
            let max = match &route.limit {
                None => total,
                Some(limit) => {
                    let permits: Vec<_> =
                        std::iter::from_fn(|| limit.clone().try_acquire_owned().ok()).take(total).collect();
                    let n = permits.len();
                    held.insert(name.clone(), permits);
                    n
                }
            };
            if max > 0 {
                wants.push(Want { destination: name.clone(), max, lease: route.lease, rate: route.rate });
            }
        }
        (ClaimRequest { total, wants }, held)
    }

    async fn deliver_one(&self, c: Claimed, slot: OwnedSemaphorePermit, own: Option<OwnedSemaphorePermit>) {
        let span =
            tracing::info_span!("delivery", event_id = %c.event_id, destination = %c.destination, attempt = c.attempt);
        let trace = match &c.traceparent {
            Some(parent) if self.traces => {
                Some(traces::attempt_span(parent, &c.event_id, &c.destination, c.delivery_id, c.attempt))
            }
            _ => None,
        };
        async move {
            let route = self.routes.get(&c.destination);
            let policy = route.map(|r| r.policy).unwrap_or(self.default_policy);
            let started = Instant::now();
            // Whether the attempt reached the destination: only those count for its circuit.
            let mut reached = false;
            let result = match route {
                _ if c.attempt > policy.max_attempts => AttemptResult {
                    permanent: true,
                    ..AttemptResult::failure("attempts exhausted (the last one was interrupted)")
                },
                None => AttemptResult::failure(format!("destination {:?} is not in the config", c.destination)),
                Some(route) => match self.transforms.attempt_of(&c, trace.as_ref().and_then(traces::traceparent)).await
                {
                    Ok(attempt) => {
                        reached = true;
                        route.deliver.deliver(&attempt).await
                    }
                    Err(transform_error) => {
                        AttemptResult { permanent: true, ..AttemptResult::failure(transform_error) }
                    }
                },
            };
            let elapsed = started.elapsed();
            // The attempt is over: its slots go to the next claim while its record is written. On
            // SQLite that claim queues behind the record in the writer, so it sees it; on either
            // store the delivery stays leased (unclaimable) until the record lands.
            // Wake the loop if this destination was at its own concurrency and now has room (a
            // free global slot wakes it by itself).
            let had_own = own.is_some();
            drop((slot, own));
            if had_own {
                self.rescan.notify_one();
            }
            let now = millis(self.clock.now());
            if let Some(route) = route {
                route.metrics.attempt(result.outcome().as_str(), elapsed, now);
                if result.ok {
                    route.metrics.delivered_after(Duration::from_millis((now - c.received_at).max(0) as u64));
                }
            }
            let failure = (!result.ok).then_some((result.retry_after, result.permanent));
            let next = backoff::next_state(&policy, c.attempt, failure, now, rand::random::<f64>());
            match (&next, &result.error) {
                (NextState::Succeeded, _) => tracing::info!(
                    outcome = "success",
                    duration_ms = elapsed.as_millis() as u64,
                    end_to_end_ms = (now - c.received_at).max(0),
                    "delivered"
                ),
                (NextState::Retry { at }, err) => tracing::warn!(
                    outcome = result.outcome().as_str(),
                    error = err.as_deref().unwrap_or(""),
                    retry_in_ms = (at - now).max(0),
                    "delivery failed; will retry"
                ),
                (NextState::Dead, err) => tracing::error!(
                    outcome = result.outcome().as_str(),
                    error = err.as_deref().unwrap_or(""),
                    "delivery failed; dead"
                ),
            }
            let record = AttemptRecord {
                delivery_id: c.delivery_id,
                claim: c.claim,
                attempt: c.attempt,
                at: now,
                outcome: result.outcome(),
                status_code: result.status_code,
                exit_code: result.exit_code,
                error: result.error.clone(),
                duration_ms: elapsed.as_millis() as i64,
                next,
            };
            if let Some(span) = &trace {
                let next = match record.next {
                    NextState::Succeeded => "succeeded",
                    NextState::Retry { .. } => "retry",
                    NextState::Dead => "dead",
                };
                traces::attempt_done(span, record.outcome.as_str(), next, result.status_code, result.exit_code);
            }
            let retry = matches!(record.next, NextState::Retry { .. });
            let dead = record.next == NextState::Dead;
            let route = route.filter(|_| reached);
            let note = route.map(|route| AttemptNote {
                destination: c.destination.clone(),
                ok: result.ok,
                error: result.error.clone(),
                at: now,
                breaker: route.breaker,
            });
            let (recorded, change) = self.record(record, note).await;
            if let (Some(route), Some(change)) = (route, change) {
                self.circuit_changed(route, &c.destination, change, &result.error, now).await;
            }
            // Only the worker whose record moved the delivery to dead says so.
            let dead_alert = (dead && recorded).then(|| Alert::DeliveryDead {
                destination: c.destination.clone(),
                source: c.source.clone(),
                event_id: c.event_id.clone(),
                delivery_id: c.delivery_id,
                attempts: c.attempt,
                last_error: result.error.clone(),
                claim: c.claim,
            });
            // Wake the loop when it may have work it did not claim: a retry may be due sooner than
            // it planned, and a finished delivery may release its ordering key for the next one.
            if retry || self.stuck.load(Ordering::Relaxed) {
                self.rescan.notify_one();
            }
            // Storing the alert waits for a commit; the slots are free already.
            if let (Some(alert), Some(alerts)) = (dead_alert, &self.alerts) {
                alerts.raise(alert, now).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Says that an attempt changed its destination's circuit: a metric, a log line, an alert.
    async fn circuit_changed(
        &self,
        route: &Route,
        destination: &str,
        change: CircuitChange,
        last_error: &Option<String>,
        at: Millis,
    ) {
        let destination = destination.to_string();
        let alert = match change {
            CircuitChange::Opened | CircuitChange::Reopened => {
                route.metrics.circuit_opened();
                tracing::warn!(destination = %destination, reopened = change == CircuitChange::Reopened, "circuit opened");
                // Raised when a closed circuit opens, not at each failed trial (CONTRACT §8).
                (change == CircuitChange::Opened)
                    .then(|| Alert::CircuitOpened { destination, last_error: last_error.clone() })
            }
            CircuitChange::Closed => {
                tracing::info!(destination = %destination, "circuit closed");
                Some(Alert::CircuitClosed { destination })
            }
        };
        if let (Some(alert), Some(alerts)) = (alert, &self.alerts) {
            alerts.raise(alert, at).await;
        }
    }

    /// Records an attempt and applies it to its destination's stored state (the circuit breaker),
    /// in one write, retrying briefly if the store is unavailable. If it never succeeds, the lease
    /// runs out and the delivery is attempted again: at-least-once, never lost (and the breaker
    /// loses one count). Whether the delivery moved to the attempt's next state (false: the claim
    /// was lost, or the store never took it), and how the circuit changed.
    async fn record(&self, record: AttemptRecord, note: Option<AttemptNote>) -> (bool, Option<CircuitChange>) {
        for wait_ms in [0u64, 100, 500, 2000, 5000] {
            if wait_ms > 0 {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
            match self.store.record_noted(record.clone(), note.clone()).await {
                Ok((true, change)) => return (true, change),
                Ok((false, change)) => {
                    tracing::warn!("lease ran out before the attempt was recorded; another claim owns the delivery");
                    return (false, change);
                }
                Err(e) => tracing::warn!(error = %e, "cannot record attempt; retrying"),
            }
        }
        tracing::error!("attempt not recorded; the delivery will run again when its lease expires");
        (false, None)
    }
}

#[cfg(test)]
mod tests;
