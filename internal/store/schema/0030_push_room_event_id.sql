-- Room-wide notifications keep no copy of their event's id (45 bytes a
-- row): it is that of the row's position in events, as push_actions has
-- read it since migration 25. The table is rebuilt rather than the
-- column dropped, which on PostgreSQL would leave the ids in the rows
-- already stored.
CREATE TABLE push_room_actions_new (
    room_id       TEXT NOT NULL,
    thread_id     TEXT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    actions       TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    PRIMARY KEY (room_id, thread_id, stream_pos)
) WITHOUT ROWID; -- only: sqlite
); -- only: postgres
INSERT INTO push_room_actions_new (room_id, thread_id, stream_pos, actions, ts)
    SELECT room_id, thread_id, stream_pos, actions, ts FROM push_room_actions;
DROP TABLE push_room_actions;
ALTER TABLE push_room_actions_new RENAME TO push_room_actions;
ALTER TABLE push_room_actions RENAME CONSTRAINT push_room_actions_new_pkey TO push_room_actions_pkey; -- only: postgres
ANALYZE push_room_actions; -- only: postgres
