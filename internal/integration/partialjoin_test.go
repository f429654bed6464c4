package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// pjTemplate asks to (resident) for a make_<membership> template for
// userID of from, and signs it as from.
func pjTemplate(t *testing.T, from, to *ts.Server, roomID, userID, membership string) *pdu.Event {
	t.Helper()
	var mk struct {
		RoomVersion string `json:"room_version"`
		Event       struct {
			Type       string          `json:"type"`
			StateKey   *string         `json:"state_key"`
			Content    json.RawMessage `json:"content"`
			PrevEvents []string        `json:"prev_events"`
			AuthEvents []string        `json:"auth_events"`
			Depth      int64           `json:"depth"`
		} `json:"event"`
	}
	uri := "/_matrix/federation/v1/make_" + membership + "/" + url.PathEscape(roomID) + "/" + url.PathEscape(userID)
	if membership != "leave" {
		uri += "?ver=" + roomversion.Default
	}
	if err := frGet(from, to, "GET", uri, nil, &mk); err != nil {
		t.Fatalf("make_%s: %v", membership, err)
	}
	v, _ := roomversion.Get(mk.RoomVersion)
	e := mk.Event
	ev, err := pdu.Build(pdu.Proto{RoomID: roomID, Sender: userID, Type: e.Type, StateKey: e.StateKey, Content: e.Content,
		PrevEvents: e.PrevEvents, AuthEvents: e.AuthEvents, Depth: e.Depth, OriginServerTS: time.Now().UnixMilli()}, v, from.Config.ServerName, from.Key)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// The deprecated v1 send_join and send_leave answer [200, {...}] and
// refuse events of another membership like v2 does.
func TestFedSendJoinLeaveV1(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice := p.a.Register(t, "alice")
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		zed := "@zed:" + p.b.Config.ServerName
		fed := "/_matrix/federation/v1/"

		// A leave through send_join, a join through send_leave: 400.
		leave := frBuild(t, p.b, roomID, zed, "m.room.member", &zed, map[string]any{"membership": "leave"}, []string{frLatest(t, p.a, roomID)}, frAuth(t, p.a, roomID, zed), 10)
		err := frGet(p.b, p.a, "PUT", fed+"send_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(leave.ID), json.RawMessage(leave.JSON()), nil)
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Fatalf("a leave through v1 send_join: %v", err)
		}
		join := pjTemplate(t, p.b, p.a, roomID, zed, "join")
		err = frGet(p.b, p.a, "PUT", fed+"send_leave/"+url.PathEscape(roomID)+"/"+url.PathEscape(join.ID), json.RawMessage(join.JSON()), nil)
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Fatalf("a join through v1 send_leave: %v", err)
		}

		var res []json.RawMessage
		if err := frGet(p.b, p.a, "PUT", fed+"send_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(join.ID), json.RawMessage(join.JSON()), &res); err != nil {
			t.Fatalf("v1 send_join: %v", err)
		}
		var body struct {
			Origin    string            `json:"origin"`
			State     []json.RawMessage `json:"state"`
			AuthChain []json.RawMessage `json:"auth_chain"`
		}
		if len(res) != 2 || string(res[0]) != "200" || json.Unmarshal(res[1], &body) != nil || body.Origin != p.a.Config.ServerName || len(body.State) < 4 || len(body.AuthChain) == 0 {
			t.Fatalf("v1 send_join answered %s", res)
		}
		if m := frMembership(t, alice, roomID, zed); m != "join" {
			t.Fatalf("zed's membership after v1 send_join: %q", m)
		}

		leave = pjTemplate(t, p.b, p.a, roomID, zed, "leave")
		res = nil
		if err := frGet(p.b, p.a, "PUT", fed+"send_leave/"+url.PathEscape(roomID)+"/"+url.PathEscape(leave.ID), json.RawMessage(leave.JSON()), &res); err != nil {
			t.Fatalf("v1 send_leave: %v", err)
		}
		if len(res) != 2 || string(res[0]) != "200" || string(res[1]) != "{}" {
			t.Fatalf("v1 send_leave answered %s", res)
		}
		if m := frMembership(t, alice, roomID, zed); m != "leave" {
			t.Fatalf("zed's membership after v1 send_leave: %q", m)
		}
	})
}

// pjLazy is a sync filter that lazy-loads members.
var pjLazy = url.QueryEscape(`{"room":{"state":{"lazy_load_members":true},"timeline":{"lazy_load_members":true}}}`)

