//! The shared store: PostgreSQL, for many hookgate processes (ingest nodes and workers) on one
//! database. PostgreSQL is the only coordinator; hookgate has no cluster protocol of its own:
//! - a UNIQUE (source, dedupe_key) constraint dedupes across nodes (a concurrent insert of the same
//!   key waits for the first one's commit, then does nothing);
//! - `FOR UPDATE SKIP LOCKED` hands each due delivery to one worker, and the lease brings back
//!   what a dead node held. Nothing is reset at start: in_flight rows may belong to live nodes;
//! - `NOTIFY hookgate_work`, sent once new work has committed, wakes the workers of every node
//!   through one listening connection per worker process that reconnects by itself.
//!
//! Enqueues are group-committed: a batcher task takes whatever is queued and writes it with one
//! statement (one round trip, one commit), with a few batches in flight at once; an announcer task
//! sends the NOTIFY after the commits (see [`announcer`] for why not inside). Everything else
//! is one statement (or one short transaction) on a pooled connection. Every operation is bounded
//! in time, so a database that is down or unreachable gives `StoreError::Unavailable` (ingest
//! answers 503) within seconds, and the pool reconnects by itself when it is back.

mod batcher;
mod control;
mod error;
mod listen;
mod queries;
mod schema;
mod status;
mod tls;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::*;
use crate::clock::SharedClock;
use batcher::*;
use error::unavailable;
use listen::*;
use queries::*;
use schema::*;

/// How long opening a connection may take; also how long a caller waits for a pooled one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on any one operation, so that a database that stopped answering gives a 503, not a hang.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on applying the schema at start (another node may be applying it, or rebuilding an index).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);
/// The server's own bound on a statement (`statement_timeout`): when the caller gives up after
/// [`OP_TIMEOUT`] (which also covers up to [`CONNECT_TIMEOUT`] waiting for a connection), the
/// statement has already been cancelled and rolled back, so a 503 never hides a commit (a bulk
/// replay answered 503 and committed anyway when only the future was dropped). Migrations lift it.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    pool: Pool,
    /// For the listening connection, made outside the pool.
    connection: tls::Connection,
    enqueues: mpsc::Sender<PendingEvent>,
    wakeup: Arc<Wakeup>,
    listening: AtomicBool,
    stop: CancellationToken,
    clock: SharedClock,
    /// The batcher, until `close` waits for it.
    batcher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Stops the listener and the announcer when the store is dropped (the batcher stops when
    /// `enqueues` closes).
    _stop_on_drop: DropGuard,
}

/// PostgreSQL text cannot hold NUL. Keys, headers and error text come from outside (a JSON
/// string, a response body), so a NUL is replaced rather than failing the write forever.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') { Cow::Owned(s.replace('\0', "\u{FFFD}")) } else { Cow::Borrowed(s) }
}

async fn timed<T>(fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(OP_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(unavailable(format!("no answer from PostgreSQL within {OP_TIMEOUT:?}"))))
}

/// What is wrong with `url` as a PostgreSQL URL (its syntax and TLS settings), for `hookgate check`;
/// nothing is connected to.
pub fn check_url(url: &str) -> Result<(), String> {
    tls::parse(url).map(drop)
}

impl PostgresStore {
    /// Connects to `url` with a pool of `pool_size` connections and applies the migrations
    /// (serialized by an advisory lock, so several nodes may start at once). Fails if the database
    /// cannot be reached now; once open, the store rides out restarts of the database.
    /// Every time it stores comes from `clock`.
    pub async fn open(url: &str, pool_size: u32, clock: SharedClock) -> Result<PostgresStore, StoreError> {
        let mut connection = tls::parse(url).map_err(|e| StoreError::Invalid(format!("storage.url: {e}")))?;
        let config = &mut connection.config;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("hookgate");
        }
        let bound = format!("-c statement_timeout={}", STATEMENT_TIMEOUT.as_millis());
        let options = match config.get_options() {
            Some(theirs) => format!("{theirs} {bound}"),
            None => bound,
        };
        config.options(&options);
        // Notice a peer that vanished (no RST) in about a minute, not the kernel's two hours.
        config.keepalives_idle(Duration::from_secs(30)).keepalives_interval(Duration::from_secs(10));
        config.keepalives_retries(3);

