package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// bfJoin has a user of B join a room of A and waits until B has it.
func bfJoin(t *testing.T, p *frPair, c *ts.Client, roomID string) {
	t.Helper()
	c.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
}

// bfPageBack pages a room backwards with /messages until the end and
// returns every event seen, newest first, and the number of pages.
func bfPageBack(t *testing.T, c *ts.Client, roomID string, limit int) ([]event, int) {
	t.Helper()
	var all []event
	from := ""
	for pages := 1; pages <= 100; pages++ {
		q := fmt.Sprintf("dir=b&limit=%d", limit)
		if from != "" {
			q += "&from=" + url.QueryEscape(from)
		}
		p := messages(t, c, roomID, q)
		all = append(all, p.Chunk...)
		if p.End == "" {
			return all, pages
		}
		if p.End == from {
			t.Fatalf("pagination does not move: %q", from)
		}
		from = p.End
	}
	t.Fatal("pagination never ends")
	return nil, 0
}

// bfTamper rewrites an event as A stores (and serves) it.
func bfTamper(t *testing.T, s *ts.Server, eventID string, edit func(m map[string]any)) {
	t.Helper()
	ctx := context.Background()
	row, err := s.Store.GetEvent(ctx, eventID)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(row.JSON(), &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	forged, _ := json.Marshal(m)
	if err := s.Store.InTx(ctx, func(tx *store.Tx) error { return tx.RedactEvent(ctx, row, forged, row.Unsigned) }); err != nil {
		t.Fatal(err)
	}
}

func TestBackfill(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")

		// Shared history: bob pages back through everything said before
		// he joined, then reaches the room's creation.
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Archive"})
		var want []string
		for i := 0; i < 50; i++ {
			body := fmt.Sprintf("m%02d", i)
			alice.SendText(roomID, body)
			want = append([]string{body}, want...)
		}
		bfJoin(t, p, bob, roomID)
		since := frSyncUntil(t, bob, "", func(s syncResp) bool { _, ok := s.Rooms.Join[roomID]; return ok })
		since = doSync(t, bob, "timeout=0&since="+url.QueryEscape(since)).NextBatch

		start := time.Now()
		evs, pages := bfPageBack(t, bob, roomID, 10)
		elapsed := time.Since(start)
		if got := bodies(evs); !slices.Equal(got, want) {
			t.Fatalf("bob's history (%d messages): %v", len(got), got)
		}
		seen := map[string]bool{}
		for _, e := range evs {
			if seen[e.EventID] {
				t.Fatalf("%s twice", e.EventID)
			}
			seen[e.EventID] = true
		}
		if last := evs[len(evs)-1]; last.Type != "m.room.create" {
			t.Fatalf("history ends with %s, not the room's creation", last.Type)
		}
		t.Logf("50 messages backfilled in %d pages, %v", pages, elapsed)

		// None of it is new to bob's sync, and no sync position moved.
		s := doSync(t, bob, "timeout=0&since="+url.QueryEscape(since))
		if got := bodies(s.Rooms.Join[roomID].Timeline.Events); len(got) > 0 {
			t.Fatalf("backfilled events in bob's sync: %v", got)
		}
		if s.NextBatch != since {
			t.Fatalf("backfill moved bob's sync token: %s → %s", since, s.NextBatch)
		}
		// Paging again reads the store and finds the same.
		if again, _ := bfPageBack(t, bob, roomID, 25); !slices.Equal(bodies(again), want) {
			t.Fatalf("second pass: %v", bodies(again))
		}
		// /context around a backfilled event crosses nothing it should not.
		var m25 string
		for _, e := range evs {
			if b, _ := e.Content["body"].(string); b == "m25" {
				m25 = e.EventID
			}
		}
		var cx struct {
			Event        event   `json:"event"`
			EventsBefore []event `json:"events_before"`
			EventsAfter  []event `json:"events_after"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/context/"+esc(m25)+"?limit=4", nil, &cx)
		if cx.Event.EventID != m25 || !slices.Equal(bodies(cx.EventsBefore), []string{"m24", "m23"}) || !slices.Equal(bodies(cx.EventsAfter), []string{"m26", "m27"}) {
			t.Fatalf("context of m25: %v %v", bodies(cx.EventsBefore), bodies(cx.EventsAfter))
		}
		// Live events still come after the history.
		alice.SendText(roomID, "live")
		frSyncUntil(t, bob, since, func(s syncResp) bool { return frHasBody(s.Rooms.Join[roomID].Timeline.Events, "live") })
		if got := bodies(messages(t, bob, roomID, "dir=b&limit=4").Chunk); !slices.Equal(got, []string{"live", "m49", "m48"}) {
			t.Fatalf("after a live event: %v", got)
		}

		// Another user here reads the same history from the store, even
		// with the other server out of reach.
		carol := p.b.Register(t, "carol")
		carol.Join(roomID)
		p.fed.Cut("police.test", "gouv.test")
		if evs, _ := bfPageBack(t, carol, roomID, 20); !slices.Equal(bodies(evs), append([]string{"live"}, want...)) {
			t.Fatalf("carol's history: %v", bodies(evs))
		}
		p.fed.Heal()

		// history_visibility joined: nothing from before the join.
		closed := alice.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []any{
			map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}},
		}})
		for i := 0; i < 5; i++ {
			alice.SendText(closed, fmt.Sprintf("secret %d", i))
		}
		bfJoin(t, p, bob, closed)
		alice.SendText(closed, "after the join")
		frSyncUntil(t, bob, since, func(s syncResp) bool { return frHasBody(s.Rooms.Join[closed].Timeline.Events, "after the join") })
		if evs, _ := bfPageBack(t, bob, closed, 10); !slices.Equal(bodies(evs), []string{"after the join"}) {
			t.Fatalf("bob sees history of a joined-only room: %v", bodies(evs))
		}

		// Forged events in a /backfill answer: a bad signature is dropped,
		// a content that does not match its hash is kept redacted.
		forgedRoom := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		var ids []string
		for i := 0; i < 10; i++ {
			ids = append(ids, alice.SendText(forgedRoom, fmt.Sprintf("f%d", i)))
		}
		bfTamper(t, p.a, ids[3], func(m map[string]any) {
			for _, keys := range m["signatures"].(map[string]any) {
				for k := range keys.(map[string]any) {
					keys.(map[string]any)[k] = base64.RawStdEncoding.EncodeToString(make([]byte, 64))
				}
			}
		})
		bfTamper(t, p.a, ids[6], func(m map[string]any) { m["content"].(map[string]any)["body"] = "tampered" })
		bfJoin(t, p, bob, forgedRoom)
		evs, _ = bfPageBack(t, bob, forgedRoom, 4)
		if got := bodies(evs); !slices.Equal(got, []string{"f9", "f8", "f7", "", "f5", "f4", "f2", "f1", "f0"}) {
			t.Fatalf("history with forged events: %q", got)
		}
		if _, err := p.b.Store.GetEvent(context.Background(), ids[3]); err == nil {
			t.Fatal("the event with a forged signature was stored")
		}
		for _, e := range evs {
			if e.EventID == ids[6] && len(e.Content) != 0 {
				t.Fatalf("tampered event not redacted: %v", e.Content)
			}
		}

		// A dead remote: the page holds what is here, in bounded time.
		deadRoom := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		for i := 0; i < 5; i++ {
			alice.SendText(deadRoom, fmt.Sprintf("d%d", i))
		}
		bfJoin(t, p, bob, deadRoom)
		bob.SendText(deadRoom, "local")
		addr := p.a.Config.Listen.Federation
		if err := p.a.Stop(); err != nil {
			t.Fatal(err)
		}
		silentListener(t, addr) // the remote now accepts connections and never answers
		start = time.Now()
		page := messages(t, bob, deadRoom, "dir=b&limit=10")
		elapsed = time.Since(start)
		if got := bodies(page.Chunk); !slices.Equal(got, []string{"local"}) {
			t.Fatalf("page with a dead remote: %v", got)
		}
		if elapsed > 8*time.Second {
			t.Fatalf("/messages took %v with a dead remote", elapsed)
		}
		t.Logf("/messages with a dead remote: %v", elapsed)
		start = time.Now()
		messages(t, bob, deadRoom, "dir=b&limit=10")
		if again := time.Since(start); again > time.Second {
			t.Fatalf("second /messages with a dead remote took %v", again)
		}
	})
}