// pjSyncUntil long-polls a user's sync with a filter until check
// accepts a response.
func pjSyncUntil(t *testing.T, c *ts.Client, since, filter string, check func(s syncResp) bool) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s := doSync(t, c, "timeout=2000&filter="+filter+"&since="+url.QueryEscape(since))
		if check(s) {
			return s.NextBatch
		}
		since = s.NextBatch
	}
	t.Fatalf("sync of %s never showed what was expected", c.UserID)
	return ""
}

// pjRoom makes a public room on s without a name, with alice and the
// given users of s joined; it returns the room id and alice.
func pjRoom(t *testing.T, s *ts.Server, users ...string) (string, *ts.Client) {
	t.Helper()
	alice := s.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	for _, u := range users {
		s.Register(t, u).Join(roomID)
	}
	return roomID, alice
}

// pjJoinHeld has dave, a new user of p.b, join roomID through p.a with
// the resync of the room's state held until release.
func pjJoinHeld(t *testing.T, p *frPair, roomID string) (dave *ts.Client, release func()) {
	t.Helper()
	release = p.b.RoomFed.HoldResyncs()
	dave = p.b.Register(t, "dave")
	dave.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
	return dave, release
}

// pjUser returns the user whose member event a state holds and whose id
// starts with prefix.
func pjUser(st store.StateMap, prefix string) string {
	for k := range st {
		if k.Type == "m.room.member" && strings.HasPrefix(k.StateKey, prefix) {
			return k.StateKey
		}
	}
	return ""
}

