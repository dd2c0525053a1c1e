//! The SQL of each operation, and the mapping of rows to the store's types.

use bytes::Bytes;
use tokio_postgres::Row;

use super::*;

/// Per requested destination (`$4` names, `$5` how many each may take, `$6` each one's lease):
/// expired leases first (their worker is gone), then due deliveries oldest first, each an index
/// range of its own. Then at most `$2` in all, taking each destination's first, then each one's
/// second, and so on, so that one destination's backlog cannot crowd out another's. The locked
/// rows are skipped, not waited for: each delivery goes to one claimer only.
pub(super) const CLAIM: &str = concat!(
    "
WITH want AS (
    SELECT * FROM unnest($4::text[], $5::bigint[], $6::bigint[]) AS w(destination, n, lease_ms)
), candidates AS (
    SELECT w.destination, w.n, w.lease_ms, x.id, 0 AS kind, x.t FROM want w CROSS JOIN LATERAL (
        SELECT id, lease_until AS t FROM deliveries d
        WHERE status = 'in_flight' AND destination = w.destination AND lease_until <= $1 AND ",
    key_free!(),
    "
        ORDER BY lease_until LIMIT w.n FOR UPDATE SKIP LOCKED) x
    UNION ALL
    SELECT w.destination, w.n, w.lease_ms, x.id, 1, x.t FROM want w CROSS JOIN LATERAL (
        SELECT id, next_attempt_at AS t FROM deliveries d
        WHERE status IN ('pending', 'failed') AND destination = w.destination AND next_attempt_at <= $1 AND ",
    key_free!(),
    "
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
       e.body, e.received_at, e.path, e.traceparent
FROM claimed c JOIN events e ON e.seq = c.event_seq"
);

/// Logs the attempt, and moves the delivery only if this claim still owns it; a success was
/// delivered, so it stands whatever the claim, unless the delivery already succeeded.
pub(super) const RECORD: &str = "
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

pub(super) const REQUEUE: &str = "UPDATE deliveries
    SET status = 'pending', attempts = 0, next_attempt_at = $1, lease_until = NULL, claim = NULL, updated_at = $1";

pub(super) const EVENT_STATUS: &str = event_status_sql!("d.event_seq = e.seq");

pub(super) const DELIVERY_COLUMNS: &str = "d.id, e.id AS event_id, e.source, d.destination, d.status, d.attempts,
    d.next_attempt_at, d.last_error";

pub(super) fn summary(r: &Row) -> Result<EventSummary, tokio_postgres::Error> {
    Ok(EventSummary {
        id: r.try_get("id")?,
        source: r.try_get("source")?,
        received_at: r.try_get("received_at")?,
        status: r.try_get("status")?,
        dedupe_key: r.try_get("dedupe_key")?,
        content_type: r.try_get("content_type")?,
    })
}

pub(super) fn delivery_info(r: &Row) -> Result<DeliveryInfo, tokio_postgres::Error> {
    let status: DeliveryStatus = r.try_get("status")?;
    Ok(DeliveryInfo {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        source: r.try_get("source")?,
        destination: r.try_get("destination")?,
        attempts: r.try_get::<_, i32>("attempts")?.max(0) as u32,
        next_attempt_at: if status.awaits_attempt() { Some(r.try_get("next_attempt_at")?) } else { None },
        last_error: r.try_get("last_error")?,
        status,
        attempt_log: Vec::new(),
    })
}

pub(super) fn claimed(r: &Row, claim: i64) -> Result<Claimed, tokio_postgres::Error> {
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
        path: r.try_get::<_, Option<String>>("path")?.unwrap_or_default(),
        traceparent: r.try_get("traceparent")?,
    })
}
