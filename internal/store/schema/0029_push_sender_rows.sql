-- A room-wide notification no longer has a push_actions row for its
-- sender (counted -1): the sender's own event marks its thread read
-- (push_read) and /notifications leaves out a user's own events. The rows
-- stored before are of no use.
DELETE FROM push_actions WHERE counted = -1 AND EXISTS (
    SELECT 1 FROM events e WHERE e.stream_pos = push_actions.stream_pos AND e.sender = push_actions.user_id);