func pjMembers(t *testing.T, c *ts.Client, roomID string) []string {
	t.Helper()
	var res struct {
		Joined map[string]any `json:"joined"`
	}
	c.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/joined_members", nil, &res)
	var out []string
	for u := range res.Joined {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func pjWaitFull(t *testing.T, s *ts.Server, roomID string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	partial := func() bool {
		rows, err := s.Store.PartialStateRooms(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(rows) > 0 || s.Rooms.IsPartialState(roomID)
	}
	for partial() {
		if time.Now().After(deadline) {
			t.Fatalf("the full state of %s never came", roomID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// send_join with omit_members=true leaves out the member events of
// everyone but the heroes, and lists the servers in the room.
func TestFedSendJoinOmitMembers(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		roomID, alice := pjRoom(t, p.a, "bob", "carol", "dan", "erin", "frank", "zoe")
		zed := "@zed:" + p.b.Config.ServerName
		join := pjTemplate(t, p.b, p.a, roomID, zed, "join")
		var res struct {
			State          []json.RawMessage `json:"state"`
			AuthChain      []json.RawMessage `json:"auth_chain"`
			MembersOmitted bool              `json:"members_omitted"`
			ServersInRoom  []string          `json:"servers_in_room"`
		}
		uri := "/_matrix/federation/v2/send_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(join.ID)
		if err := frGet(p.b, p.a, "PUT", uri+"?omit_members=maybe", json.RawMessage(join.JSON()), nil); err == nil || !strings.Contains(err.Error(), "M_INVALID_PARAM") {
			t.Fatalf("omit_members=maybe: %v", err)
		}
		if err := frGet(p.b, p.a, "PUT", uri+"?omit_members=true", json.RawMessage(join.JSON()), &res); err != nil {
			t.Fatal(err)
		}
		if !res.MembersOmitted || !slices.Equal(res.ServersInRoom, []string{p.a.Config.ServerName}) {
			t.Fatalf("members_omitted %v, servers_in_room %v", res.MembersOmitted, res.ServersInRoom)
		}
		v, _ := roomversion.Get(roomversion.Default)
		var members []string
		inState := map[string]bool{}
		for _, raw := range res.State {
			ev, err := pdu.Parse(raw, v)
			if err != nil {
				t.Fatal(err)
			}
			inState[ev.ID] = true
			if ev.Type == "m.room.member" {
				members = append(members, *ev.StateKey)
			}
		}
		slices.Sort(members)
		// The heroes: the first five members by user id.
		want := pjMembers(t, alice, roomID)[:5]
		if !slices.Equal(members, want) {
			t.Fatalf("member events in state: %v, want the heroes %v", members, want)
		}
		for _, raw := range res.AuthChain {
			ev, _ := pdu.Parse(raw, v)
			if ev != nil && inState[ev.ID] {
				t.Fatalf("auth_chain repeats %s from state", ev.ID)
			}
		}
		if m := frMembership(t, alice, roomID, zed); m != "join" {
			t.Fatalf("zed's membership: %q", m)
		}
	})
}

// Joining a room through a server that omits members gives a usable room
// at once: messages go both ways, also from members whose join we have
// not seen yet; the full member list follows, and meanwhile other
// servers cannot join through us.
func TestFedPartialStateJoin(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		users := []string{"bob", "carol", "dan", "erin", "frank", "zoe"}
		roomID, alice := pjRoom(t, p.a, users...)
		zoe := p.a.Register(t, "zoe2")
		zoe.Join(roomID)
		release := p.b.RoomFed.HoldResyncs()
		defer release()
		dave := p.b.Register(t, "dave")
		dave.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		if !p.b.Rooms.IsPartialState(roomID) {
			t.Fatal("the room is not partial after a join with members omitted")
		}

		// A resident server may not join through us meanwhile.
		err := frGet(p.a, p.b, "GET", "/_matrix/federation/v1/make_join/"+url.PathEscape(roomID)+"/"+url.PathEscape("@x:"+p.a.Config.ServerName)+"?ver="+roomversion.Default, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "M_NOT_FOUND") {
			t.Fatalf("make_join through a partial-state server: %v", err)
		}

		// Messages both ways, one from a member dave's server has no join of.
		since := doSync(t, dave, "timeout=0&filter="+pjLazy).NextBatch
		dave.SendText(roomID, "hello from dave")
		zoe.SendText(roomID, "hello from zoe")
		since = pjSyncUntil(t, dave, since, pjLazy, func(s syncResp) bool { return frHasBody(s.Rooms.Join[roomID].Timeline.Events, "hello from zoe") })
		// So do typing notices of members we have not seen join.
		zoe.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/typing/"+esc(zoe.UserID), map[string]any{"typing": true, "timeout": 10000}, nil)
		pjSyncUntil(t, dave, since, pjLazy, func(s syncResp) bool {
			for _, e := range s.Rooms.Join[roomID].Ephemeral.Events {
				if ids, _ := e.Content["user_ids"].([]any); e.Type == "m.typing" && slices.Contains(ids, any(zoe.UserID)) {
					return true
				}
			}
			return false
		})
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Contains(bodies(messages(t, alice, roomID, "dir=b&limit=10").Chunk), "hello from dave") {
			if time.Now().After(deadline) {
				t.Fatal("alice never got dave's message")
			}
			time.Sleep(50 * time.Millisecond)
		}

		// An alias made here meanwhile names the servers in the room.
		alias := "#pj:" + p.b.Config.ServerName
		dave.MustDo("PUT", "/_matrix/client/v3/directory/room/"+esc(alias), map[string]any{"room_id": roomID}, nil)
		var dir struct {
			Servers []string `json:"servers"`
		}
		dave.MustDo("GET", "/_matrix/client/v3/directory/room/"+esc(alias), nil, &dir)
		if !slices.Contains(dir.Servers, p.a.Config.ServerName) {
			t.Fatalf("alias servers during the resync: %v", dir.Servers)
		}

		// The member list waits for the full state.
		got := make(chan []string, 1)
		go func() { got <- pjMembers(t, dave, roomID) }()
		select {
		case m := <-got:
			t.Fatalf("joined_members answered before the full state was known: %v", m)
		case <-time.After(300 * time.Millisecond):
		}
		// The state at an event, asked by another server, is refused: the
		// partial state would be a wrong answer.
		head := frLatest(t, p.b, roomID)
		stateIDs := func(ctx context.Context) ([]string, error) {
			var res struct {
				PDUIDs []string `json:"pdu_ids"`
			}
			err := p.a.Federation.Do(ctx, p.b.Config.ServerName, "GET", "/_matrix/federation/v1/state_ids/"+url.PathEscape(roomID)+"?event_id="+url.QueryEscape(head), nil, &res)
			return res.PDUIDs, err
		}
		if ids, err := stateIDs(context.Background()); err == nil || !strings.Contains(err.Error(), "M_FORBIDDEN") {
			t.Fatalf("state_ids during the resync: %d ids, %v", len(ids), err)
		}
		release()
		want := pjMembers(t, alice, roomID)
		if m := <-got; !slices.Equal(m, want) || len(m) != 9 {
			t.Fatalf("members seen by dave after the resync: %v, want %v", m, want)
		}
		pjWaitFull(t, p.b, roomID)
		ids, err := stateIDs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.a.Store.CurrentState(context.Background(), roomID)
		if err != nil {
			t.Fatal(err)
		}
		for k, x := range st {
			if k.Type == "m.room.member" && k.StateKey != dave.UserID && !slices.Contains(ids, x) {
				t.Fatalf("state_ids after the resync lacks %s's membership", k.StateKey)
			}
		}
	})
}

// While the state is partial, an event is checked against that state
// resolved with the event's own auth events: a member whom a forged kick
// (accepted meanwhile) removed may still leave of their own accord.
func TestFedPartialStateOwnLeaveAfterForgedKick(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		roomID, alice := pjRoom(t, p.a, "bob", "carol", "erin")
		derek := p.a.Register(t, "derek")
		derek.Join(roomID)
		derekJoin := frLatest(t, p.a, roomID)
		derek.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/leave", map[string]any{}, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.power_levels", map[string]any{
			"users": map[string]int{alice.UserID: 100, derek.UserID: 50}}, nil)

		dave, release := pjJoinHeld(t, p, roomID)
		defer release()
		st, err := p.a.Store.CurrentState(context.Background(), roomID)
		if err != nil {
			t.Fatal(err)
		}
		bob := pjUser(st, "@bob")
		create, pl := st[store.StateKey{Type: "m.room.create"}], st[store.StateKey{Type: "m.room.power_levels"}]
		bobJoin := st[store.StateKey{Type: "m.room.member", StateKey: bob}]
		head := frLatest(t, p.a, roomID)
		kick := frBuild(t, p.a, roomID, derek.UserID, "m.room.member", &bob, map[string]any{"membership": "leave"}, []string{head},
			[]string{create, pl, derekJoin}, frDepth(t, p.a, head)+1)
		leave := frBuild(t, p.a, roomID, bob, "m.room.member", &bob, map[string]any{"membership": "leave"}, []string{kick.ID},
			[]string{create, pl, bobJoin}, kick.Depth+1)
		res, err := frSend(t, p.a, p.b, "", kick.JSON(), leave.JSON())
		if err != nil || res.PDUs[kick.ID].Error != "" || res.PDUs[leave.ID].Error != "" {
			t.Fatalf("sending the kick and the leave: %v %+v", err, res)
		}
		for _, ev := range []*pdu.Event{kick, leave} {
			if r := dave.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(ev.ID), nil); r.Status != http.StatusOK {
				t.Fatalf("%s during the partial state: %d %s", ev.ID, r.Status, r.Body)
			}
		}
		release()
		pjWaitFull(t, p.b, roomID)
		// The forged kick goes, bob's own leave stays.
		if r := dave.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(kick.ID), nil); r.Status != http.StatusNotFound {
			t.Fatalf("the forged kick after the resync: %d", r.Status)
		}
		var m struct {
			Membership string `json:"membership"`
		}
		dave.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.member/"+esc(bob), nil, &m)
		if m.Membership != "leave" {
			t.Fatalf("bob after the resync: %q", m.Membership)
		}
	})
}

