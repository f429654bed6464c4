-- Accounts --------------------------------------------------------------

CREATE TABLE users (
    user_id        TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL DEFAULT '',
    is_admin       BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated    BOOLEAN NOT NULL DEFAULT FALSE,
    displayname    TEXT,
    avatar_url     TEXT,
    created_ts     BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    display_name  TEXT,
    last_seen_ts  BIGINT,
    last_seen_ip  TEXT,
    created_ts    BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as SHA-256 hashes; the plaintext exists only in the
-- client. A refreshable session has a refresh_hash too.
CREATE TABLE access_tokens (
    token_hash    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    created_ts    BIGINT NOT NULL,
    expires_ts    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE refresh_tokens (
    token_hash    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    created_ts    BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);

CREATE TABLE registration_tokens (
    token         TEXT PRIMARY KEY,
    uses_allowed  BIGINT,
    pending       BIGINT NOT NULL DEFAULT 0,
    completed     BIGINT NOT NULL DEFAULT 0,
    expiry_ts     BIGINT,
    created_ts    BIGINT NOT NULL
);

-- User-interactive auth sessions: the stages completed so far.
CREATE TABLE uia_sessions (
    session_id    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL DEFAULT '',
    completed     TEXT NOT NULL DEFAULT '[]',
    params        TEXT NOT NULL DEFAULT '{}',
    created_ts    BIGINT NOT NULL
);

-- Shared-secret registration nonces (each usable once).
CREATE TABLE admin_nonces (
    nonce         TEXT PRIMARY KEY,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE filters (
    user_id       TEXT NOT NULL,
    filter_id     BIGINT NOT NULL,
    filter_json   TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- Rooms and events --------------------------------------------------------

CREATE TABLE rooms (
    room_id       TEXT PRIMARY KEY,
    room_version  TEXT NOT NULL,
    creator       TEXT NOT NULL,
    created_ts    BIGINT NOT NULL,
    published     BOOLEAN NOT NULL DEFAULT FALSE,
    -- State group of the room's current state.
    state_group   BIGINT NOT NULL DEFAULT 0
);

-- Every event once, as the canonical PDU. stream_pos is the position in the
-- events stream (allocated in process, see store/streams.go). state_group is
-- the room state before the event. unsigned holds server-computed data
-- (prev_content, replaces_state, redacted_because).
CREATE TABLE events (
    stream_pos    BIGINT PRIMARY KEY,
    event_id      TEXT NOT NULL UNIQUE,
    room_id       TEXT NOT NULL,
    type          TEXT NOT NULL,
    state_key     TEXT,
    sender        TEXT NOT NULL,
    depth         BIGINT NOT NULL,
    origin_ts     BIGINT NOT NULL,
    pdu           TEXT NOT NULL,
    unsigned      TEXT NOT NULL DEFAULT '{}',
    state_group   BIGINT NOT NULL,
    redacted      BOOLEAN NOT NULL DEFAULT FALSE,
    txn_device    TEXT,
    txn_id        TEXT
);
CREATE INDEX events_room_pos ON events (room_id, stream_pos);
CREATE INDEX events_room_ts ON events (room_id, origin_ts);

-- Forward extremities: the events with no successor yet.
CREATE TABLE room_extremities (
    room_id       TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- State groups: the state after some event, stored as a delta on prev_group
-- (or in full when prev_group is NULL). Chains are bounded (see store/state.go).
CREATE TABLE state_groups (
    group_id      BIGINT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    prev_group    BIGINT,
    chain_len     INTEGER NOT NULL
);
CREATE TABLE state_group_entries (
    group_id      BIGINT NOT NULL,
    type          TEXT NOT NULL,
    state_key     TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (group_id, type, state_key)
);

-- Current state of each room.
CREATE TABLE room_state (
    room_id       TEXT NOT NULL,
    type          TEXT NOT NULL,
    state_key     TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Current membership, derived from room_state, for quick look-ups.
-- stream_pos is the position of the membership event.
CREATE TABLE room_members (
    room_id       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    membership    TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    forgotten     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id, membership);

CREATE TABLE txn_ids (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    txn_id        TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    created_ts    BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE room_aliases (
    alias         TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    creator       TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Per-user data streams ----------------------------------------------------

CREATE TABLE account_data (
    user_id       TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    type          TEXT NOT NULL,
    content       TEXT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_pos ON account_data (user_id, stream_pos);

CREATE TABLE receipts (
    room_id       TEXT NOT NULL,
    receipt_type  TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    thread_id     TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_pos     BIGINT NOT NULL,
    ts            BIGINT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_pos ON receipts (room_id, stream_pos);

CREATE TABLE presence (
    user_id         TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    status_msg      TEXT,
    last_active_ts  BIGINT NOT NULL,
    stream_pos      BIGINT NOT NULL
);
CREATE INDEX presence_pos ON presence (stream_pos);
