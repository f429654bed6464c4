-- Storage per event trimmed: each event's bytes kept once, compressed
-- where it pays, and a search index no larger than it needs.
--
-- events: the PDU is kept compressed (see store/pducodec.go), so no SQL
-- reads inside it any more; txn_key is a 16-byte hash of the sender, the
-- device and the client's transaction key, alone in the unique index of
-- client transactions; on SQLite stream_pos is the rowid (one index less).
CREATE TABLE events_new (
    stream_pos    INTEGER PRIMARY KEY, -- only: sqlite
    stream_pos    BIGINT PRIMARY KEY, -- only: postgres
    event_id      TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    type          TEXT NOT NULL,
    state_key     TEXT,
    sender        TEXT NOT NULL,
    depth         BIGINT NOT NULL,
    origin_ts     BIGINT NOT NULL,
    pdu           BLOB NOT NULL, -- only: sqlite
    pdu           BYTEA NOT NULL, -- only: postgres
    unsigned      TEXT NOT NULL DEFAULT '{}',
    state_group   BIGINT NOT NULL,
    redacted      BOOLEAN NOT NULL DEFAULT FALSE,
    txn_device    TEXT,
    txn_id        TEXT,
    rel_summary   TEXT,
    txn_key       BLOB -- only: sqlite
    txn_key       BYTEA -- only: postgres
);
-- go: encode events
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
ALTER TABLE events RENAME CONSTRAINT events_new_pkey TO events_pkey; -- only: postgres
CREATE UNIQUE INDEX events_event_id ON events (event_id);
CREATE INDEX events_room_pos ON events (room_id, stream_pos);
CREATE INDEX events_room_ts ON events (room_id, origin_ts);
CREATE UNIQUE INDEX events_txn ON events (txn_key) WHERE txn_key IS NOT NULL;

-- Search: the text of each searchable event once, by the event's stream
-- position; what a search filters on (room, sender, type) is read from
-- events. SQLite: an FTS5 table that keeps no copy of the text (it is in
-- the event) and deletes by rowid. PostgreSQL: the text, and a GIN index
-- of its tsvector, which is not stored; without fastupdate the index
-- takes its entries at once instead of gathering them in a pending list.
CREATE VIRTUAL TABLE search_text USING fts5(body, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2'); -- only: sqlite
CREATE TABLE search_text (stream_pos BIGINT PRIMARY KEY, body TEXT NOT NULL); -- only: postgres
INSERT INTO search_text (rowid, body) SELECT stream_pos, body FROM search_docs; -- only: sqlite
INSERT INTO search_text (stream_pos, body) SELECT stream_pos, body FROM search_docs; -- only: postgres
DROP TABLE search_docs;
DROP TABLE search_fts; -- only: sqlite
CREATE INDEX search_text_tsv ON search_text USING GIN (to_tsvector('simple', body)) WITH (fastupdate = off); -- only: postgres

-- Notifications: one that does not highlight is of no more use once read
-- (counts start after the read receipt), so a moved receipt deletes them,
-- as the reference server does; a user's list is then short enough to be
-- read by the primary key. The event's id is that of its position.
DROP INDEX push_actions_user;
ALTER TABLE push_actions DROP COLUMN event_id;
DELETE FROM push_actions AS a WHERE a.highlight = FALSE AND a.stream_pos <= COALESCE((SELECT MAX(r.event_pos) FROM receipts r
    WHERE r.room_id = a.room_id AND r.receipt_type IN ('m.read', 'm.read.private') AND r.user_id = a.user_id AND r.thread_id IN ('', a.thread_id)), 0);

ANALYZE events; -- only: postgres
ANALYZE search_text; -- only: postgres