// A restart in the middle of the state fetch resumes it.
func TestFedPartialStateJoinSurvivesRestart(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		roomID, alice := pjRoom(t, p.a, "bob", "carol", "dan", "erin", "frank", "zoe")
		p.b.RoomFed.HoldResyncs() // never released: the restart ends it
		dave := p.b.Register(t, "dave")
		dave.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		if !p.b.Rooms.IsPartialState(roomID) {
			t.Fatal("the room is not partial after a join with members omitted")
		}
		p.b = p.b.Restart(t)
		dave.URL = p.b.URL
		pjWaitFull(t, p.b, roomID)
		if got, want := pjMembers(t, dave, roomID), pjMembers(t, alice, roomID); !slices.Equal(got, want) {
			t.Fatalf("members after the resumed resync: %v, want %v", got, want)
		}
	})
}

// BenchmarkFedPartialJoin10kMembers: joining, from another server, a room
// of 10,000 members. The join asks for partial state, so the room is
// usable (the join answered, a message sent) long before its member list
// has been fetched; both times are reported. Run once:
//
//	go test ./internal/integration -run '^$' -bench BenchmarkFedPartialJoin10kMembers -benchtime 1x
func BenchmarkFedPartialJoin10kMembers(b *testing.B) {
	fpEnginesOf(b, []string{"police.test", "gouv.test", "education.test"}, func(b *testing.B, servers []*ts.Server) {
		// police.test hosts the room, gouv.test's users fill it,
		// education.test joins it.
		a, g, e := servers[0], servers[1], servers[2]
		ctx := context.Background()
		alice := a.Register(b, "alice")
		carol := e.Register(b, "carol")
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
			c, joinRules, power := fpRoom(b, a, g, roomID)
			const members = 10000 - 1 // alice is the first
			var txn []*pdu.Event
			for j := range members {
				u := fmt.Sprintf("@m%d:%s", j, g.Config.ServerName)
				txn = append(txn, c.next(b, "m.room.member", u, &u, map[string]any{"membership": "join"}, joinRules, power))
				if len(txn) == 50 || j == members-1 {
					fpSend(b, g, a, fmt.Sprintf("%s-%d", roomID, j), txn)
					txn = nil
				}
			}
			b.StartTimer()
			t0 := time.Now()
			carol.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(a.Config.ServerName), map[string]any{}, nil)
			carol.SendText(roomID, "here")
			usable := time.Since(t0)
			b.StopTimer()
			deadline := time.Now().Add(5 * time.Minute)
			for e.Rooms.IsPartialState(roomID) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			full := time.Since(t0)
			n, err := e.Rooms.JoinedUsers(ctx, roomID)
			if err != nil || len(n) != members+2 {
				b.Fatalf("%d members known after the resync, want %d: %v", len(n), members+2, err)
			}
			b.ReportMetric(float64(usable.Milliseconds()), "ms_to_usable")
			b.ReportMetric(float64(full.Milliseconds()), "ms_to_full_state")
		}
	})
}

