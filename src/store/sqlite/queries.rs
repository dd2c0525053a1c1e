//! The SQL of each write, run by the writer thread inside its batch transaction.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::*;

/// Only this process uses the file, so whatever is in flight was interrupted by a crash or a
/// shutdown past its grace period: put it back in the queue and say so in the attempt log.
pub(super) fn requeue_interrupted(conn: &Connection, now: Millis) -> rusqlite::Result<()> {
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

pub(super) fn enqueue(c: &Connection, ev: &EventRow, time: &BatchTime) -> rusqlite::Result<Enqueued> {
    let received_at = time.received(ev.received_at);
    let mut tail = time.tail.borrow_mut();
    let key = dedupe::key_of(&ev.source, &ev.dedupe_key);
    let found = dedupe::find(c, &tail, &key, &ev.source, &ev.dedupe_key)?;
    if let dedupe::Found::Event(event_id) = found {
        return Ok(Enqueued::Duplicate { event_id });
    }
    c.prepare_cached(
        "INSERT INTO events (id, source, dedupe_key, received_at, content_type, headers, body, path, traceparent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        ev.id,
        ev.source,
        ev.dedupe_key,
        received_at,
        ev.content_type,
        ev.headers_json,
        &ev.body[..],
        ev.path,
        ev.traceparent
    ])?;
    let seq = c.last_insert_rowid();
    dedupe::add(c, &mut tail, key, seq, found)?;
    // If this transaction is rolled back, `newest` stays ahead of what is stored: later events are
    // held a few ms later than they would be, never earlier.
    time.newest.set(received_at);
    let now = time.now;
    let mut insert = c.prepare_cached(
        "INSERT INTO deliveries (id, event_seq, destination, status, attempts, next_attempt_at, updated_at, last_error, ordering_key)
         VALUES (?1, ?2, ?3, CASE WHEN ?5 IS NULL THEN 'pending' ELSE 'filtered' END, 0, ?4, ?4, ?5, ?6)",
    )?;
    let (first, _) = delivery_ids(seq);
    let mut handoff = time.handoff.borrow_mut();
    for (slot, (d, filtered, key)) in (0..DELIVERY_SLOTS).zip(&ev.deliveries) {
        let id = first + slot;
        // A parked claim takes it at once (`handoff.rs`): inserted claimed, never pending.
        if let (None, None, Some(to)) = (filtered, key, handoff.slot(d)) {
            c.prepare_cached(
                "INSERT INTO deliveries (id, event_seq, destination, status, attempts, next_attempt_at, updated_at, lease_until, claim)
                 VALUES (?1, ?2, ?3, 'in_flight', 1, ?4, ?4, ?5, ?6)",
            )?
            .execute(params![id, seq, d, now, now + to.lease_ms, to.token])?;
            let claimed = Claimed {
                delivery_id: id,
                claim: to.token,
                attempt: 1,
                event_id: ev.id.clone(),
                source: ev.source.clone(),
                destination: d.clone(),
                content_type: ev.content_type.clone(),
                headers_json: ev.headers_json.clone(),
                body: ev.body.clone(),
                received_at,
                path: ev.path.clone(),
                traceparent: ev.traceparent.clone(),
            };
            handoff.hand(&to, claimed);
            continue;
        }
        handoff.pending |= filtered.is_none();
        insert.execute(params![id, seq, d, now, filtered, key])?;
    }
    Ok(Enqueued::Queued { event_id: ev.id.clone() })
}

/// One destination's deliveries whose lease ran out, then those that are due, each in the order of
/// its index (one range of it per destination). No LIMIT: SQLite re-prepares a statement whose
/// bound LIMIT changes, which would be every claim; the index gives the order, so `claim` just
/// stops stepping.
/// A keyed delivery is skipped while an earlier one of its destination and key is open (CONTRACT §8).
pub(super) const CLAIM_EXPIRED: &str = concat!(
    "SELECT id, attempts, event_seq FROM deliveries d
     WHERE status = 'in_flight' AND destination = ?1 AND lease_until <= ?2 AND ",
    key_free!(),
    " ORDER BY lease_until"
);
pub(super) const CLAIM_DUE: &str = concat!(
    "SELECT id, attempts, event_seq FROM deliveries d
     WHERE status IN ('pending', 'failed') AND destination = ?1 AND next_attempt_at <= ?2 AND ",
    key_free!(),
    " ORDER BY next_attempt_at"
);

