-- Events refused while their room's state was partial: they passed their
-- own auth events but not the partial state, which may be what is wrong.
-- When the full state arrives they are checked again, and admitted if
-- they pass. after_pos is the room's newest stream position when the event
-- was refused; state_before the partial state before it (JSON: a list of
-- [type, state_key, event_id]). The rows go with the partial-state mark.
CREATE TABLE partial_state_refused (
    event_id      TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    origin        TEXT NOT NULL,
    pdu           TEXT NOT NULL,
    after_pos     BIGINT NOT NULL,
    state_before  TEXT NOT NULL
);
CREATE INDEX partial_state_refused_room ON partial_state_refused (room_id, after_pos);
