package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// Clients (Cinny, Element Web, Complement) address state with an empty
// state key both as /state/{type} and /state/{type}/; both must work for
// GET (content and ?format=event) and PUT.
func TestStateEmptyKeyBothForms(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"name": "first"})
		base := "/_matrix/client/v3/rooms/" + esc(room) + "/state/m.room.name"
		alice.MustDo("PUT", base+"/", map[string]any{"name": "with slash"}, nil)
		for _, path := range []string{base, base + "/"} {
			var content map[string]any
			alice.MustDo("GET", path, nil, &content)
			if content["name"] != "with slash" {
				t.Fatalf("GET %s = %v", path, content)
			}
		}
		alice.MustDo("PUT", base, map[string]any{"name": "no slash"}, nil)
		var ev event
		alice.MustDo("GET", base+"/?format=event", nil, &ev)
		if ev.Type != "m.room.name" || ev.StateKey == nil || *ev.StateKey != "" || ev.Content["name"] != "no slash" {
			t.Fatalf("format=event: %+v", ev)
		}
		// A state key holding a slash, escaped, is one key.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/org.example.k/"+esc("a/b"), map[string]any{"v": 1}, nil)
		var st []event
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state", nil, &st)
		found := false
		for _, e := range st {
			if e.Type == "org.example.k" && e.StateKey != nil && *e.StateKey == "a/b" {
				found = true
			}
		}
		if !found {
			t.Fatal("state key a/b not in room state")
		}
	})
}

// Browsers only let a web client read an error when the answer carries
// CORS headers, so 404 and 405 answers carry them too.
func TestCORSOnEveryAnswer(t *testing.T) {
	s := ts.New(t)
	c := s.Anonymous(t)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/_matrix/client/versions", http.StatusOK},
		{"GET", "/_matrix/client/v3/no/such/endpoint", http.StatusNotFound},
		{"DELETE", "/_matrix/client/versions", http.StatusMethodNotAllowed},
		{"GET", "/_matrix/client/v3/sync", http.StatusUnauthorized},
	} {
		r := c.Do(tc.method, tc.path, nil)
		if r.Status != tc.status {
			t.Fatalf("%s %s: status %d, want %d", tc.method, tc.path, r.Status, tc.status)
		}
		if r.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Fatalf("%s %s: no CORS headers: %v", tc.method, tc.path, r.Header)
		}
	}
}

// Older clients (matrix-nio 0.20) still upload and download through the
// r0 media prefix.
func TestMediaR0Alias(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		var up struct {
			ContentURI string `json:"content_uri"`
		}
		alice.MustDo("POST", "/_matrix/media/r0/upload?filename=a.txt", []byte("hello r0"), &up)
		if !strings.HasPrefix(up.ContentURI, "mxc://") {
			t.Fatalf("upload: %q", up.ContentURI)
		}
		r := alice.Do("GET", "/_matrix/client/v1/media/download/"+strings.TrimPrefix(up.ContentURI, "mxc://"), nil)
		if r.Status != http.StatusOK || string(r.Body) != "hello r0" {
			t.Fatalf("download: %d %q", r.Status, r.Body)
		}
		r = alice.Do("GET", "/_matrix/media/r0/config", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("r0 config: %d %s", r.Status, r.Body)
		}
	})
}

func capabilitiesDefaultVersion(t *testing.T, c *ts.Client) string {
	t.Helper()
	var caps struct {
		Capabilities struct {
			Versions struct {
				Default string `json:"default"`
			} `json:"m.room_versions"`
		} `json:"capabilities"`
	}
	c.MustDo("GET", "/_matrix/client/v3/capabilities", nil, &caps)
	return caps.Capabilities.Versions.Default
}

func roomVersionOf(t *testing.T, c *ts.Client, roomID string) string {
	t.Helper()
	var create map[string]any
	c.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.create/", nil, &create)
	v, _ := create["room_version"].(string)
	return v
}

// Rooms are created in version 11 unless rooms.default_version says
// otherwise: clients released before version 12 misread its creators.
func TestRoomDefaultVersion(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	if v := capabilitiesDefaultVersion(t, alice); v != "11" {
		t.Fatalf("advertised default %q", v)
	}
	room := alice.CreateRoom(map[string]any{})
	if v := roomVersionOf(t, alice, room); v != "11" {
		t.Fatalf("new room has version %q", v)
	}
	var pl map[string]any
	alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.power_levels", nil, &pl)
	if users, _ := pl["users"].(map[string]any); users[alice.UserID] != float64(100) {
		t.Fatalf("creator's level in a v11 room: %v", pl["users"])
	}

	s12 := ts.New(t, ts.WithConfig(func(c *config.Config) { c.Rooms.DefaultVersion = "12" }))
	bob := s12.Register(t, "bob")
	if v := capabilitiesDefaultVersion(t, bob); v != "12" {
		t.Fatalf("advertised default %q with rooms.default_version 12", v)
	}
	if v := roomVersionOf(t, bob, bob.CreateRoom(map[string]any{})); v != "12" {
		t.Fatalf("new room has version %q with rooms.default_version 12", v)
	}
	if _, err := config.Parse([]byte("rooms: {default_version: \"99\"}")); err == nil {
		t.Fatal("an unknown default room version was accepted")
	}
}

