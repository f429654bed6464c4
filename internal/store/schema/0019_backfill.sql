-- History from before a remote join (client-driven backfill).
--
-- Events fetched with /backfill are timeline events older than everything
-- the room had here: they get stream positions below -2^40 (numbered
-- downwards as they arrive, newest first), outliers and soft-failed events
-- keep (-2^40, 0), and timelines read stream_pos > 0 OR stream_pos <
-- -2^40. No sync stream ever moves for them.

-- Backward extremities: prev events of a room's timeline events that are
-- not timeline events here (unknown, or known only as outliers). depth is
-- the depth of the event that cites it, so that the newest gaps are
-- filled first.
CREATE TABLE room_backward_extremities (
    room_id       TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    depth         BIGINT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
CREATE INDEX room_backward_extremities_depth ON room_backward_extremities (room_id, depth);
