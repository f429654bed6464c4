-- Message retention (MSC1763). retention_rooms is each room's purge: the
-- cutoff of the purge under way (0 when none: events sent before it are
-- being deleted, and a restart resumes it), how many events purges
-- deleted in all, when it last moved.
CREATE TABLE retention_rooms (
    room_id     TEXT PRIMARY KEY,
    cutoff_ts   BIGINT NOT NULL,
    purged      BIGINT NOT NULL DEFAULT 0,
    updated_ts  BIGINT NOT NULL
);

-- Local media whose last reference a purge deleted, queued in the purge's
-- transaction: its row and thumbnails go next, and blobs lists (one a
-- line) the files still to delete once the rows are gone.
CREATE TABLE retention_media (
    media_id    TEXT PRIMARY KEY,
    blobs       TEXT NOT NULL DEFAULT ''
);
