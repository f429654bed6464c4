-- Rooms over federation.
--
-- Events whose state is unknown (outliers: auth chains and state fetched
-- from other servers) and soft-failed events are stored in events with a
-- negative stream_pos, so no timeline or sync query ever reads them; an
-- outlier's state_group is -1 (unknown).

-- Events that failed the authorisation rules: kept so that they are not
-- fetched again and so that events citing them as auth events fail.
CREATE TABLE federation_rejected (
    event_id      TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    received_ts   BIGINT NOT NULL
);

-- Inbound transactions by origin and id, with the answer given, so that a
-- retried transaction gets the same answer and is not processed twice.
CREATE TABLE federation_txns (
    origin        TEXT NOT NULL,
    txn_id        TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_ts    BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- Invites and knocks of local users to rooms this server is not in: the
-- membership event and the stripped state shown to the user.
CREATE TABLE remote_memberships (
    room_id       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    membership    TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    room_version  TEXT NOT NULL,
    pdu           TEXT NOT NULL,
    stripped      TEXT NOT NULL,
    servers       TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (room_id, user_id)
);
