package store

import (
	"context"
	"fmt"
	"strings"
)

// Reads of simplified sliding sync: what orders and filters a user's room
// list is read for many rooms at once, never one statement per room.

// latestPosPG is RoomsLatestPos on PostgreSQL: each room's newest event
// found by the (room_id, stream_pos) index.
const latestPosPG = `SELECT r.id, (SELECT stream_pos FROM events WHERE room_id = r.id AND stream_pos > 0
	ORDER BY stream_pos DESC LIMIT 1) FROM unnest($1::text[]) AS r(id)`

// RoomsLatestPos returns the position of each room's newest timeline
// event (rooms without one are left out).
func (s *Store) RoomsLatestPos(ctx context.Context, roomIDs []string) (map[string]int64, error) {
	out := make(map[string]int64, len(roomIDs))
	scan := func(q string, args ...any) error {
		rows, err := s.reader().QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var pos *int64
			if err := rows.Scan(&id, &pos); err != nil {
				return err
			}
			if pos != nil {
				out[id] = *pos
			}
		}
		return rows.Err()
	}
	if s.Engine == Postgres {
		return out, scan(latestPosPG, roomIDs)
	}
	// SQLite answers MAX over the index's range of one room without a scan.
	for start := 0; start < len(roomIDs); start += 100 {
		chunk := roomIDs[start:min(len(roomIDs), start+100)]
		var b strings.Builder
		args := make([]any, 0, len(chunk))
		for i, id := range chunk {
			if i > 0 {
				b.WriteString(" UNION ALL ")
			}
			fmt.Fprintf(&b, "SELECT $%d, (SELECT MAX(stream_pos) FROM events WHERE room_id = $%d AND stream_pos > 0)", i+1, i+1)
			args = append(args, id)
		}
		if err := scan(b.String(), args...); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CurrentStateOfTypes returns the current state events of the given
// types in rooms, in one statement (per 500 rooms on SQLite): the room
// types and encryption a room list is filtered by.
func (s *Store) CurrentStateOfTypes(ctx context.Context, roomIDs, types []string) ([]*EventRow, error) {
	if s.Engine == Postgres {
		return scanEvents(s.reader().QueryContext(ctx, `SELECT e.* FROM room_state s CROSS JOIN LATERAL (
			SELECT `+eventCols+` FROM events WHERE event_id = s.event_id LIMIT 1) AS e
			WHERE s.room_id = ANY($1) AND s.type = ANY($2)`, roomIDs, types))
	}
	var out []*EventRow
	for start := 0; start < len(roomIDs); start += 500 {
		chunk := roomIDs[start:min(len(roomIDs), start+500)]
		var q query
		q.add(`SELECT e.` + strings.ReplaceAll(eventCols, ", ", ", e.") + ` FROM room_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id IN (`)
		for i, id := range chunk {
			if i > 0 {
				q.add(", ")
			}
			q.add("?", id)
		}
		q.add(") AND s.type IN (")
		for i, t := range types {
			if i > 0 {
				q.add(", ")
			}
			q.add("?", t)
		}
		q.add(")")
		rows, err := scanEvents(s.reader().QueryContext(ctx, q.b.String(), q.args...))
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

// LatestOfTypes returns the position of a room's newest timeline event
// of one of the types at or before upTo (0 when none): a room's
// bump_stamp, when its recent events hold none.
func (s *Store) LatestOfTypes(ctx context.Context, roomID string, types []string, upTo int64) (int64, error) {
	var q query
	q.add(`SELECT stream_pos FROM events WHERE `)
	s.inRoomOrdered(&q, roomID)
	q.add(` AND stream_pos > 0 AND stream_pos <= ? AND type IN (`, upTo)
	for i, t := range types {
		if i > 0 {
			q.add(", ")
		}
		q.add("?", t)
	}
	q.add(`) ORDER BY room_id DESC, stream_pos DESC LIMIT 1`)
	rows, err := s.reader().QueryContext(ctx, q.b.String(), q.args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var pos int64
	if rows.Next() {
		if err := rows.Scan(&pos); err != nil {
			return 0, err
		}
	}
	return pos, rows.Err()
}

// CurrentMembersOf returns the current member events of the given
// (room, user) pairs, in one statement (per 400 pairs on SQLite): the
// members a window of rooms shows (the reader, the timelines' senders,
// heroes) without reading every member of a big room.
func (s *Store) CurrentMembersOf(ctx context.Context, pairs [][2]string) ([]*EventRow, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	if s.Engine == Postgres {
		rooms, users := make([]string, len(pairs)), make([]string, len(pairs))
		for i, p := range pairs {
			rooms[i], users[i] = p[0], p[1]
		}
		return scanEvents(s.reader().QueryContext(ctx, `SELECT e.* FROM unnest($1::text[], $2::text[]) AS p(room_id, user_id)
			JOIN room_state s ON s.room_id = p.room_id AND s.type = 'm.room.member' AND s.state_key = p.user_id
			CROSS JOIN LATERAL (SELECT `+eventCols+` FROM events WHERE event_id = s.event_id LIMIT 1) AS e`, rooms, users))
	}
	var out []*EventRow
	for start := 0; start < len(pairs); start += 400 {
		chunk := pairs[start:min(len(pairs), start+400)]
		var q query
		q.add(`SELECT e.` + strings.ReplaceAll(eventCols, ", ", ", e.") + ` FROM room_state s JOIN events e ON e.event_id = s.event_id
			WHERE s.type = 'm.room.member' AND (s.room_id, s.state_key) IN (VALUES `)
		for i, p := range chunk {
			if i > 0 {
				q.add(", ")
			}
			q.add("(?, ?)", p[0], p[1])
		}
		q.add(")")
		rows, err := scanEvents(s.reader().QueryContext(ctx, q.b.String(), q.args...))
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}
