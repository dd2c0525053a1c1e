//! The embedded store: one SQLite file in WAL mode, owned by one process (an exclusive flock on
//! the database file itself).
//!
//! All writes go through one writer thread that commits whatever is queued in one transaction
//! (group commit): many events share one fsync, and each caller still waits for the commit that
//! holds its own write. Reads use a small pool of separate connections. Whether the store can
//! still commit (its file deleted, replaced or corrupt; the last commit) is `health.rs`.

/// SQL: `d` is one of the deliveries of event `e`, a range of delivery ids (see `delivery_ids`).
macro_rules! deliveries_of_e {
    () => {
        "d.id BETWEEN e.seq * 1024 AND e.seq * 1024 + 1023"
    };
}

mod checkpoint;
mod control;
mod dedupe;
mod handoff;
mod health;
mod jobs;
mod queries;
mod read;
mod schema;
mod status;
#[cfg(test)]
mod tests;
mod writer;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, mpsc, oneshot};

use super::*;
use crate::clock::SharedClock;
use checkpoint::*;
use handoff::*;
use health::{Health, check_integrity, open_error};
use jobs::*;
use queries::*;
use read::*;
use schema::*;
use writer::*;

pub struct SqliteStore {
    /// The watchdog, then the checkpoint thread, until [`SqliteStore::close`]; dropping them stops
    /// them. First: the watchdog must stop before the writer's connection closes (SQLite then
    /// deletes the WAL, which is no loss).
    background: Mutex<Option<[Background; 2]>>,
    writer: mpsc::Sender<Job>,
    readers: Arc<Readers>,
    wakeup: Arc<Wakeup>,
    /// Holds the locked database file until the last of the store's threads is done with it.
    health: Arc<Health>,
}

/// One of the store's threads: it runs until `stop` is dropped.
struct Background {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Background {
    fn stop_and_wait(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
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
    /// Every time it stores comes from `clock`.
    pub async fn open(path: &Path, clock: SharedClock) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, true, clock).await
    }

