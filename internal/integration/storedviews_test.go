package integration

import (
	"context"
	"encoding/json"
	"math"
	"net/url"
	"reflect"
	"testing"

	"luxchat/internal/filter"
	"luxchat/internal/store"
	lxsync "luxchat/internal/sync"
	ts "luxchat/internal/testserver"
)

// TestFirstSyncAfterRestartFromStoredViews: the first initial sync after
// a restart, answered from the rooms' stored views (rooms.PersistViews,
// made as the server stopped), answers what the sync before the restart
// (read from the database) and the one after it (from memory) do, for
// each reader as their history visibility allows: rooms with redactions
// of a message and of a state event, an edit (bundled), state and
// history visibility changes, members who joined late under shared,
// joined and invited visibility, a direct chat, an upgraded room, a room
// left and forgotten; unfiltered and lazy-loading members. It costs no
// more statements than the warm sync plus the views' read.
func TestFirstSyncAfterRestartFromStoredViews(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		put := func(c *ts.Client, room, typ string, content map[string]any) string {
			var r struct {
				EventID string `json:"event_id"`
			}
			c.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/"+typ+"/", content, &r)
			return r.EventID
		}
		visibility := func(room, hv string) {
			put(alice, room, "m.room.history_visibility", map[string]any{"history_visibility": hv})
		}

		// Shared history, bob joining late: redactions, an edit, renames.
		shared := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Shared", "topic": "to be redacted"})
		edited := alice.SendText(shared, "before bob, edited later")
		bob.Join(shared)
		gone := alice.SendText(shared, "to be redacted")
		for _, body := range []string{"one", "two", "three", "four", "five"} {
			bob.SendText(shared, body)
		}
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(shared)+"/send/m.room.message/e1", map[string]any{
			"msgtype": "m.text", "body": "* edited", "m.new_content": map[string]any{"msgtype": "m.text", "body": "edited"},
			"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": edited}}, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(shared)+"/redact/"+esc(gone)+"/r1", map[string]any{}, nil)
		var topic struct {
			EventID string `json:"event_id"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(shared)+"/state/m.room.topic/?format=event", nil, &topic)
		if topic.EventID != "" {
			alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(shared)+"/redact/"+esc(topic.EventID)+"/r2", map[string]any{}, nil)
		}
		put(alice, shared, "m.room.name", map[string]any{"name": "Shared, renamed"})
		carol.Join(shared)
		carol.SendText(shared, "carol was here")

		// Joined visibility: what came before each join is hidden from them.
		joined := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		visibility(joined, "joined")
		alice.SendText(joined, "before anyone")
		bob.Join(joined)
		alice.SendText(joined, "after bob")
		carol.Join(joined)
		alice.SendText(joined, "after carol")

		// Visibility changing under the readers: shared, then invited.
		changing := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
		alice.SendText(changing, "shared history")
		visibility(changing, "invited")
		alice.SendText(changing, "invited history")
		bob.Join(changing)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(changing)+"/invite", map[string]any{"user_id": carol.UserID}, nil)
		alice.SendText(changing, "carol invited")
		carol.Join(changing)

		// A direct chat, encrypted.
		dm := alice.CreateRoom(map[string]any{"preset": "trusted_private_chat", "is_direct": true, "invite": []string{bob.UserID},
			"initial_state": []map[string]any{{"type": "m.room.encryption", "state_key": "", "content": map[string]string{"algorithm": "m.megolm.v1.aes-sha2"}}}})
		bob.Join(dm)
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(dm)+"/send/m.room.encrypted/x1", map[string]any{
			"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn", "device_id": alice.DeviceID, "sender_key": "k", "session_id": "s"}, nil)

		// An upgraded room, and a room left and forgotten.
		old := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Old"})
		bob.Join(old)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(old)+"/upgrade", map[string]any{"new_version": "11"}, nil)
		left := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(left)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(left)+"/leave", map[string]any{}, nil)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(left)+"/forget", map[string]any{}, nil)

		lazy := `{"room":{"state":{"lazy_load_members":true}}}`
		sync := func(c *ts.Client, f string) map[string]any {
			t.Helper()
			q := "/_matrix/client/v3/sync?timeout=0"
			if f != "" {
				q += "&filter=" + url.QueryEscape(f)
			}
			r := c.Do("GET", q, nil)
			if r.Status != 200 {
				t.Fatalf("sync: %d %s", r.Status, r.Body)
			}
			v := comparable(t, r.Body)
			// Positions move across a restart; presence moves as users sync.
			delete(v, "next_batch")
			delete(v, "presence")
			return v
		}
		same := func(what string, got, want map[string]any) {
			t.Helper()
			if !reflect.DeepEqual(got, want) {
				a, _ := json.MarshalIndent(got, "", " ")
				b, _ := json.MarshalIndent(want, "", " ")
				t.Fatalf("%s:\n%s\nwant\n%s", what, a, b)
			}
		}
		readers := []*ts.Client{bob, carol}
		for _, f := range []string{"", lazy} {
			before := map[*ts.Client]map[string]any{}
			for _, c := range readers {
				before[c] = sync(c, f)
			}
			s = s.Restart(t) // the clients keep their address
			for _, c := range readers {
				first := sync(c, f)
				same(c.UserID+" "+f+": the first sync after a restart against the one before it", first, before[c])
				same(c.UserID+" "+f+": the next sync against the first", sync(c, f), first)
			}
		}
		// What bob sees of the rooms, so that the comparisons above compare
		// something.
		var sy struct {
			Rooms struct {
				Join map[string]initialRoom `json:"join"`
			} `json:"rooms"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/sync?timeout=0", nil, &sy)
		for _, room := range []string{shared, joined, changing, dm, old} {
			if _, ok := sy.Rooms.Join[room]; !ok {
				t.Fatalf("room %s missing from bob's sync", room)
			}
		}
		if _, ok := sy.Rooms.Join[left]; ok {
			t.Fatalf("the forgotten room is in bob's sync")
		}
		if b := bodies(sy.Rooms.Join[joined].Timeline.Events); len(b) == 0 || b[0] == "before anyone" {
			t.Fatalf("bob's timeline of the joined-visibility room: %v", b)
		}
		if ev := sy.Rooms.Join[shared].stateOf("m.room.topic", ""); ev == nil || len(ev.Content) != 0 {
			t.Fatalf("the redacted topic shown as %v", ev)
		}
		if b := bodies(sy.Rooms.Join[shared].Timeline.Events); len(b) == 0 || b[len(b)-1] != "carol was here" {
			t.Fatalf("bob's timeline of the shared room: %v", b)
		}

		// A lazy-loading first sync picks each room's members from its
		// stored view: no room's parsed state is loaded for it (a thousand
		// users' first syncs would hold every room they are in).
		s = s.Restart(t)
		sync(bob, lazy)
		if kept, _ := s.Rooms.TrimStates(math.MaxInt64, 0); kept != 0 {
			t.Fatalf("a lazy-loading first sync after a restart loaded rooms' parsed states (%d bytes)", kept)
		}

		// The first sync read the stored views: no statement for the rooms'
		// timelines, state or history visibility; beyond the warm sync's
		// only what a start leaves uncached for the user (presence,
		// memberships, ignore list, one-time keys, unread counts) and the
		// views' read.
		s = s.Restart(t)
		req := lxsync.Request{UserID: bob.UserID, DeviceID: bob.DeviceID, Filter: &filter.Filter{}}
		count := func() int64 {
			ctx, n := store.CountStatements(context.Background())
			if _, err := s.Sync.Sync(ctx, req); err != nil {
				t.Fatal(err)
			}
			return n.Load()
		}
		cold, warm := count(), count()
		t.Logf("statements: first sync %d, next %d", cold, warm)
		if cold > warm+6 {
			t.Fatalf("the first sync after a restart made %d statements, the next %d: the stored views were not used", cold, warm)
		}
	})
}
