package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
	ts "luxchat/internal/testserver"
)

// frPair is two federating servers, police.test (A) and gouv.test (B),
// closed to every other server.
type frPair struct {
	fed  *ts.Federation
	a, b *ts.Server
}

var frHosts = []string{"police.test", "gouv.test"}

func frClosed(hosts ...string) ts.Option {
	return ts.WithConfig(func(c *config.Config) { c.Federation.AllowedServers = append([]string(nil), hosts...) })
}

// frEngines runs f with both servers on SQLite, then both on PostgreSQL.
func frEngines(t *testing.T, f func(t *testing.T, p *frPair)) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			p := &frPair{fed: newFederation(t)}
			start := func(host string) *ts.Server {
				opts := []ts.Option{p.fed.ServerNamed(host), frClosed(frHosts...)}
				if pg {
					opts = append(opts, ts.WithPostgres(t))
				}
				return ts.New(t, opts...)
			}
			p.a, p.b = start("police.test"), start("gouv.test")
			f(t, p)
		})
	}
}

var frTxn atomic.Int64

type frTxnResult struct {
	PDUs map[string]struct {
		Error string `json:"error"`
	} `json:"pdus"`
}

// frSend puts a transaction of raw PDUs from one server to another, as
// the outbound queue would.
func frSend(t *testing.T, from, to *ts.Server, txnID string, pdus ...json.RawMessage) (frTxnResult, error) {
	t.Helper()
	if txnID == "" {
		txnID = fmt.Sprintf("t%d", frTxn.Add(1))
	}
	body := map[string]any{"origin": from.Config.ServerName, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus, "edus": []any{}}
	var res frTxnResult
	err := from.Federation.Do(context.Background(), to.Config.ServerName, "PUT", "/_matrix/federation/v1/send/"+url.PathEscape(txnID), body, &res)
	return res, err
}

// frRelay sends stored events of one server to another and requires that
// each is accepted.
func frRelay(t *testing.T, from, to *ts.Server, ids ...string) {
	t.Helper()
	var pdus []json.RawMessage
	for _, id := range ids {
		row, err := from.Store.GetEvent(context.Background(), id)
		if err != nil {
			t.Fatalf("event %s: %v", id, err)
		}
		pdus = append(pdus, row.JSON())
	}
	res, err := frSend(t, from, to, "", pdus...)
	if err != nil {
		t.Fatal(err)
	}
	for id, r := range res.PDUs {
		if r.Error != "" {
			t.Fatalf("%s refused %s: %s", to.Config.ServerName, id, r.Error)
		}
	}
}

// frSyncUntil long-polls a user's sync until check accepts a response.
func frSyncUntil(t *testing.T, c *ts.Client, since string, check func(s syncResp) bool) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		q := "timeout=2000"
		if since != "" {
			q += "&since=" + url.QueryEscape(since)
		}
		s := doSync(t, c, q)
		if check(s) {
			return s.NextBatch
		}
		since = s.NextBatch
	}
	t.Fatalf("sync of %s never showed what was expected", c.UserID)
	return ""
}

// frStopQueues stops the servers' outbound delivery, so that a test
// decides which events reach the other server, and when.
func frStopQueues(servers ...*ts.Server) {
	for _, s := range servers {
		if s.Outbox != nil {
			s.Outbox.Close()
		}
	}
}

func frHasBody(evs []event, body string) bool {
	for _, e := range evs {
		if b, _ := e.Content["body"].(string); b == body && e.Type == "m.room.message" {
			return true
		}
	}
	return false
}

func frMembership(t *testing.T, c *ts.Client, roomID, userID string) string {
	t.Helper()
	r := c.Do("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.member/"+esc(userID), nil)
	if r.Status != 200 {
		return ""
	}
	var m struct {
		Membership string `json:"membership"`
	}
	_ = r.JSON(&m)
	return m.Membership
}

func frLatest(t *testing.T, s *ts.Server, roomID string) string {
	t.Helper()
	rows, err := s.Store.RoomEvents(context.Background(), roomID, 0, 1<<62, true, 1)
	if err != nil || len(rows) == 0 {
		t.Fatalf("latest event of %s: %v", roomID, err)
	}
	return rows[0].EventID
}

