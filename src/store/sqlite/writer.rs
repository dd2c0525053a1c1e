//! The writer thread: the one connection that writes. It commits whatever is queued in one
//! transaction (group commit), retries a batch with a savepoint per job when one job fails, and
//! catches the WAL up after the checkpoint thread's passes. Read `writer` first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{Notify, mpsc, oneshot};

use super::health::{Health, Verdict};
use super::*;

/// Writes committed together at most; bounds the latency one commit adds.
pub(super) const MAX_BATCH: usize = 1024;

pub(super) enum Op {
    Enqueue(EventRow),
    Claim { request: ClaimRequest, now: Millis },
    Record(AttemptRecord),
    ReplayEvent { id: String, destination: Option<String> },
    ReplayDeliveries(ReplayFilter),
    Purge { cutoff: Millis, batch: usize },
    // A commit that changes nothing but still writes (and fsyncs) a page: whether commits work
    // again after one failed (see `ping`).
    Probe,
}

pub(super) enum Reply {
    Enqueued(Enqueued),
    Claimed(Vec<Claimed>),
    Recorded(bool),
    Replayed(Option<u64>),
    Count(u64),
}

pub(super) struct Job {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Reply, StoreError>>,
}

/// The writer's time: `now` for the batch being applied, and the newest `received_at` stored, which
/// no later event may precede, so that received_at never decreases with seq (see `first_seq_at`):
/// concurrent requests' times differ by a few ms, and a clock stepped back holds received_at at
/// the newest value until it catches up.
#[derive(Default)]
pub(super) struct Clock {
    pub(super) now: Millis,
    pub(super) newest: std::cell::Cell<Millis>,
}

impl Clock {
    pub(super) fn starting_at(conn: &Connection) -> rusqlite::Result<Clock> {
        let newest = conn
            .query_row("SELECT received_at FROM events ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        Ok(Clock { now: 0, newest: newest.into() })
    }

    /// When an event received at `at` is stored.
    pub(super) fn received(&self, at: Millis) -> Millis {
        at.max(self.newest.get())
    }
}

pub(super) fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    wakeup: Arc<Notify>,
    mut clock: Clock,
    backfilled: Arc<AtomicBool>,
    health: Arc<Health>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut synchronous = Sync::Full;
    let mut caught_up = std::time::Instant::now();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Queued before the failed state was set: refused here, before anything is written.
        if health.has_failed() {
            let mut admitted = Vec::with_capacity(batch.len());
            for job in batch.drain(..) {
                match health.refusal(matches!(job.op, Op::Enqueue(_))) {
                    Some(refused) => {
                        let _ = job.reply.send(Err(refused));
                    }
                    None => admitted.push(job),
                }
            }
            batch = admitted;
            if batch.is_empty() {
                continue;
            }
        }
        // Only writes an answer depends on must be on disk before replying: new events and
        // operator replays. Claims and attempt records ride along with the next fsync (a crash
        // before it re-delivers, which at-least-once allows) and cost no fsync of their own.
        let wanted = if batch.iter().any(|j| j.op.must_be_durable()) { Sync::Full } else { Sync::Off };
        if wanted != synchronous && conn.pragma_update(None, "synchronous", wanted.pragma()).is_ok() {
            synchronous = wanted;
        }
        clock.now = millis(SystemTime::now());
        let changes = conn.total_changes();
        let (results, wake, verdict) = run_batch(&mut conn, &batch, &clock);
        // A commit that wrote nothing (an empty claim) succeeds on a full disk too: it tells
        // nothing about whether commits work.
        let wrote = conn.total_changes() != changes || batch.iter().any(|j| matches!(j.op, Op::Probe));
        if wrote || verdict != Verdict::Fine {
            health.committed(verdict);
        }
        // Before anyone is told: was that the file the path still leads to?
        health.look();
        if wake {
            wakeup.notify_one();
        }
        for (job, result) in batch.drain(..).zip(results) {
            let _ = job.reply.send(result);
        }
        // The checkpoint thread copies the WAL into the database in the background, but only a
        // checkpoint that catches up between two writes lets SQLite start the WAL over; without
        // this the WAL grows without bound under steady load (and a restart must read it all).
        // It runs right after a pass of the checkpoint thread (which synced what it copied), so it
        // copies and syncs only what was written since. FULL so it fsyncs the database before the
        // WAL can be reused. If the checkpoint thread stops handing them over (a failing sync), the
        // writer still catches up now and then, paying the whole sync itself.
        if backfilled.swap(false, Ordering::Acquire) || caught_up.elapsed() >= CATCH_UP_AT_LEAST_EVERY {
            if synchronous != Sync::Full && conn.pragma_update(None, "synchronous", Sync::Full.pragma()).is_ok() {
                synchronous = Sync::Full;
            }
            let started = std::time::Instant::now();
            caught_up = started;
            // The row is (busy, frames in the WAL, frames copied); busy when a pass was running.
            match conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
            {
                Ok((frames, copied)) => {
                    tracing::debug!(frames, copied, took_us = started.elapsed().as_micros() as u64, "WAL caught up")
                }
                Err(e) => {
                    health.observe(&e);
                    tracing::warn!(error = %e, "checkpoint failed")
                }
            }
        }
    }
    // The connection closes before the lock's descriptor can (see `health::lock`).
    drop(conn);
    drop(health);
}

/// The longest the writer goes without catching the WAL up, whatever the checkpoint thread does.
pub(super) const CATCH_UP_AT_LEAST_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sync {
    Full,
    Off,
}

