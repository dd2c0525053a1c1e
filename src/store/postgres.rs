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

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Row};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::pg_tls;
use super::*;

/// Schema versions, applied in order, each once (recorded in `hookgate_migrations`).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_due_by_destination.sql")),
];
/// The channel that says "new work may be due", and the statement that says it.
const CHANNEL: &str = "hookgate_work";
const NOTIFY: &str = "SELECT pg_notify('hookgate_work', '')";
/// Events written by one statement at most.
const MAX_BATCH: usize = 512;
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
    connection: pg_tls::Connection,
    enqueues: mpsc::Sender<PendingEvent>,
    wakeup: Arc<Notify>,
    listening: AtomicBool,
    stop: CancellationToken,
    /// Stops the listener and the announcer when the store is dropped (the batcher stops when
    /// `enqueues` closes).
    _stop_on_drop: DropGuard,
}

/// An event waiting for the batcher, with the caller waiting for its outcome.
struct PendingEvent {
    row: EventRow,
    reply: oneshot::Sender<Result<Enqueued, StoreError>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// tokio-postgres errors print only their kind ("db error"); the cause says what happened.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Unavailable(describe(&e))
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(_) => unavailable("timed out waiting for a database connection"),
            other => unavailable(other),
        }
    }
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
    pg_tls::parse(url).map(drop)
}

impl PostgresStore {
    /// Connects to `url` with a pool of `pool_size` connections and applies the migrations
    /// (serialized by an advisory lock, so several nodes may start at once). Fails if the database
    /// cannot be reached now; once open, the store rides out restarts of the database.
    pub async fn open(url: &str, pool_size: u32) -> Result<PostgresStore, StoreError> {
        let mut connection = pg_tls::parse(url).map_err(|e| StoreError::Invalid(format!("storage.url: {e}")))?;
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

        let wakeup = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        // A quarter of the pool writes events; the rest claims, records and answers the admin API.
        let writers = (pool_size as usize / 4).max(1);
        let announce = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(batcher(pool.clone(), rx, wakeup.clone(), announce.clone(), writers));
        tokio::spawn(announcer(pool.clone(), announce, stop.clone()));
        Ok(PostgresStore {
            pool,
            connection,
            enqueues: tx,
            wakeup,
            listening: AtomicBool::new(false),
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        })
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

async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Rebuilding an index of a large table takes longer than any request may.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    // Nodes starting together queue here; the first applies, the others find it done. The key is
    // per schema, so separate schemas in one database (tests, tenants) do not wait for each other.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('hookgate migrations ' || coalesce(current_schema(), '')))", &[])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS hookgate_migrations (
             version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: HashSet<i32> = tx
        .query("SELECT version FROM hookgate_migrations", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for (version, sql) in MIGRATIONS {
        if !applied.contains(version) {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO hookgate_migrations (version) VALUES ($1)", &[version]).await?;
            tracing::info!(version, "database schema migrated");
        }
    }
    let known = MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0);
    if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
        tracing::warn!(schema = newer, known, "the database schema is newer than this hookgate; upgrade this node");
    }
    tx.commit().await?;
    Ok(())
}

/// Group commit. While a batch is being written, new events queue up; the next batch takes them
/// all (up to [`MAX_BATCH`]). At most `writers` batches are in flight at once.
async fn batcher(
    pool: Pool,
    mut rx: mpsc::Receiver<PendingEvent>,
    wakeup: Arc<Notify>,
    announce: Arc<Notify>,
    writers: usize,
) {
    let slots = Arc::new(Semaphore::new(writers));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let (pool, wakeup, announce) = (pool.clone(), wakeup.clone(), announce.clone());
        tokio::spawn(async move {
            write_batch(&pool, batch, &wakeup, &announce).await;
            drop(slot);
        });
    }
}

/// Tells the other nodes that work was committed: `NOTIFY` on its own, after the commit, at most
/// one in flight (a burst of batches gives one or two notifications). Not inside the enqueue
/// statement: a transaction that notifies holds a database-wide lock from its commit until the
/// commit is flushed, which would serialize every enqueue on one fsync each.
async fn announcer(pool: Pool, announce: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = announce.notified() => {}
        }
        let sent = timed(async {
            let client = pool.get().await?;
            let stmt = client.prepare_cached(NOTIFY).await?;
            client.execute(&stmt, &[]).await?;
            Ok(())
        })
        .await;
        if let Err(e) = sent {
            // The workers' poll finds the work anyway, a few seconds later.
            tracing::debug!(error = %e, "cannot notify other nodes of new work");
        }
    }
}

