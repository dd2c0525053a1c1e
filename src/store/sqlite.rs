//! The embedded store: one SQLite file in WAL mode, owned by one process (an exclusive flock on
//! the database file itself).
//!
//! All writes go through one writer thread that commits whatever is queued in one transaction
//! (group commit): many events share one fsync, and each caller still waits for the commit that
//! holds its own write. Reads use a small pool of separate connections. Whether the store can
//! still commit (its file deleted, replaced or corrupt; the last commit) is `sqlite_health.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, mpsc, oneshot};

use super::sqlite_health::{self, Health, Verdict, check_integrity, open_error};
use super::*;

/// Writes committed together at most; bounds the latency one commit adds.
const MAX_BATCH: usize = 1024;
/// Applied in order, each once; `PRAGMA user_version` counts those applied. (Databases made before
/// the count say 0: the first two are idempotent and run again harmlessly.)
const MIGRATIONS: [&str; 4] = [
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_received_at_index.sql"),
    include_str!("../../migrations/sqlite/0003_derived_delivery_ids.sql"),
    include_str!("../../migrations/sqlite/0004_due_by_destination.sql"),
];

/// SQL: `d` is one of the deliveries of event `e`, a range of delivery ids (see `delivery_ids`).
macro_rules! deliveries_of_e {
    () => {
        "d.id BETWEEN e.seq * 1024 AND e.seq * 1024 + 1023"
    };
}

/// Deliveries per event at most: a delivery's id is `event_seq * DELIVERY_SLOTS + slot`.
const DELIVERY_SLOTS: i64 = crate::config::MAX_DELIVER_TO as i64;

/// The range of delivery ids that belong to the event `seq`.
fn delivery_ids(seq: i64) -> (i64, i64) {
    (seq * DELIVERY_SLOTS, seq * DELIVERY_SLOTS + DELIVERY_SLOTS - 1)
}

/// Brings the schema up to date, each migration in its own transaction.
fn migrate(conn: &Connection) -> Result<(), String> {
    let applied: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    if applied > MIGRATIONS.len() {
        return Err(format!(
            "its schema version ({applied}) is newer than this hookgate knows ({}); upgrade hookgate",
            MIGRATIONS.len()
        ));
    }
    if applied < MIGRATIONS.len() {
        // A rebuild of a large table takes a while (about 1.4 s per 500,000 deliveries): say why.
        tracing::info!(from = applied, to = MIGRATIONS.len(), "upgrading the database schema");
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let done = conn.execute_batch(&format!("BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {};\nCOMMIT;", i + 1));
        if done.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        done.map_err(|e| format!("schema migration {} failed: {e}", i + 1))?;
    }
    Ok(())
}

enum Op {
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

enum Reply {
    Enqueued(Enqueued),
    Claimed(Vec<Claimed>),
    Recorded(bool),
    Replayed(Option<u64>),
    Count(u64),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

pub struct SqliteStore {
    /// Dropping it stops the watchdog. First: it must stop before the writer's connection closes
    /// (SQLite then deletes the WAL, which is no loss).
    _watchdog: std::sync::mpsc::Sender<()>,
    writer: mpsc::Sender<Job>,
    readers: Arc<Readers>,
    wakeup: Arc<Notify>,
    /// Dropping it stops the checkpoint thread.
    _checkpointer: std::sync::mpsc::Sender<()>,
    /// Holds the locked database file until the last of the store's threads is done with it.
    health: Arc<Health>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // FULL: the WAL is fsynced at every commit, so an acknowledged event survives power loss. The writer
    // relaxes this to OFF for batches holding only claims and attempt records (see `writer`).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 67108864; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8000;",
    )
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies the schema and requeues
    /// deliveries that were in flight when the previous process stopped.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, true).await
    }

    /// [`SqliteStore::open`], with `PRAGMA quick_check` first if `check` (`storage.check_at_start`).
    pub async fn open_with(path: &Path, check: bool) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, check)).await.map_err(unavailable)?
    }

    fn open_blocking(path: &Path, check: bool) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        // Before any connection: the lock's descriptor must outlive them all (see `lock`).
        let file = sqlite_health::lock(path)?;
        let open_err = |e: rusqlite::Error| open_error(path, e);
        let conn = Connection::open(path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        if check {
            check_integrity(&conn, path)?;
        }
        migrate(&conn).map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
        requeue_interrupted(&conn, millis(SystemTime::now())).map_err(open_err)?;
        // Checkpoints (copying the WAL into the database file, with its own fsync) run on a
        // thread of their own, so they never stall the writer's commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(open_err)?;
        let health =
            Health::new(path, file).map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
        let health = Arc::new(health);
        let backfilled = Arc::new(AtomicBool::new(false));
        let checkpointer = spawn_checkpointer(path, backfilled.clone(), health.clone()).map_err(open_err)?;
        let watchdog = sqlite_health::spawn_watchdog(health.clone()).map_err(unavailable)?;
        let clock = Clock::starting_at(&conn).map_err(open_err)?;

        let (tx, rx) = mpsc::channel(8 * MAX_BATCH);
        let wakeup = Arc::new(Notify::new());
        let (w, h) = (wakeup.clone(), health.clone());
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(conn, rx, w, clock, backfilled, h))
            .map_err(unavailable)?;
        Ok(SqliteStore {
            _watchdog: watchdog,
            writer: tx,
            readers: Arc::new(Readers::new(path, health.clone())),
            wakeup,
            _checkpointer: checkpointer,
            health,
        })
    }

    async fn write(&self, op: Op) -> Result<Reply, StoreError> {
        let adds_event = matches!(op, Op::Enqueue(_));
        if let Some(refused) = self.health.refusal(adds_event) {
            return Err(refused);
        }
        let (reply, rx) = oneshot::channel();
        self.writer.send(Job { op, reply }).await.map_err(|_| unavailable("writer stopped"))?;
        let reply = rx.await.map_err(|_| unavailable("writer stopped"))??;
        // Committed, but perhaps to a file deleted meanwhile (the writer looks after every
        // commit): an event there is not stored where a restart finds it, so it gets no 200.
        match self.health.refusal(adds_event) {
            Some(refused) => Err(refused),
            None => Ok(reply),
        }
    }
}