// Version 12 requests that no sender could make valid are bad requests
// (400), not refusals (403): creators listed in power levels, malformed
// additional_creators, replacing the create event.
func TestRoomV12BadRequests(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		for name, body := range map[string]map[string]any{
			"creator in override":            {"room_version": "12", "power_level_content_override": map[string]any{"users": map[string]any{alice.UserID: 100}}},
			"additional_creators not list":   {"room_version": "12", "creation_content": map[string]any{"additional_creators": "x"}},
			"additional_creators bad entry":  {"room_version": "12", "creation_content": map[string]any{"additional_creators": []any{"@a:b.c", 42}}},
			"additional_creators bad domain": {"room_version": "12", "creation_content": map[string]any{"additional_creators": []any{"@a:dom$ain.c"}}},
		} {
			r := alice.Do("POST", "/_matrix/client/v3/createRoom", body)
			if r.Status != http.StatusBadRequest || (r.ErrCode() != "M_BAD_JSON" && r.ErrCode() != "M_INVALID_PARAM") {
				t.Fatalf("%s: %d %s", name, r.Status, r.Body)
			}
		}
		room := alice.CreateRoom(map[string]any{"room_version": "12", "preset": "public_chat",
			"creation_content": map[string]any{"additional_creators": []string{bob.UserID}}})
		bob.Join(room)
		var pl map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.power_levels", nil, &pl)
		if ev, _ := pl["events"].(map[string]any); ev["m.room.tombstone"] != float64(150) {
			t.Fatalf("v12 tombstone level %v, want 150", ev["m.room.tombstone"])
		}
		if users, _ := pl["users"].(map[string]any); len(users) != 0 {
			t.Fatalf("v12 users map %v, want empty", users)
		}
		for _, who := range []string{alice.UserID, bob.UserID} {
			r := alice.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.power_levels/", map[string]any{"users": map[string]any{who: 100}})
			if r.Status != http.StatusBadRequest {
				t.Fatalf("creator %s put in users: %d %s", who, r.Status, r.Body)
			}
		}
		if r := alice.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/kick", map[string]any{"user_id": bob.UserID}); r.Status != http.StatusForbidden {
			t.Fatalf("kicking an additional creator: %d %s", r.Status, r.Body)
		}
		for _, v := range []string{"11", "12"} {
			rm := alice.CreateRoom(map[string]any{"room_version": v})
			r := alice.Do("PUT", "/_matrix/client/v3/rooms/"+esc(rm)+"/state/m.room.create/", map[string]any{"room_version": v, "entropy": 1})
			if r.Status != http.StatusBadRequest {
				t.Fatalf("v%s: replacing the create event: %d %s", v, r.Status, r.Body)
			}
		}
		// A trusted private chat's invitees are its creators in version 12.
		dm := alice.CreateRoom(map[string]any{"room_version": "12", "preset": "trusted_private_chat", "is_direct": true,
			"invite": []string{bob.UserID}, "creation_content": map[string]any{"additional_creators": []string{"@carol:elsewhere.test"}}})
		var create struct {
			Additional []string `json:"additional_creators"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(dm)+"/state/m.room.create", nil, &create)
		if len(create.Additional) != 2 || !slices.Contains(create.Additional, bob.UserID) {
			t.Fatalf("trusted chat creators %v", create.Additional)
		}
	})
}

// Upgrading to version 12 names additional creators, drops creators from
// the users map and links the predecessor by room id only.
func TestRoomUpgradeToV12Creators(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		old := alice.CreateRoom(map[string]any{"room_version": "11", "preset": "public_chat"})
		bob.Join(old)
		carol.Join(old)
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(old)+"/state/m.room.power_levels", map[string]any{
			"users": map[string]any{alice.UserID: 100, bob.UserID: 100, carol.UserID: 50}}, nil)
		var up struct {
			Replacement string `json:"replacement_room"`
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(old)+"/upgrade", map[string]any{"new_version": "12", "additional_creators": []string{bob.UserID}}, &up)
		var create struct {
			Additional  []string          `json:"additional_creators"`
			Predecessor map[string]string `json:"predecessor"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(up.Replacement)+"/state/m.room.create", nil, &create)
		if !slices.Equal(create.Additional, []string{bob.UserID}) {
			t.Fatalf("additional creators %v", create.Additional)
		}
		if create.Predecessor["room_id"] != old || create.Predecessor["event_id"] != "" {
			t.Fatalf("predecessor %v", create.Predecessor)
		}
		var pl struct {
			Users map[string]int `json:"users"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(up.Replacement)+"/state/m.room.power_levels", nil, &pl)
		if len(pl.Users) != 1 || pl.Users[carol.UserID] != 50 {
			t.Fatalf("users after upgrade %v, want only carol at 50", pl.Users)
		}
	})
}

func inviteState(t *testing.T, c *ts.Client, roomID string) []map[string]any {
	t.Helper()
	var resp struct {
		Rooms struct {
			Invite map[string]struct {
				InviteState struct {
					Events []map[string]any `json:"events"`
				} `json:"invite_state"`
			} `json:"invite"`
		} `json:"rooms"`
	}
	c.MustDo("GET", "/_matrix/client/v3/sync?timeout=0", nil, &resp)
	return resp.Rooms.Invite[roomID].InviteState.Events
}

func strippedOf(evs []map[string]any, typ, key string) map[string]any {
	for _, e := range evs {
		if e["type"] == typ && e["state_key"] == key {
			return e
		}
	}
	return nil
}

// An invitee sees the room as it was when invited (changes made
// afterwards are for members), with the timestamps clients show.
func TestInviteStateAsOfInvite(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"name": "Before", "room_version": "12"})
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": bob.UserID}, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.name", map[string]any{"name": "After"}, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.topic", map[string]any{"topic": "secret agenda"}, nil)
		evs := inviteState(t, bob, room)
		if n := strippedOf(evs, "m.room.name", ""); n == nil || n["content"].(map[string]any)["name"] != "Before" {
			t.Fatalf("invite state name: %v", evs)
		}
		if strippedOf(evs, "m.room.topic", "") != nil {
			t.Fatalf("a topic set after the invite is shown: %v", evs)
		}
		for _, k := range [][2]string{{"m.room.create", ""}, {"m.room.member", bob.UserID}, {"m.room.member", alice.UserID}} {
			e := strippedOf(evs, k[0], k[1])
			if e == nil {
				t.Fatalf("%v missing from invite state %v", k, evs)
			}
			if ts, _ := e["origin_server_ts"].(float64); ts < 1e12 {
				t.Fatalf("%v without origin_server_ts: %v", k, e)
			}
		}
	})
}

// Over federation invite_room_state carries full PDUs (spec v1.16), and
// the receiving server shows its users only the stripped keys. The
// receiving server issues its own certificate from the federation's CA.
func TestFedInviteStateStrippedForClients(t *testing.T) {
	fed := newFederation(t)
	a := ts.New(t, fed.ServerNamed("police.test"))
	b := ts.New(t, fed.ServerNamed("gouv.test"), fed.SelfIssued())
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"name": "Cabinet", "room_version": "12"})
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": bob.UserID}, nil)
	var evs []map[string]any
	frSyncUntil(t, bob, "", func(resp syncResp) bool {
		evs = inviteState(t, bob, room)
		return len(evs) > 0
	})
	create := strippedOf(evs, "m.room.create", "")
	if create == nil {
		t.Fatalf("no create event in invite state %v", evs)
	}
	for _, e := range evs {
		for k := range e {
			switch k {
			case "type", "state_key", "sender", "content", "origin_server_ts":
			default:
				t.Fatalf("key %q passed through to the client: %v", k, e)
			}
		}
	}
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/join", map[string]any{}, nil)
	if m := frMembership(t, alice, room, bob.UserID); m != "join" {
		t.Fatalf("bob's membership on the inviting server: %q", m)
	}
}

// A join's extra body keys go into the member event (clients and bridges
// use custom keys); the protocol's own keys cannot be set that way.
func TestJoinCustomContent(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": fmt.Sprintf("custom%d", aliasN.Add(1))})
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{"foo": "bar", "membership": "leave", "reason": "hi"}, nil)
		var content map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.member/"+esc(bob.UserID), nil, &content)
		if content["foo"] != "bar" || content["membership"] != "join" || content["reason"] != "hi" {
			t.Fatalf("member content %v", content)
		}
	})
}

// createRoom's topic is written in the plain and the rich (m.topic) form.
func TestCreateRoomRichTopic(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{"topic": "Budget 2027",
		"initial_state": []map[string]any{{"type": "m.room.topic", "content": map[string]any{"topic": "old"}}}})
	var c struct {
		Topic  string `json:"topic"`
		MTopic struct {
			Text []struct {
				Body string `json:"body"`
			} `json:"m.text"`
		} `json:"m.topic"`
	}
	alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.topic", nil, &c)
	if c.Topic != "Budget 2027" || len(c.MTopic.Text) != 1 || c.MTopic.Text[0].Body != "Budget 2027" {
		t.Fatalf("topic content %+v", c)
	}
}

// A client looks up another server's alias (any Unicode) through its own
// server, and the Server-Server API answers on the client listener too
// (behind one TLS reverse proxy), with 405 for a known path's wrong method.
func TestFedRemoteAliasAndFederationOnClientListener(t *testing.T) {
	fed := newFederation(t)
	a := ts.New(t, fed.ServerNamed("police.test"))
	b := ts.New(t, fed.ServerNamed("gouv.test"))
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{})
	alias := "#老虎Â£я🤨👉ඞ:" + a.Config.ServerName
	alice.MustDo("PUT", "/_matrix/client/v3/directory/room/"+esc(alias), map[string]any{"room_id": room}, nil)
	var got struct {
		RoomID  string   `json:"room_id"`
		Servers []string `json:"servers"`
	}
	bob.MustDo("GET", "/_matrix/client/v3/directory/room/"+esc(alias), nil, &got)
	if got.RoomID != room || !slices.Contains(got.Servers, a.Config.ServerName) {
		t.Fatalf("remote alias: %+v", got)
	}
	if r := bob.Do("GET", "/_matrix/client/v3/directory/room/"+esc("#nope:"+a.Config.ServerName), nil); r.Status != http.StatusNotFound {
		t.Fatalf("unknown remote alias: %d %s", r.Status, r.Body)
	}
	anon := a.Anonymous(t)
	if r := anon.Do("GET", "/_matrix/federation/v1/version", nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "server") {
		t.Fatalf("federation version on the client listener: %d %s", r.Status, r.Body)
	}
	for _, p := range []string{"/_matrix/federation/v1/version", "/_matrix/key/v2/query"} {
		if r := anon.Do("PUT", p, map[string]any{}); r.Status != http.StatusMethodNotAllowed || r.ErrCode() != "M_UNRECOGNIZED" {
			t.Fatalf("PUT %s: %d %s", p, r.Status, r.Body)
		}
	}
	if r := anon.Do("GET", "/_matrix/federation/v1/unknown", nil); r.Status != http.StatusNotFound || r.ErrCode() != "M_UNRECOGNIZED" {
		t.Fatalf("unknown federation path: %d %s", r.Status, r.Body)
	}
}

// A server whose users joined after some history gets that history from
// get_missing_events and backfill as redacted skeletons (the graph, not
// the words), oldest first, and later events whole.
func TestFedMissingEventsRedactedBeforeJoin(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice, bob := p.a.Register(t, "alice"), p.b.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_version": "11"})
		early := frLatest(t, p.a, room) // the newest event of the new room
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.history_visibility", map[string]any{"history_visibility": "joined"}, nil)
		before := alice.SendText(room, "before bob")
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		after := alice.SendText(room, "after bob")
		var missing struct {
			Events []json.RawMessage `json:"events"`
		}
		body := map[string]any{"earliest_events": []string{early}, "latest_events": []string{after}, "limit": 10}
		if err := frGet(p.b, p.a, "POST", "/_matrix/federation/v1/get_missing_events/"+url.PathEscape(room), body, &missing); err != nil {
			t.Fatal(err)
		}
		seen := map[string]map[string]any{}
		for _, raw := range missing.Events {
			var e struct {
				EventID string         `json:"event_id"`
				Content map[string]any `json:"content"`
			}
			v, _ := roomversion.Get("11")
			ev, err := pdu.Parse(raw, v)
			if err != nil {
				t.Fatal(err)
			}
			_ = json.Unmarshal(raw, &e)
			seen[ev.ID] = e.Content
		}
		if c, ok := seen[before]; !ok || c["body"] != nil {
			t.Fatalf("the message from before the join: present %v, content %v", ok, c)
		}
		if _, ok := seen[after]; ok {
			t.Fatal("latest_events returned")
		}
		var bf struct {
			PDUs []json.RawMessage `json:"pdus"`
		}
		if err := frGet(p.b, p.a, "GET", "/_matrix/federation/v1/backfill/"+url.PathEscape(room)+"?v="+url.QueryEscape(after)+"&limit=10", nil, &bf); err != nil {
			t.Fatal(err)
		}
		bodies := map[string]bool{}
		for _, raw := range bf.PDUs {
			var e struct {
				Content map[string]any `json:"content"`
			}
			_ = json.Unmarshal(raw, &e)
			if b, ok := e.Content["body"].(string); ok {
				bodies[b] = true
			}
		}
		if !bodies["after bob"] || bodies["before bob"] || len(bf.PDUs) < 5 {
			t.Fatalf("backfill bodies %v of %d events", bodies, len(bf.PDUs))
		}
	})
}

// An event whose auth events include a rejected one is rejected too, even
// when only the rejected event's id is kept; an event that names a
// rejected event as its prev event is checked against the state before
// that event and accepted when it passes.
func TestFedRejectedAuthAndPrevEvents(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice, bob := p.a.Register(t, "alice"), p.b.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		frStopQueues(p.b)
		st, err := p.a.Store.CurrentState(t.Context(), room)
		if err != nil {
			t.Fatal(err)
		}
		id := func(typ, key string) string { return st[store.StateKey{Type: typ, StateKey: key}] }
		head := frLatest(t, p.a, room)
		depth := frDepth(t, p.a, head)
		empty, self := "", bob.UserID
		// R: bob (level 0) changes the power levels: rejected.
		r := frBuild(t, p.b, room, bob.UserID, "m.room.power_levels", &empty, map[string]any{"users": map[string]any{bob.UserID: 100}},
			[]string{head}, frAuth(t, p.a, room, bob.UserID), depth+1)
		// O: a member event of bob's authorised by R: rejected with it.
		o := frBuild(t, p.b, room, bob.UserID, "m.room.member", &self, map[string]any{"membership": "join", "displayname": "O"},
			[]string{head}, []string{id("m.room.create", ""), id("m.room.join_rules", ""), r.ID, id("m.room.member", bob.UserID)}, depth+1)
		// X: a message authorised by O: rejected.
		x := frBuild(t, p.b, room, bob.UserID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "x"},
			[]string{head}, []string{id("m.room.create", ""), id("m.room.power_levels", ""), o.ID}, depth+1)
		// S: a good message after X.
		sentinel := frBuild(t, p.b, room, bob.UserID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "sentinel"},
			[]string{x.ID}, frAuth(t, p.a, room, bob.UserID), depth+2)
		res, err := frSend(t, p.b, p.a, "", r.JSON(), o.JSON(), x.JSON(), sentinel.JSON())
		if err != nil {
			t.Fatal(err)
		}
		// Rejected events are handled (no error to retry on), recorded as
		// rejected and never served.
		for _, ev := range []*pdu.Event{r, o, x} {
			if e := res.PDUs[ev.ID].Error; e != "" {
				t.Fatalf("%s: an error for a rejected event: %s", ev.ID, e)
			}
			if rej, err := p.a.Store.RejectedEvents(context.Background(), []string{ev.ID}); err != nil || !rej[ev.ID] {
				t.Fatalf("%s not recorded as rejected: %v", ev.ID, err)
			}
			if r := alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(ev.ID), nil); r.Status != http.StatusNotFound {
				t.Fatalf("rejected event %s served: %d", ev.ID, r.Status)
			}
		}
		if e := res.PDUs[sentinel.ID].Error; e != "" {
			t.Fatalf("sentinel after a rejected prev event: %s", e)
		}
		if got := bodies(messages(t, alice, room, "dir=b&limit=3").Chunk); len(got) == 0 || got[0] != "sentinel" {
			t.Fatalf("alice's timeline: %v", got)
		}

		// An auth event we lack is fetched with /event when the origin
		// does not answer event_auth for the event (it never stored it).
		bob.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(bob.UserID)+"/displayname", map[string]any{"displayname": "Bob B"}, nil)
		member := frLatest(t, p.b, room)
		late := frBuild(t, p.b, room, bob.UserID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "late"},
			[]string{sentinel.ID}, []string{id("m.room.create", ""), id("m.room.power_levels", ""), member}, depth+3)
		res, err = frSend(t, p.b, p.a, "", late.JSON())
		if err != nil || res.PDUs[late.ID].Error != "" {
			t.Fatalf("event with an auth event fetched by id: %v %+v", err, res)
		}
	})
}

// A room's server ACL drops a denied server's typing notices and receipts
// as well as its events.
func TestFedACLDropsEDUs(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice, bob := p.a.Register(t, "alice"), p.b.Register(t, "bob")
		acl := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		open := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		for _, room := range []string{acl, open} {
			bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		}
		var sent struct {
			EventID string `json:"event_id"`
		}
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(acl)+"/state/m.room.server_acl", map[string]any{
			"allow": []string{"*"}, "deny": []string{"gouv.test"}}, &sent)
		frSyncUntil(t, bob, "", func(s syncResp) bool {
			for _, e := range s.Rooms.Join[acl].Timeline.Events {
				if e.EventID == sent.EventID {
					return true
				}
			}
			return false
		})
		for _, room := range []string{acl, open} {
			bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/typing/"+esc(bob.UserID), map[string]any{"typing": true, "timeout": 30000}, nil)
		}
		frSyncUntil(t, alice, "", func(s syncResp) bool {
			return hasTyping(s, open, bob.UserID)
		})
		if s := doSync(t, alice, "timeout=0"); hasTyping(s, acl, bob.UserID) {
			t.Fatal("typing from a server the room's ACL denies was shown")
		}
	})
}

func hasTyping(s syncResp, roomID, userID string) bool {
	for _, e := range s.Rooms.Join[roomID].Ephemeral.Events {
		if ids, _ := e.Content["user_ids"].([]any); e.Type == "m.typing" && slices.Contains(ids, any(userID)) {
			return true
		}
	}
	return false
}

// A join made through send_join is announced by the resident server: the
// joining server sends it to no one, neither back to the resident server
// nor to the room's other servers, which hear of it from the resident.
func TestFedOwnJoinNotResent(t *testing.T) {
	fed := newFederation(t)
	var mu sync.Mutex
	received := map[string][]string{} // receiving server → "origin event_id"
	observe := func(name string) ts.Option {
		return ts.ObserveInbound(func(r *http.Request, body []byte) {
			if !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/send/") {
				return
			}
			var txn struct {
				Origin string            `json:"origin"`
				PDUs   []json.RawMessage `json:"pdus"`
			}
			_ = json.Unmarshal(body, &txn)
			v, _ := roomversion.Get("11")
			mu.Lock()
			defer mu.Unlock()
			for _, raw := range txn.PDUs {
				if ev, err := pdu.Parse(raw, v); err == nil {
					received[name] = append(received[name], txn.Origin+" "+ev.ID)
				}
			}
		})
	}
	a := ts.New(t, fed.ServerNamed("police.test"), observe("a"))
	b := ts.New(t, fed.ServerNamed("gouv.test"))
	c := ts.New(t, fed.ServerNamed("education.test"), observe("c"))
	alice, bob, carol := a.Register(t, "alice"), b.Register(t, "bob"), c.Register(t, "carol")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_version": "11"})
	carol.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(a.Config.ServerName), map[string]any{}, nil)
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(a.Config.ServerName), map[string]any{}, nil)
	join := frLatest(t, b, room)
	reply := bob.SendText(room, "hello from gouv")
	eventually(t, 10*time.Second, func() string {
		mu.Lock()
		defer mu.Unlock()
		for _, srv := range []string{"a", "c"} {
			if slices.Contains(received[srv], b.Config.ServerName+" "+join) {
				t.Fatalf("the joining server sent its join %s to %s: %v", join, srv, received[srv])
			}
		}
		switch {
		case !slices.Contains(received["a"], b.Config.ServerName+" "+reply):
			return "bob's message has not reached the resident server"
		case !slices.Contains(received["c"], a.Config.ServerName+" "+join):
			return "the resident server has not sent bob's join to the third server"
		case !slices.Contains(received["c"], b.Config.ServerName+" "+reply):
			return "bob's message has not reached the third server"
		}
		return ""
	})
}

// In a room shared with other servers an event may exist that this
// server has not received yet: its redaction is accepted and sent on.
func TestFedRedactUnknownEvent(t *testing.T) {
	fed := newFederation(t)
	a := ts.New(t, fed.ServerNamed("police.test"))
	b := ts.New(t, fed.ServerNamed("gouv.test"))
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(a.Config.ServerName), map[string]any{}, nil)
	alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc("$not-here-yet")+"/r1", map[string]any{"reason": "spam"}, nil)
}

// A server that joined a room late asks the room's other servers when a
// client jumps to a date, and backfills the event they name so that the
// client can read around it.
func TestFedTimestampToEventBeforeJoin(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice, bob := p.a.Register(t, "alice"), p.b.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		time.Sleep(5 * time.Millisecond) // no earlier event in the same millisecond
		before := time.Now().UnixMilli()
		time.Sleep(5 * time.Millisecond)
		first := alice.SendText(room, "first")
		second := alice.SendText(room, "second")
		time.Sleep(5 * time.Millisecond)
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		var near struct {
			EventID string `json:"event_id"`
			TS      int64  `json:"origin_server_ts"`
		}
		bob.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/timestamp_to_event?ts=%d&dir=f", esc(room), before), nil, &near)
		if near.EventID != first {
			t.Fatalf("forwards from before the messages: %+v, want %s", near, first)
		}
		var ctx struct {
			Event event  `json:"event"`
			Start string `json:"start"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/context/"+esc(first)+"?limit=0", nil, &ctx)
		if ctx.Event.EventID != first || ctx.Start == "" {
			t.Fatalf("context around the backfilled event: %+v", ctx)
		}
		// Backwards from the newest message before the join: the client
		// pages on through the backfilled history.
		bob.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/timestamp_to_event?ts=%d&dir=b", esc(room), time.Now().UnixMilli()-1), nil, &near)
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/context/"+esc(second)+"?limit=0", nil, &ctx)
		if got := bodies(messages(t, bob, room, "dir=b&limit=100&from="+url.QueryEscape(ctx.Start)).Chunk); !slices.Contains(got, "first") {
			t.Fatalf("paging back from before %s: %v", second, got)
		}
		// A server with no user in the room is refused.
		private := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		err := frGet(p.b, p.a, "GET", fmt.Sprintf("/_matrix/federation/v1/timestamp_to_event/%s?ts=%d&dir=f", url.PathEscape(private), before), nil, &near)
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("a server outside the room: %v", err)
		}
	})
}

