package directory

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"luxchat/internal/config"
	"luxchat/internal/store"
	"luxchat/internal/testutil/pgtest"
)

// forEachStore runs f on a fresh SQLite store and a fresh PostgreSQL one.
func forEachStore(t *testing.T, f func(t *testing.T, st *store.Store)) {
	t.Run("sqlite", func(t *testing.T) { f(t, openStore(t, store.Options{DataDir: t.TempDir()})) })
	t.Run("postgres", func(t *testing.T) { f(t, openStore(t, store.Options{PostgresDSN: pgtest.NewDatabase(t)})) })
}

func openStore(t *testing.T, o store.Options) *store.Store {
	st, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestBackfill: data written before the directory tables existed (or
// whose hooks were lost) is indexed at start.
func TestBackfill(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		cfg := config.Default()
		cfg.ServerName = "t.test"
		s := New(cfg, st, nil, nil, nil)
		pos := int64(0)
		state := func(tx *store.Tx, roomID, typ, key string, content any) {
			pos++
			c, _ := json.Marshal(content)
			evID := fmt.Sprintf("$e%d", pos)
			pdu, _ := json.Marshal(map[string]any{"type": typ, "state_key": key, "sender": "@anna:t.test", "origin_server_ts": 1000 + pos, "content": json.RawMessage(c)})
			row := &store.EventRow{Pos: pos, EventID: evID, RoomID: roomID, Type: typ, StateKey: sql.NullString{String: key, Valid: true},
				Sender: "@anna:t.test", OriginTS: 1000 + pos, PDU: pdu, Unsigned: []byte("{}")}
			if err := tx.InsertEvent(ctx, row); err != nil {
				t.Fatal(err)
			}
			if err := tx.SetCurrentState(ctx, roomID, store.StateKey{Type: typ, StateKey: key}, evID); err != nil {
				t.Fatal(err)
			}
			if typ == "m.room.member" {
				if err := tx.SetMembership(ctx, store.Membership{RoomID: roomID, UserID: key, Membership: "join", EventID: evID, Pos: pos}); err != nil {
					t.Fatal(err)
				}
			}
		}
		err := st.InTx(ctx, func(tx *store.Tx) error {
			for _, u := range []struct{ id, name string }{{"@anna:t.test", "Anna Müller"}, {"@carl:t.test", "Carl New"}, {"@dora:t.test", "Dora Gone"}, {"@eve:t.test", "Eve Quiet"}} {
				if err := tx.CreateUser(ctx, store.User{UserID: u.id, DisplayName: sql.NullString{String: u.name, Valid: true}}); err != nil {
					return err
				}
			}
			if _, err := tx.PutAccountData(ctx, "@anna:t.test", "", AccountDataType, []byte(`{"visible":true}`)); err != nil {
				return err
			}
			if _, err := tx.PutAccountData(ctx, "@dora:t.test", "", AccountDataType, []byte(`{"visible":true}`)); err != nil {
				return err
			}
			// Stale rows: Carl's old name, Dora deactivated since.
			row, terms := directoryEntry("@carl:t.test", "Old Name", "", true)
			if err := tx.PutDirectoryUser(ctx, row, terms); err != nil {
				return err
			}
			row, terms = directoryEntry("@dora:t.test", "Dora Gone", "", true)
			if err := tx.PutDirectoryUser(ctx, row, terms); err != nil {
				return err
			}
			if err := tx.Deactivate(ctx, "@dora:t.test"); err != nil {
				return err
			}
			if err := tx.CreateRoom(ctx, store.Room{RoomID: "!space:t.test", Version: "11", Creator: "@anna:t.test"}); err != nil {
				return err
			}
			state(tx, "!space:t.test", "m.room.create", "", map[string]any{"room_version": "11", "type": "m.space"})
			state(tx, "!space:t.test", "m.room.name", "", map[string]any{"name": "Old space"})
			state(tx, "!space:t.test", "m.room.join_rules", "", map[string]any{"join_rule": "public"})
			state(tx, "!space:t.test", "m.room.member", "@anna:t.test", map[string]any{"membership": "join"})
			// Carl and Eve share a room, so each can find the other.
			if err := tx.CreateRoom(ctx, store.Room{RoomID: "!mates:t.test", Version: "11", Creator: "@carl:t.test"}); err != nil {
				return err
			}
			state(tx, "!mates:t.test", "m.room.member", "@carl:t.test", map[string]any{"membership": "join"})
			state(tx, "!mates:t.test", "m.room.member", "@eve:t.test", map[string]any{"membership": "join"})
			state(tx, "!space:t.test", "m.space.child", "!kid:t.test", map[string]any{"via": []string{"t.test"}, "suggested": true})
			state(tx, "!space:t.test", "m.space.child", "!unlinked:t.test", map[string]any{})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Backfill(ctx); err != nil {
			t.Fatal(err)
		}
		find := func(searcher, term string) []string {
			res, err := s.SearchUsers(ctx, searcher, term, 10)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range res.Results {
				ids = append(ids, r.UserID)
			}
			return ids
		}
		for _, tc := range []struct {
			searcher, term string
			want           []string
		}{
			{"@eve:t.test", "muller", []string{"@anna:t.test"}}, // opted in
			{"@eve:t.test", "carl new", []string{"@carl:t.test"}},
			{"@eve:t.test", "old", nil},
			{"@eve:t.test", "dora", nil},                     // deactivated
			{"@anna:t.test", "eve", nil},                     // no choice, default hidden
			{"@carl:t.test", "eve", []string{"@eve:t.test"}}, // room mate
			{"@eve:t.test", "eve", nil},                      // oneself
		} {
			if got := find(tc.searcher, tc.term); !slices.Equal(got, tc.want) {
				t.Errorf("%s searching %q: %v, want %v", tc.searcher, tc.term, got, tc.want)
			}
		}
		sums, err := st.RoomSummaries(ctx, []string{"!space:t.test"})
		if err != nil {
			t.Fatal(err)
		}
		if sum := sums["!space:t.test"]; sum == nil || sum.Name != "Old space" || sum.RoomType != "m.space" || sum.JoinRule != "public" || sum.JoinedMembers != 1 {
			t.Fatalf("summary: %+v", sum)
		}
		kids, err := st.SpaceChildren(ctx, []string{"!space:t.test"})
		if err != nil {
			t.Fatal(err)
		}
		if c := kids["!space:t.test"]; len(c) != 1 || c[0].ChildID != "!kid:t.test" || !c[0].Suggested {
			t.Fatalf("children: %+v", c)
		}
		// A second start finds nothing to do, and reads only the accounts
		// with a directory choice (Anna's; Dora is gone).
		accts, err := st.DirectoryAccounts(ctx, AccountDataType)
		if err != nil {
			t.Fatal(err)
		}
		if len(accts) != 1 || accts[0].UserID != "@anna:t.test" || !accts[0].Indexed || !accts[0].IndexedOptIn.Bool {
			t.Errorf("accounts to compare at the next start: %+v", accts)
		}
	})
}

func TestSortChildren(t *testing.T) {
	// The spec's example in "Ordering of children within a space".
	cs := []childLink{
		{roomID: "!b:example.org", ts: 1640341000000, order: " "},
		{roomID: "!a:example.org", ts: 1640141000000, order: "aaaa"},
		{roomID: "!c:example.org", ts: 1640841000000, order: "first"},
		{roomID: "!e:example.org", ts: 1640641000000},
		{roomID: "!d:example.org", ts: 1640741000000},
	}
	slices.Reverse(cs)
	sortChildren(cs)
	var got []string
	for _, c := range cs {
		got = append(got, c.roomID)
	}
	if want := []string{"!b:example.org", "!a:example.org", "!c:example.org", "!e:example.org", "!d:example.org"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if validOrder("é") || validOrder("") || validOrder(string(make([]byte, 51))) || !validOrder("~ ") {
		t.Fatal("validOrder")
	}
}