    /// [`SqliteStore::open`], with `PRAGMA quick_check` first if `check` (`storage.check_at_start`).
    pub async fn open_with(path: &Path, check: bool, clock: SharedClock) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, check, clock)).await.map_err(unavailable)?
    }

    fn open_blocking(path: &Path, check: bool, clock: SharedClock) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        // Before any connection: the lock's descriptor must outlive them all (see `lock`).
        let file = health::lock(path)?;
        let open_err = |e: rusqlite::Error| open_error(path, e);
        let conn = Connection::open(path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        if check {
            check_integrity(&conn, path)?;
        }
        migrate(&conn).map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
        dedupe::merge_unmerged(&conn).map_err(open_err)?;
        requeue_interrupted(&conn, millis(clock.now())).map_err(open_err)?;
        // Checkpoints (copying the WAL into the database file, with its own fsync) run on a
        // thread of their own, so they never stall the writer's commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(open_err)?;
        let health =
            Health::new(path, file).map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
        let health = Arc::new(health);
        let backfilled = Arc::new(AtomicBool::new(false));
        let checkpointer = spawn_checkpointer(path, backfilled.clone(), health.clone()).map_err(open_err)?;
        let watchdog = health::spawn_watchdog(health.clone()).map_err(unavailable)?;
        let time = BatchTime::starting_at(&conn).map_err(open_err)?;

        let (tx, rx) = mpsc::channel(8 * MAX_BATCH);
        let wakeup = Wakeup::new();
        let parts = WriterParts { wakeup: wakeup.clone(), clock, time, backfilled, health: health.clone() };
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(conn, rx, parts))
            .map_err(unavailable)?;
        let background = [
            Background { stop: watchdog.0, thread: watchdog.1 },
            Background { stop: checkpointer.0, thread: checkpointer.1 },
        ];
        Ok(SqliteStore {
            background: Mutex::new(Some(background)),
            writer: tx,
            readers: Arc::new(Readers::new(path, health.clone())),
            wakeup,
            health,
        })
    }

    /// Stops the store: what is queued is written, then the writer, the checkpoint thread and the
    /// watchdog stop, every connection closes and the file's lock is released, so that this
    /// process can open the file again at once (a restart in a test). Afterwards every operation
    /// is unavailable. Idempotent. A store dropped without it stops the same way, a few ms later
    /// (and `open` waits up to a second for the lock meanwhile).
    pub async fn close(&self) {
        let background = self.background.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some([watchdog, checkpointer]) = background else { return };
        // The watchdog first: SQLite deletes the WAL when the writer's connection closes.
        let _ = tokio::task::spawn_blocking(move || watchdog.stop_and_wait()).await;
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Job::Close(Answer::new(tx))).await.is_ok() {
            let _ = rx.await; // answered once the writer's connection has closed
        }
        let _ = tokio::task::spawn_blocking(move || checkpointer.stop_and_wait()).await;
        self.readers.close();
        // Last: no connection of this store is open any more (see `health::lock`).
        self.health.release();
    }

    /// Hands a job (made with the caller's typed sender) to the writer and waits for its commit.
    async fn write<T>(&self, job: impl FnOnce(Answer<T>) -> Job) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let job = job(Answer::new(reply));
        let adds_event = job.adds_event();
        if let Some(refused) = self.health.refusal(adds_event) {
            return Err(refused);
        }
        self.writer.send(job).await.map_err(|_| unavailable("writer stopped"))?;
        let reply = rx.await.map_err(|_| unavailable("writer stopped"))??;
        // Committed, but perhaps to a file deleted meanwhile (the writer looks after every
        // commit): an event there is not stored where a restart finds it, so it gets no 200.
        match self.health.refusal(adds_event) {
            Some(refused) => Err(refused),
            None => Ok(reply),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, event: NewEvent<'_>) -> Result<Enqueued, StoreError> {
        let row = event.into_row();
        self.write(|a| Job::Enqueue(row, a)).await
    }

    async fn claim(&self, request: &ClaimRequest, now: SystemTime) -> Result<Vec<Claimed>, StoreError> {
        let (request, now) = (request.clone(), millis(now));
        self.write(|answer| Job::Claim { request, now, answer, park: None, rooms: Vec::new() }).await
    }

    fn parks(&self) -> bool {
        true
    }

    async fn claim_or_park(
        &self,
        request: &ClaimRequest,
        now: SystemTime,
        park: &Park,
    ) -> Result<Vec<Claimed>, StoreError> {
        let (request, now, park) = (request.clone(), millis(now), Some(park.clone()));
        self.write(|answer| Job::Claim { request, now, answer, park, rooms: Vec::new() }).await
    }

    async fn unpark(&self, park: &Park) {
        // Taken back first: a claim that reaches the writer after the `Unpark` does not park.
        park.take_back();
        let _ = self.writer.send(Job::Unpark(park.id())).await;
    }

    async fn record(&self, attempt: AttemptRecord) -> Result<bool, StoreError> {
        Ok(self.record_noted(attempt, None).await?.0)
    }

    async fn record_noted(
        &self,
        attempt: AttemptRecord,
        note: Option<AttemptNote>,
    ) -> Result<(bool, Option<CircuitChange>), StoreError> {
        self.write(|a| Job::Record(attempt, note, a)).await
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
                    // Not while paused; not before a cooldown, a trial's lease or a token.
                    let t = match t {
                        Some(t) => control::state(c, d)?.not_before(t),
                        None => None,
                    };
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
            let _ = self.write(Job::Probe).await;
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

    async fn backup(&self, to: &std::path::Path) -> Result<(), StoreError> {
        let target = to.to_str().ok_or_else(|| StoreError::Invalid("the backup path is not UTF-8".into()))?.to_string();
        let file = to.to_path_buf();
        self.readers
            .run(move |c| {
                // One read transaction: the copy is the database as of one commit.
                c.execute("VACUUM INTO ?1", [&target])?;
                // VACUUM INTO does not sync what it wrote: a backup must survive a crash right after.
                let synced = std::fs::File::open(&file).and_then(|f| f.sync_all()).and_then(|()| {
                    file.parent().map_or(Ok(()), |dir| std::fs::File::open(dir).and_then(|d| d.sync_all()))
                });
                synced.map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
            })
            .await
            .map_err(|e| match e {
                StoreError::Unavailable(reason) => StoreError::Invalid(format!("backup failed: {reason}")),
                other => other,
            })
    }

    async fn close(&self) {
        self.close().await
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.wakeup.notify()
    }

    fn work(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wakeup.subscribe()
    }

    async fn held(&self, delivery_id: i64) -> Result<Option<Held>, StoreError> {
        self.readers
            .run(move |c| {
                c.prepare_cached(
                    "SELECT id, destination, status, attempts, claim, lease_until FROM deliveries WHERE id = ?1",
                )?
                .query_row([delivery_id], |r| {
                    Ok(Held {
                        delivery_id: r.get(0)?,
                        destination: r.get(1)?,
                        status: r.get(2)?,
                        attempts: r.get(3)?,
                        claim: r.get(4)?,
                        lease_until: r.get(5)?,
                    })
                })
                .optional()
            })
            .await
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
        let (id, destination) = (id.to_string(), destination.map(str::to_string));
        self.write(|answer| Job::ReplayEvent { id, destination, answer }).await
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
        self.write(|a| Job::ReplayDeliveries(filter, a)).await
    }

    async fn purge(&self, cutoff: Millis, batch: usize) -> Result<u64, StoreError> {
        self.write(|answer| Job::Purge { cutoff, batch, answer }).await
    }

    async fn count_by_destination(
        &self,
        destinations: &[String],
    ) -> Result<Vec<(String, DeliveryStatus, u64)>, StoreError> {
        let destinations = destinations.to_vec();
        self.readers
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                let mut out = Vec::new();
                for d in destinations {
                    out.extend(control::counts(&tx, &d)?.into_iter().map(|(s, n)| (d.clone(), s, n)));
                }
                Ok(out)
            })
            .await
    }

    async fn destination_states(&self, destinations: &[String]) -> Result<Vec<DestinationState>, StoreError> {
        let destinations = destinations.to_vec();
        self.readers.run(move |c| destinations.iter().map(|d| control::state(c, d)).collect()).await
    }

    async fn set_paused(&self, destination: &str, paused: bool) -> Result<(), StoreError> {
        let destination = destination.to_string();
        self.write(|answer| Job::SetPaused { destination, paused, answer }).await
    }

    async fn note_attempt(&self, note: AttemptNote) -> Result<Option<CircuitChange>, StoreError> {
        self.write(|a| Job::NoteAttempt(note, a)).await
    }

    async fn count_by_status(&self) -> Result<Vec<(DeliveryStatus, u64)>, StoreError> {
        self.readers
            .run(|c| {
                let tx = c.unchecked_transaction()?; // one snapshot for all the counts
                let count = |sql: &str| tx.query_row(sql, [], |r| r.get::<_, i64>(0)).map(|n| n.max(0) as u64);
                let [due, failed, in_flight, dead, filtered, total] = COUNTS;
                let (due, failed, in_flight, dead) = (count(due)?, count(failed)?, count(in_flight)?, count(dead)?);
                let filtered = count(filtered)?;
                let total = count(total)?;
                use DeliveryStatus::*;
                let counts = vec![
                    (Pending, due.saturating_sub(failed)),
                    (InFlight, in_flight),
                    (Succeeded, total.saturating_sub(due + in_flight + dead + filtered)),
                    (Failed, failed),
                    (Dead, dead),
                    (Filtered, filtered),
                ];
                debug_assert!(counts.iter().map(|(s, _)| *s).eq(DeliveryStatus::ALL));
                Ok(counts)
            })
            .await
    }
}