// /context on an event outside the timeline here — the room's creation,
// which a server joining through another one receives with the room's
// state and keeps as an outlier — answers start and end tokens that
// /messages accepts (no position below the timeline's start, which no
// token may name).
func TestFedContextOfOutlier(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice, bob := p.a.Register(t, "alice"), p.b.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		alice.SendText(room, "before the join")
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		ctx := context.Background()
		create, err := p.a.Rooms.CurrentStateEvent(ctx, room, "m.room.create", "")
		if err != nil {
			t.Fatal(err)
		}
		row, err := p.b.Store.GetEvent(ctx, create.ID)
		if err != nil {
			t.Fatal(err)
		}
		if store.IsTimelinePos(row.Pos) {
			t.Fatalf("the room's creation is in the joining server's timeline (position %d), not an outlier", row.Pos)
		}
		for _, limit := range []int{0, 4} {
			var cx struct {
				Event event  `json:"event"`
				Start string `json:"start"`
				End   string `json:"end"`
			}
			bob.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/context/%s?limit=%d", esc(room), esc(create.ID), limit), nil, &cx)
			if cx.Event.EventID != create.ID || cx.Start == "" || cx.End == "" {
				t.Fatalf("context of the outlier, limit %d: %+v", limit, cx)
			}
			messages(t, bob, room, "dir=b&limit=10&from="+url.QueryEscape(cx.Start))
			messages(t, bob, room, "dir=f&limit=10&from="+url.QueryEscape(cx.End))
		}
	})
}

