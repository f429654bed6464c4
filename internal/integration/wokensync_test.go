package integration

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"luxchat/internal/filter"
	"luxchat/internal/store"
	lxsync "luxchat/internal/sync"
	ts "luxchat/internal/testserver"
)

// TestWokenSyncTouchesNoDatabase: the sync a new message wakes — one room
// with news, nothing else — is answered from memory, on both engines and
// whether the room's notifications are stored per member or once for the
// room. A thousand long-pollers of a big room each make one per message:
// a statement each was most of what PostgreSQL spent per message. The
// answer stays right: the message, and unread counts that follow the
// member's read receipt.
func TestWokenSyncTouchesNoDatabase(t *testing.T) {
	forEachCrowd(t, func(t *testing.T, s *ts.Server, fill func(string)) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		fill(room)
		bob.Join(room)
		other := alice.CreateRoom(map[string]any{"preset": "public_chat"}) // bob is not in it
		const filterJSON = `{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":20}},"presence":{"not_types":["*"]}}`
		var first struct {
			NextBatch string `json:"next_batch"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&filter="+url.QueryEscape(filterJSON), nil, &first)
		f, err := filter.Parse([]byte(filterJSON))
		if err != nil {
			t.Fatal(err)
		}
		req := lxsync.Request{UserID: bob.UserID, DeviceID: bob.DeviceID, Filter: f, Since: first.NextBatch}
		// woken sends a message and makes bob's sync that it wakes.
		woken := func(body string) (resp *lxsync.Response, statements int64) {
			t.Helper()
			alice.SendText(room, body)
			ctx, n := store.CountStatements(t.Context())
			resp, err := s.Sync.Sync(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			req.Since = resp.NextBatch
			if !strings.Contains(string(resp.JSON()), body) {
				t.Fatalf("%q not in the woken sync: %s", body, resp.JSON())
			}
			return resp, n.Load()
		}
		unread := func(resp *lxsync.Response) int64 {
			t.Helper()
			jr := resp.Rooms.Join[room]
			if jr == nil {
				t.Fatalf("room not in the woken sync: %s", resp.JSON())
			}
			return jr.UnreadNotifications.NotificationCount
		}
		// Something happens elsewhere between bob's initial sync and the
		// first message: his counts and his device's to-device state,
		// learnt by the initial sync, still serve the first woken sync.
		alice.SendText(other, "elsewhere")
		if resp, n := woken("first"); n != 0 || unread(resp) != 1 {
			t.Fatalf("first woken sync: %d statements, %d unread (want 0, 1)", n, unread(resp))
		}
		for i, want := range []int64{2, 3} {
			resp, n := woken("message " + string(rune('a'+i)))
			if n != 0 {
				t.Fatalf("woken sync %d made %d statements", i, n)
			}
			if got := unread(resp); got != want {
				t.Fatalf("woken sync %d: %d unread, want %d", i, got, want)
			}
		}
		// bob reads up to the last message: counts start again after it.
		var msgs struct {
			Chunk []struct {
				EventID string `json:"event_id"`
			} `json:"chunk"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/messages?dir=b&limit=1", nil, &msgs)
		receipt(t, bob, room, msgs.Chunk[0].EventID, "")
		resp, _ := woken("after the receipt")
		if got := unread(resp); got != 1 {
			t.Fatalf("after a receipt: %d unread, want 1", got)
		}
		resp, n := woken("once more")
		if n != 0 || unread(resp) != 2 {
			t.Fatalf("after a receipt, next woken sync: %d statements, %d unread (want 0, 2)", n, unread(resp))
		}
		var probe map[string]any
		if err := json.Unmarshal(resp.JSON(), &probe); err != nil {
			t.Fatalf("answer is not JSON: %v", err)
		}
	})
}
