-- Streams of end-to-end encryption: to-device messages and device list
-- changes. Their stream_pos columns feed store.Streams.ToDevice and
-- store.Streams.DeviceLists.

-- A to-device message waiting for one device; deleted once the device
-- acknowledges it by syncing past it.
CREATE TABLE to_device (
    stream_pos    BIGINT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    sender        TEXT NOT NULL,
    type          TEXT NOT NULL,
    content       TEXT NOT NULL
);
CREATE INDEX to_device_target ON to_device (user_id, device_id, stream_pos);

-- A change to a user's devices or cross-signing keys.
CREATE TABLE device_list_changes (
    stream_pos    BIGINT PRIMARY KEY,
    user_id       TEXT NOT NULL
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_pos);
