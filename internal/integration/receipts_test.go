package integration

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"
	"time"

	ts "luxchat/internal/testserver"
)

// A read receipt set by a local user and one received from another
// server are stored by the same function, with the same effects that
// users see: the other members' waiting syncs wake and show it, an
// initial sync shows it, and the reader's own unread count starts again
// from it (on the reader's server). Private receipts stay on their
// server and with their reader.
func TestReceiptsLocalAndFederatedHaveTheSameEffects(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice, carol := p.a.Register(t, "alice"), p.a.Register(t, "carol")
		bob := p.b.Register(t, "bob")
		roomID := fqRoom(t, p, alice, bob)
		carol.Join(roomID)
		msg := alice.SendText(roomID, "read me")
		fqSyncUntil(t, bob, "", "alice's message", func(s map[string]any) bool {
			return hasEvent(s, roomID, msg)
		})
		for _, c := range []*ts.Client{carol, bob} {
			if n := unreadCount(c, roomID); n != 1 {
				t.Fatalf("%s: unread %v before reading, want 1", c.UserID, n)
			}
		}
		receipt := func(c *ts.Client, typ, eventID string) func() {
			return func() {
				if r := c.Do("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/receipt/"+typ+"/"+esc(eventID), map[string]any{}); r.Status != 200 {
					t.Errorf("%s: receipt %s: %d %s", c.UserID, typ, r.Status, r.Body)
				}
			}
		}

		// Carol, a local user, reads: alice's waiting sync wakes with the
		// receipt, and so does bob's on the other server.
		aliceSince, bobSince := nextBatch(alice), nextBatch(bob)
		aliceSince = wokenWith(t, alice, aliceSince, receipt(carol, "m.read", msg), func(s map[string]any) bool {
			return hasReceipt(s, roomID, msg, "m.read", carol.UserID)
		})
		bobSince = wokenWith(t, bob, bobSince, nil, func(s map[string]any) bool {
			return hasReceipt(s, roomID, msg, "m.read", carol.UserID)
		})
		if n := unreadCount(carol, roomID); n != 0 {
			t.Errorf("carol: unread %v after her receipt, want 0", n)
		}

		// Bob reads on his server: alice's and carol's waiting syncs here
		// wake with the receipt received over federation.
		carolSince := nextBatch(carol)
		aliceSince = wokenWith(t, alice, aliceSince, receipt(bob, "m.read", msg), func(s map[string]any) bool {
			return hasReceipt(s, roomID, msg, "m.read", bob.UserID)
		})
		wokenWith(t, carol, carolSince, nil, func(s map[string]any) bool {
			return hasReceipt(s, roomID, msg, "m.read", bob.UserID)
		})
		if n := unreadCount(bob, roomID); n != 0 {
			t.Errorf("bob: unread %v after his receipt, want 0", n)
		}
		// Both are kept alike: an initial sync shows both.
		initial := alice.Sync("timeout=0")
		for _, u := range []string{carol.UserID, bob.UserID} {
			if !hasReceipt(initial, roomID, msg, "m.read", u) {
				t.Errorf("alice's initial sync lacks %s's receipt", u)
			}
		}

		// A private receipt resets its reader's count and wakes only the
		// reader's syncs. It never leaves the server: with b stopped, a's
		// outbox for b gets the public receipt that follows it and nothing
		// of it; neither alice nor bob ever sees it.
		if err := p.b.Stop(); err != nil {
			t.Fatal(err)
		}
		msg2 := alice.SendText(roomID, "read me privately")
		if n := unreadCount(carol, roomID); n != 1 {
			t.Fatalf("carol: unread %v before reading privately, want 1", n)
		}
		wokenWith(t, carol, nextBatch(carol), receipt(carol, "m.read.private", msg2), func(s map[string]any) bool {
			return hasReceipt(s, roomID, msg2, "m.read.private", carol.UserID)
		})
		if n := unreadCount(carol, roomID); n != 0 {
			t.Errorf("carol: unread %v after her private receipt, want 0", n)
		}
		msg3 := alice.SendText(roomID, "read me publicly")
		receipt(carol, "m.read", msg3)()
		if got := outboxReceiptTypes(t, p.a, p.b.Config.ServerName, roomID, carol.UserID); !slices.Equal(got, []string{"m.read"}) {
			t.Errorf("carol's receipts queued for the other server: %q, want the public one only", got)
		}
		p.b = p.b.Restart(t)
		for _, w := range []struct {
			c     *ts.Client
			since string
		}{{alice, aliceSince}, {bob, bobSince}} {
			sawPrivate := false
			fqSyncUntil(t, w.c, w.since, "carol's receipt of the third message", func(s map[string]any) bool {
				sawPrivate = sawPrivate || hasReceipt(s, roomID, msg2, "m.read.private", carol.UserID)
				return hasReceipt(s, roomID, msg3, "m.read", carol.UserID)
			})
			if sawPrivate {
				t.Errorf("%s saw carol's private receipt", w.c.UserID)
			}
		}
	})
}

// wokenWith long-polls c's sync from since while act runs (when not nil)
// and returns the next_batch of the response that check accepts. The
// polls' timeout is far longer than the time allowed: only a wake-up
// answers in time.
func wokenWith(t *testing.T, c *ts.Client, since string, act func(), check func(s map[string]any) bool) string {
	t.Helper()
	if act != nil {
		go func() {
			time.Sleep(100 * time.Millisecond) // the poll is waiting by then
			act()
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := c.Sync("timeout=30000&since=" + url.QueryEscape(since))
		if time.Now().After(deadline) {
			t.Fatalf("%s's sync was not woken with what it waits for", c.UserID)
		}
		since = s["next_batch"].(string)
		if check(s) {
			return since
		}
	}
}

func nextBatch(c *ts.Client) string { return c.Sync("timeout=0")["next_batch"].(string) }

// outboxReceiptTypes lists the types of user's receipts in a room that
// from has queued for dest.
func outboxReceiptTypes(t *testing.T, from *ts.Server, dest, roomID, user string) []string {
	t.Helper()
	_, edus, err := from.Store.PendingOutbox(t.Context(), dest, 50, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range edus {
		var u struct {
			Type    string                                           `json:"edu_type"`
			Content map[string]map[string]map[string]json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(e.EDU, &u); err != nil {
			t.Fatal(err)
		}
		if u.Type != "m.receipt" {
			continue
		}
		for typ, users := range u.Content[roomID] {
			if users[user] != nil {
				out = append(out, typ)
			}
		}
	}
	slices.Sort(out)
	return out
}

// hasReceipt reports whether a sync shows user's receipt of type typ on
// eventID in the room's ephemeral events.
func hasReceipt(s map[string]any, roomID, eventID, typ, user string) bool {
	for _, e := range evList(path(s, "rooms", "join", roomID, "ephemeral", "events")) {
		if e["type"] == "m.receipt" && path(e, "content", eventID, typ, user, "ts") != nil {
			return true
		}
	}
	return false
}

// hasEvent reports whether a sync shows eventID in the room's timeline.
func hasEvent(s map[string]any, roomID, eventID string) bool {
	for _, e := range evList(path(s, "rooms", "join", roomID, "timeline", "events")) {
		if e["event_id"] == eventID {
			return true
		}
	}
	return false
}

// unreadCount is the room's notification_count in c's initial sync.
func unreadCount(c *ts.Client, roomID string) float64 {
	n, _ := path(c.Sync("timeout=0"), "rooms", "join", roomID, "unread_notifications", "notification_count").(float64)
	return n
}
