//! The writer thread: the one connection that writes. It commits whatever is queued in one
//! transaction (group commit), retries a batch with a savepoint per job when one job fails, and
//! catches the WAL up after the checkpoint thread's passes. Read `writer` first; the jobs it runs
//! are `jobs.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::mpsc;

use super::health::{Health, Verdict};
use super::*;
use crate::clock::SharedClock;

/// Writes committed together at most; bounds the latency one commit adds.
pub(super) const MAX_BATCH: usize = 1024;

/// The longest the writer goes without catching the WAL up, whatever the checkpoint thread does.
const CATCH_UP_AT_LEAST_EVERY: Duration = Duration::from_secs(2);

/// The writer's time: `now` for the batch being applied (read once per batch from the store's
/// clock), and the newest `received_at` stored, which no later event may precede, so that
/// received_at never decreases with seq (see `first_seq_at`): concurrent requests' times differ by
/// a few ms, and a clock stepped back holds received_at at the newest value until it catches up.
/// Also the dedupe keys of the newest events, which only the writer reads (see `dedupe`).
#[derive(Default)]
pub(super) struct BatchTime {
    pub(super) now: Millis,
    pub(super) newest: std::cell::Cell<Millis>,
    pub(super) tail: std::cell::RefCell<super::dedupe::Tail>,
    /// The parked claims (`handoff.rs`).
    pub(super) handoff: std::cell::RefCell<Handoff>,
}

