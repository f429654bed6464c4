-- Server-side search: one row per searchable plain-text field of an
-- unencrypted event (content.body of m.room.message, content.name of
-- m.room.name, content.topic of m.room.topic), keyed by the event's stream
-- position. A redaction deletes the row of its target.
CREATE TABLE search_docs (
    stream_pos  INTEGER PRIMARY KEY, -- only: sqlite
    stream_pos  BIGINT PRIMARY KEY, -- only: postgres
    body_tsv    tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED, -- only: postgres
    event_id    TEXT NOT NULL UNIQUE,
    room_id     TEXT NOT NULL,
    sender      TEXT NOT NULL,
    type        TEXT NOT NULL,
    field       TEXT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX search_docs_room ON search_docs (room_id, stream_pos);
CREATE INDEX search_docs_tsv ON search_docs USING GIN (body_tsv); -- only: postgres
-- SQLite: an FTS5 index over search_docs.body (external content), kept in
-- step by triggers so that the store writes one table on both engines.
CREATE VIRTUAL TABLE search_fts USING fts5(body, content='search_docs', content_rowid='stream_pos', tokenize='unicode61 remove_diacritics 2'); -- only: sqlite
CREATE TRIGGER search_docs_ai AFTER INSERT ON search_docs BEGIN INSERT INTO search_fts (rowid, body) VALUES (new.stream_pos, new.body); END; -- only: sqlite
CREATE TRIGGER search_docs_ad AFTER DELETE ON search_docs BEGIN INSERT INTO search_fts (search_fts, rowid, body) VALUES ('delete', old.stream_pos, old.body); END; -- only: sqlite

-- Index what was sent before this migration: message bodies, room names
-- and plain topics of rooms that are not encrypted. A PDU that PostgreSQL's jsonb refuses (a \u0000
-- escape) is skipped rather than failing the migration.
INSERT INTO search_docs (stream_pos, event_id, room_id, sender, type, field, body) -- only: sqlite
SELECT stream_pos, event_id, room_id, sender, type, -- only: sqlite
    CASE type WHEN 'm.room.message' THEN 'content.body' WHEN 'm.room.name' THEN 'content.name' ELSE 'content.topic' END, -- only: sqlite
    json_extract(pdu, CASE type WHEN 'm.room.message' THEN '$.content.body' WHEN 'm.room.name' THEN '$.content.name' ELSE '$.content.topic' END) -- only: sqlite
FROM events -- only: sqlite
WHERE redacted = FALSE AND json_valid(pdu) -- only: sqlite
    AND ((type = 'm.room.message' AND state_key IS NULL) OR (type IN ('m.room.name', 'm.room.topic') AND state_key = '')) -- only: sqlite
    AND json_type(pdu, CASE type WHEN 'm.room.message' THEN '$.content.body' WHEN 'm.room.name' THEN '$.content.name' ELSE '$.content.topic' END) = 'text' -- only: sqlite
    AND NOT EXISTS (SELECT 1 FROM room_state s WHERE s.room_id = events.room_id AND s.type = 'm.room.encryption' AND s.state_key = '') -- only: sqlite
ON CONFLICT DO NOTHING; -- only: sqlite
INSERT INTO search_docs (stream_pos, event_id, room_id, sender, type, field, body) -- only: postgres
SELECT stream_pos, event_id, room_id, sender, type, field, doc -> 'content' ->> key FROM ( -- only: postgres
    SELECT stream_pos, event_id, room_id, sender, type, -- only: postgres
        CASE type WHEN 'm.room.message' THEN 'content.body' WHEN 'm.room.name' THEN 'content.name' ELSE 'content.topic' END AS field, -- only: postgres
        CASE type WHEN 'm.room.message' THEN 'body' WHEN 'm.room.name' THEN 'name' ELSE 'topic' END AS key, -- only: postgres
        CASE WHEN strpos(pdu, '\u0000') = 0 THEN pdu::jsonb END AS doc -- only: postgres
    FROM events -- only: postgres
    WHERE redacted = FALSE -- only: postgres
        AND ((type = 'm.room.message' AND state_key IS NULL) OR (type IN ('m.room.name', 'm.room.topic') AND state_key = '')) -- only: postgres
        AND NOT EXISTS (SELECT 1 FROM room_state s WHERE s.room_id = events.room_id AND s.type = 'm.room.encryption' AND s.state_key = '') -- only: postgres
) AS e -- only: postgres
WHERE jsonb_typeof(doc -> 'content' -> key) = 'string' -- only: postgres
ON CONFLICT DO NOTHING; -- only: postgres

-- Reports of events, rooms and users, for the server's administrators.
CREATE TABLE content_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- only: sqlite
    id          BIGSERIAL PRIMARY KEY, -- only: postgres
    kind        TEXT NOT NULL,
    reporter    TEXT NOT NULL,
    room_id     TEXT NOT NULL DEFAULT '',
    event_id    TEXT NOT NULL DEFAULT '',
    user_id     TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    score       INTEGER,
    created_ts  BIGINT NOT NULL
);
CREATE INDEX content_reports_ts ON content_reports (created_ts);

-- The server notices room of each user who received a notice.
CREATE TABLE server_notice_rooms (
    user_id     TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    created_ts  BIGINT NOT NULL
);
CREATE INDEX server_notice_rooms_room ON server_notice_rooms (room_id);