async fn write_batch(pool: &Pool, mut batch: Vec<PendingEvent>, wakeup: &Notify, announce: &Notify) {
    // A fixed order: two batches that both hold keys the other wants cannot deadlock.
    batch.sort_by(|a, b| (&a.row.source, &a.row.dedupe_key).cmp(&(&b.row.source, &b.row.dedupe_key)));
    let refs: Vec<&EventRow> = batch.iter().map(|p| &p.row).collect();
    let results = match timed_batch(insert_events(pool, &refs)).await {
        Ok(r) => r,
        Err(BatchError::Refused(e)) if batch.len() > 1 => {
            // One event the database refuses must not fail the others: write them one by one.
            tracing::warn!(error = %e, events = batch.len(), "batched enqueue refused; retrying one by one");
            let mut each = Vec::with_capacity(batch.len());
            for ev in &batch {
                each.push(match timed_batch(insert_events(pool, &[&ev.row])).await {
                    Ok(mut r) => r.pop().unwrap_or_else(|| Err(unavailable("no result"))),
                    Err(e) => Err(e.into()),
                });
            }
            each
        }
        Err(e) => {
            let e = StoreError::from(e);
            batch.iter().map(|_| Err(unavailable(&e))).collect()
        }
    };
    if results.iter().any(|r| matches!(r, Ok(Enqueued::Queued { .. }))) {
        // NOTIFY reaches this node too, but a local wakeup does not wait for the round trip.
        wakeup.notify_one();
        announce.notify_one();
    }
    for (ev, result) in batch.into_iter().zip(results) {
        let _ = ev.reply.send(result);
    }
}

/// Why a batch was not written.
enum BatchError {
    /// The database answered and refused the statement (bad data, deadlock): worth retrying the
    /// events one by one.
    Refused(String),
    /// No answer, or the database is going away: every event fails alike.
    Unavailable(StoreError),
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        // SQLSTATE classes 08 (connection), 53 (resources), 57 (shutdown) and 58 (system) say
        // nothing about the events themselves.
        match e.code().map(|c| c.code().get(..2).unwrap_or("").to_string()) {
            Some(class) if !matches!(class.as_str(), "08" | "53" | "57" | "58") => BatchError::Refused(describe(&e)),
            _ => BatchError::Unavailable(e.into()),
        }
    }
}

impl From<PoolError> for BatchError {
    fn from(e: PoolError) -> Self {
        BatchError::Unavailable(e.into())
    }
}

impl From<BatchError> for StoreError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Refused(e) => StoreError::Unavailable(e),
            BatchError::Unavailable(e) => e,
        }
    }
}

async fn timed_batch<T>(fut: impl Future<Output = Result<T, BatchError>>) -> Result<T, BatchError> {
    tokio::time::timeout(OP_TIMEOUT, fut).await.unwrap_or_else(|_| {
        Err(BatchError::Unavailable(unavailable(format!("no answer from PostgreSQL within {OP_TIMEOUT:?}"))))
    })
}

/// The events, their deliveries and the wakeup in one statement: atomic, one commit. Events whose
/// (source, dedupe key) exists already are skipped by the constraint; their ids are read after.
const ENQUEUE: &str = "
WITH ins AS (
    INSERT INTO events (id, source, dedupe_key, received_at, content_type, headers, body)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bytea[])
    ON CONFLICT ON CONSTRAINT events_dedupe DO NOTHING
    RETURNING seq, id
), dl AS (
    INSERT INTO deliveries (event_seq, destination, status, attempts, next_attempt_at, updated_at)
    SELECT ins.seq, d.destination, 'pending', 0, $10, $10
    FROM ins JOIN UNNEST($8::text[], $9::text[]) AS d (event_id, destination) ON d.event_id = ins.id
)
SELECT ins.id FROM ins";

const EXISTING: &str = "
SELECT e.source, e.dedupe_key, e.id FROM events e
JOIN UNNEST($1::text[], $2::text[]) AS k (source, dedupe_key) ON e.source = k.source AND e.dedupe_key = k.dedupe_key";

