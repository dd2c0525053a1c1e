-- Schema version 7: traces (CONTRACT §11). The W3C `traceparent` of the event's ingest span, stored
-- when `[telemetry] otlp_endpoint` is set (NULL otherwise): every attempt, by any node, is a span
-- of that trace.
ALTER TABLE events ADD COLUMN IF NOT EXISTS traceparent TEXT;