// While a room's members are being fetched, a sync that does not
// lazy-load members leaves the room out; a lazy-loading one shows it with
// the member events of the senders of its timeline. Once the members are
// known the room appears in the eager sync, with its whole state.
func TestFedPartialStateJoinSync(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		roomID, _ := pjRoom(t, p.a, "bob", "carol", "dan", "erin", "frank")
		zoe := p.a.Register(t, "zoe")
		zoe.Join(roomID)
		release := p.b.RoomFed.HoldResyncs()
		defer release()
		dave := p.b.Register(t, "dave")
		eager := doSync(t, dave, "timeout=0").NextBatch
		lazy := doSync(t, dave, "timeout=0&filter="+pjLazy).NextBatch
		dave.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		zoe.SendText(roomID, "from zoe")

		// The lazy-loading sync has the room, zoe's message and her member event.
		pjSyncUntil(t, dave, lazy, pjLazy, func(s syncResp) bool {
			jr, ok := s.Rooms.Join[roomID]
			if !ok || !frHasBody(jr.Timeline.Events, "from zoe") {
				return false
			}
			for _, e := range jr.State.Events {
				if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == zoe.UserID {
					return true
				}
			}
			t.Fatalf("lazy-loading sync without zoe's member event: %+v", jr.State.Events)
			return false
		})
		// The eager one does not.
		if s := doSync(t, dave, "timeout=0&since="+url.QueryEscape(eager)); s.Rooms.Join[roomID].Timeline.Events != nil {
			t.Fatalf("an eager sync shows the partial-state room")
		}
		release()
		frSyncUntil(t, dave, eager, func(s syncResp) bool {
			jr, ok := s.Rooms.Join[roomID]
			if !ok {
				return false
			}
			n := 0
			for _, e := range jr.State.Events {
				if e.Type == "m.room.member" {
					n++
				}
			}
			return n >= 7
		})
	})
}

// A restricted join answered with members omitted: the authorising user's
// member event is not in the state (the room has a name, so no heroes),
// only in the auth chain; the join is checked against its auth events.
func TestFedPartialStateRestrictedJoin(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		via := "?server_name=" + url.QueryEscape(p.a.Config.ServerName)
		space := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Allowed"})
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(space)+via, map[string]any{}, nil)
		restricted := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Restricted", "initial_state": []any{map[string]any{
			"type": "m.room.join_rules", "state_key": "",
			"content": map[string]any{"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}},
		}}})
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(restricted)+via, map[string]any{}, nil)
		bob.SendText(restricted, "in")
		if m := frMembership(t, bob, restricted, bob.UserID); m != "join" {
			t.Fatalf("bob's membership as his server sees it: %q", m)
		}
	})
}

