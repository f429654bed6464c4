-- The prev events of each rejected event (JSON array): the state after a
-- rejected event is the state before it, which later events that name it
-- as a prev event are checked against.
ALTER TABLE federation_rejected ADD COLUMN prev_events TEXT NOT NULL DEFAULT '[]';
