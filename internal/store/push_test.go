package store

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
)

func TestNotificationCountsStagedAndCompacted(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const user = "@u:x"
		// 150 rooms (more than one counting statement), two notifications
		// each, the second a highlight in a thread of room 0.
		var rooms []string
		pos := int64(0)
		stage := func(room, thread string, highlight bool, users ...string) int64 {
			pos++
			p := StagedPush{Pos: pos, RoomID: room, EventID: fmt.Sprintf("$e%d", pos), ThreadID: thread, TS: 1}
			for _, u := range users {
				p.Recipients = append(p.Recipients, StagedRecipient{UserID: u, Highlight: highlight, Actions: json.RawMessage(`["notify"]`)})
			}
			if err := s.InTx(ctx, func(tx *Tx) error { return tx.StagePush(ctx, p) }); err != nil {
				t.Fatal(err)
			}
			return pos
		}
		for i := range 150 {
			r := fmt.Sprintf("!r%03d:x", i)
			rooms = append(rooms, r)
			stage(r, "main", false, user, "@other:x")
		}
		stage(rooms[0], "$root", true, user)
		stage(rooms[149], "main", false, "@other:x")
		check := func(what string, want map[string]int64) {
			t.Helper()
			var ranges []CountRange
			for _, r := range rooms {
				ranges = append(ranges, CountRange{RoomID: r})
			}
			counts, _, err := s.NotificationCounts(ctx, user, ranges, 1<<40)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, c := range counts {
				got[c.RoomID+" "+c.ThreadID] += c.Notify*10 + c.Highlight
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s: %s = %d, want %d", what, k, got[k], v)
				}
			}
			if len(got) != len(want) {
				t.Errorf("%s: %d counts, want %d", what, len(got), len(want))
			}
		}
		want := map[string]int64{}
		for _, r := range rooms {
			want[r+" main"] = 10
		}
		want[rooms[0]+" $root"] = 11
		check("staged", want)
		staged, err := s.StagedPushes(ctx, 1000)
		if err != nil || len(staged) != 152 {
			t.Fatalf("staged %d %v", len(staged), err)
		}
		if err := s.CompactStaged(ctx, staged[:100]); err != nil {
			t.Fatal(err)
		}
		check("half compacted", want)
		if err := s.CompactStaged(ctx, staged[100:]); err != nil {
			t.Fatal(err)
		}
		check("compacted", want)
		// A main timeline receipt clears the main timeline, a thread's
		// receipt its thread.
		err = s.InTx(ctx, func(tx *Tx) error {
			if _, err := tx.PutReceipt(ctx, Receipt{RoomID: rooms[0], Type: "m.read", UserID: user, ThreadID: "main", EventID: "$e1", EventPos: 1, TS: 1, Pos: 1}); err != nil {
				return err
			}
			_, err := tx.PutReceipt(ctx, Receipt{RoomID: rooms[1], Type: "m.read.private", UserID: user, EventID: "$e2", EventPos: 2, TS: 1, Pos: 2})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		delete(want, rooms[0]+" main")
		delete(want, rooms[1]+" main")
		check("after receipts", want)
		// Counting from a position counts only what comes after it.
		counts, reads, err := s.NotificationCounts(ctx, user, []CountRange{{RoomID: rooms[0], From: 150}, {RoomID: rooms[2], From: 3}}, 1<<40)
		if err != nil || len(counts) != 1 || counts[0].ThreadID != "$root" || counts[0].Highlight != 1 {
			t.Fatalf("counts from a position %+v %v", counts, err)
		}
		if reads[rooms[0]]["main"] != 1 || len(reads) != 1 {
			t.Fatalf("receipts %v", reads)
		}
		ns, err := s.Notifications(ctx, user, 0, 2, false)
		if err != nil || len(ns) != 2 || ns[0].Pos != 151 || !ns[0].Highlight || ns[1].Pos != 150 {
			t.Fatalf("notifications %+v %v", ns, err)
		}
		ns, err = s.Notifications(ctx, user, 3, 5, false)
		if err != nil || len(ns) != 2 || !ns[0].Read || !ns[1].Read {
			t.Fatalf("older notifications %+v %v", ns, err)
		}
		// Read by a receipt and not highlighting, they go in a receipt's
		// transaction (the receipts above had none).
		rowsOf := func() (n int) {
			t.Helper()
			if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_actions WHERE user_id = $1`, user).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := rowsOf()
		err = s.InTx(ctx, func(tx *Tx) error {
			// Main timeline of room 0: its thread's highlight stays (and an
			// unthreaded receipt would keep it too).
			if err := tx.DropReadNotifications(ctx, user, rooms[0], "main", 1<<40); err != nil {
				return err
			}
			return tx.DropReadNotifications(ctx, user, rooms[1], "", 2)
		})
		if err != nil {
			t.Fatal(err)
		}
		if after := rowsOf(); after != before-2 {
			t.Fatalf("%d rows after dropping read notifications, want %d", after, before-2)
		}
		if ns, err = s.Notifications(ctx, user, 3, 5, false); err != nil || len(ns) != 0 {
			t.Fatalf("older notifications after the receipts %+v %v", ns, err)
		}
		ns, err = s.Notifications(ctx, user, 0, 5, true)
		if err != nil || len(ns) != 1 || ns[0].ThreadID != "$root" {
			t.Fatalf("highlights %+v %v", ns, err)
		}
		// Compaction leaves out what a receipt read while it was staged.
		p := stage(rooms[2], "main", false, user)
		err = s.InTx(ctx, func(tx *Tx) error {
			_, err := tx.PutReceipt(ctx, Receipt{RoomID: rooms[2], Type: "m.read", UserID: user, EventID: "$e", EventPos: p, TS: 1, Pos: 3})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		before = rowsOf()
		staged, _ = s.StagedPushes(ctx, 10)
		if err := s.CompactStaged(ctx, staged); err != nil {
			t.Fatal(err)
		}
		if after := rowsOf(); after != before {
			t.Fatalf("compaction wrote a read notification: %d rows, want %d", after, before)
		}
	})
}
