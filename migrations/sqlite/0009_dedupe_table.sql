-- Schema version 9: the dedupe keys in a compact table of their own (docs/PERFORMANCE.md, session 8).
-- Real providers' keys (and the default, the SHA-256 of the body) come in no order, so each new key
-- of the old UNIQUE (source, dedupe_key) index dirtied a page of its own at every commit. Now a key
-- is 16 bytes of SHA-256(source, 0x00, dedupe key) in `dedupe`, and the writer keeps the keys of the
-- newest events in memory and merges them into `dedupe` in sorted runs; `dedupe_merged` says up to
-- which event seq they are in it. A match of the 16 bytes is checked against the event's own source
-- and key, so a collision never makes two events one. At open, the keys of every event after
-- `dedupe_merged` are merged (here: all of them, the first time).
CREATE TABLE dedupe (
    key BLOB    NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
CREATE TABLE dedupe_merged (
    seq INTEGER NOT NULL
);
INSERT INTO dedupe_merged (seq) VALUES (0);
-- The events table without its UNIQUE (source, dedupe_key): a rebuild, since SQLite cannot drop it.
CREATE TABLE events_v9 (
    seq          INTEGER PRIMARY KEY,            -- insertion order: the admin API's cursor
    id           TEXT    NOT NULL UNIQUE,
    source       TEXT    NOT NULL,
    dedupe_key   TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    content_type TEXT,
    headers      TEXT    NOT NULL,               -- JSON object, sensitive values redacted
    body         BLOB    NOT NULL,
    path         TEXT
);
INSERT INTO events_v9 (seq, id, source, dedupe_key, received_at, content_type, headers, body, path)
    SELECT seq, id, source, dedupe_key, received_at, content_type, headers, body, path FROM events;
DROP TABLE events;
ALTER TABLE events_v9 RENAME TO events;
