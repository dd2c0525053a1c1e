-- Schema version 4: routing rules (CONTRACT §7). A delivery may be `filtered` (its filter left it
-- out; `last_error` says why); the events keep their request target (path and query) for the
-- document that transforms read at each attempt.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'in_flight', 'succeeded', 'failed', 'dead', 'filtered'));
ALTER TABLE events ADD COLUMN IF NOT EXISTS path TEXT;