/// Also, if `park`, what the claim could take if parked (`handoff.rs`): the wants no rate limit,
/// pause or circuit gates.
pub(super) fn claim(
    c: &Connection,
    request: &ClaimRequest,
    now: Millis,
    park: bool,
) -> rusqlite::Result<(Vec<Claimed>, Vec<Room>)> {
    let token = claim_token();
    let mut candidates = Vec::with_capacity(request.wants.len());
    let mut gated = Vec::with_capacity(request.wants.len());
    let mut rooms = Vec::new();
    for (want, max) in request.open_wants() {
        // Pause, the circuit and the rate limit: what the destination's state lets this claim take.
        let state = super::control::state(c, &want.destination)?;
        if park && want.rate.is_none() && state.gate(None, now) == usize::MAX {
            let lease_ms = want.lease.as_millis() as Millis;
            rooms.push(Room { destination: want.destination.clone(), left: max, lease_ms });
        }
        let max = max.min(state.gate(want.rate.as_ref(), now));
        gated.push((state, want));
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
    let mut event = c.prepare_cached(
        "SELECT id, source, content_type, body, received_at, headers, path, traceparent FROM events WHERE seq = ?1",
    )?;
    let picked = interleave(candidates, request.total);
    for (state, want) in &gated {
        let n = picked.iter().filter(|p| std::ptr::eq(p.3, *want)).count();
        if let Some(next) = state.after_claim(n, want.rate.as_ref(), want.lease.as_millis() as i64, now) {
            super::control::save(c, &next)?;
        }
    }
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
                path: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                traceparent: r.get(7)?,
            })
        })?;
        out.push(claimed);
    }
    Ok((out, rooms))
}

/// Moves the delivery only if this claim still owns it.
pub(super) const RECORD_OUTCOME: &str = "UPDATE deliveries SET status = ?1, next_attempt_at = ?2, lease_until = NULL, claim = NULL, last_error = ?3, updated_at = ?4
     WHERE id = ?5 AND claim = ?6 AND status = 'in_flight'";
/// A success was delivered: it stands whatever the claim (a newer claim's attempt is then a
/// duplicate the receiver dedupes by `webhook-id`), unless the delivery already succeeded.
pub(super) const RECORD_SUCCESS: &str = "UPDATE deliveries SET status = 'succeeded', next_attempt_at = ?1, lease_until = NULL, claim = NULL, last_error = NULL, updated_at = ?1
     WHERE id = ?2 AND status <> 'succeeded'";

pub(super) fn record(c: &Connection, r: &AttemptRecord, now: Millis) -> rusqlite::Result<bool> {
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
    let (status, next) = r.next.status_at(now);
    let changed = if r.next == NextState::Succeeded {
        c.prepare_cached(RECORD_SUCCESS)?.execute(params![now, r.delivery_id])?
    } else {
        c.prepare_cached(RECORD_OUTCOME)?.execute(params![status, next, r.error, now, r.delivery_id, r.claim])?
    };
    Ok(changed == 1)
}

pub(super) const REQUEUE: &str = "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?1, lease_until = NULL, claim = NULL, updated_at = ?1";

pub(super) fn replay_event(
    c: &Connection,
    id: &str,
    destination: Option<&str>,
    now: Millis,
) -> rusqlite::Result<Option<u64>> {
    let seq: Option<i64> = c.query_row("SELECT seq FROM events WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    let Some(seq) = seq else { return Ok(None) };
    let (first, last) = delivery_ids(seq);
    let n = c.execute(
        &format!(
            "{REQUEUE} WHERE id BETWEEN ?2 AND ?3 AND status <> 'in_flight'
             AND (destination = ?4 OR (?4 IS NULL AND status <> 'filtered'))"
        ),
        params![now, first, last, destination],
    )?;
    Ok(Some(n as u64))
}

pub(super) fn replay_deliveries(c: &Connection, f: &ReplayFilter, now: Millis) -> rusqlite::Result<u64> {
    let n = c.execute(
        &format!(
            "{REQUEUE} WHERE status = ?2 AND status <> 'in_flight' AND (?3 IS NULL OR destination = ?3)
             AND (?4 IS NULL OR event_seq IN (SELECT seq FROM events WHERE source = ?4))"
        ),
        params![now, f.status, f.destination, f.source],
    )?;
    Ok(n as u64)
}

pub(super) fn purge(c: &Connection, cutoff: Millis, batch: usize, time: &BatchTime) -> rusqlite::Result<u64> {
    let Some(end) = first_seq_at(c, cutoff)? else { return Ok(0) };
    let events: Vec<(i64, String, String)> = c
        .prepare_cached(&format!(
            "SELECT seq, source, dedupe_key FROM events e WHERE seq < ?1 AND NOT EXISTS (
                 SELECT 1 FROM deliveries d WHERE {} AND d.status NOT IN ('succeeded', 'dead', 'filtered'))
             ORDER BY seq LIMIT ?2",
            deliveries_of_e!()
        ))?
        .query_map(params![end, batch as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut tail = time.tail.borrow_mut();
    for (seq, source, dedupe_key) in &events {
        let seq = *seq;
        dedupe::forget(c, &mut tail, source, dedupe_key, seq)?;
        let (first, last) = delivery_ids(seq);
        c.prepare_cached("DELETE FROM attempts WHERE delivery_id BETWEEN ?1 AND ?2")?.execute([first, last])?;
        c.prepare_cached("DELETE FROM deliveries WHERE id BETWEEN ?1 AND ?2")?.execute([first, last])?;
        c.prepare_cached("DELETE FROM events WHERE seq = ?1")?.execute([seq])?;
    }
    Ok(events.len() as u64)
}

/// The seq that splits the events at time `t`: every event before it was received before `t`,
/// every event from it on at or after `t`. None when there are no events. A binary search over
/// seq, which works because received_at never decreases with seq (see `BatchTime`); no index.
pub(super) fn first_seq_at(c: &Connection, t: Millis) -> rusqlite::Result<Option<i64>> {
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