        let manager = Manager::from_config(
            connection.config.clone(),
            connection.tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2) as usize)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(unavailable)?;
        tokio::time::timeout(MIGRATION_TIMEOUT, migrate(&pool))
            .await
            .unwrap_or_else(|_| Err(unavailable(format!("schema migration not done within {MIGRATION_TIMEOUT:?}"))))?;

        let wakeup = Wakeup::new();
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        // A quarter of the pool writes events; the rest claims, records and answers the admin API.
        let writers = (pool_size as usize / 4).max(1);
        let announce = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let signals = Signals { wakeup: wakeup.clone(), announce: announce.clone(), clock: clock.clone() };
        let batcher = tokio::spawn(batcher(pool.clone(), rx, signals, writers, stop.clone()));
        tokio::spawn(announcer(pool.clone(), announce, stop.clone()));
        Ok(PostgresStore {
            pool,
            connection,
            enqueues: tx,
            wakeup,
            listening: AtomicBool::new(false),
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            clock,
            batcher: std::sync::Mutex::new(Some(batcher)),
        })
    }

    /// Stops the store: the events queued are written, then the listener and the announcer stop
    /// and the pool's connections close. Afterwards every operation is unavailable. Idempotent.
    pub async fn close(&self) {
        self.stop.cancel();
        let batcher = self.batcher.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(batcher) = batcher {
            let _ = batcher.await;
        }
        self.pool.close();
    }

    fn now(&self) -> Millis {
        millis(self.clock.now())
    }

    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Runs one statement on a pooled connection.
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        timed(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, params).await?)
        })
        .await
    }

    async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, StoreError> {
        self.query(sql, params).await?.into_iter().next().ok_or_else(|| unavailable("query returned no row"))
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn enqueue(&self, event: NewEvent<'_>) -> Result<Enqueued, StoreError> {
        let (reply, rx) = oneshot::channel();
        let pending = PendingEvent { row: event.into_row(), reply };
        // Bounded like every other operation: a caller may get 503 for an event that commits
        // later; the sender's retry is then acknowledged as a duplicate of it.
        timed(async {
            self.enqueues.send(pending).await.map_err(|_| unavailable("enqueue batcher stopped"))?;
            rx.await.map_err(|_| unavailable("enqueue batcher stopped"))?
        })
        .await
    }

    async fn claim(&self, request: &ClaimRequest, now: SystemTime) -> Result<Vec<Claimed>, StoreError> {
        self.claim_gated(request, millis(now)).await
    }

    async fn record(&self, r: AttemptRecord) -> Result<bool, StoreError> {
        let now = self.now();
        let (status, next) = r.next.status_at(now);
        let attempt = r.attempt as i32;
        let status_code = r.status_code.map(i32::from);
        let error = r.error.as_deref().map(text);
        let error = error.as_deref();
        let row = self
            .query_one(
                RECORD,
                &[
                    &r.delivery_id,
                    &attempt,
                    &r.at,
                    &r.outcome,
                    &status_code,
                    &r.exit_code,
                    &error,
                    &r.duration_ms,
                    &status,
                    &next,
                    &now,
                    &r.claim,
                ],
            )
            .await?;
        Ok(row.try_get::<_, i64>(0)? == 1)
    }

    async fn next_due(&self, destinations: &[String]) -> Result<Option<Millis>, StoreError> {
        let rows = self
            .query(
                "SELECT w.destination, LEAST(
                    (SELECT next_attempt_at FROM deliveries WHERE status IN ('pending', 'failed')
                        AND destination = w.destination ORDER BY next_attempt_at LIMIT 1),
                    (SELECT lease_until FROM deliveries WHERE status = 'in_flight'
                        AND destination = w.destination ORDER BY lease_until LIMIT 1)) AS t
                 FROM unnest($1::text[]) AS w(destination)",
                &[&destinations],
            )
            .await?;
        let mut due = Vec::new();
        for r in &rows {
            if let Some(t) = r.try_get::<_, Option<Millis>>(1)? {
                due.push((r.try_get::<_, String>(0)?, t));
            }
        }
        timed(self.gated_due(due)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query_one("SELECT 1", &[]).await.map(|_| ())
    }

    async fn backup(&self, _to: &std::path::Path) -> Result<(), StoreError> {
        Err(StoreError::Invalid(
            "the PostgreSQL store is backed up with PostgreSQL's own tools (pg_dump, or a base backup with WAL \
             archiving), not by hookgate; see docs/OPERATIONS.md"
                .into(),
        ))
    }

    async fn close(&self) {
        self.close().await
    }

    fn wakeup(&self) -> Arc<Notify> {
        // Only processes that deliver ask for wakeups: they get the listening connection, and an
        // ingest-only node spends none on it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current()
            && !self.listening.swap(true, Ordering::SeqCst)
        {
            runtime.spawn(listen(self.connection.clone(), self.wakeup.clone(), self.stop.clone()));
        }
        self.wakeup.notify()
    }

    fn work(&self) -> tokio::sync::watch::Receiver<u64> {
        // The same listening connection as `wakeup`: a pull consumer on this node hears another's ingest.
        let _ = self.wakeup();
        self.wakeup.subscribe()
    }

    async fn held(&self, delivery_id: i64) -> Result<Option<Held>, StoreError> {
        let rows = self
            .query(
                "SELECT id, destination, status, attempts, claim, lease_until FROM deliveries WHERE id = $1",
                &[&delivery_id],
            )
            .await?;
        let Some(r) = rows.first() else { return Ok(None) };
        Ok(Some(Held {
            delivery_id: r.try_get("id")?,
            destination: r.try_get("destination")?,
            status: r.try_get("status")?,
            attempts: r.try_get::<_, i32>("attempts")?.max(0) as u32,
            claim: r.try_get("claim")?,
            lease_until: r.try_get("lease_until")?,
        }))
    }

    async fn list_events(&self, q: EventQuery) -> Result<Page<EventSummary>, StoreError> {
        let before = parse_cursor(&q.cursor)?;
        let limit = q.limit.max(1);
        let sql = format!(
            "SELECT * FROM (
                SELECT e.seq, e.id, e.source, e.received_at, e.dedupe_key, e.content_type, {EVENT_STATUS} AS status
                FROM events e
                WHERE ($1::text IS NULL OR e.source = $1) AND ($2::bigint IS NULL OR e.received_at >= $2)
                  AND ($3::bigint IS NULL OR e.received_at < $3) AND ($4::bigint IS NULL OR e.seq < $4)
             ) s
             WHERE ($5::text IS NULL OR s.status = $5)
             ORDER BY s.seq DESC LIMIT $6"
        );
        let rows = self.query(&sql, &[&q.source, &q.since, &q.until, &before, &q.status, &(limit as i64)]).await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last = None;
        for r in &rows {
            items.push(summary(r)?);
            last = Some(r.try_get::<_, i64>("seq")?);
        }
        let next_cursor = if items.len() == limit { last.map(|s| s.to_string()) } else { None };
        Ok(Page { items, next_cursor })
    }

    async fn get_event(&self, id: &str) -> Result<Option<EventDetail>, StoreError> {
        timed(async {
            let mut client = self.client().await?;
            // One snapshot for the event, its deliveries and their attempts.
            let tx = client
                .build_transaction()
                .read_only(true)
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead);
            let tx = tx.start().await?;
            let sql = format!(
                "SELECT e.seq, e.id, e.source, e.received_at, e.dedupe_key, e.content_type, e.headers, e.body,
                    {EVENT_STATUS} AS status
                 FROM events e WHERE e.id = $1"
            );
            let Some(row) = tx.query_opt(&tx.prepare_cached(&sql).await?, &[&id]).await? else { return Ok(None) };
            let seq: i64 = row.try_get("seq")?;
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq
                 WHERE d.event_seq = $1 ORDER BY d.id"
            );
            let mut deliveries: Vec<DeliveryInfo> = tx
                .query(&tx.prepare_cached(&sql).await?, &[&seq])
                .await?
                .iter()
                .map(delivery_info)
                .collect::<Result<_, _>>()?;
            let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
            let attempts = tx
                .query(
                    &tx.prepare_cached(
                        "SELECT delivery_id, attempt, at, outcome, status_code, exit_code, error, duration_ms
                         FROM attempts WHERE delivery_id = ANY($1) ORDER BY id",
                    )
                    .await?,
                    &[&ids],
                )
                .await?;
            for a in &attempts {
                let delivery_id: i64 = a.try_get("delivery_id")?;
                let attempt = Attempt {
                    attempt: a.try_get::<_, i32>("attempt")?.max(0) as u32,
                    at: a.try_get("at")?,
                    outcome: a.try_get("outcome")?,
                    status_code: a.try_get::<_, Option<i32>>("status_code")?.and_then(|c| u16::try_from(c).ok()),
                    exit_code: a.try_get("exit_code")?,
                    error: a.try_get("error")?,
                    duration_ms: a.try_get("duration_ms")?,
                };
                if let Some(d) = deliveries.iter_mut().find(|d| d.id == delivery_id) {
                    d.attempt_log.push(attempt);
                }
            }
            tx.commit().await?;
            Ok(Some(EventDetail {
                summary: summary(&row)?,
                headers_json: row.try_get("headers")?,
                body: Bytes::from(row.try_get::<_, Vec<u8>>("body")?),
                deliveries,
            }))
        })
        .await
    }

    async fn replay_event(&self, id: &str, destination: Option<&str>) -> Result<Option<u64>, StoreError> {
        let now = self.now();
        let sql = format!(
            "WITH ev AS (SELECT seq FROM events WHERE id = $2),
             moved AS (
                {REQUEUE} WHERE event_seq IN (SELECT seq FROM ev) AND status <> 'in_flight'
                  AND (destination = $3 OR ($3::text IS NULL AND status <> 'filtered'))
                RETURNING 1)
             SELECT (SELECT count(*) FROM ev) AS found, count(*) AS moved,
                    CASE WHEN count(*) > 0 THEN pg_notify('{CHANNEL}', '')::text END
             FROM moved"
        );
        let row = self.query_one(&sql, &[&now, &id, &destination]).await?;
        if row.try_get::<_, i64>("found")? == 0 {
            return Ok(None);
        }
        let moved = row.try_get::<_, i64>("moved")? as u64;
        if moved > 0 {
            self.wakeup.notify_one();
        }
        Ok(Some(moved))
    }

    async fn list_deliveries(&self, q: DeliveryQuery) -> Result<Page<DeliveryInfo>, StoreError> {
        let before = parse_cursor(&q.cursor)?;
        let limit = q.limit.max(1);
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq
             WHERE ($1::text IS NULL OR d.status = $1) AND ($2::text IS NULL OR d.destination = $2)
               AND ($3::text IS NULL OR e.source = $3) AND ($4::bigint IS NULL OR d.id < $4)
             ORDER BY d.id DESC LIMIT $5"
        );
        let rows = self.query(&sql, &[&q.status, &q.destination, &q.source, &before, &(limit as i64)]).await?;
        let items: Vec<DeliveryInfo> = rows.iter().map(delivery_info).collect::<Result<_, _>>()?;
        let next_cursor = if items.len() == limit { items.last().map(|d| d.id.to_string()) } else { None };
        Ok(Page { items, next_cursor })
    }

    async fn replay_deliveries(&self, f: ReplayFilter) -> Result<u64, StoreError> {
        let now = self.now();
        let sql = format!(
            "WITH moved AS (
                {REQUEUE} WHERE status = $2 AND status <> 'in_flight' AND ($3::text IS NULL OR destination = $3)
                  AND ($4::text IS NULL OR event_seq IN (SELECT seq FROM events WHERE source = $4))
                RETURNING 1)
             SELECT count(*), CASE WHEN count(*) > 0 THEN pg_notify('{CHANNEL}', '')::text END FROM moved"
        );
        let row = self.query_one(&sql, &[&now, &f.status, &f.destination, &f.source]).await?;
        let moved = row.try_get::<_, i64>(0)? as u64;
        if moved > 0 {
            self.wakeup.notify_one();
        }
        Ok(moved)
    }

    async fn purge(&self, cutoff: Millis, batch: usize) -> Result<u64, StoreError> {
        timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let seqs: Vec<i64> = tx
                .query(
                    "SELECT seq FROM events e WHERE received_at < $1 AND NOT EXISTS (
                         SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq AND d.status NOT IN ('succeeded', 'dead', 'filtered'))
                     ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED",
                    &[&cutoff, &(batch as i64)],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            // Finished deliveries first, each row re-checked under its lock: one replayed since
            // the select above stays, and so does its event (the next statement sees it).
            tx.execute(
                "DELETE FROM deliveries WHERE event_seq = ANY($1) AND status IN ('succeeded', 'dead', 'filtered')",
                &[&seqs],
            )
            .await?;
            let n = tx
                .execute(
                    "DELETE FROM events e WHERE seq = ANY($1)
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq)",
                    &[&seqs],
                )
                .await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }

    async fn count_by_status(&self) -> Result<Vec<(DeliveryStatus, u64)>, StoreError> {
        let rows = self.query("SELECT status, count(*) FROM deliveries GROUP BY status", &[]).await?;
        let mut counts: HashMap<DeliveryStatus, i64> = HashMap::new();
        for r in &rows {
            counts.insert(r.try_get(0)?, r.try_get(1)?);
        }
        Ok(DeliveryStatus::ALL.into_iter().map(|s| (s, counts.get(&s).copied().unwrap_or(0).max(0) as u64)).collect())
    }

    async fn count_by_destination(
        &self,
        destinations: &[String],
    ) -> Result<Vec<(String, DeliveryStatus, u64)>, StoreError> {
        self.counts_of(destinations).await
    }

    async fn destination_states(&self, destinations: &[String]) -> Result<Vec<DestinationState>, StoreError> {
        self.read_states(destinations).await
    }

    async fn set_paused(&self, destination: &str, paused: bool) -> Result<(), StoreError> {
        self.write_paused(destination, paused).await
    }

    async fn note_attempt(&self, note: AttemptNote) -> Result<Option<CircuitChange>, StoreError> {
        self.apply_note(&note).await
    }
}
