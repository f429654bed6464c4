package integration

import (
	"net/url"
	"slices"
	"testing"

	ts "luxchat/internal/testserver"
)

// An initial sync of a user in several rooms (their timelines, summaries
// and visibility loaded for all rooms at once) shows each room's history
// as its visibility allows, on a server that has the rooms cached and on
// one just restarted that has none: under "joined" nothing from before the
// join nor from while the user was away, under "invited" also what came
// after the invite, under "shared" everything; and the state events it
// hides from the timeline are in the state.
func TestInitialSyncManyRoomsVisibility(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := func(visibility string) string {
			return alice.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
				{"type": "m.room.history_visibility", "state_key": "", "content": map[string]string{"history_visibility": visibility}},
			}})
		}
		joined, invited, shared, rejoined := room("joined"), room("invited"), room("shared"), room("joined")
		for _, r := range []string{joined, invited, shared, rejoined} {
			alice.SendText(r, "before invite")
			alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(r)+"/state/m.room.name/", map[string]any{"name": "named before"}, nil)
			alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(r)+"/invite", map[string]any{"user_id": bob.UserID}, nil)
			alice.SendText(r, "invited")
			bob.Join(r)
			alice.SendText(r, "joined")
		}
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(rejoined)+"/leave", map[string]any{}, nil)
		alice.SendText(rejoined, "away")
		bob.Join(rejoined)
		alice.SendText(rejoined, "back")
		want := map[string][]string{
			joined:   {"joined"},
			invited:  {"invited", "joined"},
			shared:   {"before invite", "invited", "joined"},
			rejoined: {"joined", "back"},
		}
		check := func(when string) {
			t.Helper()
			// A timeline long enough to reach back to the rooms' creation.
			sy := doSync(t, bob, "timeout=0&filter="+url.QueryEscape(`{"room":{"timeline":{"limit":50}}}`))
			for r, bodiesWanted := range want {
				jr, ok := sy.Rooms.Join[r]
				if !ok {
					t.Fatalf("%s: room missing", when)
				}
				if got := bodies(jr.Timeline.Events); !slices.Equal(got, bodiesWanted) {
					t.Fatalf("%s: timeline %v, want %v", when, got, bodiesWanted)
				}
				var name string
				for _, ev := range append(jr.State.Events, jr.Timeline.Events...) {
					if ev.Type == "m.room.name" {
						name, _ = ev.Content["name"].(string)
					}
				}
				if name != "named before" {
					t.Fatalf("%s: no name in the state or timeline of the room showing %v", when, bodiesWanted)
				}
			}
		}
		check("cached")
		s.Restart(t) // the clients keep their address
		check("after a restart")
	})
}
