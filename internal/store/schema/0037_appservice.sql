-- Application services (internal/appservice). The events table is each
-- service's queue: what it has not acknowledged is every event after
-- acked_pos in a room it is interested in, and every to-device message
-- after acked_to_device for one of its users. The transaction being
-- delivered is kept whole (txn_id, body) so that it is resent unchanged
-- until the service acknowledges it, across restarts too.
CREATE TABLE appservice_positions (
    as_id            TEXT PRIMARY KEY,
    acked_pos        BIGINT NOT NULL,
    acked_to_device  BIGINT NOT NULL,
    next_txn         BIGINT NOT NULL
);
CREATE TABLE appservice_txns (
    as_id            TEXT PRIMARY KEY,
    txn_id           BIGINT NOT NULL,
    upto_pos         BIGINT NOT NULL,
    upto_to_device   BIGINT NOT NULL,
    body             TEXT NOT NULL
);

-- The rooms application services list in their networks' room
-- directories (PUT /directory/list/appservice/{networkId}/{roomId}),
-- shown by /publicRooms with third_party_instance_id "as_id|network_id"
-- or include_all_networks.
CREATE TABLE appservice_room_directory (
    as_id            TEXT NOT NULL,
    network_id       TEXT NOT NULL,
    room_id          TEXT NOT NULL,
    PRIMARY KEY (as_id, network_id, room_id)
);
CREATE INDEX appservice_room_directory_room ON appservice_room_directory (room_id);
