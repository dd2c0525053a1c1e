//! Group commit of enqueues: the batcher writes whatever is queued with one statement, and the
//! announcer tells the other nodes afterwards.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::error::{BatchError, unavailable};
use super::*;
use crate::clock::SharedClock;

/// Events written by one statement at most.
pub(super) const MAX_BATCH: usize = 512;

/// An event waiting for the batcher, with the caller waiting for its outcome.
pub(super) struct PendingEvent {
    pub(super) row: EventRow,
    pub(super) reply: oneshot::Sender<Result<Enqueued, StoreError>>,
}

/// Group commit. While a batch is being written, new events queue up; the next batch takes them
/// all (up to [`MAX_BATCH`]). At most `writers` batches are in flight at once. Once `stop` is
/// cancelled (the store closes) it takes no new events, writes those queued, and returns when the
/// last batch is done.
pub(super) async fn batcher(
    pool: Pool,
    mut rx: mpsc::Receiver<PendingEvent>,
    signals: Signals,
    writers: usize,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(writers));
    let mut stopping = false;
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.cancelled(), if !stopping => {
                rx.close();
                stopping = true;
                continue;
            }
            first = rx.recv() => first,
        };
        let Some(first) = first else { break };
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let (pool, signals) = (pool.clone(), signals.clone());
        tokio::spawn(async move {
            write_batch(&pool, batch, &signals).await;
            drop(slot);
        });
    }
    // Every slot back: no batch is in flight.
    let _ = slots.acquire_many(writers as u32).await;
}

/// What a written batch tells, and the time it writes.
#[derive(Clone)]
pub(super) struct Signals {
    /// This node's workers.
    pub(super) wakeup: Arc<crate::store::wakeup::Wakeup>,
    /// The announcer, for the other nodes.
    pub(super) announce: Arc<Notify>,
    pub(super) clock: SharedClock,
}

/// Tells the other nodes that work was committed: `NOTIFY` on its own, after the commit, at most
/// one in flight (a burst of batches gives one or two notifications). Not inside the enqueue
/// statement: a transaction that notifies holds a database-wide lock from its commit until the
/// commit is flushed, which would serialize every enqueue on one fsync each.
pub(super) async fn announcer(pool: Pool, announce: Arc<Notify>, stop: CancellationToken) {
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

pub(super) async fn write_batch(pool: &Pool, mut batch: Vec<PendingEvent>, signals: &Signals) {
    let now = millis(signals.clock.now());
    // A fixed order: two batches that both hold keys the other wants cannot deadlock.
    batch.sort_by(|a, b| (&a.row.source, &a.row.dedupe_key).cmp(&(&b.row.source, &b.row.dedupe_key)));
    let refs: Vec<&EventRow> = batch.iter().map(|p| &p.row).collect();
    let results = match timed_batch(insert_events(pool, &refs, now)).await {
        Ok(r) => r,
        Err(BatchError::Refused(e)) if batch.len() > 1 => {
            // One event the database refuses must not fail the others: write them one by one.
            tracing::warn!(error = %e, events = batch.len(), "batched enqueue refused; retrying one by one");
            let mut each = Vec::with_capacity(batch.len());
            for ev in &batch {
                each.push(match timed_batch(insert_events(pool, &[&ev.row], now)).await {
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
        signals.wakeup.notify_one();
        signals.announce.notify_one();
    }
    for (ev, result) in batch.into_iter().zip(results) {
        let _ = ev.reply.send(result);
    }
}

pub(super) async fn timed_batch<T>(fut: impl Future<Output = Result<T, BatchError>>) -> Result<T, BatchError> {
    tokio::time::timeout(OP_TIMEOUT, fut).await.unwrap_or_else(|_| {
        Err(BatchError::Unavailable(unavailable(format!("no answer from PostgreSQL within {OP_TIMEOUT:?}"))))
    })
}

/// The events, their deliveries and the wakeup in one statement: atomic, one commit. Events whose
/// (source, dedupe key) exists already are skipped by the constraint; their ids are read after.
pub(super) const ENQUEUE: &str = "
WITH ins AS (
    INSERT INTO events (id, source, dedupe_key, received_at, content_type, headers, body, path, traceparent)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bytea[], $13::text[],
                         $16::text[])
    ON CONFLICT ON CONSTRAINT events_dedupe DO NOTHING
    RETURNING seq, id
), dl AS (
    INSERT INTO deliveries (id, event_seq, destination, status, attempts, next_attempt_at, updated_at, last_error, ordering_key)
    SELECT ins.seq * $12 + d.slot, ins.seq, d.destination,
           CASE WHEN d.filtered IS NULL THEN 'pending' ELSE 'filtered' END, 0, $10, $10, d.filtered, d.ordering_key
    FROM ins JOIN UNNEST($8::text[], $9::text[], $11::bigint[], $14::text[], $15::text[])
        AS d (event_id, destination, slot, filtered, ordering_key)
      ON d.event_id = ins.id
)
SELECT ins.id FROM ins";

pub(super) const EXISTING: &str = "
SELECT e.source, e.dedupe_key, e.id FROM events e
JOIN UNNEST($1::text[], $2::text[]) AS k (source, dedupe_key) ON e.source = k.source AND e.dedupe_key = k.dedupe_key";

/// Writes `events`; the outer error means nothing was committed. An inner error (only possible
/// for a duplicate whose first event could not be read) leaves the others' results standing.
pub(super) async fn insert_events(
    pool: &Pool,
    events: &[&EventRow],
    now: Millis,
) -> Result<Vec<Result<Enqueued, StoreError>>, BatchError> {
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
    // Each delivery's id derives from its event's seq and its slot (see `delivery_ids`).
    let paths: Vec<Cow<'_, str>> = events.iter().map(|e| text(&e.path)).collect();
    let paths: Vec<&str> = paths.iter().map(|p| p.as_ref()).collect();
    let traceparents: Vec<Option<&str>> = events.iter().map(|e| e.traceparent.as_deref()).collect();
    let (mut d_events, mut d_names, mut d_slots, mut d_filtered) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut d_keys = Vec::new();
    for e in events {
        for (slot, (d, filtered, key)) in (0..DELIVERY_SLOTS).zip(&e.deliveries) {
            d_events.push(e.id.as_str());
            d_names.push(d.as_str());
            d_slots.push(slot);
            d_filtered.push(filtered.as_deref().map(text));
            d_keys.push(key.as_deref().map(text));
        }
    }
    let d_filtered: Vec<Option<&str>> = d_filtered.iter().map(|f| f.as_deref()).collect();
    let d_keys: Vec<Option<&str>> = d_keys.iter().map(|k| k.as_deref()).collect();

    let client = pool.get().await?;
    let stmt = client.prepare_cached(ENQUEUE).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &ids,
                &sources,
                &keys,
                &received,
                &content_types,
                &headers,
                &bodies,
                &d_events,
                &d_names,
                &now,
                &d_slots,
                &DELIVERY_SLOTS,
                &paths,
                &d_filtered,
                &d_keys,
                &traceparents,
            ],
        )
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
