//! Prometheus metrics (names in CONTRACT §6). One [`Metrics`] registry per [`crate::App`], never a
//! global recorder, so many apps in one process (the tests) count separately.
//!
//! Hot paths never look a metric up by name: ingest and dispatch take pre-built handles
//! ([`SourceMetrics`], [`DestinationMetrics`]) once at start, and each update is an atomic add.
//! The admin listener renders the registry at `GET /metrics` (`admin/mod.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::store::DeliveryStatus;

pub const EVENTS_RECEIVED: &str = "hookgate_events_received_total";
pub const REQUESTS_REJECTED: &str = "hookgate_requests_rejected_total";
pub const EVENTS_DUPLICATE: &str = "hookgate_events_duplicate_total";
pub const HANDSHAKES: &str = "hookgate_handshakes_total";
pub const DELIVERIES: &str = "hookgate_deliveries";
pub const DELIVERY_ATTEMPTS: &str = "hookgate_delivery_attempts_total";
pub const DELIVERY_DURATION: &str = "hookgate_delivery_duration_seconds";
pub const END_TO_END: &str = "hookgate_event_end_to_end_seconds";
pub const INGEST_DURATION: &str = "hookgate_ingest_duration_seconds";
pub const DELIVERIES_FILTERED: &str = "hookgate_deliveries_filtered_total";
pub const CONFIG_RELOADS: &str = "hookgate_config_reloads_total";
pub const DESTINATION_STATE: &str = "hookgate_destination_state";
pub const CIRCUIT_OPENED: &str = "hookgate_circuit_opened_total";
/// The states `hookgate_destination_state` shows (CONTRACT §8).
pub const DESTINATION_STATES: [&str; 4] = ["active", "paused", "open", "half_open"];

/// The `source` label of a rejection that matched no source (404).
pub const NO_SOURCE: &str = "";

/// Attempt outcomes as the destinations report them (`AttemptResult::outcome`).
pub const OUTCOMES: [&str; 3] = ["success", "failure", "timeout"];

/// Minutes of attempts each destination keeps in memory for the web UI's chart.
pub const MINUTES_KEPT: usize = 60;

/// Histogram buckets in seconds: from a fast local ingest (sub-millisecond) to a delivery that
/// waited out hours of retries (end to end).
const INGEST_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
const DELIVERY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const END_TO_END_BUCKETS: [f64; 14] =
    [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0];

static METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The registry of one app. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    deliveries: Arc<[(&'static str, Gauge)]>,
    /// Each destination's attempts per minute (this process's, since it started), kept across reloads.
    minutes: Arc<Mutex<HashMap<String, Arc<Mutex<Minutes>>>>>,
}

/// One destination's attempts per minute and outcome over the last [`MINUTES_KEPT`] minutes: a ring
/// indexed by the minute, each slot stamped with the minute it counts.
#[derive(Debug, Default)]
pub struct Minutes {
    slots: Vec<(i64, [u64; OUTCOMES.len()])>,
}

impl Minutes {
    fn count(&mut self, outcome: &str, at_ms: i64) {
        let Some(o) = OUTCOMES.iter().position(|x| *x == outcome) else { return };
        if self.slots.is_empty() {
            self.slots = vec![(i64::MIN, [0; OUTCOMES.len()]); MINUTES_KEPT];
        }
        let minute = at_ms.div_euclid(60_000);
        let slot = &mut self.slots[minute.rem_euclid(MINUTES_KEPT as i64) as usize];
        if slot.0 != minute {
            *slot = (minute, [0; OUTCOMES.len()]);
        }
        slot.1[o] += 1;
    }

    /// The last [`MINUTES_KEPT`] minutes up to the one holding `now_ms`, oldest first: each
    /// minute's start (ms since the epoch) and its counts in the order of [`OUTCOMES`].
    pub fn series(&self, now_ms: i64) -> Vec<(i64, [u64; OUTCOMES.len()])> {
        let last = now_ms.div_euclid(60_000);
        (last - MINUTES_KEPT as i64 + 1..=last)
            .map(|m| {
                let counts = self
                    .slots
                    .get(m.rem_euclid(MINUTES_KEPT as i64) as usize)
                    .filter(|s| s.0 == m)
                    .map_or([0; OUTCOMES.len()], |s| s.1);
                (m * 60_000, counts)
            })
            .collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let builder = [
            (INGEST_DURATION, &INGEST_BUCKETS[..]),
            (DELIVERY_DURATION, &DELIVERY_BUCKETS[..]),
            (END_TO_END, &END_TO_END_BUCKETS[..]),
        ]
        .into_iter()
        .try_fold(PrometheusBuilder::new(), |b, (name, buckets)| {
            b.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
        });
        // The only error is an empty bucket list, and the lists above are constants.
        let recorder = builder.unwrap_or_default().build_recorder();
        describe(&recorder);
        let handle = recorder.handle();
        let deliveries = DeliveryStatus::NAMES
            .iter()
            .map(|s| {
                (*s, recorder.register_gauge(&Key::from_parts(DELIVERIES, vec![Label::new("status", *s)]), &METADATA))
            })
            .collect();
        Metrics { recorder: Arc::new(recorder), handle, deliveries, minutes: Default::default() }
    }

    /// `destination`'s attempts per minute (see [`Minutes::series`]), all zero if it made none.
    pub fn attempts_per_minute(&self, destination: &str, now_ms: i64) -> Vec<(i64, [u64; OUTCOMES.len()])> {
        let ring = self.minutes_of(destination);
        let m = ring.lock().unwrap_or_else(|e| e.into_inner());
        m.series(now_ms)
    }

    fn minutes_of(&self, destination: &str) -> Arc<Mutex<Minutes>> {
        let mut all = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(destination.to_string()).or_default().clone()
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder.register_histogram(&Key::from_parts(name, labels), &METADATA)
    }

    /// The handles one source updates; registering makes every series visible (at 0) at once.
    /// `reasons` are the rejection reasons ingest counts (`IngestError::REASONS`).
    pub fn source(&self, source: &str, reasons: &[&'static str]) -> SourceMetrics {
        let src = || Label::new("source", source.to_string());
        SourceMetrics {
            received: self.counter(EVENTS_RECEIVED, vec![src()]),
            duplicate: self.counter(EVENTS_DUPLICATE, vec![src()]),
            handshakes: self.counter(HANDSHAKES, vec![src()]),
            // "not_found" never has a source: see `unmatched`.
            rejected: reasons
                .iter()
                .filter(|r| **r != "not_found")
                .map(|r| (*r, self.counter(REQUESTS_REJECTED, vec![src(), Label::new("reason", *r)])))
                .collect(),
            duration: self.histogram(INGEST_DURATION, vec![src()]),
        }
    }

    /// The counter of deliveries that `source`'s filter for `destination` left out (CONTRACT §7).
    pub fn filtered(&self, source: &str, destination: &str) -> Counter {
        self.counter(
            DELIVERIES_FILTERED,
            vec![Label::new("source", source.to_string()), Label::new("destination", destination.to_string())],
        )
    }

    /// Counts a config reload; `result` is "ok" or "error". Both series exist (at 0) from the start.
    pub fn config_reload(&self, result: &'static str) {
        self.counter(CONFIG_RELOADS, vec![Label::new("result", result)]).increment(1);
    }

    /// Makes both reload series visible at 0.
    pub fn register_config_reloads(&self) {
        for result in ["ok", "error"] {
            let _ = self.counter(CONFIG_RELOADS, vec![Label::new("result", result)]);
        }
    }

    /// The counter of requests that matched no source (404), labelled `source=""`.
    pub fn unmatched(&self) -> Counter {
        self.counter(REQUESTS_REJECTED, vec![Label::new("source", NO_SOURCE), Label::new("reason", "not_found")])
    }

    pub fn destination(&self, destination: &str) -> DestinationMetrics {
        let dst = || Label::new("destination", destination.to_string());
        DestinationMetrics {
            attempts: OUTCOMES
                .iter()
                .map(|o| (*o, self.counter(DELIVERY_ATTEMPTS, vec![dst(), Label::new("outcome", *o)])))
                .collect(),
            duration: self.histogram(DELIVERY_DURATION, vec![dst()]),
            end_to_end: self.histogram(END_TO_END, vec![dst()]),
            circuit_opened: self.counter(CIRCUIT_OPENED, vec![dst()]),
            minutes: self.minutes_of(destination),
            recorder: self.recorder.clone(),
            destination: destination.to_string(),
        }
    }

    /// Sets the `hookgate_deliveries{status}` gauges from the store's counts.
    pub fn set_deliveries(&self, counts: &[(DeliveryStatus, u64)]) {
        for (status, gauge) in self.deliveries.iter() {
            let n = counts.iter().find(|(s, _)| s.as_str() == *status).map_or(0, |(_, n)| *n);
            gauge.set(n as f64);
        }
    }

    /// Sets `hookgate_destination_state{destination,state}`: 1 for each destination's state, 0 for the others.
    pub fn set_destination_states(&self, states: &[(String, &str)]) {
        for (destination, current) in states {
            for state in DESTINATION_STATES {
                let labels = vec![Label::new("destination", destination.clone()), Label::new("state", state)];
                let gauge = self.recorder.register_gauge(&Key::from_parts(DESTINATION_STATE, labels), &METADATA);
                gauge.set(if state == *current { 1.0 } else { 0.0 });
            }
        }
    }

    /// The Prometheus text exposition of everything counted so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; run every few seconds so memory stays flat
    /// between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn describe(r: &PrometheusRecorder) {
    let c = |name: &'static str, help: &'static str| r.describe_counter(name.into(), None, help.into());
    c(EVENTS_RECEIVED, "Events verified and stored (200 queued), by source.");
    c(REQUESTS_REJECTED, "Ingest requests refused, by source and reason (the HTTP status table).");
    c(EVENTS_DUPLICATE, "Retried events acknowledged as duplicates, by source.");
    c(HANDSHAKES, "Provider URL checks answered (never stored), by source.");
    c(DELIVERY_ATTEMPTS, "Delivery attempts, by destination and outcome (success, failure, timeout).");
    c(DELIVERIES_FILTERED, "Deliveries a filter left out at ingest, by source and destination.");
    c(CONFIG_RELOADS, "Config reloads (SIGHUP, POST /api/reload), by result (ok, error).");
    c(CIRCUIT_OPENED, "Openings of a destination's circuit (a closed one opening, or a failed trial), by destination.");
    r.describe_gauge(DELIVERIES.into(), None, "Deliveries in each status, counted in the store at scrape time.".into());
    r.describe_gauge(
        DESTINATION_STATE.into(),
        None,
        "1 for each destination's current state (active, paused, open, half_open), read from the store at scrape time."
            .into(),
    );
    let h =
        |name: &'static str, help: &'static str| r.describe_histogram(name.into(), Some(Unit::Seconds), help.into());
    h(INGEST_DURATION, "Time from request to answer on the ingest listener, by source.");
    h(DELIVERY_DURATION, "Duration of one delivery attempt, by destination.");
    h(END_TO_END, "Time from receiving an event to its successful delivery, by destination.");
}

/// One source's handles.
#[derive(Clone)]
pub struct SourceMetrics {
    received: Counter,
    duplicate: Counter,
    handshakes: Counter,
    rejected: Vec<(&'static str, Counter)>,
    duration: Histogram,
}

impl SourceMetrics {
    pub fn received(&self) {
        self.received.increment(1);
    }

    pub fn duplicate(&self) {
        self.duplicate.increment(1);
    }

    pub fn handshake(&self) {
        self.handshakes.increment(1);
    }

    pub fn reject(&self, reason: &str) {
        if let Some((_, c)) = self.rejected.iter().find(|(r, _)| *r == reason) {
            c.increment(1);
        }
    }

    pub fn took(&self, elapsed: Duration) {
        self.duration.record(elapsed.as_secs_f64());
    }
}

/// One destination's handles.
#[derive(Clone)]
pub struct DestinationMetrics {
    attempts: Vec<(&'static str, Counter)>,
    duration: Histogram,
    end_to_end: Histogram,
    circuit_opened: Counter,
    minutes: Arc<Mutex<Minutes>>,
    recorder: Arc<PrometheusRecorder>,
    destination: String,
}

impl DestinationMetrics {
    /// Counts one opening of the destination's circuit.
    pub fn circuit_opened(&self) {
        self.circuit_opened.increment(1);
    }

    /// Counts one attempt made at `at_ms` and its duration.
    pub fn attempt(&self, outcome: &'static str, took: Duration, at_ms: i64) {
        if let Ok(mut m) = self.minutes.lock() {
            m.count(outcome, at_ms);
        }
        match self.attempts.iter().find(|(o, _)| *o == outcome) {
            Some((_, c)) => c.increment(1),
            // An outcome added later still gets counted, at the price of one lookup.
            None => self
                .recorder
                .register_counter(
                    &Key::from_parts(
                        DELIVERY_ATTEMPTS,
                        vec![Label::new("destination", self.destination.clone()), Label::new("outcome", outcome)],
                    ),
                    &METADATA,
                )
                .increment(1),
        }
        self.duration.record(took.as_secs_f64());
    }

    /// Records the time from receipt to a successful delivery.
    pub fn delivered_after(&self, end_to_end: Duration) {
        self.end_to_end.record(end_to_end.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_per_minute_for_the_last_hour() {
        let m = Metrics::new();
        let crm = m.destination("crm");
        let t = 1_000 * 60_000; // a minute's start
        crm.attempt("success", Duration::ZERO, t - 90 * 60_000); // older than an hour: overwritten or left out
        crm.attempt("success", Duration::ZERO, t - 60_000);
        crm.attempt("failure", Duration::ZERO, t + 5);
        crm.attempt("failure", Duration::ZERO, t + 59_999);
        crm.attempt("timeout", Duration::ZERO, t + 1);
        let series = m.attempts_per_minute("crm", t + 30_000);
        assert_eq!(series.len(), MINUTES_KEPT);
        assert_eq!(series[MINUTES_KEPT - 1], (t, [0, 2, 1]));
        assert_eq!(series[MINUTES_KEPT - 2], (t - 60_000, [1, 0, 0]));
        assert_eq!(series.iter().map(|(_, c)| c.iter().sum::<u64>()).sum::<u64>(), 4);
        assert!(m.attempts_per_minute("other", t).iter().all(|(_, c)| *c == [0, 0, 0]));
        // A reload builds new handles from the same registry: the counts stay.
        assert_eq!(m.destination("crm").minutes.lock().unwrap().series(t)[MINUTES_KEPT - 1].1, [0, 2, 1]);
    }

    #[test]
    fn two_registries_count_separately() {
        let a = Metrics::new();
        let b = Metrics::new();
        let reasons = ["signature", "too_large"];
        a.source("s", &reasons).received();
        a.source("s", &reasons).received();
        b.source("s", &reasons).reject("signature");
        let text = a.render();
        assert!(text.contains("hookgate_events_received_total{source=\"s\"} 2"), "{text}");
        assert!(text.contains("hookgate_requests_rejected_total{source=\"s\",reason=\"signature\"} 0"), "{text}");
        assert!(b.render().contains("hookgate_requests_rejected_total{source=\"s\",reason=\"signature\"} 1"));
    }

    #[test]
    fn histograms_have_buckets_and_gauges_cover_every_status() {
        let m = Metrics::new();
        m.destination("crm").attempt("success", Duration::from_millis(30), 0);
        m.set_deliveries(&[(DeliveryStatus::Dead, 3)]);
        let text = m.render();
        assert!(
            text.contains("hookgate_delivery_duration_seconds_bucket{destination=\"crm\",le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(text.contains("hookgate_deliveries{status=\"dead\"} 3"), "{text}");
        assert!(text.contains("hookgate_deliveries{status=\"pending\"} 0"), "{text}");
        assert!(text.contains("# TYPE hookgate_event_end_to_end_seconds histogram"), "{text}");
    }
}
