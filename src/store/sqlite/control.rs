//! The destination state table (CONTRACT §8) on SQLite: read and written by the writer thread's
//! jobs (the claim job gates each destination and writes back what it took), read by the readers.
//! The rules themselves are `store/control.rs`.

use rusqlite::{Connection, OptionalExtension, params};

use super::*;

const COLUMNS: &str = "destination, paused, circuit, failures, cooldown_ms, open_until, trial_until, tokens, tokens_at,
    per_second, last_error, last_success_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DestinationState> {
    Ok(DestinationState {
        destination: r.get(0)?,
        paused: r.get::<_, i64>(1)? != 0,
        circuit: r.get(2)?,
        failures: r.get::<_, i64>(3)?.max(0) as u32,
        cooldown_ms: r.get(4)?,
        open_until: r.get(5)?,
        trial_until: r.get(6)?,
        tokens: r.get(7)?,
        tokens_at: r.get(8)?,
        per_second: r.get(9)?,
        last_error: r.get(10)?,
        last_success_at: r.get(11)?,
    })
}

/// The state of `destination`, or a new one.
pub(super) fn state(c: &Connection, destination: &str) -> rusqlite::Result<DestinationState> {
    let found = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM destination_state WHERE destination = ?1"))?
        .query_row([destination], row)
        .optional()?;
    Ok(found.unwrap_or_else(|| DestinationState::new(destination)))
}

pub(super) fn save(c: &Connection, s: &DestinationState) -> rusqlite::Result<()> {
    c.prepare_cached(&format!(
        "INSERT OR REPLACE INTO destination_state ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        s.destination,
        s.paused as i64,
        s.circuit,
        s.failures,
        s.cooldown_ms,
        s.open_until,
        s.trial_until,
        s.tokens,
        s.tokens_at,
        s.per_second,
        s.last_error,
        s.last_success_at
    ])?;
    Ok(())
}

pub(super) fn set_paused(c: &Connection, destination: &str, paused: bool) -> rusqlite::Result<()> {
    let mut s = state(c, destination)?;
    if s.paused != paused {
        s.paused = paused;
        save(c, &s)?;
    }
    Ok(())
}

pub(super) fn note_attempt(c: &Connection, note: &AttemptNote) -> rusqlite::Result<Option<CircuitChange>> {
    let s = state(c, &note.destination)?;
    match s.after_attempt(note) {
        None => Ok(None),
        Some((next, change)) => {
            save(c, &next)?;
            Ok(change)
        }
    }
}

/// Deliveries of `destination` in each status that waits or failed, each counted on a partial index
/// without reading a row (the due index holds no status: pending is due less failed).
pub(super) fn counts(c: &Connection, destination: &str) -> rusqlite::Result<Vec<(DeliveryStatus, u64)>> {
    let count = |sql: &str| -> rusqlite::Result<u64> {
        Ok(c.prepare_cached(sql)?.query_row([destination], |r| r.get::<_, i64>(0))?.max(0) as u64)
    };
    let due = count("SELECT COUNT(*) FROM deliveries WHERE destination = ?1 AND status IN ('pending', 'failed')")?;
    let failed = count("SELECT COUNT(*) FROM deliveries WHERE destination = ?1 AND status = 'failed'")?;
    let in_flight = count("SELECT COUNT(*) FROM deliveries WHERE destination = ?1 AND status = 'in_flight'")?;
    let dead = count("SELECT COUNT(*) FROM deliveries WHERE destination = ?1 AND status = 'dead'")?;
    Ok(vec![
        (DeliveryStatus::Pending, due.saturating_sub(failed)),
        (DeliveryStatus::Failed, failed),
        (DeliveryStatus::InFlight, in_flight),
        (DeliveryStatus::Dead, dead),
    ])
}