// /versions names every spec version through v1.19, and each unstable
// feature it flags answers under its unstable name.
func TestVersionsAndUnstableFeatures(t *testing.T) {
	s := ts.New(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	var v struct {
		Versions []string        `json:"versions"`
		Unstable map[string]bool `json:"unstable_features"`
	}
	s.Anonymous(t).MustDo("GET", "/_matrix/client/versions", nil, &v)
	for _, want := range []string{"v1.11", "v1.15", "v1.18", "v1.19"} {
		if !slices.Contains(v.Versions, want) {
			t.Fatalf("versions %v lack %s", v.Versions, want)
		}
	}
	flagged := []string{"org.matrix.msc3391", "org.matrix.msc3874", "org.matrix.msc4155", "org.matrix.msc4222", "im.nheko.summary",
		"org.matrix.simplified_msc3575", "org.matrix.msc4306", "org.matrix.msc4140",
		"org.matrix.msc4486"}
	for _, f := range flagged {
		if !v.Unstable[f] {
			t.Fatalf("unstable feature %s not flagged: %v", f, v.Unstable)
		}
	}
	if len(v.Unstable) != len(flagged) {
		t.Fatalf("flags without a test here: %v", v.Unstable)
	}
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.Join(room)

	// org.matrix.msc3391: account data deletion.
	alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/org.example.x", map[string]any{"a": 1}, nil)
	alice.MustDo("DELETE", "/_matrix/client/unstable/org.matrix.msc3391/user/"+esc(alice.UserID)+"/account_data/org.example.x", nil, nil)
	if r := alice.Do("GET", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/org.example.x", nil); r.Status != http.StatusNotFound {
		t.Fatalf("msc3391: deleted account data answers %d", r.Status)
	}
	// org.matrix.msc3874: relation type filters.
	root := alice.SendText(room, "root")
	alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "in thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	f := url.QueryEscape(`{"org.matrix.msc3874.rel_types":["m.thread"]}`)
	if got := bodies(messages(t, alice, room, "dir=b&filter="+f).Chunk); !slices.Equal(got, []string{"in thread"}) {
		t.Fatalf("msc3874: %v", got)
	}
	// org.matrix.msc4222: state_after.
	var raw map[string]any
	alice.MustDo("GET", "/_matrix/client/v3/sync?org.matrix.msc4222.use_state_after=true", nil, &raw)
	joined := raw["rooms"].(map[string]any)["join"].(map[string]any)[room].(map[string]any)
	if _, ok := joined["org.matrix.msc4222.state_after"]; !ok {
		t.Fatalf("msc4222: no state_after in %v", joined)
	}
	// org.matrix.simplified_msc3575: simplified sliding sync (MSC4186;
	// slidingsync_test.go holds it in full).
	var ss ssResp
	alice.MustDo("POST", ssPath, map[string]any{"lists": map[string]any{"a": map[string]any{"ranges": [][2]int{{0, 9}}, "timeline_limit": 1}}}, &ss)
	if _, ok := ss.Rooms[room]; !ok || ss.Pos == "" {
		t.Fatalf("simplified_msc3575: %+v", ss)
	}
	// im.nheko.summary: room summary.
	var sum map[string]any
	bob.MustDo("GET", "/_matrix/client/unstable/im.nheko.summary/rooms/"+esc(room)+"/summary", nil, &sum)
	if sum["room_id"] != room {
		t.Fatalf("summary %v", sum)
	}
	// org.matrix.msc4155: invite filtering.
	carol := s.Register(t, "carol")
	carol.MustDo("PUT", "/_matrix/client/v3/user/"+esc(carol.UserID)+"/account_data/org.matrix.msc4155.invite_permission_config",
		map[string]any{"blocked_users": []string{alice.UserID}}, nil)
	if r := alice.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": carol.UserID}); r.Status != http.StatusForbidden {
		t.Fatalf("msc4155: blocked invite answers %d %s", r.Status, r.Body)
	}
	// org.matrix.msc4306: thread subscriptions (threadsubs_test.go holds
	// them in full).
	alice.MustDo("PUT", subPath(room, root), map[string]any{}, nil)
	if st, auto := subscription(t, alice, room, root); st != http.StatusOK || auto {
		t.Fatalf("msc4306: subscription answers %d automatic=%v", st, auto)
	}
	// org.matrix.msc4140: delayed events (delayed_test.go holds them in
	// full).
	if r := alice.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/later?org.matrix.msc4140.delay=60000",
		map[string]any{"msgtype": "m.text", "body": "later"}); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "delay_id") {
		t.Fatalf("msc4140: delayed send answers %d %s", r.Status, r.Body)
	}
	// org.matrix.msc4486: the listing's filters under their unstable
	// names (delayed_list_test.go holds them in full).
	var listed struct {
		DelayedEvents []map[string]any `json:"delayed_events"`
	}
	alice.MustDo("GET", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events?org.matrix.msc4486.room_id="+esc(room)+
		"&org.matrix.msc4486.type=m.room.message&org.matrix.msc4486.status=scheduled", nil, &listed)
	if len(listed.DelayedEvents) != 1 {
		t.Fatalf("msc4486: filtered listing %v", listed.DelayedEvents)
	}
	if r := alice.Do("GET", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events?org.matrix.msc4486.dir=up", nil); r.ErrCode() != "M_INVALID_PARAM" {
		t.Fatalf("msc4486: bad dir answers %d %s", r.Status, r.Body)
	}
	// Optional features not served answer M_UNRECOGNIZED.
	if r := alice.Do("GET", "/_matrix/client/v1/auth_metadata", nil); r.Status != http.StatusNotFound || r.ErrCode() != "M_UNRECOGNIZED" {
		t.Fatalf("auth_metadata: %d %s", r.Status, r.Body)
	}
}

