-- Schema version 8: ordering keys (CONTRACT §8). A delivery keeps the key its destination's
-- `ordering_key` gave at ingest (NULL: unordered). A claim takes a keyed delivery only when no
-- delivery of the same destination and key with a lower id is still open; this index finds those.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
CREATE INDEX deliveries_ordered ON deliveries (destination, ordering_key, id)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'failed', 'in_flight');
