-- Schema version 4: claims ask per destination (as many as each destination can start now), so
-- the due index is ordered by destination first: each destination's due deliveries are one range.
DROP INDEX IF EXISTS deliveries_due;
CREATE INDEX deliveries_due ON deliveries (destination, next_attempt_at) WHERE status IN ('pending', 'failed');
DROP INDEX IF EXISTS deliveries_lease;
CREATE INDEX deliveries_lease ON deliveries (destination, lease_until) WHERE status = 'in_flight';