// MSC3757's room versions: a state key led by a user id and "_" belongs
// to that user, whom only users of a higher level may overwrite.
func TestOwnedStateKeysRoomVersion(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		creator, u1, u2 := s.Register(t, "creator"), s.Register(t, "u1"), s.Register(t, "u2")
		for _, v := range []string{"org.matrix.msc3757.10", "org.matrix.msc3757.11"} {
			room := creator.CreateRoom(map[string]any{"room_version": v, "preset": "public_chat",
				"power_level_content_override": map[string]any{"events": map[string]any{"com.example.test": 0}}})
			u1.Join(room)
			u2.Join(room)
			put := func(c *ts.Client, key string) *ts.Response {
				return c.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/com.example.test/"+esc(key), map[string]any{})
			}
			const suffix = "_device_1:!@#$123"
			for _, tc := range []struct {
				who    *ts.Client
				key    string
				status int
			}{
				{u1, u1.UserID + suffix, 200},
				{creator, u1.UserID, 200},
				{creator, u1.UserID + suffix, 200},
				{creator, "@notinroom:elsewhere.test", 200},
				{u1, u2.UserID, 403},
				{u1, u2.UserID + suffix, 403},
				{u1, u1.UserID + suffix[1:], 403},
				{u1, "@prefix_" + u1.UserID + suffix, 403},
				{creator, "@oops", 400},
				{creator, creator.UserID + "@" + suffix[1:], 400},
			} {
				if r := put(tc.who, tc.key); r.Status != tc.status {
					t.Fatalf("%s: %s sets %q: %d %s, want %d", v, tc.who.UserID, tc.key, r.Status, r.Body, tc.status)
				}
			}
		}
		var caps struct {
			Capabilities struct {
				Versions struct {
					Available map[string]string `json:"available"`
				} `json:"m.room_versions"`
			} `json:"capabilities"`
		}
		creator.MustDo("GET", "/_matrix/client/v3/capabilities", nil, &caps)
		if caps.Capabilities.Versions.Available["org.matrix.msc3757.11"] != "unstable" {
			t.Fatalf("capabilities: %v", caps.Capabilities.Versions.Available)
		}
		// Version 11 keeps the exact-match rule.
		room := creator.CreateRoom(map[string]any{"room_version": "11", "preset": "public_chat",
			"power_level_content_override": map[string]any{"events": map[string]any{"com.example.test": 0}}})
		u1.Join(room)
		if r := creator.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/com.example.test/"+esc(u1.UserID), map[string]any{}); r.Status != 403 {
			t.Fatalf("v11: creator overwrites a user's key: %d", r.Status)
		}
	})
}

