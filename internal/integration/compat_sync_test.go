package integration

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	ts "luxchat/internal/testserver"
)

// leftSync is a sync answer's rooms.leave section.
type leftSync struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Leave map[string]struct {
			State struct {
				Events []event `json:"events"`
			} `json:"state"`
			Timeline struct {
				Events  []event `json:"events"`
				Limited bool    `json:"limited"`
			} `json:"timeline"`
		} `json:"leave"`
	} `json:"rooms"`
}

func syncLeft(t *testing.T, c *ts.Client, query string) leftSync {
	t.Helper()
	var s leftSync
	c.MustDo("GET", "/_matrix/client/v3/sync?"+query, nil, &s)
	return s
}

// hasMembership tells whether evs hold userID's member event with this
// membership.
func hasMembership(evs []event, userID, membership string) bool {
	for _, e := range evs {
		if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == userID && e.Content["membership"] == membership {
			return true
		}
	}
	return false
}

// leaveShown tells whether a sync shows userID's leave of roomID in its
// leave section (in the state or the timeline).
func leaveShown(s leftSync, roomID, userID string) bool {
	lr, ok := s.Rooms.Leave[roomID]
	return ok && (hasMembership(lr.State.Events, userID, "leave") || hasMembership(lr.Timeline.Events, userID, "leave"))
}

// A left room shows, in initial and incremental syncs, the events up to
// the leave that the timeline filter lets through, and the state up to
// the start of its timeline: with an empty timeline that state holds the
// leave and nothing from after it.
func TestLeftRoomTimelineAndStateFollowTheFilter(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		bobSince := doSync(t, bob, "timeout=0").NextBatch
		alice.SendText(room, "before")
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/a.madeup.state/", map[string]any{"my_key": "before"}, nil)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		alice.SendText(room, "after")
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/a.madeup.state/", map[string]any{"my_key": "after"}, nil)

		f := url.QueryEscape(`{"room":{"timeline":{"types":["m.room.message","a.madeup.state"]},"state":{"types":["a.madeup.state"]},"include_leave":true}}`)
		for name, q := range map[string]string{"initial": "filter=" + f, "incremental": "filter=" + f + "&since=" + url.QueryEscape(bobSince)} {
			lr, ok := syncLeft(t, bob, q).Rooms.Leave[room]
			if !ok {
				t.Fatalf("%s sync: no left room", name)
			}
			evs := lr.Timeline.Events
			if len(evs) != 2 || evs[0].Content["body"] != "before" || evs[1].Content["my_key"] != "before" {
				t.Fatalf("%s sync: timeline %+v, want the message and the state from before the leave", name, evs)
			}
			if len(lr.State.Events) != 0 {
				t.Fatalf("%s sync: state %+v, want none (all of it is in the timeline)", name, lr.State.Events)
			}
		}

		empty := url.QueryEscape(`{"room":{"timeline":{"limit":0},"include_leave":true}}`)
		lr := syncLeft(t, bob, "filter="+empty).Rooms.Leave[room]
		if len(lr.Timeline.Events) != 0 {
			t.Fatalf("limit 0: timeline %+v", lr.Timeline.Events)
		}
		if !hasMembership(lr.State.Events, bob.UserID, "leave") {
			t.Fatalf("limit 0: state lacks bob's leave: %+v", lr.State.Events)
		}
		for _, e := range lr.State.Events {
			if e.Type == "a.madeup.state" && e.Content["my_key"] != "before" {
				t.Fatalf("limit 0: state from after the leave: %+v", e)
			}
		}
	})
}

