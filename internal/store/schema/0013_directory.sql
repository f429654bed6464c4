-- What the published room directory and the space hierarchy show of each
-- room, kept current by an indexer as state events commit, so that neither
-- reads room state per request. room_type is NULL for plain rooms.
-- search_text is the folded name, topic and aliases for filtering.
CREATE TABLE room_summaries (
    room_id             TEXT PRIMARY KEY,
    room_version        TEXT NOT NULL DEFAULT '',
    room_type           TEXT,
    name                TEXT NOT NULL DEFAULT '',
    topic               TEXT NOT NULL DEFAULT '',
    avatar_url          TEXT NOT NULL DEFAULT '',
    canonical_alias     TEXT NOT NULL DEFAULT '',
    join_rule           TEXT NOT NULL DEFAULT '',
    allowed_room_ids    TEXT NOT NULL DEFAULT '[]',
    history_visibility  TEXT NOT NULL DEFAULT '',
    guest_access        TEXT NOT NULL DEFAULT '',
    encryption          TEXT NOT NULL DEFAULT '',
    joined_members      BIGINT NOT NULL DEFAULT 0,
    search_text         TEXT NOT NULL DEFAULT ''
);

-- Published rooms are few: /publicRooms starts from them.
CREATE INDEX rooms_published ON rooms (room_id) WHERE published;

-- The valid m.space.child events of each room (a non-empty via list).
CREATE TABLE space_children (
    room_id     TEXT NOT NULL,
    child_id    TEXT NOT NULL,
    content     TEXT NOT NULL,
    sender      TEXT NOT NULL,
    origin_ts   BIGINT NOT NULL,
    suggested   BOOLEAN NOT NULL,
    PRIMARY KEY (room_id, child_id)
);

-- The user directory: one row per searchable user (local users, and remote
-- users met in rooms). opt_in is the lu.luxchat.directory choice of a local
-- user (NULL: the server default).
CREATE TABLE user_directory (
    user_id       TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL DEFAULT '',
    avatar_url    TEXT NOT NULL DEFAULT '',
    is_local      BOOLEAN NOT NULL,
    opt_in        BOOLEAN,
    sort_key      TEXT NOT NULL
);
CREATE INDEX user_directory_sort ON user_directory (sort_key, user_id);

-- Folded words of each user's display name and localpart, searched by
-- prefix with range scans (byte order on both engines). The columns the
-- search filters and sorts on are copied from user_directory so that a
-- search reads only this table's primary key until the last rows.
CREATE TABLE user_directory_terms (
    term      TEXT NOT NULL, -- only: sqlite
    term      TEXT COLLATE "C" NOT NULL, -- only: postgres
    user_id   TEXT NOT NULL,
    sort_key  TEXT NOT NULL,
    is_local  BOOLEAN NOT NULL,
    opt_in    BOOLEAN,
    PRIMARY KEY (term, user_id)
) WITHOUT ROWID; -- only: sqlite
); -- only: postgres
CREATE INDEX user_directory_terms_user ON user_directory_terms (user_id, term);