/// Writes `events`; the outer error means nothing was committed. An inner error (only possible
/// for a duplicate whose first event could not be read) leaves the others' results standing.
async fn insert_events(pool: &Pool, events: &[&EventRow]) -> Result<Vec<Result<Enqueued, StoreError>>, BatchError> {
    let now = millis(SystemTime::now());
    let keys: Vec<Cow<'_, str>> = events.iter().map(|e| text(&e.dedupe_key)).collect();
    let headers: Vec<Cow<'_, str>> = events.iter().map(|e| text(&e.headers_json)).collect();
    let content_types: Vec<Option<Cow<'_, str>>> = events.iter().map(|e| e.content_type.as_deref().map(text)).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    let keys: Vec<&str> = keys.iter().map(|k| k.as_ref()).collect();
    let received: Vec<i64> = events.iter().map(|e| e.received_at).collect();
    let content_types: Vec<Option<&str>> = content_types.iter().map(|c| c.as_deref()).collect();
    let headers: Vec<&str> = headers.iter().map(|h| h.as_ref()).collect();
    let bodies: Vec<&[u8]> = events.iter().map(|e| &e.body[..]).collect();
    let (mut d_events, mut d_names) = (Vec::new(), Vec::new());
    for e in events {
        for d in &e.destinations {
            d_events.push(e.id.as_str());
            d_names.push(d.as_str());
        }
    }

    let client = pool.get().await?;
    let stmt = client.prepare_cached(ENQUEUE).await?;
    let rows = client
        .query(&stmt, &[&ids, &sources, &keys, &received, &content_types, &headers, &bodies, &d_events, &d_names, &now])
        .await?;
    let inserted: HashSet<String> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;

    let dupes: Vec<usize> = (0..events.len()).filter(|i| !inserted.contains(ids[*i])).collect();
    let existing: Result<HashMap<(String, String), String>, StoreError> = if dupes.is_empty() {
        Ok(HashMap::new())
    } else {
        // The conflicting insert has committed (ON CONFLICT waited for it), and this statement
        // reads a fresh snapshot, so the first event is visible even if another node wrote it.
        let d_sources: Vec<&str> = dupes.iter().map(|i| sources[*i]).collect();
        let d_keys: Vec<&str> = dupes.iter().map(|i| keys[*i]).collect();
        async {
            let stmt = client.prepare_cached(EXISTING).await?;
            let rows = client.query(&stmt, &[&d_sources, &d_keys]).await?;
            rows.iter()
                .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(StoreError::from)
        }
        .await
    };
    Ok((0..events.len())
        .map(|i| {
            if inserted.contains(ids[i]) {
                return Ok(Enqueued::Queued { event_id: ids[i].to_string() });
            }
            match &existing {
                Ok(found) => match found.get(&(sources[i].to_string(), keys[i].to_string())) {
                    Some(id) => Ok(Enqueued::Duplicate { event_id: id.clone() }),
                    None => Err(unavailable("duplicate event, but the first one is gone (purged meanwhile?)")),
                },
                Err(e) => Err(unavailable(e)),
            }
        })
        .collect())
}

/// Keeps one connection listening on [`CHANNEL`] and turns each notification into a wakeup.
/// Reconnects with backoff when the connection drops (database restart, network).
async fn listen(connection: pg_tls::Connection, wakeup: Arc<Notify>, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let started = std::time::Instant::now();
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            r = listen_once(&connection, &wakeup) => r,
        };
        if started.elapsed() > Duration::from_secs(30) {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        // Capped at the dispatcher's idle poll: waiting longer would not save anything.
        let wait = Duration::from_millis(250u64 << failures.min(5)).min(Duration::from_secs(5));
        tracing::warn!(error = %ended, retry_in_ms = wait.as_millis() as u64, "work notifications lost; reconnecting");
        // Whatever was notified while we were away is found by the next claim.
        wakeup.notify_one();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One listening session; returns why it ended.
async fn listen_once(target: &pg_tls::Connection, wakeup: &Arc<Notify>) -> String {
    let (client, mut connection) = match target.config.connect(target.tls.clone()).await {
        Ok(c) => c,
        Err(e) => return describe(&e),
    };
    let w = wakeup.clone();
    // Notifications arrive through the connection, so it is driven here rather than by `.await`.
    let mut driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => w.notify_one(),
                Ok(_) => {}
                Err(e) => return describe(&e),
            }
        }
        "connection closed".to_string()
    });
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        driver.abort();
        return describe(&e);
    }
    tracing::info!(channel = CHANNEL, "listening for work notifications");
    wakeup.notify_one();
    let why = (&mut driver).await.unwrap_or_else(|e| e.to_string());
    drop(client);
    why
}

