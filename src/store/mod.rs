//! Durable storage of events, deliveries and attempts. Only this module speaks SQL.
//! Read the [`Store`] trait first; `sqlite/` is the embedded default, `postgres/` the shared one.

#[macro_use]
mod rules;
mod control;
pub mod postgres;
pub mod sqlite;
mod wakeup;

pub use control::{AttemptNote, Breaker, Circuit, CircuitChange, DestinationState, Rate};
pub(crate) use rules::{DELIVERY_SLOTS, claim_token, delivery_ids, parse_cursor};
pub use rules::{DeliveryStatus, EventStatus, Outcome};
pub use wakeup::Wakeup;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::verify::Verified;

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub type Millis = i64;

/// `t` as [`Millis`].
pub fn millis(t: SystemTime) -> Millis {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// [`Millis`] as a `SystemTime`.
pub fn from_millis(ms: Millis) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the write; the caller answers 503.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store knows why it cannot commit now; the caller answers 503 and `/readyz` names the
    /// reason. `detail` (which names the file) is for the log only.
    #[error("storage unavailable: {detail}")]
    NotReady { reason: Unready, detail: String },
    /// A bad argument (e.g. a malformed cursor, a backup that cannot be written): the caller answers 400.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Why a store cannot commit now, as `/readyz` reports it (`"reason"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unready {
    /// The embedded database file was deleted while in use. Latched: only a restart clears it.
    Deleted,
    /// The embedded database file was replaced by another file while in use. Latched.
    Replaced,
    /// The database reported corruption (`SQLITE_CORRUPT`, `SQLITE_NOTADB`). Latched.
    Corrupt,
    /// The last commit failed (disk full, I/O error); clears with the next commit that succeeds.
    CommitFailing,
}

impl Unready {
    /// The `reason` field of `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Unready::Deleted => "database_deleted",
            Unready::Replaced => "database_replaced",
            Unready::Corrupt => "database_corrupt",
            Unready::CommitFailing => "commit_failing",
        }
    }
}

/// A fresh event id (UUIDv7: unique across nodes, ordered by time). Ingest assigns it before the
/// commit, so that routing expressions can read it; a duplicate keeps the first event's id.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// One delivery an event gets: due at once, or `filtered` with the reason (CONTRACT §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned<'a> {
    pub destination: &'a str,
    /// Why the destination's filter left it out: stored as the delivery's `last_error`.
    pub filtered: Option<String>,
    /// What the destination's `ordering_key` gave (None: unordered, CONTRACT §8).
    pub ordering_key: Option<String>,
}