// Setting a state event to what it already is from the same sender
// answers the existing event and adds nothing to the room.
func TestSettingStateTwiceIsIdempotent(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		put := func(c *ts.Client, content map[string]any) string {
			var r struct {
				EventID string `json:"event_id"`
			}
			c.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.topic", content, &r)
			return r.EventID
		}
		first := put(alice, map[string]any{"topic": "same"})
		if again := put(alice, map[string]any{"topic": "same"}); again != first {
			t.Fatalf("second identical state event %s, want %s", again, first)
		}
		if changed := put(alice, map[string]any{"topic": "other"}); changed == first {
			t.Fatal("a change was not sent")
		}
		var topics int
		for _, e := range messages(t, alice, room, "dir=b&limit=50").Chunk {
			if e.Type == "m.room.topic" {
				topics++
			}
		}
		if topics != 2 {
			t.Fatalf("%d topic events in the timeline, want 2", topics)
		}
	})
}

// Positions handed out to transactions that were rolled back are in no
// table, so a restarted server may resume below a token it issued: that
// token stays valid (nothing was ever at those positions) and the news
// after the restart reaches its holder.
func TestSyncTokenAcrossRestartWithAbandonedPositions(t *testing.T) {
	fed := newFederation(t)
	s := ts.New(t, fed.ServerNamed("police.test"))
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	path := "/_matrix/client/v3/rooms/" + esc(room) + "/send/m.room.message/same-txn"
	alice.MustDo("PUT", path, map[string]any{"msgtype": "m.text", "body": "once"}, nil)
	for range 3 { // repeats of a transaction: their positions are abandoned
		alice.MustDo("PUT", path, map[string]any{"msgtype": "m.text", "body": "once"}, nil)
	}
	since := doSync(t, alice, "timeout=0").NextBatch
	s = s.Restart(t)
	alice.URL = s.URL
	alice.SendText(room, "after the restart")
	frSyncUntil(t, alice, since, func(r syncResp) bool {
		return slices.Contains(bodies(r.Rooms.Join[room].Timeline.Events), "after the restart")
	})
	if p := messages(t, alice, room, "dir=b&from="+url.QueryEscape(since)); len(bodies(p.Chunk)) != 1 {
		t.Fatalf("messages from the old token: %v", bodies(p.Chunk))
	}
}

