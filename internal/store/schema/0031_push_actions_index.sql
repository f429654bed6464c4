-- PostgreSQL: push_actions is found by user and room, in an index without
-- uniqueness that keeps each (user, room) key once with the list of its
-- rows (B-tree deduplication): about 6 bytes a notification where the
-- primary key (user_id, room_id, thread_id, stream_pos) took 80 and, from
-- inserts all over the key space, half-empty pages (180 bytes a message in
-- the sector benchmark). Nothing relies on the key's uniqueness (a staged
-- row moves once: CompactStaged deletes it and inserts what it got back),
-- and what reads the table names a user and a room, whose rows are few:
-- a read receipt deletes those it covers (DropReadNotifications), the
-- rest are counted. The columns are rebuilt fixed-width first, which
-- saves the alignment padding between them.
-- SQLite keeps the table clustered on the primary key: it has no other index.
CREATE TABLE push_actions_new ( -- only: postgres
    stream_pos    BIGINT NOT NULL, -- only: postgres
    ts            BIGINT NOT NULL, -- only: postgres
    counted       INTEGER NOT NULL DEFAULT 1, -- only: postgres
    highlight     BOOLEAN NOT NULL, -- only: postgres
    user_id       TEXT NOT NULL, -- only: postgres
    room_id       TEXT NOT NULL, -- only: postgres
    thread_id     TEXT NOT NULL, -- only: postgres
    actions       TEXT NOT NULL -- only: postgres
); -- only: postgres
INSERT INTO push_actions_new (stream_pos, ts, counted, highlight, user_id, room_id, thread_id, actions) -- only: postgres
    SELECT stream_pos, ts, counted, highlight, user_id, room_id, thread_id, actions FROM push_actions ORDER BY user_id, room_id, stream_pos; -- only: postgres
DROP TABLE push_actions; -- only: postgres
ALTER TABLE push_actions_new RENAME TO push_actions; -- only: postgres
CREATE INDEX push_actions_user_room ON push_actions (user_id, room_id); -- only: postgres
ANALYZE push_actions; -- only: postgres
