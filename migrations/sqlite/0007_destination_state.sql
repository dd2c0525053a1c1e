-- Schema version 7: delivery control (CONTRACT §8). One row per destination that has had any state:
-- pause, the circuit breaker, the rate limit's token bucket, the last error and the last success.
-- A destination without a row is active, closed, with a full bucket. Claims read and write it in
-- the writer thread's claim job, so every claim sees the state the last one left.
CREATE TABLE destination_state (
    destination     TEXT    PRIMARY KEY,
    paused          INTEGER NOT NULL DEFAULT 0,
    circuit         TEXT    NOT NULL DEFAULT 'closed' CHECK (circuit IN ('closed', 'open', 'half_open')),
    failures        INTEGER NOT NULL DEFAULT 0,   -- consecutive failed attempts
    cooldown_ms     INTEGER NOT NULL DEFAULT 0,   -- the cooldown of the current opening
    open_until      INTEGER NOT NULL DEFAULT 0,   -- open: no claims before this
    trial_until     INTEGER NOT NULL DEFAULT 0,   -- half_open: the trial's lease
    tokens          REAL,                         -- the rate limit's bucket; NULL = full
    tokens_at       INTEGER NOT NULL DEFAULT 0,
    per_second      REAL,                         -- the rate the bucket was last filled at
    last_error      TEXT,
    last_success_at INTEGER
) WITHOUT ROWID;