/// Per requested destination (`$4` names, `$5` how many each may take, `$6` each one's lease):
/// expired leases first (their worker is gone), then due deliveries oldest first, each an index
/// range of its own. Then at most `$2` in all, taking each destination's first, then each one's
/// second, and so on, so that one destination's backlog cannot crowd out another's. The locked
/// rows are skipped, not waited for: each delivery goes to one claimer only.
const CLAIM: &str = "
WITH want AS (
    SELECT * FROM unnest($4::text[], $5::bigint[], $6::bigint[]) AS w(destination, n, lease_ms)
), candidates AS (
    SELECT w.destination, w.n, w.lease_ms, x.id, 0 AS kind, x.t FROM want w CROSS JOIN LATERAL (
        SELECT id, lease_until AS t FROM deliveries
        WHERE status = 'in_flight' AND destination = w.destination AND lease_until <= $1
        ORDER BY lease_until LIMIT w.n FOR UPDATE SKIP LOCKED) x
    UNION ALL
    SELECT w.destination, w.n, w.lease_ms, x.id, 1, x.t FROM want w CROSS JOIN LATERAL (
        SELECT id, next_attempt_at AS t FROM deliveries
        WHERE status IN ('pending', 'failed') AND destination = w.destination AND next_attempt_at <= $1
        ORDER BY next_attempt_at LIMIT w.n FOR UPDATE SKIP LOCKED) x
), ranked AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.destination ORDER BY c.kind, c.t, c.id) AS rank FROM candidates c
), picked AS (
    SELECT id, lease_ms FROM ranked WHERE rank <= n ORDER BY rank, t LIMIT $2
), claimed AS (
    UPDATE deliveries d
    SET status = 'in_flight', attempts = d.attempts + 1, claim = $3, updated_at = $1,
        lease_until = $1 + picked.lease_ms
    FROM picked WHERE d.id = picked.id
    RETURNING d.id, d.attempts, d.destination, d.event_seq
)
SELECT c.id AS delivery_id, c.attempts, c.destination, e.id AS event_id, e.source, e.content_type, e.headers,
       e.body, e.received_at
FROM claimed c JOIN events e ON e.seq = c.event_seq";

/// Logs the attempt, and moves the delivery only if this claim still owns it; a success was
/// delivered, so it stands whatever the claim, unless the delivery already succeeded.
const RECORD: &str = "
WITH log AS (
    INSERT INTO attempts (delivery_id, attempt, at, outcome, status_code, exit_code, error, duration_ms)
    SELECT id, $2, $3, $4, $5, $6, $7, $8 FROM deliveries WHERE id = $1
), moved AS (
    UPDATE deliveries
    SET status = $9, next_attempt_at = $10, lease_until = NULL, claim = NULL, last_error = $7, updated_at = $11
    WHERE id = $1 AND CASE WHEN $9 = 'succeeded' THEN status <> 'succeeded' ELSE claim = $12 AND status = 'in_flight' END
    RETURNING id
)
SELECT count(*) FROM moved";

const REQUEUE: &str = "UPDATE deliveries
    SET status = 'pending', attempts = 0, next_attempt_at = $1, lease_until = NULL, claim = NULL, updated_at = $1";

const EVENT_STATUS: &str = "CASE
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq AND d.status = 'dead') THEN 'dead'
    WHEN NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq AND d.status <> 'succeeded') THEN 'succeeded'
    ELSE 'pending' END";

const DELIVERY_COLUMNS: &str = "d.id, e.id AS event_id, e.source, d.destination, d.status, d.attempts,
    d.next_attempt_at, d.last_error";

fn parse_cursor(cursor: &Option<String>) -> Result<Option<i64>, StoreError> {
    cursor
        .as_deref()
        .map(|c| c.parse::<i64>().map_err(|_| StoreError::Invalid(format!("invalid cursor {c:?}"))))
        .transpose()
}

fn summary(r: &Row) -> Result<EventSummary, tokio_postgres::Error> {
    Ok(EventSummary {
        id: r.try_get("id")?,
        source: r.try_get("source")?,
        received_at: r.try_get("received_at")?,
        status: r.try_get("status")?,
        dedupe_key: r.try_get("dedupe_key")?,
        content_type: r.try_get("content_type")?,
    })
}

