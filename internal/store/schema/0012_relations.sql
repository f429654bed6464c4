-- Child events and the parent they point at (m.relates_to), written with
-- the child. Only relations whose parent is a known event of the same room
-- are recorded; a redacted child is removed (its relation is broken).
-- valid is FALSE for replacements that break the rules of m.replace: they
-- are listed by /relations but never aggregated.
CREATE TABLE event_relations (
    event_id        TEXT PRIMARY KEY,
    room_id         TEXT NOT NULL,
    relates_to      TEXT NOT NULL,
    rel_type        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    sender          TEXT NOT NULL,
    aggregation_key TEXT,
    origin_ts       BIGINT NOT NULL,
    stream_pos      BIGINT NOT NULL,
    valid           BOOLEAN NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (relates_to, rel_type, stream_pos);
CREATE INDEX event_relations_room ON event_relations (room_id, rel_type, stream_pos);
-- The latest valid edit (m.replace), thread event (m.thread) and reference
-- (m.reference) of each parent with the number of such children, kept with
-- the relations so that bundling a page reads one row per parent. rank_ts
-- orders candidates: origin_server_ts for edits, the stream position
-- otherwise; ties go to the largest event id.
CREATE TABLE relation_aggregates (
    parent       TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    rel_type     TEXT NOT NULL,
    latest_event TEXT NOT NULL,
    rank_ts      BIGINT NOT NULL,
    cnt          BIGINT NOT NULL,
    max_pos      BIGINT NOT NULL,
    PRIMARY KEY (parent, rel_type)
);
-- /threads: a room's threads by latest activity.
CREATE INDEX relation_aggregates_room ON relation_aggregates (room_id, rel_type, max_pos);

-- Index the relations of the events stored so far, with the rules the
-- indexer applies to new events (see rooms/relations.go).
INSERT INTO event_relations (event_id, room_id, relates_to, rel_type, event_type, sender, aggregation_key, origin_ts, stream_pos, valid) -- only: sqlite
SELECT c.event_id, c.room_id, p.event_id, c.rel_type, c.type, c.sender, -- only: sqlite
    CASE WHEN c.rel_type = 'm.annotation' THEN c.akey END, c.origin_ts, c.stream_pos, -- only: sqlite
    CASE WHEN c.rel_type = 'm.replace' THEN c.sender = p.sender AND c.type = p.type AND c.state_key IS NULL AND p.state_key IS NULL -- only: sqlite
            AND COALESCE(json_extract(p.pdu, '$.content."m.relates_to".rel_type'), '') <> 'm.replace' -- only: sqlite
            AND (c.type = 'm.room.encrypted' OR COALESCE(c.nc_type, '') = 'object') -- only: sqlite
        WHEN c.rel_type = 'm.thread' THEN COALESCE(json_extract(p.pdu, '$.content."m.relates_to".rel_type'), '') = '' -- only: sqlite
        ELSE 1 = 1 END -- only: sqlite
FROM (SELECT e.event_id, e.room_id, e.type, e.sender, e.state_key, e.origin_ts, e.stream_pos, -- only: sqlite
        json_extract(e.pdu, '$.content."m.relates_to".rel_type') AS rel_type, -- only: sqlite
        json_type(e.pdu, '$.content."m.relates_to".rel_type') AS rel_type_t, -- only: sqlite
        json_extract(e.pdu, '$.content."m.relates_to".event_id') AS parent_id, -- only: sqlite
        json_type(e.pdu, '$.content."m.relates_to".event_id') AS parent_t, -- only: sqlite
        json_extract(e.pdu, '$.content."m.relates_to".key') AS akey, -- only: sqlite
        json_type(e.pdu, '$.content."m.relates_to".key') AS key_t, -- only: sqlite
        json_type(e.pdu, '$.content."m.new_content"') AS nc_type -- only: sqlite
    FROM events e WHERE e.redacted = FALSE AND e.pdu LIKE '%"m.relates_to"%') AS c -- only: sqlite
JOIN events p ON p.event_id = c.parent_id AND p.room_id = c.room_id -- only: sqlite
WHERE c.rel_type_t = 'text' AND c.rel_type <> '' AND c.parent_t = 'text' AND c.parent_id <> c.event_id -- only: sqlite
    AND (c.rel_type <> 'm.annotation' OR (c.key_t = 'text' AND c.akey <> '' AND length(CAST(c.akey AS BLOB)) <= 256)) -- only: sqlite
ON CONFLICT (event_id) DO NOTHING; -- only: sqlite
INSERT INTO event_relations (event_id, room_id, relates_to, rel_type, event_type, sender, aggregation_key, origin_ts, stream_pos, valid) -- only: postgres
SELECT c.event_id, c.room_id, p.event_id, c.rel_type, c.type, c.sender, -- only: postgres
    CASE WHEN c.rel_type = 'm.annotation' THEN c.akey END, c.origin_ts, c.stream_pos, -- only: postgres
    CASE WHEN c.rel_type = 'm.replace' THEN c.sender = p.sender AND c.type = p.type AND c.state_key IS NULL AND p.state_key IS NULL -- only: postgres
            AND COALESCE(CASE WHEN strpos(p.pdu, '\u0000') = 0 THEN p.pdu::jsonb #>> '{content,m.relates_to,rel_type}' END, '') <> 'm.replace' -- only: postgres
            AND (c.type = 'm.room.encrypted' OR COALESCE(c.nc_type, '') = 'object') -- only: postgres
        WHEN c.rel_type = 'm.thread' THEN COALESCE(CASE WHEN strpos(p.pdu, '\u0000') = 0 THEN p.pdu::jsonb #>> '{content,m.relates_to,rel_type}' END, '') = '' -- only: postgres
        ELSE TRUE END -- only: postgres
FROM (SELECT e.event_id, e.room_id, e.type, e.sender, e.state_key, e.origin_ts, e.stream_pos, -- only: postgres
        e.pdu::jsonb #>> '{content,m.relates_to,rel_type}' AS rel_type, -- only: postgres
        jsonb_typeof(e.pdu::jsonb #> '{content,m.relates_to,rel_type}') AS rel_type_t, -- only: postgres
        e.pdu::jsonb #>> '{content,m.relates_to,event_id}' AS parent_id, -- only: postgres
        jsonb_typeof(e.pdu::jsonb #> '{content,m.relates_to,event_id}') AS parent_t, -- only: postgres
        e.pdu::jsonb #>> '{content,m.relates_to,key}' AS akey, -- only: postgres
        jsonb_typeof(e.pdu::jsonb #> '{content,m.relates_to,key}') AS key_t, -- only: postgres
        jsonb_typeof(e.pdu::jsonb #> '{content,m.new_content}') AS nc_type -- only: postgres
    -- jsonb refuses the escape \u0000: such events stay unindexed.
    FROM events e WHERE e.redacted = FALSE AND e.pdu LIKE '%"m.relates_to"%' -- only: postgres
        AND strpos(e.pdu, '\u0000') = 0 -- only: postgres
    -- OFFSET 0 keeps the filter above ahead of the casts (no flattening).
    OFFSET 0) AS c -- only: postgres
JOIN events p ON p.event_id = c.parent_id AND p.room_id = c.room_id -- only: postgres
WHERE c.rel_type_t = 'string' AND c.rel_type <> '' AND c.parent_t = 'string' AND c.parent_id <> c.event_id -- only: postgres
    AND (c.rel_type <> 'm.annotation' OR (c.key_t = 'string' AND c.akey <> '' AND octet_length(c.akey) <= 256)) -- only: postgres
ON CONFLICT (event_id) DO NOTHING; -- only: postgres
INSERT INTO relation_aggregates (parent, room_id, rel_type, latest_event, rank_ts, cnt, max_pos)
SELECT relates_to, room_id, rel_type, event_id, rnk, cnt, mx FROM (
    SELECT relates_to, room_id, rel_type, event_id,
        CASE WHEN rel_type = 'm.replace' THEN origin_ts ELSE stream_pos END AS rnk,
        ROW_NUMBER() OVER (PARTITION BY relates_to, rel_type ORDER BY CASE WHEN rel_type = 'm.replace' THEN origin_ts ELSE stream_pos END DESC, event_id DESC) AS n,
        COUNT(*) OVER (PARTITION BY relates_to, rel_type) AS cnt,
        MAX(stream_pos) OVER (PARTITION BY relates_to, rel_type) AS mx
    FROM event_relations WHERE valid = TRUE AND rel_type IN ('m.replace', 'm.thread', 'm.reference')
) AS t WHERE n = 1;