impl<'a> Planned<'a> {
    /// A delivery to each of `destinations`, none filtered.
    pub fn each(destinations: &'a [String]) -> Vec<Planned<'a>> {
        destinations.iter().map(|d| Planned { destination: d, filtered: None, ordering_key: None }).collect()
    }

    /// A delivery to each of `destinations`, with what routing gave it (`routing::planned`): why it
    /// is `filtered` (None: due) and its ordering key.
    pub fn routed(destinations: &'a [String], routed: &[(Option<String>, Option<String>)]) -> Vec<Planned<'a>> {
        destinations
            .iter()
            .zip(routed)
            .map(|(destination, (filtered, ordering_key))| Planned {
                destination,
                filtered: filtered.clone(),
                ordering_key: ordering_key.clone(),
            })
            .collect()
    }
}

/// An event ready to be stored. It can only be made from a [`Verified`] request.
pub struct NewEvent<'a> {
    /// From [`new_event_id`].
    pub id: String,
    pub verified: &'a Verified,
    pub source: &'a str,
    pub dedupe_key: String,
    pub content_type: Option<String>,
    /// The request headers as a JSON object, sensitive values already redacted.
    pub headers_json: String,
    /// One delivery per destination is created with the event, in this order.
    pub deliveries: Vec<Planned<'a>>,
    pub received_at: SystemTime,
    /// The W3C `traceparent` of the ingest span (traces on only): each attempt's span is its child.
    pub traceparent: Option<String>,
}

/// A [`NewEvent`] with its id assigned and everything owned, ready to cross into a backend's
/// writer task or thread.
pub(crate) struct EventRow {
    pub id: String,
    pub source: String,
    pub dedupe_key: String,
    pub content_type: Option<String>,
    pub headers_json: String,
    pub body: Bytes,
    /// The request target (path and query), for the routing document of later attempts.
    pub path: String,
    /// Each destination with, if it was filtered out, why, and its ordering key.
    pub deliveries: Vec<(String, Option<String>, Option<String>)>,
    pub received_at: Millis,
    pub traceparent: Option<String>,
}

impl NewEvent<'_> {
    pub(crate) fn into_row(self) -> EventRow {
        EventRow {
            id: self.id,
            path: self.verified.path_and_query().to_string(),
            source: self.source.to_string(),
            dedupe_key: self.dedupe_key,
            content_type: self.content_type,
            headers_json: self.headers_json,
            body: self.verified.body().clone(),
            deliveries: self
                .deliveries
                .into_iter()
                .map(|p| (p.destination.to_string(), p.filtered, p.ordering_key))
                .collect(),
            received_at: millis(self.received_at),
            traceparent: self.traceparent,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Queued {
        event_id: String,
    },
    /// Same source and dedupe key as an event already stored; no delivery was created.
    Duplicate {
        event_id: String,
    },
}

/// A delivery claimed by a worker, with what it needs to deliver.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    /// Proof of this claim: a record with a stale token (the lease ran out and someone else
    /// claimed it) does not change the delivery.
    pub claim: i64,
    /// 1 for the first attempt; counts every claim, so a delivery that crashes its worker
    /// still runs out of attempts.
    pub attempt: u32,
    pub event_id: String,
    pub source: String,
    pub destination: String,
    pub content_type: Option<String>,
    /// The stored (redacted) request headers as a JSON object.
    pub headers_json: String,
    pub body: Bytes,
    pub received_at: Millis,
    /// The request target the event came with (empty for events stored before it was kept).
    pub path: String,
    /// The event's trace context, stored at ingest when traces were on.
    pub traceparent: Option<String>,
}

/// Who holds a delivery now, for a pull consumer's ack or nack (CONTRACT §10): the claim token
/// and attempt number to record with, and until when the lease runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub delivery_id: i64,
    pub destination: String,
    pub status: DeliveryStatus,
    /// Attempts counted so far (the current claim's number when in flight).
    pub attempts: u32,
    /// The current claim's token (None when never claimed or put back in the queue).
    pub claim: Option<i64>,
    pub lease_until: Option<Millis>,
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextState {
    Succeeded,
    Retry { at: Millis },
    Dead,
}

/// The result of one attempt, as recorded in the attempt log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    pub claim: i64,
    pub attempt: u32,
    pub at: Millis,
    pub outcome: Outcome,
    pub status_code: Option<u16>,
    pub exit_code: Option<i32>,
    /// Why it failed, including a truncated response body or stderr.
    pub error: Option<String>,
    pub duration_ms: i64,
    pub next: NextState,
}

/// Filters for listing events. `status` is the event's derived status: dead, succeeded or pending.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub source: Option<String>,
    pub status: Option<EventStatus>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub limit: usize,
    /// Opaque; from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    pub destination: Option<String>,
    pub source: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EventSummary {
    pub id: String,
    pub source: String,
    pub received_at: Millis,
    pub status: EventStatus,
    pub dedupe_key: String,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub attempt: u32,
    pub at: Millis,
    pub outcome: String,
    pub status_code: Option<u16>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone)]
pub struct DeliveryInfo {
    pub id: i64,
    pub event_id: String,
    pub source: String,
    pub destination: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<Millis>,
    pub last_error: Option<String>,
    pub attempt_log: Vec<Attempt>,
}

#[derive(Debug, Clone)]
pub struct EventDetail {
    pub summary: EventSummary,
    pub headers_json: String,
    pub body: Bytes,
    pub deliveries: Vec<DeliveryInfo>,
}

/// Which deliveries a bulk replay puts back in the queue.
#[derive(Debug, Clone)]
pub struct ReplayFilter {
    pub status: DeliveryStatus,
    pub destination: Option<String>,
    pub source: Option<String>,
}

/// What one claim asks for: deliveries of the listed destinations only, at most `max` of each
/// (what that destination can start now: its free `concurrency` permits), at most `total` in all,
/// each leased for its own destination's lease (`[delivery] lease`, by default the destination's
/// timeout + 30s). A claim never takes what its worker cannot start at once, so a lease never
/// runs while the delivery waits for a permit. Destinations not listed are not claimed: their
/// deliveries wait (a destination removed from the config keeps its deliveries pending).
#[derive(Debug, Clone, Default)]
pub struct ClaimRequest {
    pub total: usize,
    pub wants: Vec<Want>,
}

/// A claim the caller may park ([`Store::claim_or_park`]), and may take back ([`Store::unpark`]).
#[derive(Debug, Clone)]
pub struct Park(Arc<ParkState>);

#[derive(Debug)]
struct ParkState {
    id: u64,
    taken_back: std::sync::atomic::AtomicBool,
}

impl Park {
    pub fn new() -> Park {
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Park(Arc::new(ParkState { id, taken_back: Default::default() }))
    }