// A joined member re-sending their join (a profile change) with a stale
// join_authorised_via_users_server gets it dropped, not a refusal.
func TestProfileJoinDropsStaleAuthoriser(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_version": "10"})
		bob.Join(room)
		var resp struct {
			EventID string `json:"event_id"`
		}
		bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.member/"+esc(bob.UserID), map[string]any{
			"membership": "join", "displayname": "Bobby", "join_authorised_via_users_server": "unused"}, &resp)
		var content map[string]any
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.member/"+esc(bob.UserID), nil, &content)
		if content["displayname"] != "Bobby" || content["join_authorised_via_users_server"] != nil {
			t.Fatalf("member content %v", content)
		}
	})
}

// A restricted join asks only the servers the client names: one that has
// nobody allowed to invite refuses, and naming the resident server too
// lets the join through with its authoriser.
func TestFedRestrictedJoinFailsOverOnlyToNamedServers(t *testing.T) {
	fed := newFederation(t)
	a := ts.New(t, fed.ServerNamed("police.test"))
	b := ts.New(t, fed.ServerNamed("gouv.test"))
	c := ts.New(t, fed.ServerNamed("education.test"))
	alice, bob, carol := a.Register(t, "alice"), b.Register(t, "bob"), c.Register(t, "carol")
	an, bn := a.Config.ServerName, b.Config.ServerName
	space := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_version": "10", "initial_state": []any{map[string]any{
		"type": "m.room.join_rules", "state_key": "",
		"content": map[string]any{"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}}}}})
	alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.power_levels",
		map[string]any{"invite": 100, "users": map[string]any{alice.UserID: 100}}, nil)
	for _, u := range []*ts.Client{bob, carol} {
		u.MustDo("POST", "/_matrix/client/v3/join/"+esc(space)+"?server_name="+url.QueryEscape(an), map[string]any{}, nil)
	}
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(an), map[string]any{}, nil)
	// gouv.test must know carol is in the space before it can judge.
	eventually(t, 20*time.Second, func() string {
		if frMembership(t, bob, space, carol.UserID) != "join" {
			return "gouv.test does not see carol in the space"
		}
		return ""
	})
	if r := carol.Do("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(bn), map[string]any{}); r.Status == 200 {
		t.Fatal("joined through a server with nobody allowed to invite")
	}
	carol.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(bn)+"&server_name="+url.QueryEscape(an), map[string]any{}, nil)
	var member map[string]any
	alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.member/"+esc(carol.UserID), nil, &member)
	if member["join_authorised_via_users_server"] != alice.UserID {
		t.Fatalf("carol's join: %v", member)
	}
}