func TestFedRoomsJoinAndMessages(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		carol := p.b.Register(t, "carol")
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "lobby", "name": "Lobby"})
		aliceSince := doSync(t, alice, "timeout=0").NextBatch

		// Join by room id, through the room's server.
		var joined struct {
			RoomID string `json:"room_id"`
		}
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, &joined)
		if joined.RoomID != roomID {
			t.Fatalf("joined %q, want %q", joined.RoomID, roomID)
		}
		// bob's server now has the room: its state and bob's join.
		bobSince := frSyncUntil(t, bob, "", func(s syncResp) bool {
			jr, ok := s.Rooms.Join[roomID]
			if !ok {
				return false
			}
			var name string
			for _, e := range append(jr.State.Events, jr.Timeline.Events...) {
				if e.Type == "m.room.name" {
					name, _ = e.Content["name"].(string)
				}
			}
			return name == "Lobby"
		})
		// alice sees bob join.
		aliceSince = frSyncUntil(t, alice, aliceSince, func(s syncResp) bool {
			for _, e := range s.Rooms.Join[roomID].Timeline.Events {
				if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == bob.UserID && e.Content["membership"] == "join" {
					return true
				}
			}
			return false
		})

		// B → A.
		fromBob := bob.SendText(roomID, "hello from gouv")
		frRelay(t, p.b, p.a, fromBob)
		frSyncUntil(t, alice, aliceSince, func(s syncResp) bool { return frHasBody(s.Rooms.Join[roomID].Timeline.Events, "hello from gouv") })
		// A → B.
		fromAlice := alice.SendText(roomID, "hello from police")
		frRelay(t, p.a, p.b, fromAlice)
		frSyncUntil(t, bob, bobSince, func(s syncResp) bool { return frHasBody(s.Rooms.Join[roomID].Timeline.Events, "hello from police") })
		if got := bodies(messages(t, bob, roomID, "dir=b&limit=10").Chunk); !slices.Equal(got, []string{"hello from police", "hello from gouv"}) {
			t.Fatalf("bob's /messages: %v", got)
		}
		// Without help: the outbound queue delivers, both ways.
		alice.SendText(roomID, "queued from police")
		frSyncUntil(t, bob, bobSince, func(s syncResp) bool { return frHasBody(s.Rooms.Join[roomID].Timeline.Events, "queued from police") })
		bob.SendText(roomID, "queued from gouv")
		frSyncUntil(t, alice, aliceSince, func(s syncResp) bool { return frHasBody(s.Rooms.Join[roomID].Timeline.Events, "queued from gouv") })

		// The same transaction again changes nothing.
		frRelay(t, p.a, p.b, fromAlice)
		if got := bodies(messages(t, bob, roomID, "dir=b&limit=10").Chunk); len(got) != 4 {
			t.Fatalf("after a repeated event: %v", got)
		}

		// Join by an alias of the other server: carol's server knows the
		// room now, so a second room on A is used.
		room2 := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "annex"})
		carol.MustDo("POST", "/_matrix/client/v3/join/"+esc("#annex:"+p.a.Config.ServerName), map[string]any{}, &joined)
		if joined.RoomID != room2 {
			t.Fatalf("alias joined %q, want %q", joined.RoomID, room2)
		}
		if m := frMembership(t, alice, room2, carol.UserID); m != "join" {
			t.Fatalf("carol's membership seen by alice: %q", m)
		}
		// An unknown alias is a 404.
		r := carol.Do("POST", "/_matrix/client/v3/join/"+esc("#nowhere:"+p.a.Config.ServerName), map[string]any{})
		if r.Status != 404 || r.ErrCode() != "M_NOT_FOUND" {
			t.Fatalf("unknown remote alias: %d %s", r.Status, r.Body)
		}
	})
}

