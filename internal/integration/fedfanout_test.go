package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	ts "luxchat/internal/testserver"
)

// TestFedFanoutSurvivesCrashAfterCommit: events committed while the
// process never got to queue them (as when killed right after the commit)
// are delivered after a restart, each once.
func TestFedFanoutSurvivesCrashAfterCommit(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		roomID := fqRoom(t, p, alice, bob)
		alice.SendText(roomID, "before")
		want := []string{"before"}
		waitBodies(t, bob, roomID, want)
		noFanoutLeft(t, p)

		// Commits go through, but nothing reaches the queue.
		p.a.Exchange.HoldFanout.Store(true)
		for i := range 5 {
			body := fmt.Sprintf("in the window %d", i)
			alice.SendText(roomID, body)
			want = append(want, body)
		}
		waitIdle(t, p.a) // nothing is on its way to b
		if got := fqBodies(t, bob, roomID); len(got) != 1 {
			t.Fatalf("bob saw %q while the events were not queued", got)
		}

		p.a = p.a.Restart(t)
		waitBodies(t, bob, roomID, want)
		noFanoutLeft(t, p)
		waitOutboxEmpty(t, p)

		// A further restart has nothing left to send: nothing goes twice.
		p.a = p.a.Restart(t)
		waitIdle(t, p.a) // recovered, started, and done with what it had
		if n := p.a.Outbox.Sent(p.b.Config.ServerName); n != 0 {
			t.Fatalf("%d transactions sent after the second restart, want 0", n)
		}
		if got := fqBodies(t, bob, roomID); !slices.Equal(got, want) {
			t.Fatalf("bob's timeline %q, want %q", got, want)
		}

		// And the new process delivers as usual.
		alice.SendText(roomID, "after")
		waitBodies(t, bob, roomID, append(want, "after"))
		noFanoutLeft(t, p)
	})
}

// TestFedFanoutLocalRoomsRecordNothing: a room with local members only
// writes no fan-out rows, from its creation on (rows held back from the
// queue would stay).
func TestFedFanoutLocalRoomsRecordNothing(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		carol := p.a.Register(t, "carol")
		p.a.Exchange.HoldFanout.Store(true)
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		carol.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{}, nil)
		for i := range 3 {
			alice.SendText(roomID, fmt.Sprint("local ", i))
		}
		noFanoutLeft(t, p)
	})
}

// waitBodies waits until c's timeline of the room holds exactly want.
func waitBodies(t *testing.T, c *ts.Client, roomID string, want []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := fqBodies(t, c, roomID)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's timeline: %q, want %q", c.UserID, got, want)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// noFanoutLeft waits until a has no event recorded for fan-out.
func noFanoutLeft(t *testing.T, p *fqPair) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := p.a.Store.PendingFanout(t.Context(), math.MaxInt64, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fan-out rows left: %+v", rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOutboxEmpty waits until a has nothing queued for b.
func waitOutboxEmpty(t *testing.T, p *fqPair) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := p.a.Store.OutboxDepth(t.Context(), p.b.Config.ServerName)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d items left in the outbox", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFedFanoutEDUsStoredBeforeAnswer: a receipt or to-device message for
// another server is in the outbox when the client gets its answer, so a
// crash right after cannot lose it; with the destination down, both are
// delivered once it is back.
func TestFedFanoutEDUsStoredBeforeAnswer(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		roomID := fqRoom(t, p, alice, bob)
		msg := alice.SendText(roomID, "read me")
		waitBodies(t, bob, roomID, []string{"read me"})
		if err := p.b.Stop(); err != nil {
			t.Fatal(err)
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/receipt/m.read/"+esc(msg), map[string]any{}, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/sendToDevice/m.test/fanout1", map[string]any{
			"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 1}}}}, nil)
		_, edus, err := p.a.Store.PendingOutbox(t.Context(), p.b.Config.ServerName, 50, 100)
		if err != nil {
			t.Fatal(err)
		}
		types := map[string]int{}
		for _, e := range edus {
			var u struct {
				Type string `json:"edu_type"`
			}
			if err := json.Unmarshal(e.EDU, &u); err != nil {
				t.Fatal(err)
			}
			types[u.Type]++
		}
		if types["m.receipt"] != 1 || types["m.direct_to_device"] != 1 {
			t.Fatalf("EDUs stored for b when the client was answered: %v", types)
		}

		p.b = p.b.Restart(t)
		fqSyncUntil(t, bob, "", "the to-device message and the receipt", func(s map[string]any) bool {
			toDevice := evList(path(s, "to_device", "events"))
			receipts := false
			for _, e := range evList(path(s, "rooms", "join", roomID, "ephemeral", "events")) {
				if e["type"] == "m.receipt" && path(e, "content", msg, "m.read", alice.UserID) != nil {
					receipts = true
				}
			}
			return len(toDevice) == 1 && receipts
		})
	})
}