// A rejected invite is a leave: a sync over the window shows it (with
// full_state too), and once the user joined it is gone.
func TestRejectedInviteShownAsLeave(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		since := doSync(t, bob, "timeout=0").NextBatch
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": bob.UserID}, nil)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		for _, q := range []string{"timeout=0&since=", "timeout=0&full_state=true&since="} {
			if s := syncLeft(t, bob, q+url.QueryEscape(since)); !leaveShown(s, room, bob.UserID) {
				t.Fatalf("%s: the rejected invite is not in rooms.leave: %+v", q, s.Rooms.Leave)
			}
		}
		since = syncLeft(t, bob, "timeout=0&since="+url.QueryEscape(since)).NextBatch
		bob.Join(room)
		if s := syncLeft(t, bob, "timeout=0&full_state=true&since="+url.QueryEscape(since)); len(s.Rooms.Leave) != 0 {
			t.Fatalf("after joining, rooms.leave: %+v", s.Rooms.Leave)
		}
	})
}

// Forgetting a room right after leaving it must not hide the leave from
// the user's other devices: an incremental sync over the leave shows it;
// an initial sync does not show the forgotten room.
func TestForgottenRoomLeaveInIncrementalSync(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		since := doSync(t, alice, "timeout=0").NextBatch
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/forget", map[string]any{}, nil)
		bob.SendText(room, "still here")
		f := url.QueryEscape(`{"room":{"include_leave":true}}`)
		if s := syncLeft(t, alice, "timeout=0&filter="+f+"&since="+url.QueryEscape(since)); !leaveShown(s, room, alice.UserID) {
			t.Fatalf("incremental sync lacks the leave of the forgotten room: %+v", s.Rooms.Leave)
		}
		if s := syncLeft(t, alice, "timeout=0&filter="+f); len(s.Rooms.Leave) != 0 {
			t.Fatalf("initial sync shows the forgotten room: %+v", s.Rooms.Leave)
		}
	})
}

// The end of an invite to a room of another server reaches the invitee's
// syncs with its leave event: rejected by the invitee (also when the room
// has nobody left to answer), or rescinded by the inviter.
func TestFedInviteEndShownAsLeave(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		leftSince := func(c *ts.Client, since, roomID string) {
			t.Helper()
			f := url.QueryEscape(`{"room":{"include_leave":true}}`)
			for i := 0; i < 30; i++ {
				s := syncLeft(t, c, "timeout=500&filter="+f+"&since="+url.QueryEscape(since))
				if leaveShown(s, roomID, c.UserID) {
					return
				}
				since = s.NextBatch
			}
			t.Fatalf("%s never saw their leave of %s", c.UserID, roomID)
		}
		invited := func(roomID string) string {
			t.Helper()
			return frSyncUntil(t, bob, "", func(s syncResp) bool { _, ok := s.Rooms.Invite[roomID]; return ok })
		}

		rejected := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
		since := invited(rejected)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(rejected)+"/leave", map[string]any{}, nil)
		leftSince(bob, since, rejected)

		empty := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
		since = invited(empty)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(empty)+"/leave", map[string]any{}, nil)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(empty)+"/leave", map[string]any{}, nil)
		leftSince(bob, since, empty)

		rescinded := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
		since = invited(rescinded)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(rescinded)+"/kick", map[string]any{"user_id": bob.UserID, "reason": "testing"}, nil)
		leftSince(bob, since, rescinded)

		// Only the inviter may rescind: bob's server cannot check another
		// member's power, so bob stays invited.
		shared := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
		invited(shared)
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(shared), map[string]any{}, nil)
		alice2 := p.a.Register(t, "alice2")
		other := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{alice2.UserID}})
		alice2.Join(other)
		alice2.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(other)+"/invite", map[string]any{"user_id": bob.UserID}, nil)
		invited(other)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(other)+"/kick", map[string]any{"user_id": bob.UserID}, nil)
		// The outbound queue delivers in order: once bob has the message
		// sent after the kick, his server has had the kick too.
		alice.SendText(shared, "after the kick")
		frSyncUntil(t, bob, "", func(s syncResp) bool { return frHasBody(s.Rooms.Join[shared].Timeline.Events, "after the kick") })
		if _, ok := doSync(t, bob, "timeout=0").Rooms.Invite[other]; !ok {
			t.Fatal("a member other than the inviter rescinded bob's invite")
		}
	})
}

