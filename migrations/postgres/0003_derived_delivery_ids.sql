-- Schema version 3: a delivery id means what it means on SQLite, event_seq * 1024 + slot, the slot
-- being the delivery's place among its event's deliveries (at most 1024, `MAX_DELIVER_TO`). The
-- existing deliveries are renumbered in their id order within each event; their attempts follow.
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_delivery_id_fkey;
ALTER TABLE deliveries ALTER COLUMN id DROP DEFAULT;
DROP SEQUENCE IF EXISTS deliveries_id_seq;
CREATE TEMP TABLE delivery_ids ON COMMIT DROP AS
    SELECT id AS old, event_seq * 1024 + ROW_NUMBER() OVER (PARTITION BY event_seq ORDER BY id) - 1 AS new
    FROM deliveries;
-- Through negative ids: the primary key is checked row by row, and a new id may be another's old one.
UPDATE deliveries SET id = -id;
UPDATE deliveries d SET id = m.new FROM delivery_ids m WHERE d.id = -m.old;
UPDATE attempts a SET delivery_id = m.new FROM delivery_ids m WHERE a.delivery_id = m.old;
ALTER TABLE attempts ADD CONSTRAINT attempts_delivery_id_fkey
    FOREIGN KEY (delivery_id) REFERENCES deliveries (id) ON DELETE CASCADE;
