-- Schema version 5: delivery control (CONTRACT §8). One row per destination that has had any state:
-- pause, the circuit breaker, the rate limit's token bucket, the last error and the last success.
-- A destination without a row is active, closed, with a full bucket. Claims that change it lock
-- the row (FOR UPDATE) in the claim's transaction, so it holds across nodes.
CREATE TABLE IF NOT EXISTS destination_state (
    destination     TEXT    PRIMARY KEY,
    paused          BOOLEAN NOT NULL DEFAULT false,
    circuit         TEXT    NOT NULL DEFAULT 'closed' CHECK (circuit IN ('closed', 'open', 'half_open')),
    failures        INTEGER NOT NULL DEFAULT 0,
    cooldown_ms     BIGINT  NOT NULL DEFAULT 0,
    open_until      BIGINT  NOT NULL DEFAULT 0,
    trial_until     BIGINT  NOT NULL DEFAULT 0,
    tokens          DOUBLE PRECISION,
    tokens_at       BIGINT  NOT NULL DEFAULT 0,
    per_second      DOUBLE PRECISION,
    last_error      TEXT,
    last_success_at BIGINT
);