type presenceSync struct {
	NextBatch string `json:"next_batch"`
	Presence  struct {
		Events []event `json:"events"`
	} `json:"presence"`
}

func presenceSenders(t *testing.T, c *ts.Client, since string) ([]string, string) {
	t.Helper()
	var s presenceSync
	c.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(since), nil, &s)
	var out []string
	for _, e := range s.Presence.Events {
		out = append(out, e.Sender)
	}
	return out, s.NextBatch
}

// Users who come to share a room learn each other's presence in their next
// incremental sync, even when it did not change meanwhile: the joiner
// gets the members', the members get the joiner's; the sync after that
// repeats nothing.
func TestPresenceOfNewlyMetMembersInIncrementalSync(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		aliceSince := doSync(t, alice, "timeout=0").NextBatch
		bobSince := doSync(t, bob, "timeout=0").NextBatch
		// Both presences are older than the since tokens.
		aliceSince = doSync(t, alice, "timeout=0&since="+url.QueryEscape(aliceSince)).NextBatch
		bobSince = doSync(t, bob, "timeout=0&since="+url.QueryEscape(bobSince)).NextBatch
		bob.Join(room)

		got, next := presenceSenders(t, bob, bobSince)
		if !slices.Contains(got, alice.UserID) {
			t.Fatalf("bob's sync after joining: presence of %v, want alice's", got)
		}
		if got, _ := presenceSenders(t, bob, next); len(got) != 0 {
			t.Fatalf("bob's next sync repeats presence of %v", got)
		}
		if got, _ := presenceSenders(t, alice, aliceSince); !slices.Contains(got, bob.UserID) {
			t.Fatalf("alice's sync after bob joined: presence of %v, want bob's", got)
		}
	})
}

// Filters name rooms by room id and senders by user id; anything else is
// a bad filter, refused when it is stored.
func TestFilterWithBadIDsRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		path := "/_matrix/client/v3/user/" + esc(alice.UserID) + "/filter"
		for _, f := range []map[string]any{
			{"room": map[string]any{"timeline": map[string]any{"rooms": []string{"not_a_room_id"}}}},
			{"room": map[string]any{"not_rooms": []string{"nope"}}},
			{"room": map[string]any{"state": map[string]any{"senders": []string{"not_a_sender_id"}}}},
			{"presence": map[string]any{"not_senders": []string{"bob"}}},
		} {
			if r := alice.Do("POST", path, f); r.Status != 400 {
				t.Errorf("filter %v: %d %s", f, r.Status, r.Body)
			}
		}
		alice.MustDo("POST", path, map[string]any{"room": map[string]any{"rooms": []string{"!abc:example.org", "!opaque"}, "timeline": map[string]any{"senders": []string{"@bob:example.org"}}}}, nil)
	})
}

// Reading a room one may not read is refused the same way whether the room
// exists or not, and a forgotten room is read as by a stranger: /messages
// answers 403 (even before checking its other parameters) and /event 404.
func TestUnreadableRoomsMessagesAndEvents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat",
			"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "shared"}}}})
		msg := alice.SendText(room, "hello")
		wantError(t, alice.Do("GET", "/_matrix/client/v3/rooms/"+esc("!does-not-exist:"+s.Config.ServerName)+"/messages?dir=b", nil), 403, "M_FORBIDDEN")
		wantError(t, bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(msg), nil), 404, "M_NOT_FOUND")

		forgotten := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(forgotten)
		alice.SendText(forgotten, "before forgetting")
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(forgotten)+"/leave", map[string]any{}, nil)
		if p := messages(t, alice, forgotten, "dir=b"); !slices.Contains(bodies(p.Chunk), "before forgetting") {
			t.Fatalf("before forgetting, alice's history: %v", bodies(p.Chunk))
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(forgotten)+"/forget", map[string]any{}, nil)
		wantError(t, alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(forgotten)+"/messages", nil), 403, "M_FORBIDDEN")
		wantError(t, alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(forgotten)+"/messages?dir=b", nil), 403, "M_FORBIDDEN")
		// Readers of the room still get parameter errors.
		wantError(t, bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(forgotten)+"/messages", nil), 400, "M_INVALID_PARAM")
	})
}