func TestFedRoomsInviteLeaveKnock(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		carol := p.b.Register(t, "carol")
		roomID := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Cabinet"})
		bobSince := doSync(t, bob, "timeout=0").NextBatch

		// Invite across servers: bob's server countersigns and bob sees
		// the invite with the room's stripped state.
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": bob.UserID}, nil)
		if m := frMembership(t, alice, roomID, bob.UserID); m != "invite" {
			t.Fatalf("bob's membership on A: %q", m)
		}
		bobSince = frSyncUntil(t, bob, bobSince, func(s syncResp) bool {
			inv, ok := s.Rooms.Invite[roomID]
			if !ok {
				return false
			}
			for _, e := range inv.InviteState.Events {
				if e.Type == "m.room.name" && e.Content["name"] == "Cabinet" {
					return true
				}
			}
			return false
		})
		// Rejecting goes through make_leave/send_leave.
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/leave", map[string]any{}, nil)
		if m := frMembership(t, alice, roomID, bob.UserID); m != "leave" {
			t.Fatalf("after rejection, bob's membership on A: %q", m)
		}
		bobSince = frSyncUntil(t, bob, bobSince, func(s syncResp) bool { _, ok := s.Rooms.Leave[roomID]; return ok })

		// Invited again, bob accepts: a join through the inviting server.
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": bob.UserID}, nil)
		frSyncUntil(t, bob, bobSince, func(s syncResp) bool { _, ok := s.Rooms.Invite[roomID]; return ok })
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/join", map[string]any{}, nil)
		if m := frMembership(t, alice, roomID, bob.UserID); m != "join" {
			t.Fatalf("after accepting, bob's membership on A: %q", m)
		}
		// An invite to a room bob's server is in goes through its pipeline;
		// the events it lacks are fetched from the inviting server, which
		// does not hold the room while it waits.
		dave := p.b.Register(t, "dave")
		daveSince := doSync(t, dave, "timeout=0").NextBatch
		frStopQueues(p.a)
		alice.SendText(roomID, "not relayed")
		start := time.Now()
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": dave.UserID}, nil)
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("invite took %v", d)
		}
		frSyncUntil(t, dave, daveSince, func(s syncResp) bool { _, ok := s.Rooms.Invite[roomID]; return ok })
		if got := bodies(messages(t, bob, roomID, "dir=b&limit=5").Chunk); !slices.Contains(got, "not relayed") {
			t.Fatalf("bob's server did not fetch the missing event: %v", got)
		}

		// Inviting an unknown user of the other server fails.
		r := alice.Do("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": "@nobody:" + p.b.Config.ServerName})
		if r.Status == 200 {
			t.Fatalf("invite of an unknown remote user: %s", r.Body)
		}

		// Leaving a room whose state we have: the normal pipeline, then the
		// event reaches the room's server.
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/leave", map[string]any{}, nil)
		frRelay(t, p.b, p.a, frLatest(t, p.b, roomID))
		if m := frMembership(t, alice, roomID, bob.UserID); m != "leave" {
			t.Fatalf("after leaving, bob's membership on A: %q", m)
		}

		// createRoom's invite list reaches users of other servers too.
		carolSince := doSync(t, carol, "timeout=0").NextBatch
		direct := alice.CreateRoom(map[string]any{"preset": "trusted_private_chat", "is_direct": true, "invite": []string{carol.UserID}})
		frSyncUntil(t, carol, carolSince, func(s syncResp) bool { _, ok := s.Rooms.Invite[direct]; return ok })

		// Knocking on a remote room.
		knockRoom := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Guichet",
			"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}}}})
		carol.MustDo("POST", "/_matrix/client/v3/knock/"+esc(knockRoom)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{"reason": "please"}, nil)
		if m := frMembership(t, alice, knockRoom, carol.UserID); m != "knock" {
			t.Fatalf("carol's membership on A: %q", m)
		}
		var s map[string]any
		carol.MustDo("GET", "/_matrix/client/v3/sync?timeout=0", nil, &s)
		knock, _ := s["rooms"].(map[string]any)["knock"].(map[string]any)
		if _, ok := knock[knockRoom]; !ok {
			t.Fatalf("carol's sync has no knock: %v", s["rooms"])
		}
		// Alice lets carol in.
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(knockRoom)+"/invite", map[string]any{"user_id": carol.UserID}, nil)
		carol.MustDo("POST", "/_matrix/client/v3/join/"+esc(knockRoom), map[string]any{}, nil)
		if m := frMembership(t, alice, knockRoom, carol.UserID); m != "join" {
			t.Fatalf("carol's membership after the invite: %q", m)
		}
	})
}