// An event accepted while a room's state is partial (its sender's
// membership unknown here, its own auth events claiming a join) is
// checked again once the full state comes: a sender who had left is
// found out, the event is rejected, leaves the timeline and the state.
func TestFedPartialStateEventRejectedAfterResync(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		roomID, alice := pjRoom(t, p.a, "bob", "carol", "erin", "frank", "zoe")
		derek := p.a.Register(t, "derek")
		derek.Join(roomID)
		derekJoin := frLatest(t, p.a, roomID)
		derek.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/leave", map[string]any{}, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.power_levels", map[string]any{
			"users": map[string]int{alice.UserID: 100, derek.UserID: 50}, "state_default": 50}, nil)

		release := p.b.RoomFed.HoldResyncs()
		defer release()
		dave := p.b.Register(t, "dave")
		dave.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		if !p.b.Rooms.IsPartialState(roomID) {
			t.Fatal("the room is not partial after a join with members omitted")
		}
		st, err := p.a.Store.CurrentState(context.Background(), roomID)
		if err != nil {
			t.Fatal(err)
		}
		empty := ""
		head := frLatest(t, p.a, roomID)
		bad := frBuild(t, p.a, roomID, derek.UserID, "m.room.topic", &empty, map[string]any{"topic": "derek was here"}, []string{head},
			[]string{st[store.StateKey{Type: "m.room.create"}], st[store.StateKey{Type: "m.room.power_levels"}], derekJoin}, frDepth(t, p.a, head)+1)
		// Derek also "kicks" bob and "invites" a newcomer, each on the
		// previous forged event.
		var bob string // as registered by pjRoom
		for k := range st {
			if k.Type == "m.room.member" && strings.HasPrefix(k.StateKey, "@bob") {
				bob = k.StateKey
			}
		}
		newcomer := "@newcomer:" + p.a.Config.ServerName
		base := []string{st[store.StateKey{Type: "m.room.create"}], st[store.StateKey{Type: "m.room.power_levels"}], derekJoin}
		kick := frBuild(t, p.a, roomID, derek.UserID, "m.room.member", &bob, map[string]any{"membership": "leave"}, []string{bad.ID},
			append(slices.Clone(base), st[store.StateKey{Type: "m.room.member", StateKey: bob}]), bad.Depth+1)
		invite := frBuild(t, p.a, roomID, derek.UserID, "m.room.member", &newcomer, map[string]any{"membership": "invite"}, []string{kick.ID},
			append(slices.Clone(base), st[store.StateKey{Type: "m.room.join_rules"}]), kick.Depth+1)
		// Dave speaks meanwhile: the forged chain forks the room here, and
		// its last event is a forward extremity.
		dave.SendText(roomID, "dave meanwhile")
		res, err := frSend(t, p.a, p.b, "", bad.JSON(), kick.JSON(), invite.JSON())
		if ext, err := p.b.Store.Extremities(context.Background(), roomID); err != nil || !slices.Contains(ext, invite.ID) {
			t.Fatalf("the forged chain is no forward extremity: %v %v", ext, err)
		}
		for _, ev := range []*pdu.Event{bad, kick, invite} {
			if err != nil || res.PDUs[ev.ID].Error != "" {
				t.Fatalf("the forged events during the partial state: %v %+v", err, res)
			}
		}
		for _, ev := range []*pdu.Event{bad, kick, invite} {
			if r := dave.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(ev.ID), nil); r.Status != http.StatusOK {
				t.Fatalf("%s during the partial state: %d %s", ev.Type, r.Status, r.Body)
			}
		}

		partialSince := doSync(t, dave, "timeout=0&filter="+pjLazy).NextBatch
		release()
		pjWaitFull(t, p.b, roomID)
		for _, f := range []string{"", pjLazy} {
			if r := dave.Do("GET", "/_matrix/client/v3/sync?timeout=0&filter="+f+"&since="+url.QueryEscape(partialSince), nil); r.Status != http.StatusOK {
				t.Fatalf("sync across the resync (filter %q): %d %s", f, r.Status, r.Body)
			}
		}
		if r := dave.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(bad.ID), nil); r.Status != http.StatusNotFound {
			t.Fatalf("the event after the resync: %d %s", r.Status, r.Body)
		}
		if r := dave.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.topic", nil); r.Status != http.StatusNotFound {
			t.Fatalf("the topic after the resync: %d %s", r.Status, r.Body)
		}
		for _, ev := range []*pdu.Event{kick, invite} {
			if r := dave.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(ev.ID), nil); r.Status != http.StatusNotFound {
				t.Fatalf("forged %s after the resync: %d", ev.ID, r.Status)
			}
		}
		// Bob is a member again, the newcomer never was.
		var members struct {
			Chunk []struct {
				StateKey string `json:"state_key"`
				Content  struct {
					Membership string `json:"membership"`
				} `json:"content"`
			} `json:"chunk"`
		}
		dave.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/members", nil, &members)
		got := map[string]string{}
		for _, m := range members.Chunk {
			got[m.StateKey] = m.Content.Membership
		}
		if got[bob] != "join" || got[newcomer] != "" {
			t.Fatalf("members after the resync: bob %q, newcomer %q", got[bob], got[newcomer])
		}
		// The room goes on: dave's next message cites events that exist,
		// and a message from a reaches dave.
		after := dave.SendText(roomID, "dave after the resync")
		if ev, err := p.b.Rooms.Event(context.Background(), after); err != nil || slices.ContainsFunc(ev.PrevEvents, func(id string) bool { return id == invite.ID || id == kick.ID || id == bad.ID }) {
			t.Fatalf("dave's message after the resync cites %v (%v)", ev.PrevEvents, err)
		}
		// The room goes on: a message from a reaches dave.
		since := doSync(t, dave, "timeout=0").NextBatch
		alice.SendText(roomID, "after the resync")
		pjSyncUntil(t, dave, since, "", func(s syncResp) bool { return frHasBody(s.Rooms.Join[roomID].Timeline.Events, "after the resync") })
	})
}

