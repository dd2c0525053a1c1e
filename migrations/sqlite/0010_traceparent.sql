-- Schema version 10: traces (CONTRACT §11). The W3C `traceparent` of the event's ingest span, stored
-- when `[telemetry] otlp_endpoint` is set (NULL otherwise): every attempt, by any worker, is a span
-- of that trace.
ALTER TABLE events ADD COLUMN traceparent TEXT;