// frBuild signs an event as server (with its key) on top of the given
// prev and auth events.
func frBuild(t *testing.T, s *ts.Server, roomID, sender, typ string, stateKey *string, content any, prev, auth []string, depth int64) *pdu.Event {
	t.Helper()
	v, _ := roomversion.Get(roomversion.Default)
	c, _ := json.Marshal(content)
	ev, err := pdu.Build(pdu.Proto{RoomID: roomID, Sender: sender, Type: typ, StateKey: stateKey, Content: c,
		PrevEvents: prev, AuthEvents: auth, Depth: depth, OriginServerTS: time.Now().UnixMilli()}, v, s.Config.ServerName, s.Key)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// frAuth returns the ids of the create, power levels and member events
// of a user in a room on a server: the auth events of a message.
func frAuth(t *testing.T, s *ts.Server, roomID, userID string) []string {
	t.Helper()
	st, err := s.Store.CurrentState(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := roomversion.Get(roomversion.Default)
	var out []string
	for k, id := range st {
		if k.Type == "m.room.create" && v.RoomIDFromCreate {
			continue // the room id names it
		}
		if (k.Type == "m.room.create" || k.Type == "m.room.power_levels") || (k.Type == "m.room.member" && k.StateKey == userID) {
			out = append(out, id)
		}
	}
	return out
}

func frDepth(t *testing.T, s *ts.Server, id string) int64 {
	row, err := s.Store.GetEvent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return row.Depth
}

func TestFedRoomsInboundChecks(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		ctx := context.Background()
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		// From here on the test delivers every event itself.
		frStopQueues(p.a, p.b)
		aliceSince := doSync(t, alice, "timeout=0").NextBatch
		head := frLatest(t, p.a, roomID)
		auth := frAuth(t, p.a, roomID, bob.UserID)
		msg := func(body string) *pdu.Event {
			return frBuild(t, p.b, roomID, bob.UserID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": body}, []string{head}, auth, frDepth(t, p.a, head)+1)
		}
		stored := func(id string) bool { _, err := p.a.Store.GetEvent(ctx, id); return err == nil }

		// A forged signature: signed with another key under B's name.
		other, _ := signing.GenerateKeyPair()
		v, _ := roomversion.Get(roomversion.Default)
		forged := msg("forged")
		raw, err := pdu.SignEvent(forged.JSON(), v, p.b.Config.ServerName, other)
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		_ = json.Unmarshal(raw, &obj)
		// B's key id, with a signature made by another key.
		sigs := obj["signatures"].(map[string]any)[p.b.Config.ServerName].(map[string]any)
		obj["signatures"] = map[string]any{p.b.Config.ServerName: map[string]any{p.b.Key.ID(): sigs[other.ID()]}}
		raw, _ = json.Marshal(obj)
		res, err := frSend(t, p.b, p.a, "", raw)
		if err != nil || res.PDUs[forged.ID].Error == "" || stored(forged.ID) {
			t.Fatalf("forged signature: %v %+v stored=%v", err, res, stored(forged.ID))
		}

		// An event of another server's user, signed only by B.
		alien := frBuild(t, p.b, roomID, alice.UserID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "not alice"}, []string{head}, frAuth(t, p.a, roomID, alice.UserID), frDepth(t, p.a, head)+1)
		res, err = frSend(t, p.b, p.a, "", alien.JSON())
		if err != nil || res.PDUs[alien.ID].Error == "" || stored(alien.ID) {
			t.Fatalf("event claiming another origin: %v %+v", err, res)
		}

		// A wrong content hash: the content is changed after signing (the
		// signature covers the redacted form only); the redacted event is
		// kept.
		tampered := msg("original")
		_ = json.Unmarshal(tampered.JSON(), &obj)
		obj["content"] = map[string]any{"msgtype": "m.text", "body": "tampered"}
		raw, _ = json.Marshal(obj)
		if res, err = frSend(t, p.b, p.a, "", raw); err != nil || res.PDUs[tampered.ID].Error != "" {
			t.Fatalf("wrong hash: %v %+v", err, res)
		}
		row, err := p.a.Store.GetEvent(ctx, tampered.ID)
		if err != nil || strings.Contains(string(row.JSON()), "tampered") || strings.Contains(string(row.JSON()), "original") {
			t.Fatalf("wrong hash: stored %v %s", err, row.JSON())
		}
		head = tampered.ID

		// Thousands of auth_events and prev_events: the PDU is malformed
		// (the spec caps both lists), dropped at once, the room goes on.
		for _, field := range []string{"auth_events", "prev_events"} {
			_ = json.Unmarshal(msg("too many "+field).JSON(), &obj)
			ids := make([]string, 3000)
			for i := range ids {
				ids[i] = fmt.Sprintf("$fake%d", i)
			}
			obj[field] = ids
			delete(obj, "signatures")
			raw, _ = json.Marshal(obj)
			if raw, err = pdu.SignEvent(raw, v, p.b.Config.ServerName, p.b.Key); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			res, err = frSend(t, p.b, p.a, "", raw)
			if err != nil || time.Since(start) > 10*time.Second {
				t.Fatalf("3000 %s: %v %+v after %v", field, err, res, time.Since(start))
			}
			for id, r := range res.PDUs {
				if r.Error == "" || stored(id) {
					t.Fatalf("3000 %s accepted: %+v", field, res)
				}
			}
		}

		// An event failing auth: bob (level 0) raises himself to 100.
		empty := ""
		pl := frBuild(t, p.b, roomID, bob.UserID, "m.room.power_levels", &empty, map[string]any{"users": map[string]int{bob.UserID: 100}}, []string{head}, auth, frDepth(t, p.a, head)+1)
		// Rejected by the authorisation rules: handled (no error for the
		// sender to retry on), recorded as rejected, never stored.
		if res, err = frSend(t, p.b, p.a, "", pl.JSON()); err != nil || res.PDUs[pl.ID].Error != "" {
			t.Fatalf("power grab: %v %+v", err, res)
		}
		if rej, err := p.a.Store.RejectedEvents(context.Background(), []string{pl.ID}); err != nil || !rej[pl.ID] {
			t.Fatalf("power grab not recorded as rejected: %v %v", rej, err)
		}
		if stored(pl.ID) {
			t.Fatal("a rejected event is stored")
		}

		// An invite of a user of a server outside allowed_servers.
		outsider := "@x:education.test"
		inv := frBuild(t, p.b, roomID, bob.UserID, "m.room.member", &outsider, map[string]any{"membership": "invite"}, []string{head}, auth, frDepth(t, p.a, head)+1)
		if res, err = frSend(t, p.b, p.a, "", inv.JSON()); err != nil || res.PDUs[inv.ID].Error != "" {
			t.Fatalf("invite of an outsider: %v %+v", err, res)
		}
		if rej, err := p.a.Store.RejectedEvents(context.Background(), []string{inv.ID}); err != nil || !rej[inv.ID] || stored(inv.ID) {
			t.Fatalf("invite of an outsider not rejected: %v %v stored=%v", rej, err, stored(inv.ID))
		}

		// A replayed transaction id returns the first answer and stores
		// nothing new.
		first, second := msg("first"), msg("second")
		r1, err := frSend(t, p.b, p.a, "replayed", first.JSON())
		if err != nil {
			t.Fatal(err)
		}
		r2, err := frSend(t, p.b, p.a, "replayed", second.JSON())
		if err != nil || len(r2.PDUs) != len(r1.PDUs) || stored(second.ID) {
			t.Fatalf("replay: %+v %+v %v stored=%v", r1, r2, err, stored(second.ID))
		}

		// 51 PDUs are refused whole.
		var many []json.RawMessage
		for i := range 51 {
			many = append(many, msg(fmt.Sprint("n", i)).JSON())
		}
		_, err = frSend(t, p.b, p.a, "", many...)
		if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "M_BAD_JSON") {
			t.Fatalf("51 PDUs: %v", err)
		}

		aliceSince = frSyncUntil(t, alice, aliceSince, func(s syncResp) bool {
			return frHasBody(s.Rooms.Join[roomID].Timeline.Events, "first")
		})

		// Missing prev events: bob sends three messages, only the last
		// reaches A, which fetches the others with get_missing_events.
		m1, m2, m3 := bob.SendText(roomID, "m1"), bob.SendText(roomID, "m2"), bob.SendText(roomID, "m3")
		_ = frLatest(t, p.b, roomID)
		frRelay(t, p.b, p.a, m3)
		for _, id := range []string{m1, m2, m3} {
			if row, err := p.a.Store.GetEvent(ctx, id); err != nil || row.Pos <= 0 {
				t.Fatalf("event %s not in A's timeline: %v", id, err)
			}
		}
		frSyncUntil(t, alice, aliceSince, func(s syncResp) bool {
			return frHasBody(s.Rooms.Join[roomID].Timeline.Events, "m3")
		})

		// A gap longer than one get_missing_events answer: the oldest
		// fetched event's state comes from state_ids; the events before it
		// stay unknown.
		var chain []string
		for i := range 25 {
			chain = append(chain, bob.SendText(roomID, fmt.Sprint("c", i)))
		}
		frRelay(t, p.b, p.a, chain[24])
		if row, err := p.a.Store.GetEvent(ctx, chain[24]); err != nil || row.Pos <= 0 {
			t.Fatalf("the last event of a long gap: %v", err)
		}
		if _, err := p.a.Store.GetEvent(ctx, chain[0]); err == nil {
			t.Fatal("more events fetched than one get_missing_events answer")
		}
		if got := bodies(messages(t, alice, roomID, "dir=b&limit=30").Chunk); !slices.Contains(got, "c24") || !slices.Contains(got, "c5") {
			t.Fatalf("alice's timeline after the gap: %v", got)
		}

		// A fork: alice names the room while bob renames himself, each on
		// their own server from the same parent.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.name", map[string]any{"name": "Forked"}, nil)
		bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.member/"+esc(bob.UserID), map[string]any{"membership": "join", "displayname": "Bob of gouv"}, nil)
		frRelay(t, p.b, p.a, frLatest(t, p.b, roomID))
		ext, err := p.a.Store.Extremities(ctx, roomID)
		if err != nil || len(ext) != 2 {
			t.Fatalf("extremities after the fork: %v %v", ext, err)
		}
		var member, name map[string]string
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.member/"+esc(bob.UserID), nil, &member)
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.name", nil, &name)
		if member["displayname"] != "Bob of gouv" || name["name"] != "Forked" {
			t.Fatalf("resolved state: bob %v name %v", member, name)
		}
		// The next local event merges the fork.
		merge := alice.SendText(roomID, "merged")
		ev, err := p.a.Rooms.Event(ctx, merge)
		if err != nil || len(ev.PrevEvents) != 2 {
			t.Fatalf("merge event prev_events: %v %v", ev, err)
		}
		if ext, _ := p.a.Store.Extremities(ctx, roomID); len(ext) != 0 {
			t.Fatalf("extremities after the merge: %v", ext)
		}
		frRelay(t, p.a, p.b, merge)

		// Soft failure: alice bans bob; bob's server, unaware, sends a
		// message from before the ban. It passes the state before it but
		// not the current state: stored, never shown.
		beforeBan := frLatest(t, p.a, roomID)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/ban", map[string]any{"user_id": bob.UserID}, nil)
		evading := frBuild(t, p.b, roomID, bob.UserID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "evading"}, []string{beforeBan}, auth, frDepth(t, p.a, beforeBan)+1)
		if res, err = frSend(t, p.b, p.a, "", evading.JSON()); err != nil || res.PDUs[evading.ID].Error != "" {
			t.Fatalf("soft-failed event: %v %+v", err, res)
		}
		row, err = p.a.Store.GetEvent(ctx, evading.ID)
		if err != nil || row.Pos >= 0 {
			t.Fatalf("soft-failed event stored at %v: %v", row, err)
		}
		if got := bodies(messages(t, alice, roomID, "dir=b&limit=5").Chunk); slices.Contains(got, "evading") {
			t.Fatalf("alice sees a soft-failed event: %v", got)
		}
		if ext, _ := p.a.Store.Extremities(ctx, roomID); len(ext) != 0 {
			t.Fatalf("a soft-failed event became an extremity: %v", ext)
		}
	})
}

