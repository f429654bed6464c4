package integration

import (
	"testing"

	ts "luxchat/internal/testserver"
)

// TestSearchBundles checks that /search results carry their bundled
// aggregations as /messages shows them, also to a user who left the room
// (children after their leave are not counted).
func TestSearchBundles(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		orig := alice.SendText(room, "kumquat original")
		plain := alice.SendText(room, "kumquat untouched")
		edit1 := edit(alice, room, "m.room.message", orig, "kumquat first")
		threadReply(bob, room, orig, "a reply")

		find := func(c *ts.Client, id string) event {
			t.Helper()
			re := searchFor(t, c, "", term("kumquat"))
			for _, r := range re.Results {
				if r.Result.EventID == id {
					return r.Result.event
				}
			}
			t.Fatalf("%s not found in %v", id, resultBodies(re))
			return event{}
		}
		got := find(alice, orig)
		if r := bundle(got, "m.replace"); r == nil || r["event_id"] != edit1 {
			t.Fatalf("m.replace bundle = %v, want %s", r, edit1)
		}
		if th := bundle(got, "m.thread"); th == nil || th["count"] != float64(1) || th["current_user_participated"] != true {
			t.Fatalf("m.thread bundle = %v", th)
		}
		if got.Content["body"] != "kumquat original" {
			t.Errorf("original content replaced: %v", got.Content)
		}
		if rels := find(alice, plain).Unsigned["m.relations"]; rels != nil {
			t.Errorf("event without children has m.relations %v", rels)
		}

		// bob leaves; a later edit is not shown to him.
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		edit2 := edit(alice, room, "m.room.message", orig, "kumquat second")
		if r := bundle(find(alice, orig), "m.replace"); r == nil || r["event_id"] != edit2 {
			t.Fatalf("alice: m.replace bundle = %v, want %s", r, edit2)
		}
		got = find(bob, orig)
		if r := bundle(got, "m.replace"); r == nil || r["event_id"] != edit1 {
			t.Fatalf("bob after leaving: m.replace bundle = %v, want %s", r, edit1)
		}
		if th := bundle(got, "m.thread"); th == nil || th["current_user_participated"] != true {
			t.Fatalf("bob: m.thread bundle = %v", th)
		}
	})
}
