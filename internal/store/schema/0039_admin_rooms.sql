-- Rooms an administrator blocked: local users may not join them, nor be
-- invited to them (Synapse's admin API, PUT /v1/rooms/{roomId}/block). A
-- room may be blocked before this server knows it.
CREATE TABLE blocked_rooms (
    room_id     TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    blocked_ts  BIGINT NOT NULL
);

-- Room deletions (DELETE /_synapse/admin/v2/rooms/{roomId}) run in the
-- background; a row per deletion keeps its parameters, status and result
-- so that a restart resumes what was scheduled or active.
CREATE TABLE room_delete_tasks (
    delete_id   TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    requester   TEXT NOT NULL,
    params      TEXT NOT NULL,
    status      TEXT NOT NULL,
    result      TEXT NOT NULL DEFAULT '{}',
    error       TEXT NOT NULL DEFAULT '',
    created_ts  BIGINT NOT NULL,
    updated_ts  BIGINT NOT NULL
);
CREATE INDEX room_delete_tasks_room ON room_delete_tasks (room_id, created_ts);
CREATE INDEX room_delete_tasks_status ON room_delete_tasks (status);

-- Quarantined media answers 404 to everyone; the administrator who
-- quarantined it is kept.
ALTER TABLE media ADD COLUMN quarantined_by TEXT;

-- A room's purge finds its state groups without reading every group.
CREATE INDEX state_groups_room ON state_groups (room_id);
