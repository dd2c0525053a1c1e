-- hookgate shared store, schema version 1. Times are milliseconds since the Unix epoch, taken
-- from the clock of the node that writes them (keep the nodes' clocks in sync with NTP).
-- Applied by `PostgresStore::open` under an advisory lock, once, recorded in hookgate_migrations.
CREATE TABLE events (
    seq          BIGSERIAL PRIMARY KEY,           -- insertion order: the admin API's cursor
    id           TEXT      NOT NULL UNIQUE,
    source       TEXT      NOT NULL,
    dedupe_key   TEXT      NOT NULL,
    received_at  BIGINT    NOT NULL,
    content_type TEXT,
    headers      TEXT      NOT NULL,              -- JSON object, sensitive values redacted (kept verbatim)
    body         BYTEA     NOT NULL,
    -- The dedupe guarantee across nodes: concurrent inserts of one key wait for each other.
    CONSTRAINT events_dedupe UNIQUE (source, dedupe_key)
);
CREATE INDEX events_received ON events (received_at);

CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    event_seq       BIGINT    NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    destination     TEXT      NOT NULL,
    status          TEXT      NOT NULL
        CHECK (status IN ('pending', 'in_flight', 'succeeded', 'failed', 'dead')),
    attempts        INTEGER   NOT NULL DEFAULT 0,
    next_attempt_at BIGINT    NOT NULL,
    lease_until     BIGINT,
    claim           BIGINT,
    last_error      TEXT,
    updated_at      BIGINT    NOT NULL
);
-- Partial indexes: the queue only ever scans what is due or leased.
CREATE INDEX deliveries_due   ON deliveries (next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_lease ON deliveries (lease_until)     WHERE status = 'in_flight';
CREATE INDEX deliveries_dead  ON deliveries (destination)     WHERE status = 'dead';
CREATE INDEX deliveries_event ON deliveries (event_seq);

CREATE TABLE attempts (
    id          BIGSERIAL PRIMARY KEY,                -- log order
    delivery_id BIGINT    NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER   NOT NULL,
    at          BIGINT    NOT NULL,
    outcome     TEXT      NOT NULL,
    status_code INTEGER,
    exit_code   INTEGER,
    error       TEXT,
    duration_ms BIGINT    NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
