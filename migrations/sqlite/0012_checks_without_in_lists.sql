-- Schema version 12: the same rules, written so that SQLite tests them without building a table.
-- SQLite evaluates `x IN (a, b, c, ...)` of more than two values by filling an ephemeral b-tree with
-- the list, every time it evaluates it: the status CHECK (six values) at every insert and update of
-- a delivery, and the WHERE of deliveries_ordered (three values) for the old and the new row of every
-- update, so a delivery's insert, claim and record built five such tables (docs/PERFORMANCE.md,
-- "Session 12"). As ORs of equalities they are a few comparisons. A CHECK changes only by
-- rebuilding the table (about 1.4 s per 500,000 deliveries, once, at the upgrade).
CREATE TABLE deliveries_v12 (
    id              INTEGER PRIMARY KEY,         -- event_seq * 1024 + slot
    event_seq       INTEGER NOT NULL,
    destination     TEXT    NOT NULL,
    status          TEXT    NOT NULL
        CHECK (status = 'pending' OR status = 'in_flight' OR status = 'succeeded' OR status = 'failed'
               OR status = 'dead' OR status = 'filtered'),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    claim           INTEGER,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL,
    ordering_key    TEXT
);
INSERT INTO deliveries_v12 (id, event_seq, destination, status, attempts, next_attempt_at, lease_until, claim, last_error, updated_at, ordering_key)
    SELECT id, event_seq, destination, status, attempts, next_attempt_at, lease_until, claim, last_error, updated_at, ordering_key
    FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v12 RENAME TO deliveries;
CREATE INDEX deliveries_due      ON deliveries (destination, next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_lease    ON deliveries (destination, lease_until)     WHERE status = 'in_flight';
CREATE INDEX deliveries_dead     ON deliveries (destination)                  WHERE status = 'dead';
CREATE INDEX deliveries_filtered ON deliveries (destination)                  WHERE status = 'filtered';
CREATE INDEX deliveries_failed   ON deliveries (destination)                  WHERE status = 'failed';
-- The claim's test for an open earlier delivery of the same key is written the same way
-- (`key_free!` in src/store/rules.rs), so that it implies this WHERE and uses the index.
CREATE INDEX deliveries_ordered  ON deliveries (destination, ordering_key, id)
    WHERE ordering_key IS NOT NULL AND (status = 'pending' OR status = 'failed' OR status = 'in_flight');
