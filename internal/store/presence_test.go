package store

import (
	"context"
	"fmt"
	"testing"
)

// TestTouchPresenceMovesNoStream checks that a presence refreshed in the
// same state keeps its stream position, so no reader gets it again, while
// a change of state is read by a roommate.
func TestTouchPresenceMovesNoStream(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		var pos int64
		err := s.InTx(ctx, func(tx *Tx) error {
			for _, m := range []Membership{{RoomID: "!r:x", UserID: "@a:x", Membership: "join", EventID: "$1", Pos: 1}, {RoomID: "!r:x", UserID: "@b:x", Membership: "join", EventID: "$2", Pos: 2}} {
				if err := tx.SetMembership(ctx, m); err != nil {
					return err
				}
			}
			var err error
			pos, err = tx.PutPresence(ctx, Presence{UserID: "@a:x", State: "online", LastActiveTS: 1000})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.PresenceSince(ctx, "@b:x", 0, pos); err != nil || len(got) != 1 || got[0].UserID != "@a:x" {
			t.Fatalf("roommate reads %+v %v", got, err)
		}
		if got, err := s.PresenceSince(ctx, "@c:x", 0, pos); err != nil || len(got) != 0 {
			t.Fatalf("a stranger reads %+v %v", got, err)
		}
		if err := s.TouchPresence(ctx, map[string]int64{"@a:x": 5000, "@unknown:x": 5000}); err != nil {
			t.Fatal(err)
		}
		p, err := s.GetPresence(ctx, "@a:x")
		if err != nil || p.LastActiveTS != 5000 || p.Pos != pos || p.State != "online" {
			t.Fatalf("after touch %+v %v", p, err)
		}
		if got, err := s.PresenceSince(ctx, "@b:x", pos, pos); err != nil || len(got) != 0 {
			t.Fatalf("touch read again: %+v %v", got, err)
		}
		// A touch noted before a newer time was stored (flushed late) keeps
		// the newer one.
		if err := s.TouchPresence(ctx, map[string]int64{"@a:x": 4000}); err != nil {
			t.Fatal(err)
		}
		if p, err := s.GetPresence(ctx, "@a:x"); err != nil || p.LastActiveTS != 5000 {
			t.Fatalf("an older touch overwrote a newer time: %+v %v", p, err)
		}
		// Many users at once (several statements on PostgreSQL), each
		// with their own time.
		touches := map[string]int64{}
		err = s.InTx(ctx, func(tx *Tx) error {
			for i := range 530 {
				u := fmt.Sprintf("@u%d:x", i)
				touches[u] = int64(10000 + i)
				if _, err := tx.PutPresence(ctx, Presence{UserID: u, State: "online", LastActiveTS: 1000}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.TouchPresence(ctx, touches); err != nil {
			t.Fatal(err)
		}
		for u, ts := range touches {
			if p, err := s.GetPresence(ctx, u); err != nil || p.LastActiveTS != ts {
				t.Fatalf("%s after touch: %+v %v, want %d", u, p, err, ts)
			}
		}
	})
}
