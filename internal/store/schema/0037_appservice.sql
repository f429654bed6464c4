-- Application services (internal/appservice). The events table is each
-- service's queue: what it has not acknowledged is every event after
-- acked_pos in a room it is interested in, and every to-device message
-- after acked_to_device for one of its users. The transaction being
-- delivered is kept whole (txn_id, body) so that it is resent unchanged
-- until the service acknowledges it, across restarts too.
CREATE TABLE appservice_positions (
    as_id            TEXT PRIMARY KEY,
    acked_pos        BIGINT NOT NULL,
    acked_to_device  BIGINT NOT NULL,
    next_txn         BIGINT NOT NULL
);
CREATE TABLE appservice_txns (
    as_id            TEXT PRIMARY KEY,
    txn_id           BIGINT NOT NULL,
    upto_pos         BIGINT NOT NULL,
    upto_to_device   BIGINT NOT NULL,
    body             TEXT NOT NULL
);
