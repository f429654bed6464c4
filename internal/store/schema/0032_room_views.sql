-- A room's view as an initial sync reads it (its newest timeline rows with
-- their client forms, the history visibility and the changed memberships
-- at those rows' state, the client forms of its current state), kept for
-- rooms of modest state so that the first initial sync after a start
-- reads one row per room instead of some thirty. up_to is the events
-- position it was made at: a room with an event after it has changed and
-- the view is not used (see store/roomviews.go).
CREATE TABLE room_views (
    room_id  TEXT PRIMARY KEY,
    up_to    BIGINT NOT NULL,
    view     BLOB NOT NULL -- only: sqlite
    view     BYTEA NOT NULL -- only: postgres
) WITHOUT ROWID; -- only: sqlite
); -- only: postgres
