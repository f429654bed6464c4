package integration

import (
	"slices"
	"testing"
	"time"

	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// TestTrimmedRoomReloads: a room whose parsed state the server unloaded
// (rooms.TrimStates, which a server runs as its cached states outgrow
// their budget) loads it again on next use: its members, power levels
// and a long-polling member's delivery are as if it had stayed.
func TestTrimmedRoomReloads(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol, dave := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol"), s.Register(t, "dave")
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(roomID)
		carol.Join(roomID)
		// Rooms used within the idle time stay, whatever the budget.
		if _, freed := s.Rooms.TrimStates(0, time.Hour); freed != 0 {
			t.Errorf("TrimStates unloaded %d bytes of rooms used within the idle time", freed)
		}
		trim := func() {
			t.Helper()
			if _, freed := s.Rooms.TrimStates(0, 0); freed == 0 {
				t.Fatal("TrimStates(0, 0) unloaded nothing")
			}
		}
		joined := func() []string {
			t.Helper()
			var ans struct {
				Joined map[string]any `json:"joined"`
			}
			alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/joined_members", nil, &ans)
			var users []string
			for u := range ans.Joined {
				users = append(users, u)
			}
			slices.Sort(users)
			return users
		}

		// A member long-polls across the unloading; the next message wakes it.
		since := doSync(t, bob, "timeout=0").NextBatch
		got := make(chan syncResp, 1)
		go func() {
			var r syncResp
			if resp := bob.Do("GET", "/_matrix/client/v3/sync?timeout=20000&since="+since, nil); resp.Status == 200 {
				_ = resp.JSON(&r)
			}
			got <- r
		}()
		trim()
		alice.SendText(roomID, "after the unloading")
		r := <-got
		if b := bodies(r.Rooms.Join[roomID].Timeline.Events); !slices.Contains(b, "after the unloading") {
			t.Errorf("long poll across the unloading got %v, want the message", b)
		}

		// Reloading reads the state alone: the room's version, state
		// group, extremities and position stayed with the entry.
		trim()
		ctx, n := store.CountStatements(t.Context())
		if _, err := s.Rooms.Version(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		if got := n.Load(); got == 0 || got > 2 {
			t.Errorf("reloading a trimmed room ran %d statements, want the state's (1 or 2)", got)
		}
		if want := []string{alice.UserID, bob.UserID, carol.UserID}; !slices.Equal(joined(), want) {
			t.Errorf("joined members after reload: %v, want %v", joined(), want)
		}
		// Power levels: carol (0) may not set the topic (50) until alice
		// raises her, each step on a reloaded state.
		trim()
		topic := map[string]any{"topic": "by carol"}
		if resp := carol.Do("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.topic/", topic); resp.Status != 403 {
			t.Errorf("topic by a member of power 0 after reload: %d %s, want 403", resp.Status, resp.Body)
		}
		var pl map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.power_levels/", nil, &pl)
		pl["users"].(map[string]any)[carol.UserID] = 50
		trim()
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.power_levels/", pl, nil)
		trim()
		carol.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.topic/", topic, nil)

		// Membership: a non-member is refused, a leaver leaves the joined set.
		trim()
		if resp := dave.Do("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/send/m.room.message/d1", map[string]any{"msgtype": "m.text", "body": "hi"}); resp.Status != 403 {
			t.Errorf("message by a non-member after reload: %d %s, want 403", resp.Status, resp.Body)
		}
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/leave", map[string]any{}, nil)
		trim()
		if want := []string{alice.UserID, carol.UserID}; !slices.Equal(joined(), want) {
			t.Errorf("joined members after a leave and a reload: %v, want %v", joined(), want)
		}
		if resp := bob.Do("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/send/m.room.message/b1", map[string]any{"msgtype": "m.text", "body": "hi"}); resp.Status != 403 {
			t.Errorf("message by a leaver after reload: %d %s, want 403", resp.Status, resp.Body)
		}
		// What carol sees in an initial sync is the reloaded state.
		trim()
		var topicNow map[string]any
		carol.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.topic/", nil, &topicNow)
		if topicNow["topic"] != "by carol" {
			t.Errorf("topic after reload: %v", topicNow)
		}
	})
}
