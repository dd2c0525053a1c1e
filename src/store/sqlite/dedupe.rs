//! Dedupe keys, kept so that keys in no order (the default SHA-256 of the body, providers' random
//! ids) do not dirty a page of a large index per event at every commit.
//!
//! A key is 16 bytes of SHA-256(source, 0x00, dedupe key), in the `dedupe` table (WITHOUT ROWID,
//! keyed `(key, seq)`). The keys of the newest events (seq after `dedupe_merged`) live only in the
//! writer's memory, the [`Tail`]; once it holds [`MERGE_AT`] of them, they are sorted and merged into
//! `dedupe` a run of [`MERGE_CHUNK`] neighbours per transaction, so that each run touches a narrow
//! range of its leaves. A match of the 16 bytes, in memory or in the table, is checked against the
//! event's own source and key: a collision never makes two events one, and an entry left behind
//! by a purged or rolled-back event matches nothing.
//!
//! Across restarts: events are durable, the tail is not. At open, [`merge_unmerged`] puts the keys
//! of every event after `dedupe_merged` into the table before the writer starts.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::Millis;

pub(super) type Key = [u8; 16];

/// The tail's size at which it is merged into the table (small in unit tests, to merge often).
pub(super) const MERGE_AT: usize = if cfg!(test) { 64 } else { 32 * 1024 };
/// Keys merged per transaction: neighbours in key order, so one run touches few leaves.
const MERGE_CHUNK: usize = if cfg!(test) { 16 } else { 1024 };
/// Events read per transaction when merging at open.
const OPEN_CHUNK: i64 = 256 * 1024;

pub(super) fn key_of(source: &str, dedupe_key: &str) -> Key {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0]);
    h.update(dedupe_key.as_bytes());
    let mut key = [0; 16];
    key.copy_from_slice(&h.finalize()[..16]);
    key
}

/// The keys of the events after `dedupe_merged`, each to its seq, and the undo log of what the open
/// transaction changed in it (a rolled-back event's seq is reused by the next one).
#[derive(Default)]
pub(super) struct Tail {
    map: HashMap<Key, i64>,
    undo: Vec<(Key, Option<i64>)>,
    merging: Option<Merge>,
}

/// A sorted snapshot of the tail, merged a chunk at a time; `upto` becomes `dedupe_merged` at the end.
struct Merge {
    entries: Vec<(Key, i64)>,
    next: usize,
    upto: i64,
}

impl Tail {
    pub(super) fn get(&self, key: &Key) -> Option<i64> {
        self.map.get(key).copied()
    }

    pub(super) fn insert(&mut self, key: Key, seq: i64) {
        let before = self.map.insert(key, seq);
        self.undo.push((key, before));
    }

    /// Forgets `key` if it names `seq` (a purged event).
    pub(super) fn remove(&mut self, key: &Key, seq: i64) {
        if self.map.get(key) == Some(&seq) {
            self.map.remove(key);
            self.undo.push((*key, Some(seq)));
        }
    }

    /// Where the undo log stands: what [`Tail::undo_to`] goes back to.
    pub(super) fn mark(&self) -> usize {
        self.undo.len()
    }

    /// Undoes the changes made since `mark` (their transaction or savepoint was rolled back).
    pub(super) fn undo_to(&mut self, mark: usize) {
        for (key, before) in self.undo.drain(mark..).rev() {
            match before {
                Some(seq) => self.map.insert(key, seq),
                None => self.map.remove(&key),
            };
        }
    }

