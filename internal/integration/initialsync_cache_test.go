package integration

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	ts "luxchat/internal/testserver"
)

// initialRoom is what a test reads of a room in an initial sync.
type initialRoom struct {
	Timeline struct {
		Events []event `json:"events"`
	} `json:"timeline"`
	State struct {
		Events []event `json:"events"`
	} `json:"state"`
	Summary struct {
		Joined *int `json:"m.joined_member_count"`
	} `json:"summary"`
	Unread struct {
		Notify int `json:"notification_count"`
	} `json:"unread_notifications"`
}

func initialSync(t *testing.T, c *ts.Client, query string) map[string]initialRoom {
	t.Helper()
	var sy struct {
		Rooms struct {
			Join map[string]initialRoom `json:"join"`
		} `json:"rooms"`
	}
	c.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&"+query, nil, &sy)
	return sy.Rooms.Join
}

// stateOf is the state event (type, key) a room shows: in its state, or
// the latest in its timeline.
func (r initialRoom) stateOf(typ, key string) *event {
	var found *event
	for _, evs := range [][]event{r.State.Events, r.Timeline.Events} {
		for i, ev := range evs {
			if ev.Type == typ && ev.StateKey != nil && *ev.StateKey == key {
				found = &evs[i]
			}
		}
	}
	return found
}

// find is the event with an id in a room's state or timeline.
func (r initialRoom) find(id string) *event {
	for _, evs := range [][]event{r.State.Events, r.Timeline.Events} {
		for i, ev := range evs {
			if ev.EventID == id {
				return &evs[i]
			}
		}
	}
	return nil
}

// Initial syncs keep what they read of rooms (their timelines, state and
// unread counts) for the next: each change must show in the next initial
// sync, however it is answered — cached, or read again after a restart —
// and each reader sees the shared timelines as their own history
// visibility allows.
func TestInitialSyncCachesStayFresh(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		main := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "First name"})
		other := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		for _, r := range []string{main, other} {
			bob.Join(r)
			carol.Join(r)
		}
		alice.SendText(other, "hello")
		msg := alice.SendText(main, "to be redacted")
		// Both lazy-loading and plain syncs, repeated so that the second is
		// answered from what the first kept.
		lazy := "filter=" + url.QueryEscape(`{"room":{"state":{"lazy_load_members":true}}}`)
		both := func(c *ts.Client, check func(when string, r initialRoom)) {
			t.Helper()
			for _, q := range []string{"", "", lazy, lazy} {
				rooms := initialSync(t, c, q)
				if _, ok := rooms[other]; !ok {
					t.Fatalf("%q: room %s missing", q, other)
				}
				check(q, rooms[main])
			}
		}
		content := func(ev *event) string {
			b, _ := json.Marshal(ev.Content)
			return string(b)
		}
		both(bob, func(q string, r initialRoom) {
			if n := r.stateOf("m.room.name", ""); n == nil || n.Content["name"] != "First name" {
				t.Fatalf("%q: name %v", q, n)
			}
			if !slices.Contains(bodies(r.Timeline.Events), "to be redacted") {
				t.Fatalf("%q: timeline %v", q, bodies(r.Timeline.Events))
			}
		})

		// A state change: the room's name.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(main)+"/state/m.room.name/", map[string]any{"name": "Second name"}, nil)
		both(bob, func(q string, r initialRoom) {
			if n := r.stateOf("m.room.name", ""); n == nil || n.Content["name"] != "Second name" {
				t.Fatalf("%q: name after the change %v", q, n)
			}
		})
		// Power levels.
		var pl map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(main)+"/state/m.room.power_levels/", nil, &pl)
		pl["users_default"] = 7
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(main)+"/state/m.room.power_levels/", pl, nil)
		both(bob, func(q string, r initialRoom) {
			if p := r.stateOf("m.room.power_levels", ""); p == nil || p.Content["users_default"] != float64(7) {
				t.Fatalf("%q: power levels %v", q, p)
			}
		})
		// A member leaves: their membership and the count of members.
		carol.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(main)+"/leave", map[string]any{}, nil)
		for _, q := range []string{"", ""} {
			r := initialSync(t, bob, q)[main]
			if m := r.stateOf("m.room.member", carol.UserID); m == nil || m.Content["membership"] != "leave" {
				t.Fatalf("carol's membership after her leave: %v", m)
			}
			if r.Summary.Joined == nil || *r.Summary.Joined != 2 {
				t.Fatalf("joined members after carol left: %v", r.Summary.Joined)
			}
		}
		// A new event.
		alice.SendText(main, "news")
		both(bob, func(q string, r initialRoom) {
			if b := bodies(r.Timeline.Events); len(b) == 0 || b[len(b)-1] != "news" {
				t.Fatalf("%q: timeline after a message %v", q, b)
			}
		})
		// Redactions of a timeline event and of a current state event.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(main)+"/redact/"+esc(msg)+"/r1", map[string]any{}, nil)
		both(bob, func(q string, r initialRoom) {
			if ev := r.find(msg); ev == nil || len(ev.Content) != 0 {
				t.Fatalf("%q: redacted message shown as %v", q, ev)
			}
		})
		name := initialSync(t, bob, "")[main].stateOf("m.room.name", "")
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(main)+"/redact/"+esc(name.EventID)+"/r2", map[string]any{}, nil)
		both(bob, func(q string, r initialRoom) {
			if n := r.stateOf("m.room.name", ""); n == nil || n.EventID != name.EventID || len(n.Content) != 0 {
				t.Fatalf("%q: redacted name shown as %v", q, content(n))
			}
		})
		// Unread counts: a message notifies bob; his read receipt clears it.
		last := alice.SendText(main, "unread")
		for range 2 {
			if n := initialSync(t, bob, "")[main].Unread.Notify; n == 0 {
				t.Fatalf("no unread notification after a message")
			}
		}
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(main)+"/receipt/m.read/"+esc(last), map[string]any{}, nil)
		for range 2 {
			if n := initialSync(t, bob, "")[main].Unread.Notify; n != 0 {
				t.Fatalf("%d unread notifications after the read receipt", n)
			}
		}
	})
}

// The rows an initial sync keeps of a room are shared by its readers:
// each sees only what the history visibility allows them, whoever read
// the room first.
func TestInitialSyncCachedVisibility(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		var rooms []string
		for range 2 {
			r := alice.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
				{"type": "m.room.history_visibility", "state_key": "", "content": map[string]string{"history_visibility": "joined"}},
			}})
			alice.SendText(r, "early")
			bob.Join(r)
			alice.SendText(r, "middle")
			carol.Join(r)
			alice.SendText(r, "late")
			rooms = append(rooms, r)
		}
		want := map[*ts.Client][]string{alice: {"early", "middle", "late"}, bob: {"middle", "late"}, carol: {"late"}}
		check := func(order ...*ts.Client) {
			t.Helper()
			for _, c := range order {
				for _, r := range rooms {
					if got := bodies(initialSync(t, c, "")[r].Timeline.Events); !slices.Equal(got, want[c]) {
						t.Fatalf("%s: timeline %v, want %v", c.UserID, got, want[c])
					}
				}
			}
		}
		check(alice, bob, carol)
		s.Restart(t)
		check(carol, bob, alice)
		check(carol, bob, alice)
	})
}
