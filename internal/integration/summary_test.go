package integration

import (
	"fmt"
	"slices"
	"testing"

	ts "luxchat/internal/testserver"
)

// roomSummary is the summary of a room in a /sync answer.
type roomSummary struct {
	Heroes  []string `json:"m.heroes"`
	Joined  int      `json:"m.joined_member_count"`
	Invited int      `json:"m.invited_member_count"`
}

// summaryFromMembers is the summary the spec asks for, worked out from
// the room's member events as /members lists them: counts, and the first
// five joined or invited members other than the reader by user id, or
// when there are none those who left or were banned.
func summaryFromMembers(t *testing.T, c *ts.Client, roomID, reader string) roomSummary {
	t.Helper()
	var resp struct {
		Chunk []event `json:"chunk"`
	}
	c.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/members", nil, &resp)
	var sum roomSummary
	var present, former []string
	for _, ev := range resp.Chunk {
		u := *ev.StateKey
		switch ev.Content["membership"] {
		case "join":
			sum.Joined++
		case "invite":
			sum.Invited++
		}
		switch ev.Content["membership"] {
		case "join", "invite":
			if u != reader {
				present = append(present, u)
			}
		case "leave", "ban":
			if u != reader {
				former = append(former, u)
			}
		}
	}
	if len(present) == 0 {
		present = former
	}
	slices.Sort(present)
	sum.Heroes = present[:min(5, len(present))]
	return sum
}

// summarySync is what the summary tests read of a /sync answer.
type summarySync struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Summary *roomSummary `json:"summary"`
		} `json:"join"`
	} `json:"rooms"`
}

// syncSummaries returns the summaries of an initial sync, by room.
func syncSummaries(t *testing.T, c *ts.Client, query string) (map[string]roomSummary, string) {
	t.Helper()
	var resp summarySync
	c.MustDo("GET", "/_matrix/client/v3/sync?timeout=0"+query, nil, &resp)
	out := map[string]roomSummary{}
	for id, jr := range resp.Rooms.Join {
		if jr.Summary != nil {
			out[id] = *jr.Summary
		}
	}
	return out, resp.NextBatch
}

// Room summaries of /sync follow members as they join, are invited, leave,
// are banned and change their names: the counts and heroes of an initial
// sync (every room at once) and of an incremental one (a member event in
// the timeline) are those the room's member events give, for each reader.
func TestSyncSummaryFollowsMembers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		// Named so that heroes are checked against ids, not against
		// registration order.
		users := map[string]*ts.Client{}
		for _, name := range []string{"mia", "bob", "zed", "carol", "dan", "erin", "frank", "gus"} {
			users[name] = s.Register(t, name)
		}
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		other := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "other"})
		_, since := syncSummaries(t, alice, "")
		check := func(step string) {
			t.Helper()
			for _, reader := range []*ts.Client{alice, users["mia"]} {
				got, _ := syncSummaries(t, reader, "")
				want := summaryFromMembers(t, alice, room, reader.UserID)
				if g, ok := got[room]; ok && fmt.Sprint(g) != fmt.Sprint(want) {
					t.Fatalf("%s: initial sync of %s: summary %+v, want %+v", step, reader.UserID, g, want)
				} else if !ok && reader == alice {
					t.Fatalf("%s: no summary in alice's initial sync", step)
				}
				if reader == alice && fmt.Sprint(got[other]) != fmt.Sprint(roomSummary{Heroes: []string{}, Joined: 1}) {
					t.Fatalf("%s: summary of the room alice is alone in: %+v", step, got[other])
				}
			}
			// The incremental sync that carries the change.
			var resp summarySync
			alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&since="+since, nil, &resp)
			since = resp.NextBatch
			want := summaryFromMembers(t, alice, room, alice.UserID)
			if jr, ok := resp.Rooms.Join[room]; !ok || jr.Summary == nil || fmt.Sprint(*jr.Summary) != fmt.Sprint(want) {
				t.Fatalf("%s: incremental sync: %+v, want summary %+v", step, jr.Summary, want)
			}
		}
		member := func(c *ts.Client, target, membership string, extra map[string]any) {
			t.Helper()
			body := map[string]any{"user_id": target}
			for k, v := range extra {
				body[k] = v
			}
			c.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/"+membership, body, nil)
		}
		for _, name := range []string{"mia", "zed", "dan", "erin", "frank"} {
			users[name].Join(room)
		}
		check("five joined")
		member(alice, users["bob"].UserID, "invite", nil)
		member(alice, users["carol"].UserID, "invite", nil)
		check("two invited, before the others by id")
		users["bob"].Join(room)
		check("an invited member joined")
		users["carol"].MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		check("an invite declined")
		users["dan"].MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.member/"+esc(users["dan"].UserID),
			map[string]any{"membership": "join", "displayname": "Daniel"}, nil)
		check("a name changed")
		member(alice, users["bob"].UserID, "ban", nil)
		check("a hero banned")
		users["gus"].Join(room)
		users["erin"].MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		check("one joined, one left")
		for _, name := range []string{"mia", "zed", "dan", "frank", "gus"} {
			users[name].MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		}
		check("everyone else left")
	})
}