impl BatchTime {
    pub(super) fn starting_at(conn: &Connection) -> rusqlite::Result<BatchTime> {
        let newest = conn
            .query_row("SELECT received_at FROM events ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let tail = super::dedupe::Tail::of_table(conn)?;
        Ok(BatchTime { now: 0, newest: newest.into(), tail: tail.into(), handoff: Default::default() })
    }

    /// When an event received at `at` is stored.
    pub(super) fn received(&self, at: Millis) -> Millis {
        at.max(self.newest.get())
    }
}

/// What the writer thread owns besides its connection.
pub(super) struct WriterParts {
    pub(super) wakeup: Arc<crate::store::wakeup::Wakeup>,
    pub(super) clock: SharedClock,
    pub(super) time: BatchTime,
    pub(super) backfilled: Arc<AtomicBool>,
    pub(super) health: Arc<Health>,
}

/// Runs until every sender is gone or a [`Job::Close`] came and what was queued before it (and
/// is still in the channel) has been written.
pub(super) fn writer(mut conn: Connection, mut rx: mpsc::Receiver<Job>, parts: WriterParts) {
    let WriterParts { wakeup, clock, mut time, backfilled, health } = parts;
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut closers: Vec<Job> = Vec::new();
    let mut durability = Durability::Full;
    let mut caught_up = std::time::Instant::now();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if batch.iter().any(|j| matches!(j, Job::Close(_))) {
            // No more sends; what is queued still comes out of `rx`, and is written.
            rx.close();
            let (close, rest) = batch.drain(..).partition(|j| matches!(j, Job::Close(_)));
            closers.extend::<Vec<Job>>(close);
            batch = rest;
        }
        // The loop takes back a claim it parked: answered now if parked (before any refusal:
        // the loop waits for that answer); one not parked yet will not park (`Park::taken_back`).
        for id in unparks(&mut batch) {
            if let Some(parked) = time.handoff.get_mut().unpark(id) {
                parked.answer(None);
            }
        }
        // Queued before the failed state was set: refused here, before anything is written.
        if health.has_failed() {
            batch = batch
                .drain(..)
                .filter_map(|job| match health.refusal(job.adds_event()) {
                    Some(refused) => {
                        job.finish(Err(refused));
                        None
                    }
                    None => Some(job),
                })
                .collect();
        }
        // A claim waits neither for the fsync of the events queued with it nor for the records of
        // attempts that succeeded: when the pickup holds a claim, it is committed in two
        // transactions, in this order: claims with the failed attempts' records and the notes (in
        // their own order, so a claim still sees the failures queued before it: a breaker must
        // count them; ARCHITECTURE.md, invariant 7); then the success records (one only releases:
        // a lease, an ordering key, a half-open trial, so a claim that does not see it yet takes
        // less, never more) with what must be durable, under its fsync. Jobs of one pickup were sent
        // concurrently: their senders could have seen this order, and the events' commit wakes the
        // dispatcher for what they add.
        let mut rest = Vec::new();
        if batch.iter().any(Job::is_claim) {
            rest = take(&mut batch, |j| j.must_be_durable() || j.is_success_record());
        }
        for group in [&mut batch, &mut rest] {
            commit(&mut conn, group, &mut durability, &mut time, &clock, &health, &wakeup);
        }
        // Merging dedupe keys (and growing their filter) answers nobody: no fsync of its own (the
        // next durable commit covers it, and at open the keys of every event after
        // `dedupe_merged` are merged again).
        if time.tail.get_mut().has_work() && !health.has_failed() {
            if durability != Durability::Off
                && conn.pragma_update(None, "synchronous", Durability::Off.pragma()).is_ok()
            {
                durability = Durability::Off;
            }
            if let Err(e) = time.tail.get_mut().work_some(&conn) {
                health.observe(&e);
                tracing::warn!(error = %e, "merging dedupe keys failed");
            }
        }
        // The checkpoint thread copies the WAL into the database in the background, but only a
        // checkpoint that catches up between two writes lets SQLite start the WAL over; without
        // this the WAL grows without bound under steady load (and a restart must read it all).
        // It runs right after a pass of the checkpoint thread (which synced what it copied), so it
        // copies and syncs only what was written since. FULL so it fsyncs the database before the
        // WAL can be reused (if FULL cannot be set, it waits for the next batch). If the checkpoint
        // thread stops handing them over (a failing sync), the writer still catches up now and
        // then, paying the whole sync itself.
        if backfilled.swap(false, Ordering::Acquire) || caught_up.elapsed() >= CATCH_UP_AT_LEAST_EVERY {
            if durability != Durability::Full
                && conn.pragma_update(None, "synchronous", Durability::Full.pragma()).is_ok()
            {
                durability = Durability::Full;
            }
            if durability == Durability::Full {
                caught_up = std::time::Instant::now();
                catch_up(&conn, &health);
            }
        }
    }
    for parked in time.handoff.get_mut().all() {
        parked.answer(Some(unavailable("the store is closing")));
    }
    // The connection closes before the lock's descriptor can (see `health::lock`).
    drop(conn);
    drop(health);
    for job in closers {
        job.finish(Ok(()));
    }
}

/// Takes the [`Job::Unpark`]s out of `batch`: their ids.
fn unparks(batch: &mut Vec<Job>) -> Vec<u64> {
    if !batch.iter().any(|j| matches!(j, Job::Unpark(_))) {
        return Vec::new();
    }
    take(batch, |j| matches!(j, Job::Unpark(_)))
        .into_iter()
        .filter_map(|j| match j {
            Job::Unpark(id) => Some(id),
            _ => None,
        })
        .collect()
}

/// Takes the jobs for which `pick` holds out of `batch`, keeping the order of both.
fn take(batch: &mut Vec<Job>, pick: impl Fn(&Job) -> bool) -> Vec<Job> {
    let (picked, rest) = batch.drain(..).partition(|j| pick(j));
    *batch = rest;
    picked
}

