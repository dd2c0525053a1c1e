//! What the writer thread is asked to do: one [`Job`] per write, each carrying the typed sender
//! its caller waits on, and holding its answer until the batch it is in has committed.

use tokio::sync::oneshot;

use super::*;

/// One write, and where its answer goes.
pub(super) enum Job {
    Enqueue(EventRow, Answer<Enqueued>),
    Claim {
        request: ClaimRequest,
        now: Millis,
        answer: Answer<Vec<Claimed>>,
        /// Park it if it finds nothing (`handoff.rs`) and was not taken back.
        park: Option<Park>,
        /// What it could take if parked, found when applied.
        rooms: Vec<Room>,
    },
    /// The loop takes back the claim it parked as this id (answered with nothing, if still parked).
    Unpark(u64),
    /// An attempt and, in the same savepoint, its note for the destination's state.
    Record(AttemptRecord, Option<AttemptNote>, Answer<(bool, Option<CircuitChange>)>),
    SetPaused {
        destination: String,
        paused: bool,
        answer: Answer<()>,
    },
    NoteAttempt(AttemptNote, Answer<Option<CircuitChange>>),
    ReplayEvent {
        id: String,
        destination: Option<String>,
        answer: Answer<Option<u64>>,
    },
    ReplayDeliveries(ReplayFilter, Answer<u64>),
    Purge {
        cutoff: Millis,
        batch: usize,
        answer: Answer<u64>,
    },
    /// A commit that changes nothing but still writes (and fsyncs) a page: whether commits work
    /// again after one failed (see `ping`).
    Probe(Answer<()>),
    /// Stop once what is queued has been written (see `SqliteStore::close`). Answered after the
    /// writer's connection has closed.
    Close(Answer<()>),
}

/// The caller's end of a job: its typed sender, and the job's result until the commit.
pub(super) struct Answer<T> {
    tx: oneshot::Sender<Result<T, StoreError>>,
    value: Option<T>,
}

impl<T> Answer<T> {
    pub(super) fn new(tx: oneshot::Sender<Result<T, StoreError>>) -> Self {
        Answer { tx, value: None }
    }

    /// Whether it holds a value for which `test` holds.
    fn holds(&self, test: impl FnOnce(&T) -> bool) -> bool {
        self.value.as_ref().is_some_and(test)
    }

    /// Holds `value` until the answer is sent.
    pub(super) fn set(&mut self, value: T) {
        self.value = Some(value);
    }

    /// Holds `value` until the commit; a later run of the same job (its batch re-run with
    /// savepoints) replaces it.
    fn hold(&mut self, value: rusqlite::Result<T>) -> rusqlite::Result<()> {
        value.map(|v| self.value = Some(v))
    }

    /// Tells the caller: its held value if `outcome` is a success.
    pub(super) fn send(self, outcome: Result<(), StoreError>) {
        let Answer { tx, value } = self;
        let result = outcome.and_then(|()| value.ok_or_else(|| unavailable("the write gave no result")));
        let _ = tx.send(result);
    }
}

/// Applies an attempt's note to its destination's state; a circuit that changed withdraws the
/// destination from the parked claims.
fn noted(c: &Connection, note: &AttemptNote, time: &BatchTime) -> rusqlite::Result<Option<CircuitChange>> {
    let change = super::control::note_attempt(c, note)?;
    if change.is_some() {
        time.handoff.borrow_mut().withdraw(&note.destination);
    }
    Ok(change)
}

impl Job {
    /// Whether this job is a claim that asked to park, was not taken back, and found nothing
    /// it could take later too, committed (`outcome`): then it parks (`into_parked`).
    pub(super) fn parks(&self, outcome: &Result<(), StoreError>) -> bool {
        matches!(self, Job::Claim { answer, park: Some(park), rooms, .. }
            if outcome.is_ok() && !rooms.is_empty() && !park.taken_back() && answer.holds(Vec::is_empty))
    }

