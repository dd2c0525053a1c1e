-- Schema version 11: failed deliveries counted on an index of their own. `hookgate_deliveries{status}`
-- and the destinations page counted them on the due index, which does not hold the status, so every
-- due delivery's row was read: 236 ms of a /metrics scrape's 278 on a store of 1,000,000 pending
-- deliveries (docs/PERFORMANCE.md, session 10). Only failures enter it, so new events cost it nothing.
CREATE INDEX deliveries_failed ON deliveries (destination) WHERE status = 'failed';