// An event refused while the state is partial, because a forged event
// accepted meanwhile said its sender was banned, is admitted once the full
// state shows the ban forged: derek's kick of bob takes effect after the
// resync, and the members seen here say so.
func TestFedPartialStateRefusedEventAdmittedAfterResync(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		roomID, alice := pjRoom(t, p.a, "bob", "carol", "erin")
		fred := p.a.Register(t, "fred")
		fred.Join(roomID)
		fredJoin := frLatest(t, p.a, roomID)
		fred.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/leave", map[string]any{}, nil)
		derek := p.a.Register(t, "derek")
		derek.Join(roomID)
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.power_levels", map[string]any{
			"users": map[string]int{alice.UserID: 100, fred.UserID: 100, derek.UserID: 50}}, nil)

		dave, release := pjJoinHeld(t, p, roomID)
		defer release()
		st, err := p.a.Store.CurrentState(context.Background(), roomID)
		if err != nil {
			t.Fatal(err)
		}
		bob := pjUser(st, "@bob")
		create, pl := st[store.StateKey{Type: "m.room.create"}], st[store.StateKey{Type: "m.room.power_levels"}]
		derekJoin := st[store.StateKey{Type: "m.room.member", StateKey: derek.UserID}]
		bobJoin := st[store.StateKey{Type: "m.room.member", StateKey: bob}]
		// Fred, who left, "bans" derek: accepted while the state is partial.
		head := frLatest(t, p.a, roomID)
		ban := frBuild(t, p.a, roomID, fred.UserID, "m.room.member", &derek.UserID, map[string]any{"membership": "ban"}, []string{head},
			[]string{create, pl, fredJoin, derekJoin}, frDepth(t, p.a, head)+1)
		// Derek kicks bob: refused, as the partial state has derek banned.
		kick := frBuild(t, p.a, roomID, derek.UserID, "m.room.member", &bob, map[string]any{"membership": "leave"}, []string{ban.ID},
			[]string{create, pl, derekJoin, bobJoin}, ban.Depth+1)
		// Carol speaks after the kick, as the room has it.
		carolJoin := ""
		for k, x := range st {
			if k.Type == "m.room.member" && strings.HasPrefix(k.StateKey, "@carol") {
				carolJoin = x
			}
		}
		carolEv, err := p.a.Rooms.Event(context.Background(), carolJoin)
		if err != nil {
			t.Fatal(err)
		}
		carol := carolEv.Sender
		msg := frBuild(t, p.a, roomID, carol, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "after the kick"}, []string{kick.ID},
			[]string{create, pl, carolJoin}, kick.Depth+1)
		for _, ev := range []*pdu.Event{ban, kick, msg} {
			res, err := frSend(t, p.a, p.b, "", ev.JSON())
			if err != nil || (ev != kick && res.PDUs[ev.ID].Error != "") {
				t.Fatalf("sending %s: %v %+v", ev.ID, err, res)
			}
		}
		if r := dave.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(kick.ID), nil); r.Status != http.StatusNotFound {
			t.Fatalf("the kick while the state is partial: %d %s", r.Status, r.Body)
		}
		since := doSync(t, dave, "timeout=0").NextBatch

		release()
		pjWaitFull(t, p.b, roomID)
		if r := dave.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(ban.ID), nil); r.Status != http.StatusNotFound {
			t.Fatalf("the forged ban after the resync: %d", r.Status)
		}
		if r := dave.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/event/"+esc(kick.ID), nil); r.Status != http.StatusOK {
			t.Fatalf("the kick after the resync: %d %s", r.Status, r.Body)
		}
		members := map[string]bool{}
		for _, m := range pjMembers(t, dave, roomID) {
			members[m] = true
		}
		if members[bob] || !members[derek.UserID] {
			t.Fatalf("joined members after the resync: %v", members)
		}
		// The membership index agrees (device lists, directory and sync read it).
		if m, err := p.b.Store.GetMembership(context.Background(), roomID, bob); err != nil || m.Membership != "leave" || m.EventID != kick.ID {
			t.Fatalf("bob's recorded membership after the resync: %+v %v", m, err)
		}
		// Dave's sync shows the kick, and the room goes on from it.
		pjSyncUntil(t, dave, since, "", func(s syncResp) bool {
			for _, e := range s.Rooms.Join[roomID].Timeline.Events {
				if e.EventID == kick.ID {
					return true
				}
			}
			return false
		})
		after := dave.SendText(roomID, "after the resync")
		if ev, err := p.b.Rooms.Event(context.Background(), after); err != nil || !slices.Equal(ev.PrevEvents, []string{msg.ID}) {
			t.Fatalf("dave's message after the resync cites %v (%v), not carol's %s", ev.PrevEvents, err, msg.ID)
		}
	})
}