/// Commits `batch` in one transaction (with an fsync if one of its jobs must be durable) and
/// answers its jobs.
fn commit(
    conn: &mut Connection,
    batch: &mut Vec<Job>,
    durability: &mut Durability,
    time: &mut BatchTime,
    clock: &SharedClock,
    health: &Health,
    wakeup: &crate::store::wakeup::Wakeup,
) {
    let wanted = if batch.iter().any(Job::must_be_durable) { Durability::Full } else { Durability::Off };
    switch_durability(batch, durability, wanted, |d| conn.pragma_update(None, "synchronous", d.pragma()));
    if batch.is_empty() {
        return;
    }
    time.now = millis(clock.now());
    let changes = conn.total_changes();
    let (results, wake, verdict) = run_batch(conn, batch, time);
    // Only a synced commit that wrote says commits work: one that wrote nothing (an empty claim)
    // tells nothing, and one without an fsync (claims, attempt records) can succeed where an
    // event's cannot (a few frames still fit in a full disk's WAL; no sync to fail). Any failure
    // says they do not.
    let wrote = conn.total_changes() != changes || batch.iter().any(|j| matches!(j, Job::Probe(_)));
    if (wrote && *durability == Durability::Full) || verdict != Verdict::Fine {
        health.committed(verdict);
    }
    // Before a sender is told its event is stored: was that the file the path still leads to?
    // (Claims and attempt records answer no sender; the watchdog looks for them.)
    if batch.iter().any(|j| j.must_be_durable()) {
        health.look_at_commit();
    }
    if wake {
        wakeup.notify_one();
    }
    let handoff = time.handoff.get_mut();
    for (job, result) in batch.drain(..).zip(results) {
        if job.parks(&result) {
            handoff.park(job.into_parked());
        } else {
            job.finish(result);
        }
    }
    // What this commit handed (an event is stored only if its file is still the one opened).
    for parked in handoff.ready() {
        parked.answer(health.refusal(true));
    }
}

/// One PASSIVE checkpoint by the writer itself, between two batches.
fn catch_up(conn: &Connection, health: &Health) {
    let started = std::time::Instant::now();
    // The row is (busy, frames in the WAL, frames copied); busy when a pass was running.
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))) {
        Ok((frames, copied)) => {
            tracing::debug!(frames, copied, took_us = started.elapsed().as_micros() as u64, "WAL caught up")
        }
        Err(e) => {
            health.observe(&e);
            tracing::warn!(error = %e, "checkpoint failed")
        }
    }
}

/// `PRAGMA synchronous`: whether a commit waits for the WAL's fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// The WAL is fsynced at every commit: what an acknowledged event or replay needs.
    Full,
    /// No fsync: enough for claims and attempt records (see [`Job::must_be_durable`]).
    Off,
}

impl Durability {
    pub(super) fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Off => "OFF",
        }
    }
}

/// Sets the connection's durability to `wanted` with `set` if it is not already. Fails closed: if
/// FULL cannot be set, the jobs that must be durable are answered unavailable now (their commit
/// would not be fsynced, and an acknowledged event could be lost), and the others stay in `batch`.
/// Failing to relax to OFF only costs an fsync.
pub(super) fn switch_durability(
    batch: &mut Vec<Job>,
    current: &mut Durability,
    wanted: Durability,
    set: impl FnOnce(Durability) -> rusqlite::Result<()>,
) {
    if wanted == *current || batch.is_empty() {
        return;
    }
    match set(wanted) {
        Ok(()) => *current = wanted,
        Err(e) if wanted == Durability::Full => {
            tracing::warn!(error = %e, "cannot make commits durable (PRAGMA synchronous = FULL failed)");
            *batch = batch
                .drain(..)
                .filter_map(|job| match job.must_be_durable() {
                    true => {
                        job.finish(Err(unavailable(format!("cannot make the commit durable: {e}"))));
                        None
                    }
                    false => Some(job),
                })
                .collect();
        }
        Err(_) => {}
    }
}

