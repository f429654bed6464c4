package integration

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"luxchat/internal/matrix/roomversion"
	ts "luxchat/internal/testserver"
)

func TestChatFlow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"name": "Ops", "preset": "private_chat"})

		// Bob cannot read or post before he is invited.
		if r := bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/messages?dir=b", nil); r.Status != http.StatusForbidden {
			t.Fatalf("outsider read messages: %d %s", r.Status, r.Body)
		}
		if r := bob.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/x1", map[string]string{"body": "hi"}); r.Status != http.StatusForbidden {
			t.Fatalf("outsider sent: %d %s", r.Status, r.Body)
		}
		if r := bob.Do("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{}); r.Status != http.StatusForbidden {
			t.Fatalf("uninvited join: %d %s", r.Status, r.Body)
		}

		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]string{"user_id": bob.UserID}, nil)
		sy := doSync(t, bob, "timeout=0")
		if _, ok := sy.Rooms.Invite[room]; !ok {
			t.Fatalf("bob's sync has no invite: %+v", sy.Rooms.Invite)
		}
		bob.Join(room)

		for i := range 30 {
			alice.SendText(room, fmt.Sprintf("msg %d", i))
		}
		bob.SendText(room, "hello alice")

		// Backwards pagination returns everything, newest first, in pages.
		var got []string
		from := ""
		for range 20 {
			q := "dir=b&limit=7"
			if from != "" {
				q += "&from=" + from
			}
			p := messages(t, bob, room, q)
			got = append(got, bodies(p.Chunk)...)
			if p.End == "" {
				break
			}
			from = p.End
		}
		want := []string{"hello alice"}
		for i := 29; i >= 0; i-- {
			want = append(want, fmt.Sprintf("msg %d", i))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("paginated\n got %v\nwant %v", got, want)
		}
		// Forwards from the start gives the same in order.
		p := messages(t, bob, room, "dir=f&limit=100")
		fw := bodies(p.Chunk)
		slices.Reverse(fw)
		if !slices.Equal(fw, want) {
			t.Fatalf("forward pagination %v", fw)
		}

		// Members and state.
		var members struct {
			Chunk []event `json:"chunk"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/members?membership=join", nil, &members)
		if len(members.Chunk) != 2 {
			t.Fatalf("members: %d", len(members.Chunk))
		}
		var name map[string]string
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.name", nil, &name)
		if name["name"] != "Ops" {
			t.Fatalf("name %v", name)
		}

		// Bob leaves: he no longer sees new messages.
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		alice.SendText(room, "after bob left")
		p = messages(t, bob, room, "dir=b&limit=5")
		if slices.Contains(bodies(p.Chunk), "after bob left") {
			t.Fatal("left user sees later messages")
		}
		var joined struct {
			JoinedRooms []string `json:"joined_rooms"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/joined_rooms", nil, &joined)
		if slices.Contains(joined.JoinedRooms, room) {
			t.Fatal("room still in joined_rooms after leave")
		}
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/forget", map[string]any{}, nil)
	})
}

func TestTransactionIdempotency(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		path := "/_matrix/client/v3/rooms/" + esc(room) + "/send/m.room.message/same-txn"
		// Concurrent retries of one transaction store one event.
		ids := make([]string, 8)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var r struct {
					EventID string `json:"event_id"`
				}
				alice.MustDo("PUT", path, map[string]string{"msgtype": "m.text", "body": "once"}, &r)
				ids[i] = r.EventID
			}()
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("different event ids for one transaction: %v", ids)
			}
		}
		p := messages(t, alice, room, "dir=b&limit=50")
		if n := strings.Count(strings.Join(bodies(p.Chunk), "|"), "once"); n != 1 {
			t.Fatalf("stored %d times", n)
		}
		// A retry after the sender left the room still answers with the
		// original event, as the first response would have.
		bob := s.Register(t, "bob")
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]string{"user_id": bob.UserID}, nil)
		bob.Join(room)
		var first, retry struct {
			EventID string `json:"event_id"`
		}
		bobPath := "/_matrix/client/v3/rooms/" + esc(room) + "/send/m.room.message/bob-txn"
		bob.MustDo("PUT", bobPath, map[string]string{"msgtype": "m.text", "body": "hi"}, &first)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		bob.MustDo("PUT", bobPath, map[string]string{"msgtype": "m.text", "body": "hi"}, &retry)
		if retry.EventID != first.EventID {
			t.Fatalf("retry after leaving: %s, want %s", retry.EventID, first.EventID)
		}
		// The sender's device sees its transaction id.
		for _, e := range p.Chunk {
			if e.EventID == ids[0] && e.Unsigned["transaction_id"] != "same-txn" {
				t.Fatalf("transaction_id missing: %v", e.Unsigned)
			}
		}
	})
}