func TestFedRoomsClosedFederation(t *testing.T) {
	fed := newFederation(t)
	a := ts.New(t, fed.ServerNamed("police.test"), frClosed("police.test", "gouv.test"))
	c := ts.New(t, fed.ServerNamed("education.test"), frClosed("police.test", "education.test"))
	alice := a.Register(t, "alice")
	dave := c.Register(t, "dave")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	// dave's server may talk to police.test, but police.test refuses it.
	r := dave.Do("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(a.Config.ServerName), map[string]any{})
	if r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
		t.Fatalf("join from a disallowed server: %d %s", r.Status, r.Body)
	}
	// police.test refuses to invite a user of a disallowed server.
	r = alice.Do("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": dave.UserID})
	if r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
		t.Fatalf("invite of a disallowed server's user: %d %s", r.Status, r.Body)
	}
	// ... and to join through one.
	r = alice.Do("POST", "/_matrix/client/v3/join/"+esc("!elsewhere:"+c.Config.ServerName)+"?server_name="+url.QueryEscape(c.Config.ServerName), map[string]any{})
	if r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
		t.Fatalf("join through a disallowed server: %d %s", r.Status, r.Body)
	}
}

// frGet makes a signed federation request from one server to another.
func frGet(from, to *ts.Server, method, uri string, body, out any) error {
	return from.Federation.Do(context.Background(), to.Config.ServerName, method, uri, body, out)
}

