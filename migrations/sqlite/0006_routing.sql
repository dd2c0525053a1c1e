-- Schema version 6: routing rules (CONTRACT §7). A delivery may be `filtered` (its filter left it
-- out; `last_error` says why), so the CHECK of version 5 is rebuilt with it; the events keep their
-- request target (path and query) for the document that transforms read at each attempt.
CREATE TABLE deliveries_v6 (
    id              INTEGER PRIMARY KEY,         -- event_seq * 1024 + slot
    event_seq       INTEGER NOT NULL,
    destination     TEXT    NOT NULL,
    status          TEXT    NOT NULL
        CHECK (status IN ('pending', 'in_flight', 'succeeded', 'failed', 'dead', 'filtered')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    claim           INTEGER,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL
);
INSERT INTO deliveries_v6 (id, event_seq, destination, status, attempts, next_attempt_at, lease_until, claim, last_error, updated_at)
    SELECT id, event_seq, destination, status, attempts, next_attempt_at, lease_until, claim, last_error, updated_at
    FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v6 RENAME TO deliveries;
CREATE INDEX deliveries_due      ON deliveries (destination, next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_lease    ON deliveries (destination, lease_until)     WHERE status = 'in_flight';
CREATE INDEX deliveries_dead     ON deliveries (destination)                  WHERE status = 'dead';
CREATE INDEX deliveries_filtered ON deliveries (destination)                  WHERE status = 'filtered';
ALTER TABLE events ADD COLUMN path TEXT;
