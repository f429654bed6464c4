-- Incoming webhooks (internal/webhooks). A hook posts into one room; its
-- URL carries hook_id and a secret of which only the SHA-256 is kept
-- (hex). A revoked hook keeps its row (revoked_ts set) so that the list
-- shows it, and its id is never handed out again.
CREATE TABLE webhooks (
    hook_id      TEXT PRIMARY KEY,
    room_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    rotated_ts   BIGINT NOT NULL,
    revoked_ts   BIGINT
);

-- The message each alert of a hook became: a later notification of the
-- same alert (alert_key: Alertmanager's or Grafana's fingerprint) edits
-- or answers it, or is left out when nothing changed (digest: of the
-- rendered message).
CREATE TABLE webhook_alerts (
    hook_id      TEXT NOT NULL,
    alert_key    TEXT NOT NULL,
    group_key    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    status       TEXT NOT NULL,
    digest       TEXT NOT NULL,
    updated_ts   BIGINT NOT NULL,
    PRIMARY KEY (hook_id, alert_key)
);
