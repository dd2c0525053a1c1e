//! Reads: a small pool of read-only connections, and the mapping of rows to the store's types.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::health::Health;
use super::*;

/// Read-only connections, opened on demand and kept for reuse.
pub(super) struct Readers {
    path: PathBuf,
    /// None once closed: no connection is opened or kept any more.
    idle: Mutex<Option<Vec<Connection>>>,
    health: Arc<Health>,
}

impl Readers {
    pub(super) fn new(path: &Path, health: Arc<Health>) -> Self {
        Readers { path: path.to_path_buf(), idle: Mutex::new(Some(Vec::new())), health }
    }

    /// Closes the idle connections; reads from now on are unavailable.
    pub(super) fn close(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    pub(super) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match this.idle.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                Some(idle) => idle.pop(),
                None => return Err(unavailable("the store is closed")),
            };
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
            if result.is_ok()
                && let Some(idle) = this.idle.lock().unwrap_or_else(|p| p.into_inner()).as_mut()
            {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(unavailable)?
    }
}

pub(super) const EVENT_STATUS: &str = event_status_sql!(deliveries_of_e!());

pub(super) fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventSummary> {
    Ok(EventSummary {
        id: r.get("id")?,
        source: r.get("source")?,
        received_at: r.get("received_at")?,
        status: r.get("status")?,
        dedupe_key: r.get("dedupe_key")?,
        content_type: r.get("content_type")?,
    })
}

pub(super) fn attempts_of(c: &Connection, delivery_id: i64) -> rusqlite::Result<Vec<Attempt>> {
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

pub(super) fn delivery_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryInfo> {
    let status: DeliveryStatus = r.get("status")?;
    Ok(DeliveryInfo {
        id: r.get("id")?,
        event_id: r.get("event_id")?,
        source: r.get("source")?,
        destination: r.get("destination")?,
        attempts: r.get("attempts")?,
        next_attempt_at: if status.awaits_attempt() { Some(r.get("next_attempt_at")?) } else { None },
        last_error: r.get("last_error")?,
        status,
        attempt_log: Vec::new(),
    })
}

pub(super) const DELIVERY_COLUMNS: &str =
    "d.id AS id, e.id AS event_id, e.source AS source, d.destination AS destination, d.status AS status,
    d.attempts AS attempts, d.next_attempt_at AS next_attempt_at, d.last_error AS last_error";

/// What `/metrics` counts at every scrape: due (pending or failed), failed, in flight, dead,
/// filtered, and all deliveries. The first five walk partial indexes, never the table: the SQL names statuses
/// literally, since with a bound parameter the planner cannot use a partial index. The total counts
/// the table's leaf pages without reading rows (about 20 ms at 1,000,000 deliveries; an index just
/// for it would cost every event a B-tree insert). `pending` and `succeeded` (the one that grows
/// without bound, with no index) are derived from the others.
pub(super) const COUNTS: [&str; 6] = [
    "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'failed')",
    "SELECT COUNT(*) FROM deliveries WHERE status = 'failed'",
    "SELECT COUNT(*) FROM deliveries WHERE status = 'in_flight'",
    "SELECT COUNT(*) FROM deliveries WHERE status = 'dead'",
    "SELECT COUNT(*) FROM deliveries WHERE status = 'filtered'",
    "SELECT COUNT(*) FROM deliveries",
];
