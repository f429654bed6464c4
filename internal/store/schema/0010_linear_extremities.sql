-- room_extremities now lists forward extremities only for rooms whose event
-- graph has forked; a linear room's only extremity is its newest event,
-- which is not written on every send. Every room so far is linear.
DELETE FROM room_extremities;
