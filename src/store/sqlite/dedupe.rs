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
//!
//! Most keys are new, and a new key is in neither place: a [`Filter`] of every key the table holds
//! (a Bloom filter kept by the writer) answers "not in the table" for all but ~1% of them without a
//! seek of its B-tree. Its "maybe" is always looked up, so it can only cost a seek. It is filled
//! from the table a range of keys at a time between batches, so an open reads nothing for it (on a
//! cold cache that would be a read of the whole table); until it is filled every key is looked up.
//! When it is full, a filter twice the size is filled the same way beside it, while the full one
//! still answers.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::Millis;

pub(super) type Key = [u8; 16];

/// The tail's size at which it is merged into the table (small in unit tests, to merge often).
pub(super) const MERGE_AT: usize = if cfg!(test) { 64 } else { 128 * 1024 };
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
    /// The keys the table may hold; None: not filled yet (then every key is looked up).
    filter: Option<Filter>,
    /// A filter being filled from the table (at open, or because the current one is full), and
    /// the last key read into it.
    growing: Option<(Filter, Option<Key>)>,
}

/// A Bloom filter of 16-byte keys, which are SHA-256 already: its [`HASHES`] positions come from
/// the key's two halves (double hashing). About 0.8% false "maybe"s at [`BITS_PER_KEY`].
struct Filter {
    bits: Vec<u64>,
    mask: u64,
    /// Keys it takes before its false "maybe"s grow past the design's.
    room: usize,
}

const HASHES: u64 = 7;
const BITS_PER_KEY: usize = 10;
/// Keys a filter is sized for at least, and how many times the keys it holds when it is built
/// (the least: 32M bits, 4 MiB, room for 3.3M keys).
const FILTER_MIN_KEYS: usize = if cfg!(test) { 256 } else { 1 << 20 };
const FILTER_GROWTH: usize = 2;
/// Keys read from the table per step of filling a filter (~60 leaves: a millisecond or two when
/// cached).
const GROW_CHUNK: i64 = if cfg!(test) { 100 } else { 8 * 1024 };

impl Filter {
    fn for_keys(keys: usize) -> Filter {
        let bits = (keys.max(FILTER_MIN_KEYS) * FILTER_GROWTH * BITS_PER_KEY).next_power_of_two();
        Filter { bits: vec![0; bits / 64], mask: bits as u64 - 1, room: bits / BITS_PER_KEY }
    }

    /// Keys it was built for, about.
    fn size(&self) -> usize {
        self.bits.len() * 64 / BITS_PER_KEY
    }

    fn positions(key: &Key) -> impl Iterator<Item = u64> {
        let [a, b] = [&key[..8], &key[8..]].map(|h| u64::from_le_bytes(h.try_into().expect("8 bytes")));
        (0..HASHES).map(move |i| a.wrapping_add(i.wrapping_mul(b | 1)))
    }

    /// Adds `key`; false when the filter is full (it still holds the key: its false "maybe"s
    /// grow).
    fn add(&mut self, key: &Key) -> bool {
        for p in Self::positions(key) {
            let p = p & self.mask;
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
        self.room = self.room.saturating_sub(1);
        self.room > 0
    }

    fn may_hold(&self, key: &Key) -> bool {
        Self::positions(key).all(|p| {
            let p = p & self.mask;
            self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0
        })
    }
}

/// A sorted snapshot of the tail, merged a chunk at a time; `upto` becomes `dedupe_merged` at the end.
struct Merge {
    entries: Vec<(Key, i64)>,
    next: usize,
    upto: i64,
}

impl Tail {
    /// An empty tail, its filter to be filled from the table (after [`merge_unmerged`]), sized for
    /// the events merged so far: the table holds at most one key per event.
    pub(super) fn of_table(c: &Connection) -> rusqlite::Result<Tail> {
        let merged: i64 = c.query_row("SELECT seq FROM dedupe_merged", [], |r| r.get(0))?;
        Ok(Tail { growing: Some((Filter::for_keys(merged.max(0) as usize), None)), ..Tail::default() })
    }

    pub(super) fn get(&self, key: &Key) -> Option<i64> {
        self.map.get(key).copied()
    }

    /// Whether the table may hold `key`: false only if it certainly does not.
    fn may_be_stored(&self, key: &Key) -> bool {
        self.filter.as_ref().is_none_or(|f| f.may_hold(key))
    }

