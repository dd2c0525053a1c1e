-- hookgate embedded store, schema version 1. Times are milliseconds since the Unix epoch.
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY,            -- insertion order: the admin API's cursor
    id           TEXT    NOT NULL UNIQUE,
    source       TEXT    NOT NULL,
    dedupe_key   TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    content_type TEXT,
    headers      TEXT    NOT NULL,               -- JSON object, sensitive values redacted
    body         BLOB    NOT NULL,
    UNIQUE (source, dedupe_key)
);

CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY,
    event_seq       INTEGER NOT NULL,
    destination     TEXT    NOT NULL,
    status          TEXT    NOT NULL,            -- pending | in_flight | succeeded | failed | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    claim           INTEGER,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL
);
-- Partial indexes: the queue only ever scans what is due or leased.
CREATE INDEX IF NOT EXISTS deliveries_due   ON deliveries (next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX IF NOT EXISTS deliveries_lease ON deliveries (lease_until)     WHERE status = 'in_flight';
CREATE INDEX IF NOT EXISTS deliveries_dead  ON deliveries (destination)     WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_seq);

CREATE TABLE IF NOT EXISTS attempts (
    delivery_id INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    status_code INTEGER,
    exit_code   INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
