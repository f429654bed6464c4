-- End-to-end encryption: device identity keys, one-time and fallback keys,
-- cross-signing keys and signatures, to-device transaction ids, server-side
-- key backups and dehydrated devices (see store/e2ee.go and internal/e2ee).

-- A device's identity keys as uploaded (canonical JSON, signed by the
-- device's own ed25519 key, which is kept apart for verifying signatures
-- the device makes).
CREATE TABLE device_keys (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    key_json      TEXT NOT NULL,
    ed25519       TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys, handed out once each, in upload order (id).
CREATE TABLE one_time_keys (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- only: postgres
    id            INTEGER PRIMARY KEY AUTOINCREMENT, -- only: sqlite
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    algorithm     TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    key_json      TEXT NOT NULL
);
CREATE UNIQUE INDEX one_time_keys_key ON one_time_keys (user_id, device_id, algorithm, key_id);
CREATE INDEX one_time_keys_claim ON one_time_keys (user_id, device_id, algorithm, id);

-- At most one fallback key per device and algorithm; used once it was
-- handed out by a claim.
CREATE TABLE fallback_keys (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    algorithm     TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    key_json      TEXT NOT NULL,
    used          BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: key_type is master, self_signing or user_signing;
-- key_id is "ed25519:<public key>".
CREATE TABLE cross_signing_keys (
    user_id       TEXT NOT NULL,
    key_type      TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    key_json      TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload, merged into the
-- signed object when it is queried. target_key is a device id or the
-- public key of a master key; signer_key is "ed25519:<device id or key>".
CREATE TABLE e2e_signatures (
    target_user   TEXT NOT NULL,
    target_key    TEXT NOT NULL,
    signer_user   TEXT NOT NULL,
    signer_key    TEXT NOT NULL,
    signature     TEXT NOT NULL,
    PRIMARY KEY (target_user, target_key, signer_user, signer_key)
);

-- A change visible to one user only (a signature that user made on someone
-- else's master key); NULL: visible to everyone sharing a room.
ALTER TABLE device_list_changes ADD COLUMN notify_user TEXT;
CREATE INDEX device_list_changes_notify ON device_list_changes (notify_user, stream_pos);

-- Membership changes in a window of the events stream, per room (device
-- list changes on joins and leaves).
CREATE INDEX room_members_room_pos ON room_members (room_id, stream_pos);

-- Transaction ids of /sendToDevice, per device (idempotency).
CREATE TABLE to_device_txns (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    txn_id        TEXT NOT NULL,
    created_ts    BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX to_device_txns_created ON to_device_txns (created_ts);

-- Server-side key backups. Versions count up per user and are never
-- reused; a deleted version keeps its row (deleted) so that deleting it
-- again succeeds. etag changes with every change to the version's keys.
CREATE TABLE key_backup_versions (
    user_id       TEXT NOT NULL,
    version       BIGINT NOT NULL,
    algorithm     TEXT NOT NULL,
    auth_data     TEXT NOT NULL,
    etag          BIGINT NOT NULL DEFAULT 0,
    deleted       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE key_backup_sessions (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);

-- A user's dehydrated device (MSC3814): a device row without access
-- tokens plus the client's opaque pickled device.
CREATE TABLE dehydrated_devices (
    user_id       TEXT PRIMARY KEY,
    device_id     TEXT NOT NULL,
    device_data   TEXT NOT NULL
);