    /// `keys` are written to the table (or may be: a rolled-back write leaves a false "maybe").
    /// A filter that fills starts a larger one growing.
    fn stored(&mut self, keys: impl IntoIterator<Item = Key>) {
        for key in keys {
            if let Some((next, _)) = &mut self.growing {
                next.add(&key);
            }
            if let Some(filter) = &mut self.filter
                && !filter.add(&key)
                && self.growing.is_none()
            {
                tracing::debug!(keys = filter.size(), "dedupe filter full; filling a larger one");
                self.growing = Some((Filter::for_keys(filter.size()), None));
            }
        }
    }

    /// Reads the next range of the table's keys into the growing filter; the last one puts it in
    /// place.
    fn grow_some(&mut self, c: &Connection) -> rusqlite::Result<()> {
        let Some((next, after)) = &mut self.growing else { return Ok(()) };
        match fill(c, next, *after)? {
            Some(last) => *after = Some(last),
            None => {
                let (next, _) = self.growing.take().expect("a filter is growing");
                tracing::debug!(keys = next.size(), "dedupe filter filled");
                self.filter = Some(next);
            }
        }
        Ok(())
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

    /// Whether [`Tail::work_some`] has work: a merge under way, a tail large enough for one, or a
    /// filter growing.
    pub(super) fn has_work(&self) -> bool {
        self.wants_merge() || self.growing.is_some()
    }

    /// A merge under way, or a tail large enough for one.
    fn wants_merge(&self) -> bool {
        self.merging.is_some() || self.map.len() >= MERGE_AT
    }

    /// One step of the work that answers nobody: merging the tail, else growing the filter.
    pub(super) fn work_some(&mut self, c: &Connection) -> rusqlite::Result<()> {
        if self.wants_merge() { self.merge_some(c) } else { self.grow_some(c) }
    }

    /// Merges the next chunk of keys into `dedupe` in a transaction of its own (no job is open),
    /// starting a merge of the whole tail if none is under way. The last chunk also moves
    /// `dedupe_merged`, and only then are the merged keys dropped from memory. On an error the
    /// chunk is rolled back and tried again next time.
    fn merge_some(&mut self, c: &Connection) -> rusqlite::Result<()> {
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
        let chunk: Vec<Key> = merge.entries[merge.next..end].iter().map(|e| e.0).collect();
        merge.next = end;
        self.stored(chunk);
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

/// Adds to `filter` up to [`GROW_CHUNK`] of the table's keys after `after` (from the first), in key
/// order; the last key read, or None when none is left after it.
fn fill(c: &Connection, filter: &mut Filter, after: Option<Key>) -> rusqlite::Result<Option<Key>> {
    let mut read = c.prepare_cached("SELECT key FROM dedupe WHERE key > ?1 ORDER BY key LIMIT ?2")?;
    let mut rows = read.query(params![after.as_ref().map_or(&[][..], |k| &k[..]), GROW_CHUNK])?;
    let (mut last, mut n) = (None, 0);
    while let Some(r) = rows.next()? {
        n += 1;
        if let Ok(key) = Key::try_from(r.get_ref(0)?.as_blob()?) {
            filter.add(&key);
            last = Some(key);
        }
    }
    Ok(if n < GROW_CHUNK { None } else { last })
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
    if !tail.may_be_stored(key) {
        return Ok(found);
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
        Found::Collision => {
            insert_keys(c, &[(key, seq)])?;
            tail.stored([key]);
            Ok(())
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Never "no" for a key it holds; "maybe" for about 1% of the others when it is full.
    #[test]
    fn the_filter_holds_what_it_was_given_and_little_else() {
        let mut filter = Filter::for_keys(5_000);
        let keys: Vec<Key> = (0..filter.room - 1).map(|i| key_of("s", &i.to_string())).collect();
        assert!(keys.iter().all(|k| filter.add(k)));
        assert!(keys.iter().all(|k| filter.may_hold(k)));
        let others = (0..100_000).filter(|i| filter.may_hold(&key_of("other", &i.to_string()))).count();
        assert!(others < 2_000, "{others} of 100,000 absent keys said maybe");
        assert!(!filter.add(&key_of("s", "one more")), "full at its room");
    }
}