func TestHistoryVisibilityJoined(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
			{"type": "m.room.history_visibility", "state_key": "", "content": map[string]string{"history_visibility": "joined"}},
		}})
		alice.SendText(room, "secret before bob")
		bob.Join(room)
		alice.SendText(room, "after bob joined")
		p := messages(t, bob, room, "dir=b&limit=50")
		got := bodies(p.Chunk)
		if slices.Contains(got, "secret before bob") || !slices.Contains(got, "after bob joined") {
			t.Fatalf("bob sees %v", got)
		}
		// Nor through /event or /context.
		first := messages(t, alice, room, "dir=b&limit=50")
		for _, e := range first.Chunk {
			if e.Content["body"] == "secret before bob" {
				r := bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(e.EventID), nil)
				if r.Status != http.StatusNotFound {
					t.Fatalf("/event leaked: %d %s", r.Status, r.Body)
				}
			}
		}
	})
}

// The history visibility of each message is that of the state it was
// sent in, when the setting changes back and forth between messages (the
// server caches a state's visibility as it becomes current and keeps it
// while messages leave the state as it is).
func TestHistoryVisibilityChangesBetweenMessages(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		setHV := func(v string) {
			alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.history_visibility", map[string]any{"history_visibility": v}, nil)
		}
		alice.SendText(room, "shared 1")
		alice.SendText(room, "shared 2")
		setHV("joined")
		alice.SendText(room, "joined 1")
		alice.SendText(room, "joined 2")
		setHV("shared")
		alice.SendText(room, "shared 3")
		bob.Join(room)
		alice.SendText(room, "after bob joined")
		got := bodies(messages(t, bob, room, "dir=b&limit=50").Chunk)
		for _, want := range []string{"shared 1", "shared 2", "shared 3", "after bob joined"} {
			if !slices.Contains(got, want) {
				t.Errorf("bob does not see %q: %v", want, got)
			}
		}
		for _, hidden := range []string{"joined 1", "joined 2"} {
			if slices.Contains(got, hidden) {
				t.Errorf("bob sees %q, sent while history was for joined members only: %v", hidden, got)
			}
		}
	})
}

func TestAllRoomVersions(t *testing.T) {
	s := ts.New(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	for _, v := range roomversion.All() {
		room := alice.CreateRoom(map[string]any{"room_version": v.ID, "preset": "public_chat", "name": "v" + v.ID})
		bob.Join(room)
		bob.SendText(room, "hi in v"+v.ID)
		id := alice.SendText(room, "to redact")
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(id)+"/r1", map[string]string{"reason": "oops"}, nil)
		p := messages(t, bob, room, "dir=b&limit=10")
		got := bodies(p.Chunk)
		if !slices.Contains(got, "hi in v"+v.ID) {
			t.Errorf("v%s: messages %v", v.ID, got)
		}
		for _, e := range p.Chunk {
			if e.EventID == id && (len(e.Content) != 0 || e.Unsigned["redacted_because"] == nil) {
				t.Errorf("v%s: redacted event still has content %v / unsigned %v", v.ID, e.Content, e.Unsigned)
			}
		}
		var create map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.create", nil, &create)
		if create["room_version"] != v.ID {
			t.Errorf("v%s: create %v", v.ID, create)
		}
	}
	if r := alice.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{"room_version": "99"}); r.ErrCode() != "M_UNSUPPORTED_ROOM_VERSION" {
		t.Fatalf("unknown version: %d %s", r.Status, r.Body)
	}
}

func TestSyncLongPollAndEphemeral(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		first := doSync(t, bob, "timeout=0")
		if _, ok := first.Rooms.Join[room]; !ok {
			t.Fatal("initial sync lacks the room")
		}
		done := make(chan syncResp)
		start := time.Now()
		go func() { done <- doSync(t, bob, "timeout=10000&since="+first.NextBatch) }()
		time.Sleep(200 * time.Millisecond)
		alice.SendText(room, "wake up")
		var next syncResp
		select {
		case next = <-done:
		case <-time.After(8 * time.Second):
			t.Fatal("long poll did not wake")
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("long poll woke late")
		}
		if got := bodies(next.Rooms.Join[room].Timeline.Events); !slices.Equal(got, []string{"wake up"}) {
			t.Fatalf("incremental timeline %v", got)
		}
		// An idle incremental sync with timeout returns empty after the timeout.
		idle := doSync(t, bob, "timeout=300&since="+next.NextBatch)
		if len(idle.Rooms.Join) != 0 {
			t.Fatalf("idle sync returned rooms: %+v", idle.Rooms.Join)
		}
		// Typing and receipts reach the other member.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/typing/"+esc(alice.UserID), map[string]any{"typing": true, "timeout": 10000}, nil)
		ev := next.Rooms.Join[room].Timeline.Events[0].EventID
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(ev), map[string]any{}, nil)
		eph := doSync(t, bob, "timeout=1000&since="+next.NextBatch)
		var sawTyping, sawReceipt bool
		for _, e := range eph.Rooms.Join[room].Ephemeral.Events {
			if e.Type == "m.typing" && fmt.Sprint(e.Content["user_ids"]) == "["+alice.UserID+"]" {
				sawTyping = true
			}
			if e.Type == "m.receipt" && e.Content[ev] != nil {
				sawReceipt = true
			}
		}
		if !sawTyping || !sawReceipt {
			t.Fatalf("ephemeral: typing %v receipt %v: %+v", sawTyping, sawReceipt, eph.Rooms.Join[room].Ephemeral)
		}
	})
}

