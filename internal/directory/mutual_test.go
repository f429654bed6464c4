package directory

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"luxchat/internal/config"
	"luxchat/internal/store"
)

// Mutual rooms come a page at a time, each room once, with the total count
// on every page and no next_batch on the last.
func TestMutualRoomsPages(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		defer func(n int) { mutualRoomsPage = n }(mutualRoomsPage)
		mutualRoomsPage = 2
		cfg := config.Default()
		cfg.ServerName = "t.test"
		s := New(cfg, st, nil, nil, nil)
		var want []string
		err := st.InTx(ctx, func(tx *store.Tx) error {
			pos := int64(0)
			member := func(room, user, membership string) error {
				pos++
				return tx.SetMembership(ctx, store.Membership{RoomID: room, UserID: user, Membership: membership, EventID: fmt.Sprintf("$m%d", pos), Pos: pos})
			}
			for i := range 5 {
				room := fmt.Sprintf("!r%d:t.test", i)
				want = append(want, room)
				if err := member(room, "@a:t.test", "join"); err != nil {
					return err
				}
				if err := member(room, "@b:t.test", "join"); err != nil {
					return err
				}
			}
			// Rooms where one of them is not joined do not count.
			if err := member("!left:t.test", "@a:t.test", "join"); err != nil {
				return err
			}
			if err := member("!left:t.test", "@b:t.test", "leave"); err != nil {
				return err
			}
			if err := member("!invited:t.test", "@a:t.test", "invite"); err != nil {
				return err
			}
			return member("!invited:t.test", "@b:t.test", "join")
		})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		from, pages := "", 0
		for {
			res, err := s.MutualRooms(ctx, "@a:t.test", "@b:t.test", from)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if res.Count != 5 || len(res.Joined) > 2 || pages > 5 {
				t.Fatalf("page %d: %+v", pages, res)
			}
			got = append(got, res.Joined...)
			if res.NextBatch == "" {
				break
			}
			from = res.NextBatch
		}
		if !slices.Equal(got, want) || pages != 3 {
			t.Fatalf("%d pages: %v, want %v", pages, got, want)
		}
		for _, bad := range []string{"%%%", "eHl6"} {
			if _, err := s.MutualRooms(ctx, "@a:t.test", "@b:t.test", bad); err == nil {
				t.Errorf("from %q accepted", bad)
			}
		}
	})
}