/// Runs a PASSIVE checkpoint every 200 ms: it never blocks the writer, and once a checkpoint has
/// caught up SQLite reuses the WAL from its start, so the file does not grow without bound.
///
/// Under load a pass never reaches the end of the WAL (the writer keeps appending), and SQLite
/// only fsyncs the database file after a pass that does. So each pass is followed by an fsync of
/// the database file here, and only then is `backfilled` set: the writer's own catch-up (see
/// `writer`) is left with the frames written during the last pass, not with an fsync of
/// everything copied since the last catch-up (10-30 ms under full load, a stall for every request).
/// It stops when the returned sender is dropped (with the store).
fn spawn_checkpointer(
    path: &Path,
    backfilled: Arc<AtomicBool>,
    health: Arc<Health>,
) -> rusqlite::Result<std::sync::mpsc::Sender<()>> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new().name("sqlite-checkpt".into()).spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_millis(200)) {
            // A damaged file is kept as it is for recovery; its WAL stays beside it.
            if health.is_corrupt() {
                continue;
            }
            // A long pass is followed by a short one, for what was written during it.
            let mut passes = 0;
            let synced = loop {
                let started = std::time::Instant::now();
                let passed = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if let Err(e) = &passed {
                    health.observe(e);
                }
                match passed.map_err(|e| e.to_string()).and_then(|()| health.sync_data().map_err(|e| e.to_string())) {
                    Ok(()) => passes += 1,
                    Err(e) => break Err(e),
                }
                if passes == 3 || started.elapsed() < Duration::from_millis(5) {
                    break Ok(());
                }
            };
            match synced {
                Ok(()) => backfilled.store(true, Ordering::Release),
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
        }
    });
    spawned.map(|_| stop).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Only this process uses the file, so whatever is in flight was interrupted by a crash or a
/// shutdown past its grace period: put it back in the queue and say so in the attempt log.
fn requeue_interrupted(conn: &Connection, now: Millis) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO attempts (delivery_id, attempt, at, outcome, error, duration_ms)
         SELECT id, attempts, ?1, 'interrupted', 'hookgate stopped before this attempt finished', 0
         FROM deliveries WHERE status = 'in_flight'",
        [now],
    )?;
    conn.execute(
        "UPDATE deliveries SET status = 'pending', lease_until = NULL, claim = NULL, next_attempt_at = ?1, updated_at = ?1
         WHERE status = 'in_flight'",
        [now],
    )?;
    Ok(())
}

/// The writer's time: `now` for the batch being applied, and the newest `received_at` stored, which
/// no later event may precede, so that received_at never decreases with seq (see `first_seq_at`):
/// concurrent requests' times differ by a few ms, and a clock stepped back holds received_at at
/// the newest value until it catches up.
#[derive(Default)]
struct Clock {
    now: Millis,
    newest: std::cell::Cell<Millis>,
}

