-- Each event's relation aggregates (the relation_aggregates rows whose
-- parent it is) kept on its own row, so that the page that reads the event
-- reads its bundles too. Rows are separated by char(30), fields by char(31):
-- rel_type, latest_event, cnt, max_pos, rank_ts. NULL: no aggregates.
ALTER TABLE events ADD COLUMN rel_summary TEXT;
UPDATE events SET rel_summary = (SELECT group_concat(a.rel_type || char(31) || a.latest_event || char(31) || a.cnt || char(31) || a.max_pos || char(31) || a.rank_ts, char(30)) FROM relation_aggregates a WHERE a.parent = events.event_id) WHERE event_id IN (SELECT parent FROM relation_aggregates); -- only: sqlite
UPDATE events SET rel_summary = (SELECT string_agg(a.rel_type || chr(31) || a.latest_event || chr(31) || a.cnt || chr(31) || a.max_pos || chr(31) || a.rank_ts, chr(30)) FROM relation_aggregates a WHERE a.parent = events.event_id) WHERE event_id IN (SELECT parent FROM relation_aggregates); -- only: postgres