func TestProfilePropagates(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		alice.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/displayname", map[string]string{"displayname": "Alice L."}, nil)
		var member map[string]any
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.member/"+esc(alice.UserID), nil, &member)
		if member["displayname"] != "Alice L." || member["membership"] != "join" {
			t.Fatalf("member event %v", member)
		}
	})
}

func TestBadInput(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	anon := s.Anonymous(t)
	bad := &ts.Client{URL: s.URL, Token: "nope"}
	_ = bad
	huge := `{"body":"` + strings.Repeat("x", 70000) + `"}`
	cases := []struct {
		name   string
		c      *ts.Client
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{"malformed json", alice, "POST", "/_matrix/client/v3/createRoom", "{not json", 400, "M_NOT_JSON"},
		{"invalid utf-8", alice, "POST", "/_matrix/client/v3/createRoom", []byte("{\"name\":\"\xff\"}"), 400, "M_NOT_JSON"},
		{"wrong type", alice, "POST", "/_matrix/client/v3/createRoom", `{"name": 5}`, 400, "M_BAD_JSON"},
		{"array body", alice, "POST", "/_matrix/client/v3/createRoom", `[1]`, 400, "M_BAD_JSON"},
		{"unknown endpoint", alice, "GET", "/_matrix/client/v3/nope", nil, 404, "M_UNRECOGNIZED"},
		{"wrong method", alice, "DELETE", "/_matrix/client/v3/createRoom", nil, 405, "M_UNRECOGNIZED"},
		{"missing token", anon, "GET", "/_matrix/client/v3/joined_rooms", nil, 401, "M_MISSING_TOKEN"},
		{"event too large", alice, "PUT", "/_matrix/client/v3/rooms/" + esc(room) + "/send/m.room.message/big", huge, 413, "M_TOO_LARGE"},
		{"body over limit", alice, "POST", "/_matrix/client/v3/createRoom", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "M_TOO_LARGE"},
		{"unknown room", alice, "PUT", "/_matrix/client/v3/rooms/" + esc("!nope:localhost") + "/send/m.room.message/u1", `{}`, 404, "M_NOT_FOUND"},
		{"bad since token", alice, "GET", "/_matrix/client/v3/sync?since=garbage", nil, 400, "M_INVALID_PARAM"},
		{"bad dir", alice, "GET", "/_matrix/client/v3/rooms/" + esc(room) + "/messages?dir=x", nil, 400, "M_INVALID_PARAM"},
		{"bad limit", alice, "GET", "/_matrix/client/v3/rooms/" + esc(room) + "/messages?dir=b&limit=abc", nil, 400, "M_INVALID_PARAM"},
		{"bad room id", alice, "POST", "/_matrix/client/v3/join/" + esc("nonsense"), `{}`, 400, "M_INVALID_PARAM"},
		{"typing for another", alice, "PUT", "/_matrix/client/v3/rooms/" + esc(room) + "/typing/" + esc("@x:localhost"), `{"typing":true}`, 403, "M_FORBIDDEN"},
	}
	for _, c := range cases {
		r := c.c.Do(c.method, c.path, c.body)
		if r.Status != c.status || r.ErrCode() != c.code {
			t.Errorf("%s: got %d %s, want %d %s", c.name, r.Status, r.Body[:min(len(r.Body), 200)], c.status, c.code)
		}
	}
	// A bad token is M_UNKNOWN_TOKEN.
	other := s.Anonymous(t)
	other.Token = "lxc_definitely_not_valid"
	if r := other.Do("GET", "/_matrix/client/v3/joined_rooms", nil); r.Status != 401 || r.ErrCode() != "M_UNKNOWN_TOKEN" {
		t.Errorf("bad token: %d %s", r.Status, r.Body)
	}
}
