-- What /sync's room summary needs, kept as memberships change instead of
-- counted from every member event of the room per sync: the joined and
-- invited member counts and the hero candidates, the first six joined or
-- invited members by user id (newline-separated): a reader's heroes are
-- the first five that are not themselves.
CREATE TABLE room_member_summaries (
    room_id          TEXT PRIMARY KEY,
    joined_members   BIGINT NOT NULL DEFAULT 0,
    invited_members  BIGINT NOT NULL DEFAULT 0,
    heroes           TEXT NOT NULL DEFAULT ''
);

INSERT INTO room_member_summaries (room_id, joined_members, invited_members)
SELECT room_id, SUM(CASE WHEN membership = 'join' THEN 1 ELSE 0 END), SUM(CASE WHEN membership = 'invite' THEN 1 ELSE 0 END)
FROM room_members GROUP BY room_id;

-- The order of the list does not matter: readers sort it.
UPDATE room_member_summaries SET heroes = COALESCE((SELECT group_concat(user_id, char(10)) FROM ( -- only: sqlite
UPDATE room_member_summaries SET heroes = COALESCE((SELECT string_agg(user_id, chr(10)) FROM ( -- only: postgres
    SELECT m.user_id FROM room_members m
    WHERE m.room_id = room_member_summaries.room_id AND m.membership IN ('join', 'invite')
    ORDER BY m.user_id LIMIT 6) AS h), '');
