-- Events that other servers must still be told about, written in the
-- transaction that persists the event, and deleted in the transaction
-- that writes their federation_outbox rows: a crash between the two
-- leaves the row here, and the next start queues the event.
CREATE TABLE federation_fanout (
    event_id      TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    -- TRUE for events built here; FALSE for membership events received
    -- from another server, which are passed on to the room's other servers.
    built_here    BOOLEAN NOT NULL,
    -- Built here: the server of a membership event's target that must hear
    -- of it even with no one left in the room ('' when none). Received:
    -- the sender's server, which is not sent its own event.
    also_to       TEXT NOT NULL,
    created_ts    BIGINT NOT NULL
);