impl Clock {
    fn starting_at(conn: &Connection) -> rusqlite::Result<Clock> {
        let newest = conn
            .query_row("SELECT received_at FROM events ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        Ok(Clock { now: 0, newest: newest.into() })
    }

    /// When an event received at `at` is stored.
    fn received(&self, at: Millis) -> Millis {
        at.max(self.newest.get())
    }
}

fn writer(
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
    // The connection closes before the lock's descriptor can (see `sqlite_health::lock`).
    drop(conn);
    drop(health);
}

/// The longest the writer goes without catching the WAL up, whatever the checkpoint thread does.
const CATCH_UP_AT_LEAST_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
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
    fn must_be_durable(&self) -> bool {
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
fn run_batch(conn: &mut Connection, batch: &[Job], clock: &Clock) -> (Vec<Result<Reply, StoreError>>, bool, Verdict) {
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
fn worst(verdict: Verdict, results: &[rusqlite::Result<Reply>]) -> Verdict {
    results.iter().filter_map(|r| r.as_ref().err()).map(Verdict::of).fold(verdict, Verdict::and)
}

/// Begins a transaction and applies the jobs in order. Without `savepoints` it stops at the first
/// failure, which is then the last result; with them, each job runs in its own savepoint and a
/// failure undoes only that job.
fn apply_jobs(
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

fn exec_cached(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn apply(c: &Connection, op: &Op, clock: &Clock) -> rusqlite::Result<Reply> {
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

fn enqueue(c: &Connection, ev: &EventRow, clock: &Clock) -> rusqlite::Result<Enqueued> {
    let received_at = clock.received(ev.received_at);
    let inserted = c
        .prepare_cached(
            "INSERT INTO events (id, source, dedupe_key, received_at, content_type, headers, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (source, dedupe_key) DO NOTHING",
        )?
        .execute(params![
            ev.id,
            ev.source,
            ev.dedupe_key,
            received_at,
            ev.content_type,
            ev.headers_json,
            &ev.body[..]
        ])?;
    if inserted == 0 {
        let id: String = c
            .prepare_cached("SELECT id FROM events WHERE source = ?1 AND dedupe_key = ?2")?
            .query_row(params![ev.source, ev.dedupe_key], |r| r.get(0))?;
        return Ok(Enqueued::Duplicate { event_id: id });
    }
    // If this transaction is rolled back, `newest` stays ahead of what is stored: later events are
    // held a few ms later than they would be, never earlier.
    clock.newest.set(received_at);
    let now = clock.now;
    let seq = c.last_insert_rowid();
    let mut insert = c.prepare_cached(
        "INSERT INTO deliveries (id, event_seq, destination, status, attempts, next_attempt_at, updated_at)
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
    )?;
    let (first, _) = delivery_ids(seq);
    for (slot, d) in (0..DELIVERY_SLOTS).zip(&ev.destinations) {
        insert.execute(params![first + slot, seq, d, now])?;
    }
    Ok(Enqueued::Queued { event_id: ev.id.clone() })
}

/// One destination's deliveries whose lease ran out, then those that are due, each in the order of
/// its index (one range of it per destination). No LIMIT: SQLite re-prepares a statement whose
/// bound LIMIT changes, which would be every claim; the index gives the order, so `claim` just
/// stops stepping.
const CLAIM_EXPIRED: &str = "SELECT id, attempts, event_seq FROM deliveries
     WHERE status = 'in_flight' AND destination = ?1 AND lease_until <= ?2 ORDER BY lease_until";
const CLAIM_DUE: &str = "SELECT id, attempts, event_seq FROM deliveries
     WHERE status IN ('pending', 'failed') AND destination = ?1 AND next_attempt_at <= ?2 ORDER BY next_attempt_at";

fn claim(c: &Connection, request: &ClaimRequest, now: Millis) -> rusqlite::Result<Vec<Claimed>> {
    let token: i64 = rand::random::<i64>() & i64::MAX;
    let mut candidates = Vec::with_capacity(request.wants.len());
    for (want, max) in request.open_wants() {
        let mut found: std::collections::VecDeque<(i64, u32, i64, &Want)> = Default::default();
        for sql in [CLAIM_EXPIRED, CLAIM_DUE] {
            let mut stmt = c.prepare_cached(sql)?;
            let rows =
                stmt.query_map(params![want.destination, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, want)))?;
            for row in rows.take(max - found.len()) {
                found.push_back(row?);
            }
        }
        candidates.push(found);
    }
    let mut update = c.prepare_cached(
        "UPDATE deliveries SET status = 'in_flight', attempts = ?1, lease_until = ?2, claim = ?3, updated_at = ?4
         WHERE id = ?5",
    )?;
    let mut event =
        c.prepare_cached("SELECT id, source, content_type, body, received_at, headers FROM events WHERE seq = ?1")?;
    let picked = interleave(candidates, request.total);
    let mut out = Vec::with_capacity(picked.len());
    for (id, attempts, seq, want) in picked {
        let attempt = attempts + 1;
        update.execute(params![attempt, now + want.lease.as_millis() as i64, token, now, id])?;
        let claimed = event.query_row([seq], |r| {
            Ok(Claimed {
                delivery_id: id,
                claim: token,
                attempt,
                event_id: r.get(0)?,
                source: r.get(1)?,
                destination: want.destination.clone(),
                content_type: r.get(2)?,
                body: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                received_at: r.get(4)?,
                headers_json: r.get(5)?,
            })
        })?;
        out.push(claimed);
    }
    Ok(out)
}

/// Moves the delivery only if this claim still owns it.
const RECORD_OUTCOME: &str = "UPDATE deliveries SET status = ?1, next_attempt_at = ?2, lease_until = NULL, claim = NULL, last_error = ?3, updated_at = ?4
     WHERE id = ?5 AND claim = ?6 AND status = 'in_flight'";
/// A success was delivered: it stands whatever the claim (a newer claim's attempt is then a
/// duplicate the receiver dedupes by `webhook-id`), unless the delivery already succeeded.
const RECORD_SUCCESS: &str = "UPDATE deliveries SET status = 'succeeded', next_attempt_at = ?1, lease_until = NULL, claim = NULL, last_error = NULL, updated_at = ?1
     WHERE id = ?2 AND status <> 'succeeded'";

fn record(c: &Connection, r: &AttemptRecord, now: Millis) -> rusqlite::Result<bool> {
    c.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempt, at, outcome, status_code, exit_code, error, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        r.delivery_id,
        r.attempt,
        r.at,
        r.outcome,
        r.status_code,
        r.exit_code,
        r.error,
        r.duration_ms
    ])?;
    let (status, next) = match r.next {
        NextState::Succeeded => ("succeeded", now),
        NextState::Retry { at } => ("failed", at),
        NextState::Dead => ("dead", now),
    };
    let changed = if r.next == NextState::Succeeded {
        c.prepare_cached(RECORD_SUCCESS)?.execute(params![now, r.delivery_id])?
    } else {
        c.prepare_cached(RECORD_OUTCOME)?.execute(params![status, next, r.error, now, r.delivery_id, r.claim])?
    };
    Ok(changed == 1)
}

const REQUEUE: &str = "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?1, lease_until = NULL, claim = NULL, updated_at = ?1";

fn replay_event(c: &Connection, id: &str, destination: Option<&str>, now: Millis) -> rusqlite::Result<Option<u64>> {
    let seq: Option<i64> = c.query_row("SELECT seq FROM events WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    let Some(seq) = seq else { return Ok(None) };
    let (first, last) = delivery_ids(seq);
    let n = c.execute(
        &format!("{REQUEUE} WHERE id BETWEEN ?2 AND ?3 AND status <> 'in_flight' AND (?4 IS NULL OR destination = ?4)"),
        params![now, first, last, destination],
    )?;
    Ok(Some(n as u64))
}

fn replay_deliveries(c: &Connection, f: &ReplayFilter, now: Millis) -> rusqlite::Result<u64> {
    let n = c.execute(
        &format!(
            "{REQUEUE} WHERE status = ?2 AND status <> 'in_flight' AND (?3 IS NULL OR destination = ?3)
             AND (?4 IS NULL OR event_seq IN (SELECT seq FROM events WHERE source = ?4))"
        ),
        params![now, f.status, f.destination, f.source],
    )?;
    Ok(n as u64)
}

fn purge(c: &Connection, cutoff: Millis, batch: usize) -> rusqlite::Result<u64> {
    let Some(end) = first_seq_at(c, cutoff)? else { return Ok(0) };
    let seqs: Vec<i64> = c
        .prepare_cached(&format!(
            "SELECT seq FROM events e WHERE seq < ?1 AND NOT EXISTS (
                 SELECT 1 FROM deliveries d WHERE {} AND d.status NOT IN ('succeeded', 'dead'))
             ORDER BY seq LIMIT ?2",
            deliveries_of_e!()
        ))?
        .query_map(params![end, batch as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for &seq in &seqs {
        let (first, last) = delivery_ids(seq);
        c.prepare_cached("DELETE FROM attempts WHERE delivery_id BETWEEN ?1 AND ?2")?.execute([first, last])?;
        c.prepare_cached("DELETE FROM deliveries WHERE id BETWEEN ?1 AND ?2")?.execute([first, last])?;
        c.prepare_cached("DELETE FROM events WHERE seq = ?1")?.execute([seq])?;
    }
    Ok(seqs.len() as u64)
}

/// The seq that splits the events at time `t`: every event before it was received before `t`,
/// every event from it on at or after `t`. None when there are no events. A binary search over
/// seq, which works because received_at never decreases with seq (see `Clock`); no index.
fn first_seq_at(c: &Connection, t: Millis) -> rusqlite::Result<Option<i64>> {
    let (min, max): (Option<i64>, Option<i64>) =
        c.query_row("SELECT MIN(seq), MAX(seq) FROM events", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(mut lo), Some(max)) = (min, max) else { return Ok(None) };
    let mut hi = max + 1;
    let mut at_or_after = c.prepare_cached("SELECT received_at FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1")?;
    // The smallest x such that the first event from x on (if any) was received at or after t.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let received: Option<Millis> = at_or_after.query_row([mid], |r| r.get(0)).optional()?;
        if received.is_some_and(|r| r < t) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(Some(lo))
}

/// Read-only connections, opened on demand and kept for reuse.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    health: Arc<Health>,
}

impl Readers {
    fn new(path: &Path, health: Arc<Health>) -> Self {
        Readers { path: path.to_path_buf(), idle: Mutex::new(Vec::new()), health }
    }

    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match conn {
                Some(c) => c,
                // The path no longer leads to the open database: opening it would read another file.
                None if this.health.file_lost() => {
                    return Err(this.health.failure().unwrap_or_else(|| unavailable("database file lost")));
                }
                None => {
                    let c = Connection::open_with_flags(&this.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                        .map_err(unavailable)?;
                    c.busy_timeout(Duration::from_secs(5)).map_err(unavailable)?;
                    c
                }
            };
            let result = f(&conn).map_err(|e| {
                this.health.observe(&e);
                unavailable(e)
            });
            if result.is_ok() {
                this.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            }
            result
        })
        .await
        .map_err(unavailable)?
    }
}

fn parse_cursor(cursor: &Option<String>) -> Result<Option<i64>, StoreError> {
    cursor
        .as_deref()
        .map(|c| c.parse::<i64>().map_err(|_| StoreError::Invalid(format!("invalid cursor {c:?}"))))
        .transpose()
}

const EVENT_STATUS: &str = concat!(
    "CASE
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE ",
    deliveries_of_e!(),
    " AND d.status = 'dead') THEN 'dead'
    WHEN NOT EXISTS (SELECT 1 FROM deliveries d WHERE ",
    deliveries_of_e!(),
    " AND d.status <> 'succeeded') THEN 'succeeded'
    ELSE 'pending' END"
);

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventSummary> {
    Ok(EventSummary {
        id: r.get("id")?,
        source: r.get("source")?,
        received_at: r.get("received_at")?,
        status: r.get("status")?,
        dedupe_key: r.get("dedupe_key")?,
        content_type: r.get("content_type")?,
    })
}

fn attempts_of(c: &Connection, delivery_id: i64) -> rusqlite::Result<Vec<Attempt>> {
    c.prepare_cached(
        "SELECT attempt, at, outcome, status_code, exit_code, error, duration_ms FROM attempts WHERE delivery_id = ?1 ORDER BY rowid",
    )?
    .query_map([delivery_id], |r| {
        Ok(Attempt {
            attempt: r.get(0)?,
            at: r.get(1)?,
            outcome: r.get(2)?,
            status_code: r.get(3)?,
            exit_code: r.get(4)?,
            error: r.get(5)?,
            duration_ms: r.get(6)?,
        })
    })?
    .collect()
}

fn delivery_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryInfo> {
    let status: String = r.get("status")?;
    let finished = matches!(status.as_str(), "succeeded" | "dead" | "in_flight");
    Ok(DeliveryInfo {
        id: r.get("id")?,
        event_id: r.get("event_id")?,
        source: r.get("source")?,
        destination: r.get("destination")?,
        attempts: r.get("attempts")?,
        next_attempt_at: if finished { None } else { Some(r.get("next_attempt_at")?) },
        last_error: r.get("last_error")?,
        status,
        attempt_log: Vec::new(),
    })
}

const DELIVERY_COLUMNS: &str =
    "d.id AS id, e.id AS event_id, e.source AS source, d.destination AS destination, d.status AS status,
    d.attempts AS attempts, d.next_attempt_at AS next_attempt_at, d.last_error AS last_error";

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, event: NewEvent<'_>) -> Result<Enqueued, StoreError> {
        match self.write(Op::Enqueue(event.into_row())).await? {
            Reply::Enqueued(e) => Ok(e),
            _ => Err(unavailable("unexpected reply")),
        }
    }

    async fn claim(&self, request: &ClaimRequest, now: SystemTime) -> Result<Vec<Claimed>, StoreError> {
        let op = Op::Claim { request: request.clone(), now: millis(now) };
        match self.write(op).await? {
            Reply::Claimed(c) => Ok(c),
            _ => Err(unavailable("unexpected reply")),
        }
    }

    async fn record(&self, attempt: AttemptRecord) -> Result<bool, StoreError> {
        match self.write(Op::Record(attempt)).await? {
            Reply::Recorded(ok) => Ok(ok),
            _ => Err(unavailable("unexpected reply")),
        }
    }

    async fn next_due(&self, destinations: &[String]) -> Result<Option<Millis>, StoreError> {
        let destinations = destinations.to_vec();
        self.readers
            .run(move |c| {
                // One seek per destination and index: MIN over a range of each.
                let mut stmt = c.prepare_cached(
                    "SELECT MIN(t) FROM (
                        SELECT MIN(next_attempt_at) AS t FROM deliveries WHERE status IN ('pending', 'failed') AND destination = ?1
                        UNION ALL SELECT MIN(lease_until) FROM deliveries WHERE status = 'in_flight' AND destination = ?1)",
                )?;
                let mut soonest: Option<Millis> = None;
                for d in &destinations {
                    let t: Option<Millis> = stmt.query_row([d], |r| r.get(0))?;
                    soonest = match (soonest, t) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Ok(soonest)
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.health.look();
        if let Some(failed) = self.health.failure() {
            return Err(failed);
        }
        // Only a commit tells whether commits work again (space freed), and an idle store (an
        // ingest node its load balancer took out) gets none: try one now and then. Its outcome
        // is recorded like any other's.
        if self.health.probe_due() {
            let _ = self.write(Op::Probe).await;
        }
        if let Some(failing) = self.health.commit_failing() {
            return Err(failing);
        }
        self.readers.run(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await?;
        if self.writer.is_closed() {
            return Err(unavailable("writer stopped"));
        }
        Ok(())
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.wakeup.clone()
    }

    async fn list_events(&self, q: EventQuery) -> Result<Page<EventSummary>, StoreError> {
        let before = parse_cursor(&q.cursor)?;
        let limit = q.limit.max(1);
        let (items, seqs) = self
            .readers
            .run(move |c| {
                // The time window as a range of seq, so the scan seeks to it (there is no index
                // on received_at); the received_at conditions keep it exact.
                let from = match q.since {
                    Some(t) => first_seq_at(c, t)?.unwrap_or(0),
                    None => 0,
                };
                let mut to = before.unwrap_or(i64::MAX);
                if let Some(t) = q.until {
                    to = to.min(first_seq_at(c, t)?.unwrap_or(0));
                }
                let sql = format!(
                    "SELECT * FROM (SELECT e.seq AS seq, e.id AS id, e.source AS source, e.received_at AS received_at,
                        e.dedupe_key AS dedupe_key, e.content_type AS content_type, {EVENT_STATUS} AS status
                     FROM events e
                     WHERE e.seq >= ?2 AND e.seq < ?3 AND (?1 IS NULL OR e.source = ?1)
                       AND (?4 IS NULL OR e.received_at >= ?4) AND (?5 IS NULL OR e.received_at < ?5)
                     ORDER BY e.seq DESC)
                     WHERE (?6 IS NULL OR status = ?6) LIMIT ?7"
                );
                let mut stmt = c.prepare_cached(&sql)?;
                let rows = stmt
                    .query_map(params![q.source, from, to, q.since, q.until, q.status, limit as i64], |r| {
                        Ok((summary(r)?, r.get::<_, i64>("seq")?))
                    })?;
                let mut items = Vec::new();
                let mut seqs = Vec::new();
                for row in rows {
                    let (s, seq) = row?;
                    items.push(s);
                    seqs.push(seq);
                }
                Ok((items, seqs))
            })
            .await?;
        let next_cursor = if items.len() == limit { seqs.last().map(|s| s.to_string()) } else { None };
        Ok(Page { items, next_cursor })
    }

    async fn get_event(&self, id: &str) -> Result<Option<EventDetail>, StoreError> {
        let id = id.to_string();
        self.readers
            .run(move |c| {
                let sql = format!(
                    "SELECT e.seq AS seq, e.id AS id, e.source AS source, e.received_at AS received_at, e.dedupe_key AS dedupe_key,
                        e.content_type AS content_type, e.headers AS headers, e.body AS body, {EVENT_STATUS} AS status
                     FROM events e WHERE e.id = ?1"
                );
                let found = c
                    .query_row(&sql, [&id], |r| {
                        Ok((
                            r.get::<_, i64>("seq")?,
                            summary(r)?,
                            r.get::<_, String>("headers")?,
                            Bytes::from(r.get::<_, Vec<u8>>("body")?),
                        ))
                    })
                    .optional()?;
                let Some((seq, summary, headers_json, body)) = found else { return Ok(None) };
                let mut deliveries: Vec<DeliveryInfo> = c
                    .prepare_cached(&format!(
                        "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id BETWEEN ?1 AND ?2 ORDER BY d.id"
                    ))?
                    .query_map(<[i64; 2]>::from(delivery_ids(seq)), delivery_info)?
                    .collect::<Result<_, _>>()?;
                for d in &mut deliveries {
                    d.attempt_log = attempts_of(c, d.id)?;
                }
                Ok(Some(EventDetail { summary, headers_json, body, deliveries }))
            })
            .await
    }

    async fn replay_event(&self, id: &str, destination: Option<&str>) -> Result<Option<u64>, StoreError> {
        let op = Op::ReplayEvent { id: id.to_string(), destination: destination.map(str::to_string) };
        match self.write(op).await? {
            Reply::Replayed(n) => Ok(n),
            _ => Err(unavailable("unexpected reply")),
        }
    }

    async fn list_deliveries(&self, q: DeliveryQuery) -> Result<Page<DeliveryInfo>, StoreError> {
        let before = parse_cursor(&q.cursor)?;
        let limit = q.limit.max(1);
        let items: Vec<DeliveryInfo> = self
            .readers
            .run(move |c| {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq
                     WHERE (?1 IS NULL OR d.status = ?1) AND (?2 IS NULL OR d.destination = ?2)
                       AND (?3 IS NULL OR e.source = ?3) AND (?4 IS NULL OR d.id < ?4)
                     ORDER BY d.id DESC LIMIT ?5"
                );
                c.prepare_cached(&sql)?
                    .query_map(params![q.status, q.destination, q.source, before, limit as i64], delivery_info)?
                    .collect()
            })
            .await?;
        let next_cursor = if items.len() == limit { items.last().map(|d| d.id.to_string()) } else { None };
        Ok(Page { items, next_cursor })
    }

    async fn replay_deliveries(&self, filter: ReplayFilter) -> Result<u64, StoreError> {
        match self.write(Op::ReplayDeliveries(filter)).await? {
            Reply::Count(n) => Ok(n),
            _ => Err(unavailable("unexpected reply")),
        }
    }

    async fn purge(&self, cutoff: Millis, batch: usize) -> Result<u64, StoreError> {
        match self.write(Op::Purge { cutoff, batch }).await? {
            Reply::Count(n) => Ok(n),
            _ => Err(unavailable("unexpected reply")),
        }
    }

    async fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.readers
            .run(|c| {
                let tx = c.unchecked_transaction()?; // one snapshot for all the counts
                let count = |sql: &str| tx.query_row(sql, [], |r| r.get::<_, i64>(0)).map(|n| n.max(0) as u64);
                let [due, failed, in_flight, dead, total] = COUNTS;
                let (due, failed, in_flight, dead) = (count(due)?, count(failed)?, count(in_flight)?, count(dead)?);
                let total = count(total)?;
                let counts = [
                    ("pending", due.saturating_sub(failed)),
                    ("in_flight", in_flight),
                    ("succeeded", total.saturating_sub(due + in_flight + dead)),
                    ("failed", failed),
                    ("dead", dead),
                ];
                debug_assert!(counts.iter().map(|(s, _)| *s).eq(STATUSES));
                Ok(counts.into_iter().map(|(s, n)| (s.to_string(), n)).collect())
            })
            .await
    }
}

/// What `/metrics` counts at every scrape: due (pending or failed), failed, in flight, dead, and
/// all deliveries. The first four walk partial indexes, never the table: the SQL names statuses
/// literally, since with a bound parameter the planner cannot use a partial index. The total counts
/// the table's leaf pages without reading rows (about 20 ms at 1,000,000 deliveries; an index just
/// for it would cost every event a B-tree insert). `pending` and `succeeded` (the one that grows
/// without bound, with no index) are derived from the others.
const COUNTS: [&str; 5] = [
    "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'failed')",
    "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'failed') AND status = 'failed'",
    "SELECT COUNT(*) FROM deliveries WHERE status = 'in_flight'",
    "SELECT COUNT(*) FROM deliveries WHERE status = 'dead'",
    "SELECT COUNT(*) FROM deliveries",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, key: &str) -> EventRow {
        EventRow {
            id: id.into(),
            source: "s".into(),
            dedupe_key: key.into(),
            content_type: None,
            headers_json: "{}".into(),
            body: Bytes::from_static(b"{}"),
            destinations: vec!["d".into()],
            received_at: 0,
        }
    }