/// Applies a batch in one transaction and commits it once. If the commit fails, every job fails:
/// none of them is durable. Also says what the errors tell about the database (`Verdict`), and
/// whether the queue may have new work (`wake`).
///
/// The batch first runs without savepoints, the common case where nothing fails; a savepoint per
/// job would copy every page it touches into a statement journal. If a job does fail, the whole
/// transaction is rolled back and the batch runs again with each job in its own savepoint, so the
/// failing job does not undo the others.
pub(super) fn run_batch(
    conn: &mut Connection,
    batch: &mut [Job],
    time: &BatchTime,
) -> (Vec<Result<(), StoreError>>, bool, Verdict) {
    let started = std::time::Instant::now();
    let mut applied = apply_jobs(conn, batch, time, false);
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
        applied = apply_jobs(conn, batch, time, true);
    }
    let results: Vec<Result<(), StoreError>> = match applied {
        Ok(results) => {
            verdict = worst(verdict, &results);
            // Without savepoints, the jobs after a failure did not run: they fail with it.
            let mut results: Vec<_> = results.into_iter().map(|r| r.map_err(unavailable)).collect();
            results.resize_with(batch.len(), || Err(unavailable("not applied")));
            results
        }
        Err(e) => {
            time.tail.borrow_mut().undo_to(0);
            time.handoff.borrow_mut().undo_to(0);
            let verdict = verdict.and(Verdict::of(&e)).and(Verdict::CannotWrite(e.to_string()));
            return (batch.iter().map(|_| Err(unavailable(&e))).collect(), false, verdict);
        }
    };
    let wake =
        time.handoff.borrow().pending || batch.iter().zip(&results).any(|(job, result)| result.is_ok() && job.wakes());
    let applied = std::time::Instant::now();
    let committed = exec_cached(conn, "COMMIT");
    tracing::debug!(
        size = batch.len(),
        apply_us = (applied - started).as_micros() as u64,
        commit_us = applied.elapsed().as_micros() as u64,
        "batch committed"
    );
    match committed {
        Ok(()) => {
            time.tail.borrow_mut().committed();
            time.handoff.borrow_mut().committed();
            (results, wake, verdict)
        }
        Err(e) => {
            let _ = exec_cached(conn, "ROLLBACK");
            time.tail.borrow_mut().undo_to(0);
            time.handoff.borrow_mut().undo_to(0);
            // Whatever its code, a failed commit means the store cannot commit now.
            let verdict = verdict.and(Verdict::of(&e)).and(Verdict::CannotWrite(e.to_string()));
            (batch.iter().map(|_| Err(unavailable(format!("commit failed: {e}")))).collect(), false, verdict)
        }
    }
}

/// The worst of `verdict` and what the failed jobs' errors say.
fn worst(verdict: Verdict, results: &[rusqlite::Result<()>]) -> Verdict {
    results.iter().filter_map(|r| r.as_ref().err()).map(Verdict::of).fold(verdict, Verdict::and)
}

/// Begins a transaction and applies the jobs in order. Without `savepoints` it stops at the first
/// failure, which is then the last result; with them, each job runs in its own savepoint and a
/// failure undoes only that job.
fn apply_jobs(
    conn: &Connection,
    batch: &mut [Job],
    time: &BatchTime,
    savepoints: bool,
) -> rusqlite::Result<Vec<rusqlite::Result<()>>> {
    // Cached statements rather than rusqlite's Transaction/Savepoint helpers, which parse their
    // SQL on every call: this runs for every write.
    // Whatever an earlier run of this batch added to the dedupe tail was rolled back with it.
    time.tail.borrow_mut().undo_to(0);
    let mut handoff = time.handoff.borrow_mut();
    handoff.undo_to(0);
    handoff.pending = false;
    drop(handoff);
    exec_cached(conn, "BEGIN IMMEDIATE")?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        let result = if savepoints {
            let (mark, handed) = (time.tail.borrow().mark(), time.handoff.borrow().mark());
            exec_cached(conn, "SAVEPOINT job").and_then(|()| match job.apply(conn, time) {
                Ok(()) => exec_cached(conn, "RELEASE job"),
                Err(e) => {
                    let _ = exec_cached(conn, "ROLLBACK TO job").and_then(|()| exec_cached(conn, "RELEASE job"));
                    time.tail.borrow_mut().undo_to(mark);
                    time.handoff.borrow_mut().undo_to(handed);
                    Err(e)
                }
            })
        } else {
            job.apply(conn, time)
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
