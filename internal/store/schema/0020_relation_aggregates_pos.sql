-- The stream position of each aggregate's parent, so that the bundles of a
-- page of events are read by one range scan over the room's positions
-- instead of a lookup per event id. The index covers the columns read
-- (PostgreSQL: INCLUDE), so the scan never visits the table.
ALTER TABLE relation_aggregates ADD COLUMN parent_pos BIGINT;
UPDATE relation_aggregates SET parent_pos = (SELECT e.stream_pos FROM events e WHERE e.event_id = relation_aggregates.parent);
CREATE INDEX relation_aggregates_room_pos ON relation_aggregates (room_id, parent_pos, parent, rel_type, latest_event, cnt, max_pos, rank_ts); -- only: sqlite
CREATE INDEX relation_aggregates_room_pos ON relation_aggregates (room_id, parent_pos) INCLUDE (parent, rel_type, latest_event, cnt, max_pos, rank_ts); -- only: postgres