// A member the partial state does not show changes devices meanwhile:
// local users hear of it once the full state shows the member (members
// learnt at the resync are in device_lists.changed).
func TestFedPartialStateHiddenMemberDeviceChange(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		roomID, _ := pjRoom(t, p.a)
		var users []*ts.Client
		for _, name := range []string{"bob", "carol", "erin", "frank", "gina", "hank", "zoe"} {
			u := p.a.Register(t, name)
			u.Join(roomID)
			users = append(users, u)
		}
		release := p.b.RoomFed.HoldResyncs()
		defer release()
		dave := p.b.Register(t, "dave")
		dave.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		since := syncE2EE(t, dave, "").NextBatch
		// zoe: a member the partial state does not show.
		st, err := p.b.Rooms.CurrentStateIDs(context.Background(), roomID)
		if err != nil {
			t.Fatal(err)
		}
		var zoe *ts.Client
		for _, u := range users {
			if _, ok := st[store.StateKey{Type: "m.room.member", StateKey: u.UserID}]; !ok {
				zoe = u
			}
		}
		if zoe == nil {
			t.Fatal("the partial state shows every member")
		}

		zoe.MustDo("PUT", "/_matrix/client/v3/devices/"+esc(zoe.DeviceID), map[string]any{"display_name": "zoe's new phone"}, nil)
		eventually(t, 10*time.Second, func() string {
			if got, err := p.b.Store.DeviceListChangesFor(context.Background(), zoe.UserID, 0, math.MaxInt64); err != nil || len(got) == 0 {
				return "the device list update has not arrived"
			}
			return ""
		})
		if s := syncE2EE(t, dave, since); slices.Contains(s.DeviceLists.Changed, zoe.UserID) {
			t.Fatalf("zoe in device_lists.changed before the full state shows her: %v", s.DeviceLists.Changed)
		}
		release()
		pjWaitFull(t, p.b, roomID)
		if s := syncE2EE(t, dave, since); !slices.Contains(s.DeviceLists.Changed, zoe.UserID) {
			t.Fatalf("zoe not in device_lists.changed after the resync: %v", s.DeviceLists.Changed)
		}
	})
}
