-- Schema version 3: two fewer B-trees to update per stored event.
-- * A delivery's id derives from its event: event_seq * 1024 + slot, the slot being its
--   destination's place in the source's deliver_to (at most 1024). An event's deliveries are one
--   range of the table's own key, so deliveries_event goes.
-- * received_at never decreases with seq (enqueue stores it so; older rows may be a few ms out of
--   order, which moves a time filter's edge by as much), so retention and the admin
--   API's time filters find their seq range by binary search, and events_received goes.
CREATE TEMP TABLE delivery_ids AS
    SELECT id AS old, event_seq * 1024 + ROW_NUMBER() OVER (PARTITION BY event_seq ORDER BY id) - 1 AS new
    FROM deliveries;
CREATE TABLE deliveries_v3 (
    id              INTEGER PRIMARY KEY,         -- event_seq * 1024 + slot
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
INSERT INTO deliveries_v3 (id, event_seq, destination, status, attempts, next_attempt_at, lease_until, claim, last_error, updated_at)
    SELECT m.new, d.event_seq, d.destination, d.status, d.attempts, d.next_attempt_at, d.lease_until, d.claim, d.last_error, d.updated_at
    FROM deliveries d JOIN delivery_ids m ON m.old = d.id;
UPDATE attempts SET delivery_id = m.new FROM delivery_ids m WHERE m.old = attempts.delivery_id;
DROP TABLE deliveries;
ALTER TABLE deliveries_v3 RENAME TO deliveries;
CREATE INDEX deliveries_due   ON deliveries (next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_lease ON deliveries (lease_until)     WHERE status = 'in_flight';
CREATE INDEX deliveries_dead  ON deliveries (destination)     WHERE status = 'dead';
DROP INDEX IF EXISTS events_received;
DROP TABLE delivery_ids;