fn delivery_info(r: &Row) -> Result<DeliveryInfo, tokio_postgres::Error> {
    let status: String = r.try_get("status")?;
    let finished = matches!(status.as_str(), "succeeded" | "dead" | "in_flight");
    Ok(DeliveryInfo {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        source: r.try_get("source")?,
        destination: r.try_get("destination")?,
        attempts: r.try_get::<_, i32>("attempts")?.max(0) as u32,
        next_attempt_at: if finished { None } else { Some(r.try_get("next_attempt_at")?) },
        last_error: r.try_get("last_error")?,
        status,
        attempt_log: Vec::new(),
    })
}

fn claimed(r: &Row, claim: i64) -> Result<Claimed, tokio_postgres::Error> {
    Ok(Claimed {
        delivery_id: r.try_get("delivery_id")?,
        claim,
        attempt: r.try_get::<_, i32>("attempts")?.max(0) as u32,
        event_id: r.try_get("event_id")?,
        source: r.try_get("source")?,
        destination: r.try_get("destination")?,
        content_type: r.try_get("content_type")?,
        headers_json: r.try_get("headers")?,
        body: Bytes::from(r.try_get::<_, Vec<u8>>("body")?),
        received_at: r.try_get("received_at")?,
    })
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
        let token: i64 = rand::random::<i64>() & i64::MAX;
        let (now, total) = (millis(now), request.total as i64);
        let mut names = Vec::new();
        let mut counts = Vec::new();
        let mut leases = Vec::new();
        for (want, n) in request.open_wants() {
            names.push(want.destination.as_str());
            counts.push(n as i64);
            leases.push(want.lease.as_millis() as i64);
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.query(CLAIM, &[&now, &total, &token, &names, &counts, &leases]).await?;
        Ok(rows.iter().map(|r| claimed(r, token)).collect::<Result<_, _>>()?)
    }

    async fn record(&self, r: AttemptRecord) -> Result<bool, StoreError> {
        let now = millis(SystemTime::now());
        let (status, next) = match r.next {
            NextState::Succeeded => ("succeeded", now),
            NextState::Retry { at } => ("failed", at),
            NextState::Dead => ("dead", now),
        };
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
        let row = self
            .query_one(
                "SELECT LEAST(
                    (SELECT MIN(x.t) FROM unnest($1::text[]) AS w(destination) CROSS JOIN LATERAL (
                        SELECT next_attempt_at AS t FROM deliveries WHERE status IN ('pending', 'failed')
                        AND destination = w.destination ORDER BY next_attempt_at LIMIT 1) x),
                    (SELECT MIN(x.t) FROM unnest($1::text[]) AS w(destination) CROSS JOIN LATERAL (
                        SELECT lease_until AS t FROM deliveries WHERE status = 'in_flight'
                        AND destination = w.destination ORDER BY lease_until LIMIT 1) x))",
                &[&destinations],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query_one("SELECT 1", &[]).await.map(|_| ())
    }

    fn wakeup(&self) -> Arc<Notify> {
        // Only processes that deliver ask for wakeups: they get the listening connection, and an
        // ingest-only node spends none on it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current()
            && !self.listening.swap(true, Ordering::SeqCst)
        {
            runtime.spawn(listen(self.connection.clone(), self.wakeup.clone(), self.stop.clone()));
        }
        self.wakeup.clone()
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
        let now = millis(SystemTime::now());
        let sql = format!(
            "WITH ev AS (SELECT seq FROM events WHERE id = $2),
             moved AS (
                {REQUEUE} WHERE event_seq IN (SELECT seq FROM ev) AND status <> 'in_flight'
                  AND ($3::text IS NULL OR destination = $3)
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
        let now = millis(SystemTime::now());
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
                         SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq AND d.status NOT IN ('succeeded', 'dead'))
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
                "DELETE FROM deliveries WHERE event_seq = ANY($1) AND status IN ('succeeded', 'dead')",
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

    async fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self.query("SELECT status, count(*) FROM deliveries GROUP BY status", &[]).await?;
        let mut counts: HashMap<String, i64> = HashMap::new();
        for r in &rows {
            counts.insert(r.try_get(0)?, r.try_get(1)?);
        }
        Ok(STATUSES.iter().map(|s| (s.to_string(), counts.get(*s).copied().unwrap_or(0).max(0) as u64)).collect())
    }
}