    /// The parked claim this job becomes, if it [`parks`](Job::parks).
    pub(super) fn into_parked(self) -> Option<Parked> {
        match self {
            Job::Claim { request, answer, park: Some(park), rooms, .. } => Some(Parked {
                id: park.id(),
                token: claim_token(),
                rooms,
                left: request.total,
                answer,
                handed: Vec::new(),
            }),
            _ => None,
        }
    }

    /// Adds an event: refused on a store whose file was lost, even if other writes still pass.
    pub(super) fn adds_event(&self) -> bool {
        matches!(self, Job::Enqueue(..))
    }

    pub(super) fn is_claim(&self) -> bool {
        matches!(self, Job::Claim { .. })
    }

    /// The record of an attempt that succeeded: a claim may be applied before it (see `writer`).
    pub(super) fn is_success_record(&self) -> bool {
        matches!(self, Job::Record(r, ..) if r.next == NextState::Succeeded)
    }

    /// Only writes an answer depends on must be on disk before replying: new events and operator
    /// replays. Claims and attempt records ride along with the next fsync (a crash before it
    /// re-delivers, which at-least-once allows) and cost no fsync of their own.
    pub(super) fn must_be_durable(&self) -> bool {
        !matches!(self, Job::Claim { .. } | Job::Record(..) | Job::NoteAttempt(..) | Job::Unpark(_))
    }

    /// Whether the queue may have new due work once this job has committed. A new event wakes
    /// the loop only for a delivery it left pending (see `Handoff::pending`).
    pub(super) fn wakes(&self) -> bool {
        matches!(self, Job::ReplayEvent { .. } | Job::ReplayDeliveries(..) | Job::SetPaused { paused: false, .. })
    }

    /// Runs the job's SQL inside the writer's open transaction, holding its result.
    pub(super) fn apply(&mut self, c: &Connection, time: &BatchTime) -> rusqlite::Result<()> {
        let now = time.now;
        match self {
            Job::Enqueue(ev, a) => a.hold(enqueue(c, ev, time)),
            Job::Claim { request, now, answer, park, rooms } => {
                answer.hold(claim(c, request, *now, park.is_some()).map(|(claimed, parkable)| {
                    *rooms = parkable;
                    claimed
                }))
            }
            Job::Record(r, note, a) => a.hold(record(c, r, now).and_then(|moved| {
                let change = match note {
                    Some(n) => noted(c, n, time)?,
                    None => None,
                };
                Ok((moved, change))
            })),
            Job::SetPaused { destination, paused, answer } => {
                if *paused {
                    time.handoff.borrow_mut().withdraw(destination);
                }
                answer.hold(super::control::set_paused(c, destination, *paused))
            }
            Job::NoteAttempt(note, a) => a.hold(noted(c, note, time)),
            Job::Unpark(_) => Ok(()),
            Job::ReplayEvent { id, destination, answer } => {
                answer.hold(replay_event(c, id, destination.as_deref(), now))
            }
            Job::ReplayDeliveries(f, a) => a.hold(replay_deliveries(c, f, now)),
            Job::Purge { cutoff, batch, answer } => answer.hold(purge(c, *cutoff, *batch, time)),
            // Rewrites the schema version with the value it has (`migrate` made it so at open).
            Job::Probe(a) => a.hold(c.pragma_update(None, "user_version", MIGRATIONS.len() as i64)),
            Job::Close(a) => a.hold(Ok(())),
        }
    }

    /// Tells the caller how it went: the held result if `outcome` is a success (committed).
    pub(super) fn finish(self, outcome: Result<(), StoreError>) {
        match self {
            Job::Enqueue(_, a) => a.send(outcome),
            Job::Claim { answer, .. } => answer.send(outcome),
            Job::Unpark(_) => {}
            Job::Record(_, _, a) => a.send(outcome),
            Job::SetPaused { answer, .. } => answer.send(outcome),
            Job::NoteAttempt(_, a) => a.send(outcome),
            Job::ReplayEvent { answer, .. } => answer.send(outcome),
            Job::ReplayDeliveries(_, a) => a.send(outcome),
            Job::Purge { answer, .. } => answer.send(outcome),
            Job::Probe(a) | Job::Close(a) => a.send(outcome),
        }
    }
}