impl Sync {
    fn pragma(self) -> &'static str {
        match self {
            Sync::Full => "FULL",
            Sync::Off => "OFF",
        }
    }
}

impl Op {
    pub(super) fn must_be_durable(&self) -> bool {
        !matches!(self, Op::Claim { .. } | Op::Record(_))
    }
}

/// Applies a batch in one transaction and commits it once. If the commit fails, every job fails:
/// none of them is durable. Also says what the errors tell about the database (`Verdict`).
///
/// The batch first runs without savepoints, the common case where nothing fails; a savepoint per
/// job would copy every page it touches into a statement journal. If a job does fail, the whole
/// transaction is rolled back and the batch runs again with each job in its own savepoint, so the
/// failing job does not undo the others.
pub(super) fn run_batch(
    conn: &mut Connection,
    batch: &[Job],
    clock: &Clock,
) -> (Vec<Result<Reply, StoreError>>, bool, Verdict) {
    let started = std::time::Instant::now();
    let mut applied = apply_jobs(conn, batch, clock, false);
    let mut verdict = Verdict::Fine;
    if let Ok(results) = &applied
        && results.iter().any(Result::is_err)
    {
        verdict = worst(verdict, results);
        // A failed job may have left part of its writes (an event without its deliveries): none
        // of this transaction may commit.
        if !conn.is_autocommit() {
            let _ = exec_cached(conn, "ROLLBACK");
        }
        applied = apply_jobs(conn, batch, clock, true);
    }
    let results: Vec<Result<Reply, StoreError>> = match applied {
        Ok(results) => {
            verdict = worst(verdict, &results);
            results.into_iter().map(|r| r.map_err(unavailable)).collect()
        }
        Err(e) => {
            let verdict = verdict.and(Verdict::of(&e)).and(Verdict::CannotWrite(e.to_string()));
            return (batch.iter().map(|_| Err(unavailable(&e))).collect(), false, verdict);
        }
    };
    let wake = batch.iter().zip(&results).any(|(job, result)| {
        result.is_ok() && matches!(job.op, Op::Enqueue(_) | Op::ReplayEvent { .. } | Op::ReplayDeliveries(_))
    });
    let applied = std::time::Instant::now();
    let committed = exec_cached(conn, "COMMIT");
    tracing::debug!(
        size = batch.len(),
        apply_us = (applied - started).as_micros() as u64,
        commit_us = applied.elapsed().as_micros() as u64,
        "batch committed"
    );
    match committed {
        Ok(()) => (results, wake, verdict),
        Err(e) => {
            let _ = exec_cached(conn, "ROLLBACK");
            // Whatever its code, a failed commit means the store cannot commit now.
            let verdict = verdict.and(Verdict::of(&e)).and(Verdict::CannotWrite(e.to_string()));
            (batch.iter().map(|_| Err(unavailable(format!("commit failed: {e}")))).collect(), false, verdict)
        }
    }
}

/// The worst of `verdict` and what the failed jobs' errors say.
pub(super) fn worst(verdict: Verdict, results: &[rusqlite::Result<Reply>]) -> Verdict {
    results.iter().filter_map(|r| r.as_ref().err()).map(Verdict::of).fold(verdict, Verdict::and)
}

/// Begins a transaction and applies the jobs in order. Without `savepoints` it stops at the first
/// failure, which is then the last result; with them, each job runs in its own savepoint and a
/// failure undoes only that job.
pub(super) fn apply_jobs(
    conn: &Connection,
    batch: &[Job],
    clock: &Clock,
    savepoints: bool,
) -> rusqlite::Result<Vec<rusqlite::Result<Reply>>> {
    // Cached statements rather than rusqlite's Transaction/Savepoint helpers, which parse their
    // SQL on every call: this runs for every write.
    exec_cached(conn, "BEGIN IMMEDIATE")?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let result = if savepoints {
            exec_cached(conn, "SAVEPOINT job").and_then(|()| match apply(conn, &job.op, clock) {
                Ok(reply) => exec_cached(conn, "RELEASE job").map(|()| reply),
                Err(e) => {
                    let _ = exec_cached(conn, "ROLLBACK TO job").and_then(|()| exec_cached(conn, "RELEASE job"));
                    Err(e)
                }
            })
        } else {
            apply(conn, &job.op, clock)
        };
        let failed = result.is_err();
        results.push(result);
        if failed && !savepoints {
            break;
        }
    }
    Ok(results)
}

pub(super) fn exec_cached(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([]).map(|_| ())
}

pub(super) fn apply(c: &Connection, op: &Op, clock: &Clock) -> rusqlite::Result<Reply> {
    let now = clock.now;
    match op {
        Op::Enqueue(ev) => enqueue(c, ev, clock).map(Reply::Enqueued),
        Op::Claim { request, now } => claim(c, request, *now).map(Reply::Claimed),
        Op::Record(r) => record(c, r, now).map(Reply::Recorded),
        Op::ReplayEvent { id, destination } => replay_event(c, id, destination.as_deref(), now).map(Reply::Replayed),
        Op::ReplayDeliveries(f) => replay_deliveries(c, f, now).map(Reply::Count),
        Op::Purge { cutoff, batch } => purge(c, *cutoff, *batch).map(Reply::Count),
        // Rewrites the schema version with the value it has (`migrate` made it so at open).
        Op::Probe => c.pragma_update(None, "user_version", MIGRATIONS.len() as i64).map(|()| Reply::Count(0)),
    }
}
