-- Rooms joined with partial state (send_join answered with members
-- omitted): the full state is still being fetched in the background.
-- A row lives from the join's commit to the commit of the full state, so a
-- restart resumes the fetch. servers is a JSON array: the servers in the
-- room as the resident server listed them, the one that answered first.
CREATE TABLE partial_state_rooms (
    room_id        TEXT PRIMARY KEY,
    join_event_id  TEXT NOT NULL,
    servers        TEXT NOT NULL
);
