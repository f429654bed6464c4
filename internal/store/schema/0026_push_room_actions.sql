-- Room-wide notifications: an event that notifies most of a room's local
-- members the same way (a plain message in a big room) is one row here
-- instead of one push_actions row per member. It counts for every local
-- member joined before it (room_members.joined_pos), except its sender
-- (whose own event marks the thread read, push_read) and the members with
-- a push_actions row at its position: their own outcome, whose counted
-- column is 0 (notified otherwise, e.g. highlighted) or -1 (not notified).
CREATE TABLE push_room_actions (
    room_id       TEXT NOT NULL,
    thread_id     TEXT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    event_id      TEXT NOT NULL,
    actions       TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    PRIMARY KEY (room_id, thread_id, stream_pos)
) WITHOUT ROWID; -- only: sqlite
); -- only: postgres

-- What a push_actions row adds to its user's notification count: 1, or
-- for an exception to a room-wide row 0 or -1 (see above).
ALTER TABLE push_actions ADD COLUMN counted INTEGER NOT NULL DEFAULT 1;

-- A staged event's room-wide actions (NULL: none); its recipients are
-- then the exceptions.
ALTER TABLE push_staging ADD COLUMN everyone TEXT;

-- Where the member's current stretch of membership began: the position of
-- the join a later profile change (join after join) does not move.
ALTER TABLE room_members ADD COLUMN joined_pos BIGINT NOT NULL DEFAULT 0;
UPDATE room_members SET joined_pos = stream_pos WHERE membership = 'join';
