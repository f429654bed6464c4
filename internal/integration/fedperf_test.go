package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/rooms"
	ts "luxchat/internal/testserver"
)

// fpEngines runs a federation benchmark with both servers on SQLite, then
// both on PostgreSQL (skipped without LUXCHAT_TEST_POSTGRES).
func fpEngines(b *testing.B, f func(b *testing.B, a, g *ts.Server)) {
	fpEnginesOf(b, frHosts, func(b *testing.B, s []*ts.Server) { f(b, s[0], s[1]) })
}

// fpEnginesOf is fpEngines for servers named hosts (only those federate).
func fpEnginesOf(b *testing.B, hosts []string, f func(b *testing.B, servers []*ts.Server)) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		b.Run(name, func(b *testing.B) {
			fed := ts.NewFederation(b)
			var servers []*ts.Server
			for _, host := range hosts {
				opts := []ts.Option{fed.ServerNamed(host), frClosed(hosts...)}
				if pg {
					opts = append(opts, ts.WithPostgres(b))
				}
				servers = append(servers, ts.New(b, opts...))
			}
			f(b, servers)
		})
	}
}

// fpChain builds the PDUs another server sends into a room, each citing
// the previous one as its only prev event, as a real sender does.
type fpChain struct {
	from         *ts.Server
	v            *roomversion.Version
	roomID, head string
	depth        int64
	create       string // the create event's id, cited in auth events before v12
}

func (c *fpChain) next(b testing.TB, typ, sender string, stateKey *string, content any, auth ...string) *pdu.Event {
	b.Helper()
	raw, _ := json.Marshal(content)
	if !c.v.RoomIDFromCreate {
		auth = append(auth, c.create)
	}
	c.depth++
	ev, err := pdu.Build(pdu.Proto{RoomID: c.roomID, Sender: sender, Type: typ, StateKey: stateKey, Content: raw,
		PrevEvents: []string{c.head}, AuthEvents: auth, Depth: c.depth, OriginServerTS: time.Now().UnixMilli()},
		c.v, c.from.Config.ServerName, c.from.Key)
	if err != nil {
		b.Fatal(err)
	}
	c.head = ev.ID
	return ev
}

// fpSend puts one transaction and fails on any refused PDU.
func fpSend(b *testing.B, from, to *ts.Server, txnID string, evs []*pdu.Event) {
	b.Helper()
	pdus := make([]json.RawMessage, len(evs))
	for i, ev := range evs {
		pdus[i] = ev.JSON()
	}
	body := map[string]any{"origin": from.Config.ServerName, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus}
	var res frTxnResult
	if err := from.Federation.Do(context.Background(), to.Config.ServerName, "PUT", "/_matrix/federation/v1/send/"+url.PathEscape(txnID), body, &res); err != nil {
		b.Fatal(err)
	}
	for id, r := range res.PDUs {
		if r.Error != "" {
			b.Fatalf("%s: %s", id, r.Error)
		}
	}
}

// fpRoom starts a chain of PDUs from server g into a public room created
// on server a, and returns the ids of its join rules and power levels.
func fpRoom(t testing.TB, a, g *ts.Server, roomID string) (c *fpChain, joinRules, power string) {
	ctx := context.Background()
	v, _ := a.Rooms.Version(ctx, roomID)
	rows, _ := a.Store.RoomEvents(ctx, roomID, 0, 1<<62, true, 1)
	st, _ := a.Store.CurrentState(ctx, roomID)
	c = &fpChain{from: g, v: v, roomID: roomID, head: rows[0].EventID, depth: rows[0].Depth}
	for k, id := range st {
		switch k.Type {
		case "m.room.create":
			c.create = id
		case "m.room.join_rules":
			joinRules = id
		case "m.room.power_levels":
			power = id
		}
	}
	return c, joinRules, power
}

// TestFedPerfInboundBatch: a transaction whose PDUs extend the room one
// after the other is committed as a batch, with every check kept: users
// join and talk in the same transaction (their joins are auth events of
// their messages), a message whose content does not match its hash is
// kept redacted, a message from a non-member is rejected, and sending the
// transaction again stores nothing twice.
func TestFedPerfInboundBatch(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		a, g := p.a, p.b
		alice := a.Register(t, "alice")
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		c, joinRules, power := fpRoom(t, a, g, roomID)
		var evs []*pdu.Event
		member := map[string]string{}
		users := []string{"@u0:" + g.Config.ServerName, "@u1:" + g.Config.ServerName, "@u2:" + g.Config.ServerName}
		for _, u := range users {
			ev := c.next(t, "m.room.member", u, &u, map[string]any{"membership": "join"}, joinRules, power)
			member[u] = ev.ID
			evs = append(evs, ev)
		}
		for i, u := range users {
			evs = append(evs, c.next(t, "m.room.message", u, nil, map[string]any{"msgtype": "m.text", "body": fmt.Sprint("hello ", i)}, power, member[u]))
		}
		tampered := c.next(t, "m.room.message", users[0], nil, map[string]any{"msgtype": "m.text", "body": "original"}, power, member[users[0]])
		evs = append(evs, tampered)
		evs = append(evs, c.next(t, "m.room.message", users[1], nil, map[string]any{"msgtype": "m.text", "body": "after"}, power, member[users[1]]))
		stranger := "@stranger:" + g.Config.ServerName
		bad := c.next(t, "m.room.message", stranger, nil, map[string]any{"msgtype": "m.text", "body": "intruder"}, power)
		evs = append(evs, bad)
		raws := make([]json.RawMessage, len(evs))
		for i, ev := range evs {
			raws[i] = ev.JSON()
			if ev == tampered {
				raws[i] = bytes.Replace(ev.JSON(), []byte(`"original"`), []byte(`"tampered"`), 1)
			}
		}
		// Every PDU is handled: the stranger's, rejected by the
		// authorisation rules, is recorded so (no error to retry on) and
		// never stored.
		check := func(res frTxnResult) {
			t.Helper()
			for _, ev := range evs {
				if r := res.PDUs[ev.ID]; r.Error != "" {
					t.Fatalf("%s (%s): %q", ev.ID, ev.Sender, r.Error)
				}
			}
			if _, err := a.Store.GetEvent(context.Background(), bad.ID); err == nil {
				t.Fatal("the stranger's event was stored")
			}
		}
		res, err := frSend(t, g, a, "", raws...)
		if err != nil {
			t.Fatal(err)
		}
		check(res)
		want := []string{"hello 0", "hello 1", "hello 2", "", "after"}
		got := bodies(messages(t, alice, roomID, "dir=b&limit=50").Chunk)
		slices.Reverse(got)
		if !slices.Equal(got, want) {
			t.Fatalf("alice sees %q, want %q", got, want)
		}
		members, _ := a.Rooms.JoinedUsers(context.Background(), roomID)
		if len(members) != 4 {
			t.Fatalf("members %v", members)
		}
		// The same PDUs again: already known, or rejected before.
		res, err = frSend(t, g, a, "", raws...)
		if err != nil {
			t.Fatal(err)
		}
		check(res)
		got = bodies(messages(t, alice, roomID, "dir=b&limit=50").Chunk)
		if len(got) != len(want) {
			t.Fatalf("after a replay alice sees %q", got)
		}
	})
}

