-- Delayed events (MSC4140): events a user scheduled to be sent later.
-- A row is scheduled while finalised_ts is NULL; then outcome says what
-- became of it: 'sent' (event_id set), 'cancelled' (by the user, or by
-- another user's state event over the same key: error set) or 'error'
-- (refused at send time: error holds the Matrix error). due_ms is
-- scheduled_at + delay_ms, kept as a column so that the scheduler finds
-- the next due row by an index. txn_key is the client transaction of the
-- scheduling request (NULL for the state endpoint, which has none).
CREATE TABLE delayed_events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- only: postgres
    seq           INTEGER PRIMARY KEY AUTOINCREMENT, -- only: sqlite
    delay_id      TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    txn_key       TEXT,
    room_id       TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    state_key     TEXT,
    content       TEXT NOT NULL,
    delay_ms      BIGINT NOT NULL,
    scheduled_at  BIGINT NOT NULL,
    due_ms        BIGINT NOT NULL,
    finalised_ts  BIGINT,
    outcome       TEXT,
    event_id      TEXT,
    error         TEXT
);
CREATE INDEX delayed_events_due ON delayed_events (due_ms, seq) WHERE finalised_ts IS NULL;
CREATE INDEX delayed_events_user ON delayed_events (user_id, due_ms, seq) WHERE finalised_ts IS NULL;
CREATE INDEX delayed_events_state ON delayed_events (room_id, event_type, state_key) WHERE finalised_ts IS NULL AND state_key IS NOT NULL;
CREATE INDEX delayed_events_finalised ON delayed_events (finalised_ts) WHERE finalised_ts IS NOT NULL;
CREATE UNIQUE INDEX delayed_events_txn ON delayed_events (user_id, device_id, txn_key) WHERE txn_key IS NOT NULL;
