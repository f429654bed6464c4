package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	ts "luxchat/internal/testserver"
)

// TestSlidingSyncRepoll: a sliding sync connection long-polling on one
// keep-alive TCP connection, its re-polls (POSTs with a body) read and
// served outside net/http after each parked answer: every answer right
// — woken by a message, a body that changes the window between polls,
// polls that time out with nothing new (answered from the state they
// left, pos after pos), a retried pos, an unknown pos — and bodies over
// the bound served in place answered by net/http: a large one as usual,
// one over the server's request limit with M_TOO_LARGE.
func TestSlidingSyncRepoll(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testSlidingSyncRepoll(t, ts.New(t)) })
	t.Run("postgres", func(t *testing.T) { testSlidingSyncRepoll(t, ts.New(t, ts.WithPostgres(t))) })
}

func testSlidingSyncRepoll(t *testing.T, s *ts.Server) {
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	r1 := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "one"})
	r2 := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "two"})
	bob.Join(r1)
	bob.Join(r2) // r2 is the most recent
	state := [][2]string{{"m.room.name", ""}, {"m.room.member", "$LAZY"}}
	window := func(hi int) map[string]any {
		return map[string]any{"lists": map[string]any{"all": allList([2]int{0, hi}, 1, state)},
			"extensions": map[string]any{"to_device": map[string]any{"enabled": true}, "e2ee": map[string]any{"enabled": true}}}
	}
	rc := dialRaw(t, s, bob.Token)
	post := func(query string, body any) string {
		raw, _ := json.Marshal(body)
		return fmt.Sprintf("POST %s%s HTTP/1.1\r\nHost: luxchat\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			ssPath, query, bob.Token, len(raw), raw)
	}
	answer := func(what string) ssResp {
		t.Helper()
		resp, body := rc.read("POST")
		var r ssResp
		if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil || r.Pos == "" {
			t.Fatalf("%s: %d %s", what, resp.StatusCode, body)
		}
		return r
	}
	rc.send(post("?timeout=0", window(0)))
	first := answer("first request")
	if ssKeys(first.Rooms) == nil || first.Rooms[r2].Name == nil || *first.Rooms[r2].Name != "two" || len(first.Rooms) != 1 {
		t.Fatalf("first answer's rooms: %v", ssKeys(first.Rooms))
	}
	pos := first.Pos
	poll := func(timeoutMS int) string { return fmt.Sprintf("?timeout=%d&pos=%s", timeoutMS, pos) }

	served0, back0 := s.Repolls()
	// Woken by a message, several times: each poll parks, the message's
	// answer carries it, the next poll comes on the same connection.
	for i := range 3 {
		rc.send(post(poll(20000), window(0)))
		waitParked(t, s, 1)
		text := fmt.Sprintf("cycle %d", i)
		alice.SendText(r2, text)
		r := answer(text)
		if b := ssBodies(r.Rooms[r2]); !slices.Equal(b, []string{text}) || r.Rooms[r2].NumLive == nil || *r.Rooms[r2].NumLive != 1 {
			t.Fatalf("poll %d: rooms %v, timeline %v", i, ssKeys(r.Rooms), b)
		}
		pos = r.Pos
	}
	// The body widens the window: answered at once with the room now in
	// it, in full; then narrowed again: nothing to send, the poll parks.
	rc.send(post(poll(20000), window(1)))
	r := answer("wider window")
	if !slices.Equal(ssKeys(r.Rooms), []string{r1}) || !r.Rooms[r1].Initial || r.Rooms[r1].Name == nil || *r.Rooms[r1].Name != "one" || r.Lists["all"].Count != 2 {
		t.Fatalf("wider window: rooms %v, lists %v", ssKeys(r.Rooms), r.Lists)
	}
	pos = r.Pos
	// Polls that time out with nothing new, pos after pos; the first of
	// them retried with its pos (its answer lost) gives the same.
	var timedOut []string
	for i := range 3 {
		rc.send(post(poll(300), window(1)))
		r := answer(fmt.Sprintf("time-out %d", i))
		if len(r.Rooms) != 0 || r.Lists["all"].Count != 2 || r.Extensions.E2EE == nil || r.Extensions.E2EE.OTKCounts == nil || r.Extensions.ToDevice == nil {
			t.Fatalf("time-out %d: rooms %v, lists %v, e2ee %+v", i, ssKeys(r.Rooms), r.Lists, r.Extensions.E2EE)
		}
		timedOut = append(timedOut, pos)
		pos = r.Pos
	}
	retryOf := timedOut[2]
	rc.send(post(fmt.Sprintf("?timeout=300&pos=%s", retryOf), window(1)))
	if r := answer("retry"); r.Pos != pos || len(r.Rooms) != 0 {
		t.Fatalf("retried pos %s: pos %s (want %s), rooms %v", retryOf, r.Pos, pos, ssKeys(r.Rooms))
	}
	// A message into the room that was not the newest after the quiet
	// polls: the window reorders (r1 first), r1's new event comes.
	rc.send(post(poll(20000), window(1)))
	waitParked(t, s, 1)
	alice.SendText(r1, "after the quiet")
	r = answer("after the quiet polls")
	if b := ssBodies(r.Rooms[r1]); !slices.Equal(b, []string{"after the quiet"}) || r.Rooms[r1].Initial || len(r.Rooms) != 1 {
		t.Fatalf("after the quiet polls: rooms %v, r1 timeline %v", ssKeys(r.Rooms), b)
	}
	pos = r.Pos
	// An unknown pos, in place too: 400 M_UNKNOWN_POS, the connection
	// serves on.
	rc.send(post("?timeout=0&pos=nosuch_1", window(1)))
	if resp, body := rc.read("POST"); resp.StatusCode != 400 || !strings.Contains(string(body), "M_UNKNOWN_POS") {
		t.Fatalf("unknown pos: %d %s", resp.StatusCode, body)
	}
	served, back := s.Repolls()
	if served-served0 < 9 || back != back0 {
		t.Errorf("%d re-polls served outside net/http, %d handed to it; want ≥ 9, 0", served-served0, back-back0)
	}

	// Bodies over the bound served in place go to net/http, after a
	// parked answer too: one within the server's request limit is
	// answered as usual, one over it with 413 M_TOO_LARGE.
	rc.send(post(poll(20000), window(1)))
	waitParked(t, s, 1)
	alice.SendText(r2, "before the large body")
	pos = answer("before the large body").Pos
	large := window(1)
	large["padding"] = strings.Repeat("x", 70<<10)
	rc.send(post(poll(0), large))
	if r := answer("large body"); len(r.Rooms) != 0 || r.Lists["all"].Count != 2 {
		t.Fatalf("large body: rooms %v, lists %v", ssKeys(r.Rooms), r.Lists)
	}
	if _, back2 := s.Repolls(); back2 != back+1 {
		t.Errorf("large body: %d handed to net/http, want 1", back2-back)
	}
	c2 := dialRaw(t, s, bob.Token)
	c2.send(post(poll(20000), window(1)))
	waitParked(t, s, 1)
	alice.SendText(r2, "before the huge body")
	resp, body := c2.read("POST")
	if resp.StatusCode != 200 {
		t.Fatalf("poll before the huge body: %d %s", resp.StatusCode, body)
	}
	huge := window(1)
	huge["padding"] = strings.Repeat("y", 1<<20)
	raw, _ := json.Marshal(huge)
	c2.send(fmt.Sprintf("POST %s?timeout=0 HTTP/1.1\r\nHost: luxchat\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		ssPath, bob.Token, len(raw), raw))
	if resp, body := c2.read("POST"); resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "M_TOO_LARGE") {
		t.Fatalf("huge body: %d %s", resp.StatusCode, body)
	}
}