func TestFedRoomsRetrievalAndACL(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		var msgs []string
		for i := range 4 {
			msgs = append(msgs, alice.SendText(roomID, fmt.Sprint("m", i)))
		}
		last := msgs[3]
		r := "/_matrix/federation/v1/"
		var ev struct {
			Origin string            `json:"origin"`
			PDUs   []json.RawMessage `json:"pdus"`
		}
		if err := frGet(p.b, p.a, "GET", r+"event/"+url.PathEscape(last), nil, &ev); err != nil || len(ev.PDUs) != 1 || ev.Origin != p.a.Config.ServerName {
			t.Fatalf("event: %v %+v", err, ev)
		}
		var ids struct {
			PDUIDs       []string `json:"pdu_ids"`
			AuthChainIDs []string `json:"auth_chain_ids"`
		}
		if err := frGet(p.b, p.a, "GET", r+"state_ids/"+url.PathEscape(roomID)+"?event_id="+url.QueryEscape(last), nil, &ids); err != nil || len(ids.PDUIDs) < 5 || len(ids.AuthChainIDs) == 0 {
			t.Fatalf("state_ids: %v %+v", err, ids)
		}
		var st struct {
			PDUs      []json.RawMessage `json:"pdus"`
			AuthChain []json.RawMessage `json:"auth_chain"`
		}
		if err := frGet(p.b, p.a, "GET", r+"state/"+url.PathEscape(roomID)+"?event_id="+url.QueryEscape(last), nil, &st); err != nil || len(st.PDUs) != len(ids.PDUIDs) || len(st.AuthChain) != len(ids.AuthChainIDs) {
			t.Fatalf("state: %v %d %d", err, len(st.PDUs), len(st.AuthChain))
		}
		var auth struct {
			AuthChain []json.RawMessage `json:"auth_chain"`
		}
		if err := frGet(p.b, p.a, "GET", r+"event_auth/"+url.PathEscape(roomID)+"/"+url.PathEscape(last), nil, &auth); err != nil || len(auth.AuthChain) < 3 {
			t.Fatalf("event_auth: %v %d", err, len(auth.AuthChain))
		}
		var bf struct {
			PDUs []json.RawMessage `json:"pdus"`
		}
		if err := frGet(p.b, p.a, "GET", r+"backfill/"+url.PathEscape(roomID)+"?v="+url.QueryEscape(last)+"&limit=3", nil, &bf); err != nil || len(bf.PDUs) != 3 {
			t.Fatalf("backfill: %v %d", err, len(bf.PDUs))
		}
		v, _ := roomversion.Get(roomversion.Default)
		if first, err := pdu.Parse(bf.PDUs[0], v); err != nil || first.ID != last {
			t.Fatalf("backfill starts with %v, %v", first, err)
		}
		var missing struct {
			Events []json.RawMessage `json:"events"`
		}
		body := map[string]any{"earliest_events": []string{msgs[0]}, "latest_events": []string{last}, "limit": 10}
		if err := frGet(p.b, p.a, "POST", r+"get_missing_events/"+url.PathEscape(roomID), body, &missing); err != nil || len(missing.Events) != 2 {
			t.Fatalf("get_missing_events: %v %d", err, len(missing.Events))
		}
		if e, _ := pdu.Parse(missing.Events[0], v); e == nil || e.ID != msgs[1] {
			t.Fatalf("get_missing_events is not oldest first")
		}

		// Bad requests get Matrix errors.
		bad := []struct {
			method, uri string
			body        any
			want        string
		}{
			{"GET", r + "make_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(bob.UserID) + "?ver=1", nil, "M_INCOMPATIBLE_ROOM_VERSION"},
			{"GET", r + "make_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(alice.UserID) + "?ver=" + roomversion.Default, nil, "M_FORBIDDEN"},
			{"GET", r + "make_join/" + url.PathEscape("!nowhere:"+p.a.Config.ServerName) + "/" + url.PathEscape(bob.UserID) + "?ver=12", nil, "M_NOT_FOUND"},
			{"PUT", "/_matrix/federation/v2/send_join/" + url.PathEscape(roomID) + "/$x", map[string]any{"type": "m.room.member"}, "M_BAD_JSON"},
			{"GET", r + "backfill/" + url.PathEscape(roomID) + "?limit=3", nil, "M_MISSING_PARAM"},
			{"GET", r + "state_ids/" + url.PathEscape(roomID) + "?event_id=" + url.QueryEscape("$unknown"), nil, "M_NOT_FOUND"},
			{"POST", r + "get_missing_events/" + url.PathEscape(roomID), map[string]any{"limit": 3}, "M_BAD_JSON"},
			{"PUT", r + "send/bad1", map[string]any{"origin": p.b.Config.ServerName}, "M_BAD_JSON"},
		}
		for _, c := range bad {
			err := frGet(p.b, p.a, c.method, c.uri, c.body, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s %s: %v, want %s", c.method, c.uri, err, c.want)
			}
		}

		// A room gouv.test has no member in, with joined-only history.
		private := alice.CreateRoom(map[string]any{"preset": "private_chat", "initial_state": []any{map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}}}})
		secret := alice.SendText(private, "secret")
		err := frGet(p.b, p.a, "GET", r+"event/"+url.PathEscape(secret), nil, &ev)
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("event of a room without our members: %v", err)
		}
		err = frGet(p.b, p.a, "GET", r+"state_ids/"+url.PathEscape(private)+"?event_id="+url.QueryEscape(secret), nil, &ids)
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("state_ids of a room without our members: %v", err)
		}
		var dir struct {
			RoomID  string   `json:"room_id"`
			Servers []string `json:"servers"`
		}
		alice.MustDo("PUT", "/_matrix/client/v3/directory/room/"+esc("#frpub:"+p.a.Config.ServerName), map[string]any{"room_id": roomID}, nil)
		if err := frGet(p.b, p.a, "GET", r+"query/directory?room_alias="+url.QueryEscape("#frpub:"+p.a.Config.ServerName), nil, &dir); err != nil || dir.RoomID != roomID || !slices.Contains(dir.Servers, p.b.Config.ServerName) {
			t.Fatalf("query/directory: %v %+v", err, dir)
		}

		// The room's server ACL shuts gouv.test out.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.server_acl", map[string]any{"allow": []string{"police.test"}, "allow_ip_literals": false}, nil)
		err = frGet(p.b, p.a, "GET", r+"state_ids/"+url.PathEscape(roomID)+"?event_id="+url.QueryEscape(last), nil, &ids)
		if err == nil || !strings.Contains(err.Error(), "M_FORBIDDEN") {
			t.Fatalf("state_ids despite the ACL: %v", err)
		}
		msg := bob.SendText(roomID, "denied")
		row, _ := p.b.Store.GetEvent(context.Background(), msg)
		res, err := frSend(t, p.b, p.a, "", row.JSON())
		if err != nil || res.PDUs[msg].Error == "" {
			t.Fatalf("PDU despite the ACL: %v %+v", err, res)
		}
	})
}

