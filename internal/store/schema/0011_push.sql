-- Push notifications: what each event means for each recipient, the
-- users' pushers, and the pushes still to deliver (see internal/notifications).

-- One row per event that notifies a local user (push rule action
-- "notify"), moved here from push_staging. thread_id is "main" for the
-- main timeline, else the thread root.
-- Clustered on SQLite by what a sync counts: a user's main timeline of a
-- room after the read receipt is one range of the key, and the rows of
-- threads ("$…" sorts before "main") another. The second index serves
-- GET /notifications.
CREATE TABLE push_actions (
    user_id       TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    event_id      TEXT NOT NULL,
    thread_id     TEXT NOT NULL,
    highlight     BOOLEAN NOT NULL,
    actions       TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id, stream_pos)
) WITHOUT ROWID; -- only: sqlite
); -- only: postgres
CREATE INDEX push_actions_user ON push_actions (user_id, stream_pos);

-- What an event means for its recipients, one row per event so that the
-- event's transaction writes one row (at the end of the table) however
-- many recipients it has; recipients is a JSON array of
-- {"u": user id, "h": highlight, "a": actions}. A worker soon moves these
-- into push_actions (one transaction for many events); readers look at
-- both tables in one statement.
CREATE TABLE push_staging (
    stream_pos    BIGINT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    thread_id     TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    recipients    TEXT NOT NULL
);

-- Sending an event marks what comes before it as read (like a receipt in
-- the event's thread, but not shown to anyone): the position of each
-- user's latest event per room and thread.
CREATE TABLE push_read (
    user_id       TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    thread_id     TEXT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);

-- A pusher belongs to the device (access token) that set it and goes with it.
CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT NOT NULL,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    pushkey_ts          BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_key ON pushers (app_id, pushkey);

-- One push to deliver to one pusher; deleted once the gateway took it.
CREATE TABLE push_queue (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- only: postgres
    id            INTEGER PRIMARY KEY AUTOINCREMENT, -- only: sqlite
    user_id       TEXT NOT NULL,
    app_id        TEXT NOT NULL,
    pushkey       TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    actions       TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    next_try_ts   BIGINT NOT NULL
);
CREATE INDEX push_queue_due ON push_queue (next_try_ts);
