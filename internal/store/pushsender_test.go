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

// TestMigrationRoomActionsWithoutEventID: migration 30 rebuilds
// push_room_actions without its event ids and keeps every row, and a
// user's notifications still name each event by its position.
func TestMigrationRoomActionsWithoutEventID(t *testing.T) {
	forEachEngineAt(t, 29, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for pos := int64(1); pos <= 3; pos++ {
			if _, err := s.w.ExecContext(ctx, `INSERT INTO events (stream_pos, event_id, room_id, type, sender, depth, origin_ts, pdu, state_group)
				VALUES ($1, $2, '!r:x', 'm.room.message', '@a:x', 1, 0, $3, 0)`, pos, fmt.Sprintf("$e%d", pos), []byte("{}")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.w.ExecContext(ctx, `INSERT INTO push_room_actions (room_id, thread_id, stream_pos, event_id, actions, ts) VALUES ('!r:x', 'main', $1, $2, '["notify"]', $3)`,
				pos, fmt.Sprintf("$e%d", pos), 100+pos); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.w.ExecContext(ctx, `INSERT INTO room_members (room_id, user_id, membership, event_id, stream_pos, joined_pos) VALUES ('!r:x', '@b:x', 'join', '$j', 0, 0)`); err != nil {
			t.Fatal(err)
		}
		s.migrateRest(t)
		var n int
		if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_room_actions`).Scan(&n); err != nil || n != 3 {
			t.Fatalf("rows after migration: %d %v, want 3", n, err)
		}
		// A row stored after the migration.
		if err := s.InTx(ctx, func(tx *Tx) error {
			return tx.insertRoomActions(ctx, []StagedPush{{Pos: 4, RoomID: "!r:x", EventID: "$e4", ThreadID: "main", TS: 104, Everyone: []byte(`["notify"]`)}})
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.w.ExecContext(ctx, `INSERT INTO events (stream_pos, event_id, room_id, type, sender, depth, origin_ts, pdu, state_group)
			VALUES (4, '$e4', '!r:x', 'm.room.message', '@a:x', 1, 0, $1, 0)`, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		ns, err := s.Notifications(ctx, "@b:x", 0, 10, false)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, n := range ns {
			got = append(got, fmt.Sprint(n.EventID, " ", n.TS))
		}
		if want := []string{"$e4 104", "$e3 103", "$e2 102", "$e1 101"}; !slices.Equal(got, want) {
			t.Fatalf("notifications %v, want %v", got, want)
		}
	})
}

// TestMigrationPushActionsIndex: migration 31 rebuilds push_actions on
// PostgreSQL with its columns reordered and an index by user and room in
// place of the primary key, keeping every row; counts read them as
// before (SQLite keeps its table).
func TestMigrationPushActionsIndex(t *testing.T) {
	forEachEngineAt(t, 30, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for pos := int64(1); pos <= 3; pos++ {
			if _, err := s.w.ExecContext(ctx, `INSERT INTO push_actions (user_id, room_id, stream_pos, thread_id, highlight, actions, ts, counted) VALUES ('@b:x', '!r:x', $1, 'main', $2, '["notify"]', $3, 1)`,
				pos, pos == 2, 100+pos); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.w.ExecContext(ctx, `INSERT INTO room_members (room_id, user_id, membership, event_id, stream_pos, joined_pos) VALUES ('!r:x', '@b:x', 'join', '$j', 0, 0)`); err != nil {
			t.Fatal(err)
		}
		s.migrateRest(t)
		counts, _, err := s.NotificationCounts(ctx, "@b:x", []CountRange{{RoomID: "!r:x"}}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(counts) != 1 || counts[0].Notify != 3 || counts[0].Highlight != 1 {
			t.Fatalf("counts after migration %+v, want 3 with 1 highlight", counts)
		}
		if s.Engine != Postgres {
			return
		}
		var idx string
		if err := s.w.QueryRowContext(ctx, `SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'push_actions'`).Scan(&idx); err != nil || idx != "push_actions_user_room" {
			t.Fatalf("indexes of push_actions: %q %v", idx, err)
		}
	})
}