// BenchmarkFedRoomsInbound: transactions of 50 messages, chained by their
// prev events, from the users of another server into a room of 1000
// members (one local). Figures: µs/pdu and pdus/s.
//
//	go test ./internal/integration -run '^$' -bench BenchmarkFedRoomsInbound -benchtime 40x
func BenchmarkFedRoomsInbound(b *testing.B) {
	fpEngines(b, func(b *testing.B, a, g *ts.Server) {
		ctx := context.Background()
		alice := a.Register(b, "alice")
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		c, joinRules, power := fpRoom(b, a, g, roomID)
		// 999 users of the other server join, 50 joins a transaction.
		const remote = 999
		users := make([]string, remote)
		member := map[string]string{}
		var txn []*pdu.Event
		for i := range users {
			u := fmt.Sprintf("@m%d:%s", i, g.Config.ServerName)
			users[i] = u
			ev := c.next(b, "m.room.member", u, &u, map[string]any{"membership": "join"}, joinRules, power)
			member[u] = ev.ID
			if txn = append(txn, ev); len(txn) == 50 || i == remote-1 {
				fpSend(b, g, a, fmt.Sprintf("join%d", i), txn)
				txn = nil
			}
		}
		if n, err := a.Rooms.JoinedUsers(ctx, roomID); err != nil || len(n) != remote+1 {
			b.Fatalf("%d members: %v", len(n), err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			evs := make([]*pdu.Event, 50)
			for j := range evs {
				u := users[(i*50+j)%remote]
				evs[j] = c.next(b, "m.room.message", u, nil, map[string]any{"msgtype": "m.text", "body": fmt.Sprint(i, "/", j)}, power, member[u])
			}
			b.StartTimer()
			fpSend(b, g, a, fmt.Sprintf("msg%d", i), evs)
		}
		b.StopTimer()
		// Everything arrived, in order, in alice's timeline.
		last, _ := a.Store.RoomEvents(ctx, roomID, 0, 1<<62, true, 1)
		if len(last) != 1 || last[0].EventID != c.head {
			b.Fatalf("the room's newest event is not the last one sent")
		}
		perPDU := float64(b.Elapsed().Microseconds()) / float64(b.N*50)
		b.ReportMetric(perPDU, "µs/pdu")
		b.ReportMetric(1e6/perPDU, "pdus/s")
	})
}

// BenchmarkFedRoomsJoinLargeRoom: joining, from another server, a room
// whose state holds 10,000 events (the send_join answer carries them and
// their auth chain). Run once:
//
//	go test ./internal/integration -run '^$' -bench BenchmarkFedRoomsJoinLargeRoom -benchtime 1x
func BenchmarkFedRoomsJoinLargeRoom(b *testing.B) {
	fpEngines(b, func(b *testing.B, a, g *ts.Server) {
		ctx := context.Background()
		alice := a.Register(b, "alice")
		bob := g.Register(b, "bob")
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			// The preset's own state is 6 events (create, alice, power
			// levels, join rules, history visibility, guest access).
			initial := make([]rooms.StateEvent, 10000-6)
			for j := range initial {
				initial[j] = rooms.StateEvent{Type: "org.example.desk", StateKey: fmt.Sprint(j), Content: json.RawMessage(fmt.Sprintf(`{"n":%d}`, j))}
			}
			roomID, err := a.Rooms.CreateRoom(ctx, alice.UserID, rooms.CreateRequest{Preset: "public_chat", InitialState: initial})
			if err != nil {
				b.Fatal(err)
			}
			st, _ := a.Store.CurrentState(ctx, roomID)
			b.StartTimer()
			bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(a.Config.ServerName), map[string]any{}, nil)
			b.StopTimer()
			// The room is usable: its whole state is known and bob talks.
			got, err := g.Store.CurrentState(ctx, roomID)
			if err != nil || len(got) != len(st)+1 {
				b.Fatalf("state of %d events after the join, want %d: %v", len(got), len(st)+1, err)
			}
			bob.SendText(roomID, "here")
			b.ReportMetric(float64(len(st)), "state_events")
		}
	})
}