// A user's unthreaded and threaded read receipts on one event share one
// place in m.receipt: the unthreaded one is shown, whichever came last.
func TestUnthreadedReceiptWinsOverThreadedOnSameEvent(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		root := alice.SendText(room, "root")
		reply := alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "in thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		base := "/_matrix/client/v3/rooms/" + esc(room) + "/receipt/m.read/" + esc(reply)
		alice.MustDo("POST", base, map[string]any{}, nil)
		alice.MustDo("POST", base, map[string]any{"thread_id": root}, nil)
		var out struct {
			Rooms struct {
				Join map[string]struct {
					Ephemeral struct {
						Events []struct {
							Type    string                                          `json:"type"`
							Content map[string]map[string]map[string]map[string]any `json:"content"`
						} `json:"events"`
					} `json:"ephemeral"`
				} `json:"join"`
			} `json:"rooms"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=0", nil, &out)
		found := false
		for _, e := range out.Rooms.Join[room].Ephemeral.Events {
			if e.Type != "m.receipt" {
				continue
			}
			r, ok := e.Content[reply]["m.read"][alice.UserID]
			if !ok {
				continue
			}
			found = true
			if _, threaded := r["thread_id"]; threaded {
				t.Fatalf("receipt shown is the threaded one: %v", r)
			}
		}
		if !found {
			t.Fatal("no read receipt of alice in her sync")
		}
	})
}

// Events served to a client carry its membership when they were sent
// (unsigned.membership, MSC4115): "leave" before it joined, "join" from
// its join on, in sync timelines, /messages and /event.
func TestEventsCarryViewerMembership(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		pre := alice.SendText(room, "prejoin")
		bob.Join(room)
		post := alice.SendText(room, "postjoin")
		want := func(where string, evs []event) {
			t.Helper()
			joined, seen := false, 0
			for _, e := range evs {
				if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == bob.UserID {
					joined = true
				}
				m := "leave"
				if joined {
					m = "join"
				}
				if e.Unsigned["membership"] != m {
					t.Fatalf("%s: %s %s has membership %v, want %s", where, e.Type, e.EventID, e.Unsigned["membership"], m)
				}
				if e.EventID == pre || e.EventID == post {
					seen++
				}
			}
			if seen != 2 {
				t.Fatalf("%s: both messages not shown", where)
			}
		}
		want("sync", doSync(t, bob, "timeout=0").Rooms.Join[room].Timeline.Events)
		p := messages(t, bob, room, "dir=b&limit=20")
		slices.Reverse(p.Chunk)
		want("messages", p.Chunk)
		for id, m := range map[string]string{pre: "leave", post: "join"} {
			var e event
			bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(id), nil, &e)
			if e.Unsigned["membership"] != m {
				t.Fatalf("/event %s: membership %v, want %s", id, e.Unsigned["membership"], m)
			}
		}
	})
}

// With use_state_after (MSC4222) a room's state runs to the end of its
// timeline and is sent as state_after instead of state (under the
// unstable key when the unstable parameter asked): an initial sync with
// lazy-loaded members holds the members of every timeline sender, an
// incremental one the state events of its timeline.
func TestSyncStateAfter(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		f := url.QueryEscape(`{"room":{"timeline":{"limit":20},"state":{"lazy_load_members":true}}}`)
		type roomState struct {
			State      *struct{ Events []event } `json:"state"`
			StateAfter *struct{ Events []event } `json:"state_after"`
			Unstable   *struct{ Events []event } `json:"org.matrix.msc4222.state_after"`
		}
		get := func(q string) (roomState, string) {
			var out struct {
				NextBatch string `json:"next_batch"`
				Rooms     struct {
					Join map[string]roomState `json:"join"`
				} `json:"rooms"`
			}
			alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&"+q, nil, &out)
			return out.Rooms.Join[room], out.NextBatch
		}
		r, since := get("use_state_after=true&filter=" + f)
		if r.State != nil || r.StateAfter == nil {
			t.Fatalf("initial sync: state %v, state_after %v", r.State, r.StateAfter)
		}
		for _, u := range []string{alice.UserID, bob.UserID} {
			if !hasMembership(r.StateAfter.Events, u, "join") {
				t.Fatalf("state_after lacks the member event of %s: %+v", u, r.StateAfter.Events)
			}
		}
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.topic/", map[string]any{"topic": "new"}, nil)
		alice.SendText(room, "after the topic")
		r, _ = get("org.matrix.msc4222.use_state_after=true&since=" + url.QueryEscape(since))
		if r.State != nil || r.StateAfter != nil || r.Unstable == nil {
			t.Fatalf("unstable parameter: state %v, state_after %v, unstable %v", r.State, r.StateAfter, r.Unstable)
		}
		found := false
		for _, e := range r.Unstable.Events {
			found = found || e.Type == "m.room.topic" && e.Content["topic"] == "new"
		}
		if !found {
			t.Fatalf("incremental state_after lacks the new topic: %+v", r.Unstable.Events)
		}
		// Without the parameter, state keeps its meaning.
		if r, _ := get("since=" + url.QueryEscape(since)); r.State == nil || r.StateAfter != nil || len(r.State.Events) != 0 {
			t.Fatalf("plain incremental sync: state %v, state_after %v", r.State, r.StateAfter)
		}
	})
}

// /messages filters on relation types (MSC3874's unstable rel_types and
// not_rel_types): events without a relation pass only not_rel_types.
func TestMessagesRelationTypeFilter(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		from := doSync(t, alice, "timeout=0").NextBatch
		root := alice.SendText(room, "root")
		thread := alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		ref := alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "reference",
			"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": root}})
		for f, want := range map[string][]string{
			`{"org.matrix.msc3874.rel_types":["m.thread"]}`:                   {thread},
			`{"org.matrix.msc3874.rel_types":["m.thread","m.reference"]}`:     {thread, ref},
			`{"org.matrix.msc3874.not_rel_types":["m.thread"]}`:               {root, ref},
			`{"org.matrix.msc3874.not_rel_types":["m.reference","m.thread"]}`: {root},
		} {
			p := messages(t, alice, room, "dir=f&from="+url.QueryEscape(from)+"&filter="+url.QueryEscape(f))
			var got []string
			for _, e := range p.Chunk {
				got = append(got, e.EventID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("filter %s: %v, want %v", f, got, want)
			}
		}
	})
}

// When an event arrives after a hole in the room's history that its
// server's missing events could not fill, the next sync's timeline starts
// after the hole and is limited: events from before the hole are not
// shown as if they were contiguous with it.
func TestSyncTimelineLimitedAfterHistoryGap(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		f := url.QueryEscape(`{"room":{"timeline":{"limit":40}}}`)
		since := doSync(t, bob, "timeout=0&filter="+f).NextBatch
		bob.SendText(room, "before the hole")
		frStopQueues(p.a)
		for i := 0; i < 30; i++ {
			alice.SendText(room, fmt.Sprintf("unsent %d", i))
		}
		last := alice.SendText(room, "end")
		frRelay(t, p.a, p.b, last)
		s := doSync(t, bob, "timeout=0&filter="+f+"&since="+url.QueryEscape(since))
		tl := s.Rooms.Join[room].Timeline
		if len(tl.Events) == 0 || tl.Events[len(tl.Events)-1].EventID != last {
			t.Fatalf("timeline does not end with the relayed event: %v", bodies(tl.Events))
		}
		if !tl.Limited {
			t.Fatalf("timeline across a hole is not limited: %v", bodies(tl.Events))
		}
		if slices.Contains(bodies(tl.Events), "before the hole") {
			t.Fatalf("timeline shows an event from before the hole: %v", bodies(tl.Events))
		}
	})
}

// /members?at= answers the members as of a point of the room's timeline
// (a prev_batch token): not those who joined later; a point before the
// room's first event has no members to answer, which is a 404 rather than
// the members of now.
func TestMembersAtPoint(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		alice.SendText(room, "before bob")
		at := doSync(t, alice, "timeout=0").NextBatch
		bob.Join(room)
		var out struct {
			Chunk []event `json:"chunk"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/members?at="+url.QueryEscape(at), nil, &out)
		if len(out.Chunk) != 1 || !hasMembership(out.Chunk, alice.UserID, "join") {
			t.Fatalf("members at the token: %+v, want alice alone", out.Chunk)
		}
		wantError(t, alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/members?at=t0", nil), 404, "M_NOT_FOUND")
	})
}