func TestFedRoomsRestrictedJoin(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		carol := p.b.Register(t, "carol")
		space := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(space)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
		restricted := alice.CreateRoom(map[string]any{"preset": "private_chat", "initial_state": []any{map[string]any{
			"type": "m.room.join_rules", "state_key": "",
			"content": map[string]any{"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}},
		}}})
		via := "?server_name=" + url.QueryEscape(p.a.Config.ServerName)
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(restricted)+via, map[string]any{}, nil)
		var member map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(restricted)+"/state/m.room.member/"+esc(bob.UserID), nil, &member)
		if member["membership"] != "join" || member["join_authorised_via_users_server"] != alice.UserID {
			t.Fatalf("bob's join: %v", member)
		}
		// The join bob's server stored carries both servers' signatures.
		m, err := p.b.Store.GetMembership(context.Background(), restricted, bob.UserID)
		if err != nil {
			t.Fatal(err)
		}
		row, err := p.b.Store.GetEvent(context.Background(), m.EventID)
		if err != nil || !strings.Contains(string(row.JSON()), `"`+p.a.Config.ServerName+`":{"ed25519`) {
			t.Fatalf("join without the authorising server's signature: %v %s", err, row.JSON())
		}
		// carol is in no allowed room.
		r := carol.Do("POST", "/_matrix/client/v3/join/"+esc(restricted)+via, map[string]any{})
		if r.Status != 403 {
			t.Fatalf("carol's join: %d %s", r.Status, r.Body)
		}
	})
}

// TestFedRoomsVersions joins and talks across servers in rooms of the
// older event formats too (v1–2 event ids with reference hashes).
func TestFedRoomsVersions(t *testing.T) {
	fed := newFederation(t)
	a := ts.New(t, fed.ServerNamed("police.test"), frClosed(frHosts...))
	b := ts.New(t, fed.ServerNamed("gouv.test"), frClosed(frHosts...))
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	for _, ver := range []string{"1", "2", "3", "6", "10", "11", "12"} {
		t.Run("v"+ver, func(t *testing.T) {
			alice.SetT(t)
			bob.SetT(t)
			roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_version": ver})
			bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(a.Config.ServerName), map[string]any{}, nil)
			frRelay(t, b, a, bob.SendText(roomID, "v"+ver+" from gouv"))
			frRelay(t, a, b, alice.SendText(roomID, "v"+ver+" from police"))
			for _, c := range []*ts.Client{alice, bob} {
				if got := bodies(messages(t, c, roomID, "dir=b&limit=5").Chunk); !slices.Equal(got, []string{"v" + ver + " from police", "v" + ver + " from gouv"}) {
					t.Fatalf("%s sees %v", c.UserID, got)
				}
			}
		})
	}
}
