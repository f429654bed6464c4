package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// TestMigrationDropsSenderRows: migration 29 deletes the "not notified"
// rows the room-wide notifications of a sender's own messages had, and
// keeps every other row.
func TestMigrationDropsSenderRows(t *testing.T) {
	forEachEngineAt(t, 28, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for i, sender := range []string{"@a:x", "@b:x"} {
			if _, err := s.w.ExecContext(ctx, `INSERT INTO events (stream_pos, event_id, room_id, type, sender, depth, origin_ts, pdu, state_group)
				VALUES ($1, $2, '!r:x', 'm.room.message', $3, 1, 0, $4, 0)`, i+1, "$e"+sender, sender, []byte("{}")); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range []struct {
			user    string
			pos     int64
			counted int
		}{
			{"@a:x", 1, -1}, // a's own message: goes
			{"@c:x", 1, -1}, // c was not notified of a's: stays
			{"@b:x", 1, 0},  // b was notified otherwise: stays
			{"@b:x", 2, -1}, // b's own message: goes
			{"@a:x", 2, 1},  // a notified of b's: stays
		} {
			if _, err := s.w.ExecContext(ctx, `INSERT INTO push_actions (user_id, room_id, stream_pos, thread_id, highlight, actions, ts, counted) VALUES ($1, '!r:x', $2, 'main', FALSE, '[]', 0, $3)`,
				r.user, r.pos, r.counted); err != nil {
				t.Fatal(err)
			}
		}
		s.migrateRest(t)
		rows, err := s.w.QueryContext(ctx, `SELECT user_id, stream_pos FROM push_actions ORDER BY stream_pos, user_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var u string
			var pos int64
			if err := rows.Scan(&u, &pos); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprint(u, pos))
		}
		if want := []string{"@b:x1", "@c:x1", "@a:x2"}; !slices.Equal(got, want) {
			t.Fatalf("rows after migration %v, want %v", got, want)
		}
	})
}
