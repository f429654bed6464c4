package store

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
)

// The bulk writes store exactly what the one-row statements would, for
// counts that use every statement size, on both engines.
func TestBulkStateWrites(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for _, n := range []int{0, 1, 7, 300, 1000} {
			roomID := fmt.Sprintf("!bulk%d:a.test", n)
			st := StateMap{}
			var outliers []*EventRow
			var ms []Membership
			for i := range n {
				id := fmt.Sprintf("$e%d_%d", n, i)
				st[StateKey{Type: "m.room.member", StateKey: fmt.Sprintf("@u%d:a.test", i)}] = id
				outliers = append(outliers, &EventRow{Pos: -int64(1000*n + i + 1), EventID: id, RoomID: roomID, Type: "m.room.member",
					StateKey: sql.NullString{String: fmt.Sprintf("@u%d:a.test", i), Valid: true}, Sender: "@u:a.test", Depth: int64(i),
					PDU: []byte(`{}`), Unsigned: []byte(`{}`), StateGroup: -1})
				ms = append(ms, Membership{RoomID: roomID, UserID: fmt.Sprintf("@u%d:a.test", i), Membership: "join", EventID: id, Pos: 1})
			}
			var group int64
			err := s.InTx(ctx, func(tx *Tx) error {
				if err := tx.CreateRoom(ctx, Room{RoomID: roomID, Version: "12", Creator: "@u:a.test"}); err != nil {
					return err
				}
				if err := tx.InsertOutliers(ctx, outliers); err != nil {
					return err
				}
				var err error
				if group, err = tx.NewStateSnapshot(ctx, roomID, st); err != nil {
					return err
				}
				if err := tx.SetCurrentStateMany(ctx, roomID, st); err != nil {
					return err
				}
				return tx.SetMemberships(ctx, ms)
			})
			if err != nil {
				t.Fatalf("%d: %v", n, err)
			}
			got, err := s.StateGroup(ctx, group)
			if err != nil || len(got) != n {
				t.Fatalf("%d: state group of %d entries: %v", n, len(got), err)
			}
			cur, err := s.CurrentState(ctx, roomID)
			if err != nil || len(cur) != n {
				t.Fatalf("%d: current state of %d entries: %v", n, len(cur), err)
			}
			for k, id := range st {
				if got[k] != id || cur[k] != id {
					t.Fatalf("%d: %v is %q / %q, want %q", n, k, got[k], cur[k], id)
				}
			}
			members, err := s.RoomMemberships(ctx, roomID)
			if err != nil || len(members) != n {
				t.Fatalf("%d: %d members: %v", n, len(members), err)
			}
			ids := make([]string, 0, n)
			for _, id := range st {
				ids = append(ids, id)
			}
			groups, err := s.EventStateGroups(ctx, append(ids, "$unknown"))
			if err != nil || len(groups) != n {
				t.Fatalf("%d: %d stored events: %v", n, len(groups), err)
			}
			// Outliers are removed in one statement; a second insert of
			// the same events leaves them as they are.
			err = s.InTx(ctx, func(tx *Tx) error {
				if err := tx.InsertOutliers(ctx, outliers); err != nil {
					return err
				}
				return tx.DeleteOutliers(ctx, ids)
			})
			if groups, _ := s.EventStateGroups(ctx, ids); err != nil || len(groups) != 0 {
				t.Fatalf("%d: %d outliers left: %v", n, len(groups), err)
			}
		}
	})
}