    /// The open transaction committed: its changes stay.
    pub(super) fn committed(&mut self) {
        self.undo.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether [`Tail::merge_some`] has work: a merge under way, or a tail large enough for one.
    pub(super) fn wants_merge(&self) -> bool {
        self.merging.is_some() || self.map.len() >= MERGE_AT
    }

    /// Merges the next chunk of keys into `dedupe` in a transaction of its own (no job is open),
    /// starting a merge of the whole tail if none is under way. The last chunk also moves
    /// `dedupe_merged`, and only then are the merged keys dropped from memory. On an error the
    /// chunk is rolled back and tried again next time.
    pub(super) fn merge_some(&mut self, c: &Connection) -> rusqlite::Result<()> {
        let merge = self.merging.get_or_insert_with(|| {
            let mut entries: Vec<(Key, i64)> = self.map.iter().map(|(k, s)| (*k, *s)).collect();
            entries.sort_unstable();
            let upto = entries.iter().map(|e| e.1).max().unwrap_or(0);
            Merge { entries, next: 0, upto }
        });
        let end = (merge.next + MERGE_CHUNK).min(merge.entries.len());
        let last = end == merge.entries.len();
        let run = || -> rusqlite::Result<()> {
            c.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            insert_keys(c, &merge.entries[merge.next..end])?;
            if last {
                // Every event up to `upto` has its key in the table (or straight in it, see
                // `queries::enqueue`); later events' keys stay in memory.
                c.prepare_cached("UPDATE dedupe_merged SET seq = max(seq, ?1)")?.execute([merge.upto])?;
            }
            c.prepare_cached("COMMIT")?.execute([])?;
            Ok(())
        };
        if let Err(e) = run() {
            if !c.is_autocommit() {
                let _ = c.execute_batch("ROLLBACK");
            }
            return Err(e);
        }
        merge.next = end;
        if last {
            let merge = self.merging.take().expect("a merge is under way");
            for (key, seq) in &merge.entries {
                if self.map.get(key) == Some(seq) {
                    self.map.remove(key);
                }
            }
            tracing::debug!(keys = merge.entries.len(), upto = merge.upto, "dedupe keys merged");
        }
        Ok(())
    }
}

fn insert_keys(c: &Connection, keys: &[(Key, i64)]) -> rusqlite::Result<()> {
    let mut insert = c.prepare_cached("INSERT OR IGNORE INTO dedupe (key, seq) VALUES (?1, ?2)")?;
    for (key, seq) in keys {
        insert.execute(params![&key[..], seq])?;
    }
    Ok(())
}

/// The stored event of `source` and `dedupe_key` whose key is `key`, if any: the tail's first, then
/// the table's (usually one row; more only after a collision or a purged event's leftover).
pub(super) fn find(c: &Connection, tail: &Tail, key: &Key, source: &str, dedupe_key: &str) -> rusqlite::Result<Found> {
    let mut verify = c.prepare_cached("SELECT id FROM events WHERE seq = ?1 AND source = ?2 AND dedupe_key = ?3")?;
    let mut found = Found::None;
    if let Some(seq) = tail.get(key) {
        if let Some(id) = verify.query_row(params![seq, source, dedupe_key], |r| r.get(0)).optional()? {
            return Ok(Found::Event(id));
        }
        // A live event of another key under the same 16 bytes keeps its place in the tail.
        let live: Option<i64> =
            c.prepare_cached("SELECT seq FROM events WHERE seq = ?1")?.query_row([seq], |r| r.get(0)).optional()?;
        if live.is_some() {
            found = Found::Collision;
        }
    }
    let mut stored = c.prepare_cached("SELECT seq FROM dedupe WHERE key = ?1")?;
    let seqs = stored.query_map([&key[..]], |r| r.get::<_, i64>(0))?;
    for seq in seqs {
        if let Some(id) = verify.query_row(params![seq?, source, dedupe_key], |r| r.get(0)).optional()? {
            return Ok(Found::Event(id));
        }
    }
    Ok(found)
}

/// What [`find`] found.
pub(super) enum Found {
    /// The stored event's id: the new one is a duplicate of it.
    Event(String),
    /// Nothing.
    None,
    /// Nothing, but the tail holds another live event under the same 16 bytes: the new event's
    /// key goes straight into the table.
    Collision,
}

/// Records a new event's key: in the tail, or (after a collision) straight in the table.
pub(super) fn add(c: &Connection, tail: &mut Tail, key: Key, seq: i64, found: Found) -> rusqlite::Result<()> {
    match found {
        Found::Collision => insert_keys(c, &[(key, seq)]),
        _ => {
            tail.insert(key, seq);
            Ok(())
        }
    }
}

/// Forgets a purged event's key, in the table and in the tail.
pub(super) fn forget(
    c: &Connection,
    tail: &mut Tail,
    source: &str,
    dedupe_key: &str,
    seq: i64,
) -> rusqlite::Result<()> {
    let key = key_of(source, dedupe_key);
    c.prepare_cached("DELETE FROM dedupe WHERE key = ?1 AND seq = ?2")?.execute(params![&key[..], seq])?;
    tail.remove(&key, seq);
    Ok(())
}

/// At open, before the writer runs: merges the keys of every event after `dedupe_merged` (those the
/// last process held in memory; after the upgrade to schema 9, all of them).
pub(super) fn merge_unmerged(c: &Connection) -> rusqlite::Result<()> {
    let started = std::time::Instant::now();
    let mut merged = 0usize;
    loop {
        let from: i64 = c.query_row("SELECT seq FROM dedupe_merged", [], |r| r.get(0))?;
        let mut keys: Vec<(Key, i64)> = c
            .prepare("SELECT seq, source, dedupe_key FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?
            .query_map(params![from, OPEN_CHUNK], |r| {
                let seq: i64 = r.get(0)?;
                Ok((key_of(r.get_ref(1)?.as_str()?, r.get_ref(2)?.as_str()?), seq))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let Some(upto) = keys.last().map(|k| k.1) else { break };
        keys.sort_unstable();
        c.execute_batch("BEGIN IMMEDIATE")?;
        let done = insert_keys(c, &keys)
            .and_then(|()| c.execute("UPDATE dedupe_merged SET seq = ?1", [upto]).map(|_| ()))
            .and_then(|()| c.execute_batch("COMMIT"));
        if let Err(e) = done {
            let _ = c.execute_batch("ROLLBACK");
            return Err(e);
        }
        merged += keys.len();
    }
    if merged > 0 {
        tracing::info!(keys = merged, took_ms = started.elapsed().as_millis() as Millis, "dedupe keys merged at open");
    }
    Ok(())
}
