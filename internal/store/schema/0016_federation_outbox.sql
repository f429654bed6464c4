-- Outbound federation: what each destination still has to acknowledge,
-- device list updates we announced, and the device lists of remote users
-- we keep (see federation/queue.go and internal/exchange).

-- One PDU (event_id, read from events when sent) or one EDU (edu, its
-- {"edu_type", "content"} JSON) waiting for a destination; deleted once
-- the destination acknowledged the transaction that carried it.
CREATE TABLE federation_outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- only: postgres
    id            INTEGER PRIMARY KEY AUTOINCREMENT, -- only: sqlite
    destination   TEXT NOT NULL,
    event_id      TEXT,
    edu           TEXT,
    created_ts    BIGINT NOT NULL
);
CREATE INDEX federation_outbox_destination ON federation_outbox (destination, id);

-- What the last m.device_list_update / m.signing_key_update of a local
-- user told other servers: stream_id counts per user; snapshot maps each
-- announced device (and cross-signing key type) to a hash of its keys.
CREATE TABLE device_list_outbound (
    user_id       TEXT PRIMARY KEY,
    stream_id     BIGINT NOT NULL,
    snapshot      TEXT NOT NULL
);

-- Remote users whose device keys are kept in device_keys and
-- cross_signing_keys: fresh until a device list update marks them stale.
CREATE TABLE remote_device_lists (
    user_id       TEXT PRIMARY KEY,
    stale         BOOLEAN NOT NULL,
    updated_ts    BIGINT NOT NULL
);

-- message_ids of m.direct_to_device EDUs already delivered, per origin.
CREATE TABLE federation_to_device_ids (
    origin        TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    received_ts   BIGINT NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX federation_to_device_ids_ts ON federation_to_device_ids (received_ts);

-- OpenID tokens (/user/{userId}/openid/request_token), stored hashed,
-- that other services check through /_matrix/federation/v1/openid/userinfo.
CREATE TABLE openid_tokens (
    token_hash    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    expires_ts    BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expires ON openid_tokens (expires_ts);