    /// Unique in the process.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    pub fn take_back(&self) {
        self.0.taken_back.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn taken_back(&self) -> bool {
        self.0.taken_back.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Default for Park {
    fn default() -> Self {
        Park::new()
    }
}

/// One destination's share of a [`ClaimRequest`].
#[derive(Debug, Clone)]
pub struct Want {
    pub destination: String,
    pub max: usize,
    pub lease: Duration,
    /// The destination's `rate_limit`: the claim takes one token of its bucket per delivery.
    pub rate: Option<Rate>,
}

impl ClaimRequest {
    /// Up to `total` deliveries of each of `destinations` (and `total` in all), all leased for `lease`.
    pub fn each<S: AsRef<str>>(total: usize, destinations: &[S], lease: Duration) -> Self {
        let wants = destinations
            .iter()
            .map(|d| Want { destination: d.as_ref().to_string(), max: total, lease, rate: None })
            .collect();
        ClaimRequest { total, wants }
    }

    /// Destinations that may take at least one delivery, each capped at `total`.
    pub(crate) fn open_wants(&self) -> impl Iterator<Item = (&Want, usize)> {
        self.wants.iter().map(|w| (w, w.max.min(self.total))).filter(|(_, n)| *n > 0)
    }
}

/// Picks at most `total` of each destination's candidates (each list in claim order), taking
/// one from each destination in turn, so that no destination's backlog crowds out another's.
pub(crate) fn interleave<T>(mut per_destination: Vec<std::collections::VecDeque<T>>, total: usize) -> Vec<T> {
    let mut out = Vec::new();
    while out.len() < total {
        let before = out.len();
        for queue in &mut per_destination {
            if out.len() == total {
                break;
            }
            if let Some(c) = queue.pop_front() {
                out.push(c);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// The durable queue.
///
/// Semantics every backend keeps (checked by `tests/it/store_conformance.rs`):
/// - `enqueue` is atomic: the event and one `pending` delivery per destination commit together,
///   durably (fsync or PostgreSQL commit) before it returns. A second event with the same
///   (source, dedupe key) stores nothing and returns the first event's id as `Duplicate`.
/// - `claim` hands each due delivery (pending or failed with `next_attempt_at <= now`, or
///   in_flight with an expired lease) of the requested destinations to one caller only, at most
///   as many of each destination as asked (see [`ClaimRequest`]), marks it `in_flight` with its
///   destination's lease and a fresh claim token, and counts the attempt. It takes no more of a
///   destination than its stored state lets it ([`DestinationState::gate`]: none while paused or
///   its circuit is open, one trial after the cooldown, no more than its rate limit's bucket
///   holds), and writes what it took back in the same transaction. A delivery with an ordering key
///   is claimed only when no delivery of its destination and key with a lower id is pending,
///   failed or in flight (a dead or succeeded one releases the key).
/// - `next_due` leaves out paused destinations and waits for a cooldown, a trial or a token.
/// - `record` appends to the attempt log and moves the delivery to its next state, but only if
///   the claim token still matches (a worker whose lease ran out cannot overwrite a newer claim).
///   A success is the exception: it was delivered, so it marks the delivery `succeeded` whatever
///   the claim, unless it already is; and nothing overwrites a success.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn enqueue(&self, event: NewEvent<'_>) -> Result<Enqueued, StoreError>;
    async fn claim(&self, request: &ClaimRequest, now: SystemTime) -> Result<Vec<Claimed>, StoreError>;
    /// Whether [`Store::claim_or_park`] can wait for new deliveries (SQLite: `handoff.rs`).
    fn parks(&self) -> bool {
        false
    }
    /// [`Store::claim`]; a store that [parks](Store::parks) keeps a claim that finds nothing
    /// (and could take new deliveries) until it is handed new ones, the destinations it could
    /// take are gated, or [`Store::unpark`] of `park` (then it answers with nothing). The others
    /// answer at once.
    async fn claim_or_park(
        &self,
        request: &ClaimRequest,
        now: SystemTime,
        park: &Park,
    ) -> Result<Vec<Claimed>, StoreError> {
        let _ = park;
        self.claim(request, now).await
    }
    /// Takes back the claim parked as `park`: it answers now, if it still waits, and will not
    /// park if it has not yet (the claim may reach the store after this).
    async fn unpark(&self, park: &Park) {
        park.take_back();
    }
    /// Returns false when the claim was lost (state unchanged, attempt still logged).
    async fn record(&self, attempt: AttemptRecord) -> Result<bool, StoreError>;
    /// When the next delivery of one of `destinations` becomes due (including leases running
    /// out), if any.
    async fn next_due(&self, destinations: &[String]) -> Result<Option<Millis>, StoreError>;
    /// Succeeds when the store can commit now: the database answers, and (SQLite) its file is the
    /// one opened, not corrupt, and the last commit succeeded (if it failed, ping tries one). An
    /// error that knows why is [`StoreError::NotReady`].
    async fn ping(&self) -> Result<(), StoreError>;
    /// Notified when new work may be due (a new event, a replay), on this node or another.
    fn wakeup(&self) -> Arc<Notify>;
    /// The same signal as [`Store::wakeup`], for any number of watchers (pull consumers' long
    /// polls): the value changes at each signal.
    fn work(&self) -> tokio::sync::watch::Receiver<u64>;
    /// A delivery's current status, attempts and claim; `None` when there is no such delivery.
    async fn held(&self, delivery_id: i64) -> Result<Option<Held>, StoreError>;

    async fn list_events(&self, query: EventQuery) -> Result<Page<EventSummary>, StoreError>;
    async fn get_event(&self, id: &str) -> Result<Option<EventDetail>, StoreError>;
    /// Puts the event's deliveries (or the one to `destination`) back in the queue, unless in flight.
    /// `None` when there is no such event.
    async fn replay_event(&self, id: &str, destination: Option<&str>) -> Result<Option<u64>, StoreError>;
    async fn list_deliveries(&self, query: DeliveryQuery) -> Result<Page<DeliveryInfo>, StoreError>;
    async fn replay_deliveries(&self, filter: ReplayFilter) -> Result<u64, StoreError>;
    /// Deletes up to `batch` events received before `cutoff` whose deliveries are all finished.
    async fn purge(&self, cutoff: Millis, batch: usize) -> Result<u64, StoreError>;
    /// Number of deliveries in each status.
    async fn count_by_status(&self) -> Result<Vec<(DeliveryStatus, u64)>, StoreError>;
    /// Writes a consistent copy of the database to `to`, a file that does not exist yet, while
    /// the store keeps serving (SQLite: `VACUUM INTO` on a read connection: one snapshot, the
    /// writer never waits; the copy is fsynced). A backend that is backed up by its own tools
    /// (PostgreSQL: `pg_dump`) answers [`StoreError::Invalid`] saying so; so does a copy that fails
    /// (the target exists, the disk is full), with the reason.
    async fn backup(&self, to: &std::path::Path) -> Result<(), StoreError>;
    /// Number of deliveries of each destination in each status (statuses with none left out).
    async fn count_by_destination(
        &self,
        destinations: &[String],
    ) -> Result<Vec<(String, DeliveryStatus, u64)>, StoreError>;

    /// The stored state of each of `destinations`, in that order ([`DestinationState::new`] for
    /// one never written).
    async fn destination_states(&self, destinations: &[String]) -> Result<Vec<DestinationState>, StoreError>;
    /// Pauses (no claims, on every node, until resumed) or resumes a destination. Stored.
    async fn set_paused(&self, destination: &str, paused: bool) -> Result<(), StoreError>;
    /// Applies one attempt's outcome to its destination's state (consecutive failures, the
    /// circuit, the last error and success) and says how the circuit changed.
    async fn note_attempt(&self, note: AttemptNote) -> Result<Option<CircuitChange>, StoreError>;
    /// [`Store::record`] and then, whatever the claim, [`Store::note_attempt`] of `note`: one write
    /// on SQLite (one writer job, both or neither), so a delivery costs the writer one round trip.
    /// The default runs them one after the other; a note it cannot write is logged and lost (one
    /// count of the breaker), never a reason to record the attempt again.
    async fn record_noted(
        &self,
        attempt: AttemptRecord,
        note: Option<AttemptNote>,
    ) -> Result<(bool, Option<CircuitChange>), StoreError> {
        let moved = self.record(attempt).await?;
        let Some(note) = note else { return Ok((moved, None)) };
        match self.note_attempt(note).await {
            Ok(change) => Ok((moved, change)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot update the destination's state");
                Ok((moved, None))
            }
        }
    }
    /// Writes what is queued, stops the store's threads and tasks and closes its connections (and
    /// SQLite's file lock, so the same process can open it again at once). Every operation after
    /// it is unavailable. Idempotent; a store dropped without it stops by itself.
    async fn close(&self);
}

/// Opens the store the config names; every time it stores comes from `clock`.
pub async fn open(config: &crate::config::Storage, clock: SharedClock) -> Result<Arc<dyn Store>, StoreError> {
    match &config.url {
        crate::config::StorageUrl::Sqlite(path) => {
            Ok(Arc::new(sqlite::SqliteStore::open_with(path, config.check_at_start, clock).await?))
        }
        crate::config::StorageUrl::Postgres(url) => {
            // Made from the config's text, so always UTF-8.
            let url = std::str::from_utf8(url.expose())
                .map_err(|_| StoreError::Invalid("storage.url is not UTF-8".into()))?;
            Ok(Arc::new(postgres::PostgresStore::open(url, config.pool_size, clock).await?))
        }
    }
}
