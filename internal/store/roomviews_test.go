package store

import (
	"context"
	"database/sql"
	"reflect"
	"strings"
	"testing"
)

// A stored view reads back as it was written while its room has no event
// after it; an event after it, or DropRoomView, makes it go.
func TestRoomViewsStayCurrent(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const room = "!r:hs.test"
		long := `{"content":{"body":"` + strings.Repeat("a message long enough to be compressed ", 8) + `"},"room_id":"!r:hs.test","sender":"@a:hs.test","type":"m.room.message"}`
		insert := func(pos int64, id string) *EventRow {
			t.Helper()
			r := &EventRow{Pos: pos, EventID: id, RoomID: room, Type: "m.room.message", Sender: "@a:hs.test", Depth: pos, OriginTS: 1000 + pos,
				PDU: []byte(long), Unsigned: []byte(`{"k":1}`), StateGroup: 7, TxnID: sql.NullString{String: "t1", Valid: true}, TxnDevice: sql.NullString{String: "D", Valid: true}}
			if err := s.InTx(ctx, func(tx *Tx) error { return tx.InsertEvent(ctx, r) }); err != nil {
				t.Fatal(err)
			}
			return r
		}
		insert(1, "$1")
		rows, err := s.RoomEvents(ctx, room, 0, 1, true, 11)
		if err != nil || len(rows) != 1 {
			t.Fatalf("rows %v, %v", rows, err)
		}
		view := &StoredView{RoomID: room, UpTo: 1, Complete: true, Rows: rows, Bases: [][]byte{[]byte(`{"type":"m.room.message"`)},
			Groups: []ViewGroup{{Group: 7, Visibility: "joined", Members: []ViewMember{{UserID: "@b:hs.test", Membership: "invite"}}}},
			State: []ViewState{{Key: StateKey{Type: "m.room.member", StateKey: "@a:hs.test"}, EventID: "$m", Head: []byte(`{"x":1,"unsigned":{`),
				OriginTS: 5, Sender: "@a:hs.test", Member: "join"}}}
		if err := s.PutRoomViews(ctx, []*StoredView{view}, nil); err != nil {
			t.Fatal(err)
		}
		got, err := s.RoomViews(ctx, []string{room, "!other:hs.test"})
		if err != nil || len(got) != 1 {
			t.Fatalf("views %v, %v", got, err)
		}
		g := got[0]
		if string(g.Rows[0].JSON()) != long || g.Rows[0].StoredSize() != rows[0].StoredSize() || g.Rows[0].TxnID != rows[0].TxnID {
			t.Fatalf("row read back as %+v (%s)", g.Rows[0], g.Rows[0].JSON())
		}
		g.Rows, view.Rows = nil, nil
		if !reflect.DeepEqual(g, view) {
			t.Fatalf("view read back as\n%+v\nwant\n%+v", g, view)
		}
		// An event after the view: it is stale.
		insert(2, "$2")
		if got, err := s.RoomViews(ctx, []string{room}); err != nil || len(got) != 0 {
			t.Fatalf("a stale view was read: %v, %v", got, err)
		}
		view.UpTo = 2
		if err := s.PutRoomViews(ctx, []*StoredView{view}, nil); err != nil {
			t.Fatal(err)
		}
		if got, err := s.RoomViews(ctx, []string{room}); err != nil || len(got) != 1 {
			t.Fatalf("the view made again was not read: %v, %v", got, err)
		}
		if err := s.InTx(ctx, func(tx *Tx) error { return tx.DropRoomView(ctx, room) }); err != nil {
			t.Fatal(err)
		}
		if got, err := s.RoomViews(ctx, []string{room}); err != nil || len(got) != 0 {
			t.Fatalf("a dropped view was read: %v, %v", got, err)
		}
	})
}

// Views stored before room_views became a table with rowids (SQLite,
// migration 34) read back after it.
func TestRoomViewsKeptByRowidMigration(t *testing.T) {
	forEachEngineAt(t, 33, func(t *testing.T, s *Store) {
		ctx := context.Background()
		view := &StoredView{RoomID: "!r:hs.test", UpTo: 3, Complete: true, Groups: []ViewGroup{},
			State: []ViewState{{Key: StateKey{Type: "m.room.name"}, EventID: "$n", Head: []byte(`{"x":1`), OriginTS: 5, Sender: "@a:hs.test"}}}
		if err := s.PutRoomViews(ctx, []*StoredView{view}, nil); err != nil {
			t.Fatal(err)
		}
		s.migrateRest(t)
		got, err := s.RoomViews(ctx, []string{"!r:hs.test"})
		if err != nil || len(got) != 1 {
			t.Fatalf("views %v, %v", got, err)
		}
		got[0].Rows, got[0].Bases, view.Rows, view.Bases = nil, nil, nil, nil
		if !reflect.DeepEqual(got[0], view) {
			t.Fatalf("view read back as\n%+v\nwant\n%+v", got[0], view)
		}
		// Views are still replaced in place.
		view.UpTo = 4
		if err := s.PutRoomViews(ctx, []*StoredView{view}, nil); err != nil {
			t.Fatal(err)
		}
		if got, err := s.RoomViews(ctx, []string{"!r:hs.test"}); err != nil || len(got) != 1 || got[0].UpTo != 4 {
			t.Fatalf("views after a rewrite: %v, %v", got, err)
		}
	})
}
