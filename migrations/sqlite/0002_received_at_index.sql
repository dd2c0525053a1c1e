-- Retention purges and the admin API's time filters scan events by age.
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);