// Deleting a room's canonical alias takes it out of the room's
// m.room.canonical_alias too.
func TestDeletingCanonicalAliasUpdatesTheRoom(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		n := aliasN.Add(1)
		main, alt := fmt.Sprintf("#main%d:%s", n, s.Config.ServerName), fmt.Sprintf("#alt%d:%s", n, s.Config.ServerName)
		for _, a := range []string{main, alt} {
			alice.MustDo("PUT", "/_matrix/client/v3/directory/room/"+esc(a), map[string]any{"room_id": room}, nil)
		}
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.canonical_alias", map[string]any{"alias": main, "alt_aliases": []string{alt}}, nil)
		alice.MustDo("DELETE", "/_matrix/client/v3/directory/room/"+esc(main), nil, nil)
		var c map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.canonical_alias", nil, &c)
		if _, ok := c["alias"]; ok || len(c["alt_aliases"].([]any)) != 1 {
			t.Fatalf("after deleting the main alias: %v", c)
		}
		alice.MustDo("DELETE", "/_matrix/client/v3/directory/room/"+esc(alt), nil, nil)
		c = nil
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.canonical_alias", nil, &c)
		if len(c) != 0 {
			t.Fatalf("after deleting both: %v", c)
		}
	})
}

// URL previews reach non-public addresses only in the networks the
// operator lists (media.url_preview.allow_networks).
func TestURLPreviewAllowNetworks(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<html><head><meta property="og:title" content="Intranet news" /></head></html>`))
	}))
	defer page.Close()
	q := "/_matrix/client/v1/media/preview_url?url=" + url.QueryEscape(page.URL+"/news.html")
	closed := ts.New(t, ts.WithConfig(func(c *config.Config) { c.Media.URLPreview.Enabled = true }))
	if r := closed.Register(t, "alice").Do("GET", q, nil); r.Status == http.StatusOK {
		t.Fatalf("a loopback page was previewed by default: %s", r.Body)
	}
	open := ts.New(t, ts.WithConfig(func(c *config.Config) {
		c.Media.URLPreview.Enabled = true
		c.Media.URLPreview.AllowNetworks = []string{"127.0.0.0/8"}
	}))
	var og map[string]any
	open.Register(t, "alice").MustDo("GET", q, nil, &og)
	if og["og:title"] != "Intranet news" {
		t.Fatalf("preview %v", og)
	}
	if _, err := config.Parse([]byte("media: {url_preview: {allow_networks: [intranet]}}")); err == nil {
		t.Fatal("a bad CIDR was accepted")
	}
}

// /context with limit 0 answers tokens just around the event: paging back
// from start begins with the event before it, forward from end with the
// event after it.
func TestContextLimitZeroTokens(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		alice.SendText(room, "one")
		two := alice.SendText(room, "two")
		alice.SendText(room, "three")
		var ctx struct {
			Start string `json:"start"`
			End   string `json:"end"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/context/"+esc(two)+"?limit=0", nil, &ctx)
		if got := bodies(messages(t, alice, room, "dir=b&limit=1&from="+url.QueryEscape(ctx.Start)).Chunk); !slices.Equal(got, []string{"one"}) {
			t.Fatalf("back from start: %v", got)
		}
		if got := bodies(messages(t, alice, room, "dir=f&limit=1&from="+url.QueryEscape(ctx.End)).Chunk); !slices.Equal(got, []string{"three"}) {
			t.Fatalf("forward from end: %v", got)
		}
	})
}

// While a room's state is still being fetched (a join with members
// omitted) nothing can be backfilled yet; a jump to a date before the
// join still answers the event the resident server names.
func TestFedTimestampToEventDuringPartialJoin(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		roomID, alice := pjRoom(t, p.a, "bob", "carol", "dan", "erin", "frank")
		time.Sleep(5 * time.Millisecond) // no earlier event in the same millisecond
		before := time.Now().UnixMilli()
		time.Sleep(5 * time.Millisecond)
		first := alice.SendText(roomID, "first")
		release := p.b.RoomFed.HoldResyncs()
		defer release()
		dave := p.b.Register(t, "dave")
		dave.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		if !p.b.Rooms.IsPartialState(roomID) {
			t.Fatal("the room is not partial")
		}
		var near struct {
			EventID string `json:"event_id"`
		}
		dave.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/timestamp_to_event?ts=%d&dir=f", esc(roomID), before), nil, &near)
		if near.EventID != first {
			t.Fatalf("jump during the partial join: %s, want %s", near.EventID, first)
		}
	})
}
