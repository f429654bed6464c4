package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	ts "luxchat/internal/testserver"
)

// lazyRoomSync is the room summary of an initial sync limited to one room
// with lazy-loaded members, and the users whose member events its state
// holds.
func lazyRoomSync(t *testing.T, c *ts.Client, room string) (summary map[string]any, stateMembers []string) {
	t.Helper()
	f := url.QueryEscape(fmt.Sprintf(`{"room":{"rooms":[%q],"state":{"lazy_load_members":true},"timeline":{"limit":2}}}`, room))
	s := c.Sync("timeout=0&filter=" + f)
	summary, _ = path(s, "rooms", "join", room, "summary").(map[string]any)
	for _, e := range evList(path(s, "rooms", "join", room, "state", "events")) {
		if e["type"] == "m.room.member" {
			stateMembers = append(stateMembers, e["state_key"].(string))
		}
	}
	slices.Sort(stateMembers)
	return summary, stateMembers
}

// The summary of a sync (member counts, heroes) follows every membership
// change, and is the same after a restart has loaded the room from the
// database; a lazy-loading sync shows the member events of the
// timeline's senders and the user's own, not the others'.
func TestRoomSummaryFollowsMembership(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol, dave := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol"), s.Register(t, "dave")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		want := func(c *ts.Client, joined, invited int, heroes ...string) {
			t.Helper()
			sum, _ := lazyRoomSync(t, c, room)
			got := fmt.Sprint(sum["m.joined_member_count"], sum["m.invited_member_count"], sum["m.heroes"])
			if w := fmt.Sprint(joined, invited, heroes); got != w {
				t.Fatalf("summary for %s: %s, want %s", c.UserID, got, w)
			}
		}
		bob.Join(room)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": carol.UserID}, nil)
		want(alice, 2, 1, bob.UserID, carol.UserID)
		want(bob, 2, 1, alice.UserID, carol.UserID)
		dave.Join(room)
		carol.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		want(alice, 3, 0, bob.UserID, dave.UserID)

		bob.SendText(room, "from bob")
		dave.SendText(room, "from dave")
		if _, members := lazyRoomSync(t, alice, room); !slices.Equal(members, []string{alice.UserID, bob.UserID, dave.UserID}) {
			t.Fatalf("lazy-loaded members: %v, want alice, bob and dave", members)
		}
		alice.SendText(room, "from alice")
		if _, members := lazyRoomSync(t, carol, room); members != nil {
			t.Fatalf("carol, who left, sees the room joined with members %v", members)
		}
		_, members := lazyRoomSync(t, bob, room) // timeline: dave's and alice's messages
		if !slices.Equal(members, []string{alice.UserID, bob.UserID, dave.UserID}) {
			t.Fatalf("lazy-loaded members for bob: %v, want alice, bob and dave", members)
		}

		s = s.Restart(t)
		for _, c := range []*ts.Client{alice, bob, dave} {
			fresh := s.Anonymous(t)
			fresh.UserID, fresh.DeviceID, fresh.Token = c.UserID, c.DeviceID, c.Token
			*c = *fresh
		}
		want(alice, 3, 0, bob.UserID, dave.UserID)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		dave.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		// Alone: the heroes are those who left.
		want(alice, 1, 0, bob.UserID, carol.UserID, dave.UserID)
	})
}

// /members answers what the room's state holds now, however often it was
// asked before: joins, leaves, display name changes and a redacted member
// event show at once, the membership filters see them, and /state agrees.
func TestMembersListFollowsChanges(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		members := func(query string) map[string]event {
			t.Helper()
			var out struct {
				Chunk []event `json:"chunk"`
			}
			alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/members"+query, nil, &out)
			byUser := map[string]event{}
			for _, e := range out.Chunk {
				if e.Type != "m.room.member" || e.StateKey == nil || e.EventID == "" || e.Unsigned["age"] == nil {
					t.Fatalf("not a member event in client form: %+v", e)
				}
				byUser[*e.StateKey] = e
			}
			return byUser
		}
		want := func(query string, wantMembers map[string]string) {
			t.Helper()
			got := map[string]string{}
			for u, e := range members(query) {
				got[u] = fmt.Sprint(e.Content["membership"], "/", e.Content["displayname"])
			}
			if fmt.Sprint(got) != fmt.Sprint(wantMembers) {
				t.Fatalf("members%s: %v, want %v", query, got, wantMembers)
			}
		}
		name := func(c *ts.Client) string { return "join/" + c.UserID[1:len(c.UserID)-len(":localhost")] }
		want("", map[string]string{alice.UserID: name(alice), bob.UserID: name(bob)})
		carol.Join(room)
		want("", map[string]string{alice.UserID: name(alice), bob.UserID: name(bob), carol.UserID: name(carol)})
		bob.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(bob.UserID)+"/displayname", map[string]any{"displayname": "Robert"}, nil)
		want("?membership=join", map[string]string{alice.UserID: name(alice), bob.UserID: "join/Robert", carol.UserID: name(carol)})
		if prev, _ := members("")[bob.UserID].Unsigned["prev_content"].(map[string]any); prev["displayname"] != name(bob)[len("join/"):] {
			t.Fatalf("bob's rename: prev_content %v", prev)
		}
		carol.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		want("", map[string]string{alice.UserID: name(alice), bob.UserID: "join/Robert", carol.UserID: "leave/<nil>"})
		want("?not_membership=leave", map[string]string{alice.UserID: name(alice), bob.UserID: "join/Robert"})
		want("?membership=leave", map[string]string{carol.UserID: "leave/<nil>"})

		// A redacted member event keeps its membership, loses its name.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(members("")[bob.UserID].EventID)+"/r1", map[string]any{}, nil)
		want("", map[string]string{alice.UserID: name(alice), bob.UserID: "join/<nil>", carol.UserID: "leave/<nil>"})
		if members("")[bob.UserID].Unsigned["redacted_because"] == nil {
			t.Fatal("bob's redacted member event shows no redacted_because")
		}
		// Read again after a restart, with nothing cached: the same events.
		before := members("")
		s = s.Restart(t)
		fresh := s.Anonymous(t)
		fresh.UserID, fresh.DeviceID, fresh.Token = alice.UserID, alice.DeviceID, alice.Token
		*alice = *fresh
		for _, cold := range []bool{true, false} {
			after := members("")
			for u, e := range before {
				delete(e.Unsigned, "age")
				delete(after[u].Unsigned, "age")
				if a, b := mustJSON(t, e), mustJSON(t, after[u]); a != b {
					t.Fatalf("after a restart (cold %v), %s's member event\n%s\nwas\n%s", cold, u, b, a)
				}
			}
		}
		var state []event
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state", nil, &state)
		for _, e := range state {
			if e.Type == "m.room.member" && *e.StateKey == bob.UserID && (e.Content["displayname"] != nil || e.Unsigned["redacted_because"] == nil) {
				t.Fatalf("/state shows bob's member event unredacted: %+v", e)
			}
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