// A read receipt from another server may name an event this server does
// not have yet (EDUs overtake PDUs, a room still being joined): it is
// shown all the same, and a later receipt on a known event replaces it.
func TestRemoteReceiptForEventNotYetReceived(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		roomID := fqRoom(t, p, alice, bob)
		msg := alice.SendText(roomID, "hi")
		receipt := func(txn, eventID string) {
			fqSendEDUs(t, p.b, p.a, txn, map[string]any{"edu_type": "m.receipt", "content": map[string]any{roomID: map[string]any{"m.read": map[string]any{
				bob.UserID: map[string]any{"data": map[string]any{"ts": 1436451550453}, "event_ids": []string{eventID}}}}}})
		}
		receiptOf := func(s map[string]any, eventID string) bool {
			evs, _ := path(s, "rooms", "join", roomID, "ephemeral", "events").([]any)
			for _, e := range evs {
				if path(e, "type") == "m.receipt" && path(e, "content", eventID, "m.read", bob.UserID, "ts") != nil {
					return true
				}
			}
			return false
		}
		since := alice.Sync("timeout=0")["next_batch"].(string)
		receipt("r1", "$not-here-yet")
		since = fqSyncUntil(t, alice, since, "bob's receipt on an unknown event", func(s map[string]any) bool { return receiptOf(s, "$not-here-yet") })
		receipt("r2", msg)
		fqSyncUntil(t, alice, since, "bob's receipt on alice's message", func(s map[string]any) bool { return receiptOf(s, msg) })
	})
}