    fn job(op: Op) -> (Job, oneshot::Receiver<Result<Reply, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (Job { op, reply }, rx)
    }

    /// A job that fails in the middle of a batch fails alone: the jobs before and after it commit.
    #[test]
    fn a_failing_job_does_not_undo_the_rest_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        configure(&conn).unwrap();
        migrate(&conn).unwrap();
        let (first, _) = job(Op::Enqueue(row("a", "1")));
        assert!(run_batch(&mut conn, &[first], &Clock::default()).0[0].is_ok());
        // The same event id under a new dedupe key breaks the id's UNIQUE constraint.
        let batch: Vec<Job> =
            [row("b", "2"), row("a", "3"), row("c", "4")].into_iter().map(|r| job(Op::Enqueue(r)).0).collect();
        let (results, wake, _) = run_batch(&mut conn, &batch, &Clock::default());
        assert!(wake);
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
        // Last in its batch, a failing job still fails alone.
        let batch: Vec<Job> = [row("d", "5"), row("a", "6")].into_iter().map(|r| job(Op::Enqueue(r)).0).collect();
        let (results, _, _) = run_batch(&mut conn, &batch, &Clock::default());
        assert!(results[0].is_ok() && results[1].is_err());
        assert_eq!(column::<String>(&conn, "SELECT id FROM events ORDER BY seq"), ["a", "b", "c", "d"]);
        let deliveries: i64 = conn.query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0)).unwrap();
        assert_eq!(deliveries, 4);
    }

    /// After a failed commit the store is not ready until a commit succeeds; an idle store gets
    /// one from `ping` itself, a second after the failure (the disk-full test in tests/it/faults.rs
    /// shows the rest from outside).
    #[tokio::test]
    async fn ping_tries_a_commit_of_its_own_a_second_after_one_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        store.ping().await.unwrap();
        store.health.committed(Verdict::CannotWrite("disk full".into()));
        let err = store.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::NotReady { reason: Unready::CommitFailing, .. }), "{err}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        store.ping().await.unwrap();
        store.ping().await.unwrap();
    }

    /// `/metrics` counts deliveries at every scrape: no count by status may scan the table.
    #[test]
    fn every_status_count_uses_an_index() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        for sql in &COUNTS[..4] {
            let plan: String = conn.query_row(&format!("EXPLAIN QUERY PLAN {sql}"), [], |r| r.get(3)).unwrap();
            assert!(plan.contains("INDEX"), "{sql}: {plan}");
        }
    }

    /// The first column of every row `sql` returns.
    fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
        conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    /// Claims walk an index in its order: with no LIMIT, a sort would read every due delivery.
    #[test]
    fn claims_walk_an_index_in_order() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        for sql in [CLAIM_EXPIRED, CLAIM_DUE] {
            let plan = plan(&conn, &sql.replace("?1", "'d'").replace("?2", "0"));
            assert!(plan.contains("USING INDEX") && !plan.contains("TEMP B-TREE"), "{sql}: {plan}");
        }
    }

    /// An event's deliveries are a range of the deliveries' own key: finding them scans nothing.
    #[test]
    fn deliveries_of_an_event_are_found_by_key_range() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        assert_eq!(
            deliveries_of_e!(),
            format!("d.id BETWEEN e.seq * {DELIVERY_SLOTS} AND e.seq * {DELIVERY_SLOTS} + {}", DELIVERY_SLOTS - 1)
        );
        let status = plan(&conn, &format!("SELECT {EVENT_STATUS} FROM events e WHERE e.seq = 7"));
        assert!(!status.contains("SCAN"), "{status}");
        let by_event = plan(&conn, "SELECT * FROM deliveries WHERE id BETWEEN 7168 AND 8191");
        assert!(by_event.contains("PRIMARY KEY"), "{by_event}");
    }

    /// A database at schema version 2 (sequential delivery ids, two more indexes) is migrated to the newest:
    /// every delivery gets its derived id, every attempt follows its delivery, the indexes go.
    #[test]
    fn version_2_databases_get_derived_delivery_ids() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        conn.execute_batch(
            "INSERT INTO events (seq, id, source, dedupe_key, received_at, headers, body) VALUES
                 (1, 'a', 's', '1', 10, '{}', x''), (2, 'b', 's', '2', 20, '{}', x''), (5, 'c', 's', '3', 30, '{}', x'');
             INSERT INTO deliveries (id, event_seq, destination, status, next_attempt_at, updated_at) VALUES
                 (1, 1, 'x', 'succeeded', 0, 0), (2, 1, 'y', 'dead', 0, 0), (3, 2, 'x', 'pending', 0, 0), (4, 5, 'y', 'failed', 0, 0);
             INSERT INTO attempts (delivery_id, attempt, at, outcome, duration_ms) VALUES
                 (1, 1, 0, 'ok', 0), (2, 1, 0, 'http_500', 0), (2, 2, 0, 'http_500', 0), (4, 1, 0, 'timeout', 0);",
        )
        .unwrap();
        migrate(&conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let ids = |sql: &str| -> Vec<(i64, String)> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(
            ids("SELECT id, destination || ':' || status FROM deliveries ORDER BY id"),
            [
                (1024, "x:succeeded".into()),
                (1025, "y:dead".into()),
                (2048, "x:pending".into()),
                (5120, "y:failed".into())
            ]
        );
        assert_eq!(
            ids("SELECT delivery_id, outcome FROM attempts ORDER BY delivery_id, attempt"),
            [(1024, "ok".into()), (1025, "http_500".into()), (1025, "http_500".into()), (5120, "timeout".into())]
        );
        assert_eq!(
            column::<String>(
                &conn,
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            ),
            ["attempts_delivery", "deliveries_dead", "deliveries_due", "deliveries_lease"]
        );
        // Applied once: opening again changes nothing.
        migrate(&conn).unwrap();
        conn.execute(&format!("PRAGMA user_version = {}", MIGRATIONS.len() + 1), []).unwrap();
        let newer = migrate(&conn).unwrap_err().to_string();
        assert!(newer.contains("newer than this hookgate knows"), "{newer}");
    }

    /// An event is never stored as received before the one stored ahead of it, across restarts too.
    #[test]
    fn received_at_never_decreases_with_seq() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        migrate(&conn).unwrap();
        let at = |id: &str, key: &str, received_at: Millis| {
            let (j, _) = job(Op::Enqueue(EventRow { received_at, ..row(id, key) }));
            j
        };
        let clock = Clock::starting_at(&conn).unwrap();
        run_batch(&mut conn, &[at("a", "1", 100), at("b", "2", 90), at("c", "3", 120)], &clock);
        let clock = Clock::starting_at(&conn).unwrap(); // as after a restart
        run_batch(&mut conn, &[at("d", "4", 110)], &clock);
        assert_eq!(column::<i64>(&conn, "SELECT received_at FROM events ORDER BY seq"), [100, 100, 120, 120]);
    }

    /// The binary search finds the same split as a scan, with gaps in seq and equal times.
    #[test]
    fn first_seq_at_splits_events_by_time() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        assert_eq!(first_seq_at(&conn, 5).unwrap(), None);
        let mut rows = Vec::new();
        let mut t = 100;
        for seq in (1..400).filter(|s| s % 7 != 3) {
            t += seq % 3; // steps of 0, 1 and 2 ms
            conn.execute(
                "INSERT INTO events (seq, id, source, dedupe_key, received_at, headers, body) VALUES (?1, ?1, 's', ?1, ?2, '{}', x'')",
                params![seq, t],
            )
            .unwrap();
            rows.push((seq, t));
        }
        for probe in 90..t + 3 {
            let expected = rows.iter().find(|(_, at)| *at >= probe).map_or(rows.last().unwrap().0 + 1, |(seq, _)| *seq);
            let found = first_seq_at(&conn, probe).unwrap().unwrap();
            // Any seq in the gap before the first match splits the same way.
            let before = rows.iter().filter(|(seq, _)| *seq < expected).map(|(seq, _)| *seq).max().unwrap_or(0);
            assert!(found > before && found <= expected, "t={probe}: found {found}, expected ({before}, {expected}]");
        }
    }
}
