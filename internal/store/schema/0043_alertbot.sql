-- The alert bot's end-to-end encryption state (internal/alertbot): its
-- Olm account, Olm sessions with other devices, and Megolm sessions of
-- the rooms it posts to, one row per (kind, name). Every value is sealed
-- (AES-256-GCM, bound to kind and name) under the bot's data key; the
-- data key itself is the row of kind 'key', wrapped by the media master
-- key (key_id says which), so `luxchat media rotate-key` re-wraps it with
-- the media file keys.
CREATE TABLE alertbot_state (
    kind     TEXT NOT NULL,
    name     TEXT NOT NULL,
    value    TEXT NOT NULL,
    key_id   TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, name)
);