// A sync whose filter wants no presence (no type, a type list without
// m.presence, a limit of 0, no sender) gets none, initial or incremental,
// newly met members included; without such a filter it gets it.
func TestPresenceFilteredOut(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.MustDo("PUT", "/_matrix/client/v3/presence/"+esc(bob.UserID)+"/status", map[string]any{"presence": "online", "status_msg": "here"}, nil)
		since := doSync(t, alice, "timeout=0").NextBatch
		bob.Join(room)
		senders := func(query string) []string {
			var r presenceSync
			alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&"+query, nil, &r)
			var out []string
			for _, e := range r.Presence.Events {
				out = append(out, e.Sender)
			}
			return out
		}
		for _, f := range []string{`{"presence":{"types":[]}}`, `{"presence":{"not_types":["*"]}}`, `{"presence":{"limit":0}}`, `{"presence":{"senders":[]}}`} {
			for _, q := range []string{"filter=" + url.QueryEscape(f), "filter=" + url.QueryEscape(f) + "&since=" + url.QueryEscape(since)} {
				if got := senders(q); len(got) != 0 {
					t.Fatalf("sync %s: presence of %v", q, got)
				}
			}
		}
		if got := senders("since=" + url.QueryEscape(since)); !slices.Contains(got, bob.UserID) {
			t.Fatalf("unfiltered incremental sync: presence of %v, want bob's", got)
		}
		if got := senders(""); !slices.Contains(got, bob.UserID) {
			t.Fatalf("unfiltered initial sync: presence of %v, want bob's", got)
		}
	})
}
