package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"luxchat/internal/filter"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	lxsync "luxchat/internal/sync"
	ts "luxchat/internal/testserver"
)

// coldRooms is how many rooms the cold-sync tests put their user in: more
// than the store's batches of rooms on SQLite would be costly in a test,
// and enough that a statement per room shows.
const coldRooms = 40

// TestColdInitialSyncAnswersAsWarm: the first initial sync after a
// restart, with every cache empty, answers exactly what the next one
// (answered from the caches it filled) does — the same rooms, timelines,
// state, summaries and unread counts — and costs a few statements for all
// rooms, not some per room. The rooms are of every shape an initial sync
// treats apart: direct chats, named groups, a room with more events than
// the timeline shows, a state change and a redaction in a timeline, a
// room whose history from before the user's join is hidden, one with
// unread messages and a mention, one with a room tag.
func TestColdInitialSyncAnswersAsWarm(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		bob := s.Register(t, "bob")
		others := []*ts.Client{s.Register(t, "alice"), s.Register(t, "carol"), s.Register(t, "dan")}
		var rooms []string
		for i := range coldRooms {
			owner := others[i%len(others)]
			var room string
			switch i % 4 {
			case 0: // a direct chat, encrypted
				room = owner.CreateRoom(map[string]any{"preset": "trusted_private_chat", "is_direct": true, "invite": []string{bob.UserID},
					"initial_state": []map[string]any{{"type": "m.room.encryption", "state_key": "", "content": map[string]string{"algorithm": "m.megolm.v1.aes-sha2"}}}})
			case 1: // a named group
				room = owner.CreateRoom(map[string]any{"preset": "private_chat", "name": fmt.Sprint("Group ", i), "invite": []string{bob.UserID}})
			case 2: // history hidden from before the join
				room = owner.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
					{"type": "m.room.history_visibility", "state_key": "", "content": map[string]string{"history_visibility": "joined"}}}})
				owner.SendText(room, "before bob")
			default: // public, with a topic
				room = owner.CreateRoom(map[string]any{"preset": "public_chat", "topic": "a topic"})
			}
			bob.Join(room)
			for _, o := range others {
				if o != owner && i%4 >= 2 && i%3 == 0 { // public rooms: anyone may join
					o.Join(room)
				}
			}
			rooms = append(rooms, room)
		}
		// More events than the timeline shows, a name change with its
		// previous content, a redaction, a mention, a tag.
		owner := func(i int) *ts.Client { return others[i%len(others)] }
		for k := range 14 {
			owner(3).SendText(rooms[3], fmt.Sprint("message ", k))
		}
		owner(1).MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(rooms[1])+"/state/m.room.name/", map[string]any{"name": "Renamed"}, nil)
		gone := owner(5).SendText(rooms[5], "to be redacted")
		owner(5).MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(rooms[5])+"/redact/"+esc(gone)+"/r1", map[string]any{}, nil)
		owner(6).SendText(rooms[6], "hello bob")
		owner(6).MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(rooms[6])+"/send/m.room.message/m1", map[string]any{
			"msgtype": "m.text", "body": "bob: look", "m.mentions": map[string]any{"user_ids": []string{bob.UserID}}}, nil)
		bob.SendText(rooms[7], "my own")
		bob.MustDo("PUT", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/rooms/"+esc(rooms[2])+"/tags/u.work", map[string]any{"order": 0.5}, nil)

		lazy := `{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":5}}}`
		for _, query := range []string{"", `{"room":{"timeline":{"limit":5}}}`, lazy} {
			s = s.Restart(t)
			f := &filter.Filter{}
			if query != "" {
				var err error
				if f, err = filter.Parse([]byte(query)); err != nil {
					t.Fatal(err)
				}
			}
			req := lxsync.Request{UserID: bob.UserID, DeviceID: bob.DeviceID, Filter: f}
			ctx, n := store.CountStatements(context.Background())
			cold, err := s.Sync.Sync(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			statements := n.Load()
			if query == lazy {
				// A lazy-loading sync reads the state of a room not in
				// the rooms cache from the store; the warm one below
				// answers from the loaded rooms.
				for _, id := range rooms {
					if s.Rooms.StateLoaded(id) {
						t.Fatalf("the lazy-loading cold sync loaded room %s", id)
					}
					r, err := s.Rooms.LockRoom(context.Background(), id)
					if err != nil {
						t.Fatal(err)
					}
					r.Unlock()
				}
			}
			warm, err := s.Sync.Sync(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			c, w := comparable(t, cold.JSON()), comparable(t, warm.JSON())
			if got := len(c["rooms"].(map[string]any)["join"].(map[string]any)); got != coldRooms {
				t.Fatalf("filter %q: %d joined rooms in the cold sync, want %d", query, got, coldRooms)
			}
			if !reflect.DeepEqual(c, w) {
				a, _ := json.MarshalIndent(c, "", " ")
				b, _ := json.MarshalIndent(w, "", " ")
				if dir := os.Getenv("LUXCHAT_TEST_DIFF_DIR"); dir != "" {
					_ = os.WriteFile(dir+"/cold.json", a, 0o644)
					_ = os.WriteFile(dir+"/warm.json", b, 0o644)
				}
				t.Fatalf("filter %q: the cold initial sync differs from the warm one:\ncold: %s\nwarm: %s", query, a, b)
			}
			// A few statements for the user and a few per part of the
			// answer, for all rooms at once (about 24): a statement per
			// room would make more than there are rooms.
			t.Logf("filter %q: cold initial sync of %d rooms: %d statements", query, coldRooms, statements)
			if statements >= coldRooms {
				t.Fatalf("filter %q: the cold initial sync of %d rooms made %d statements", query, coldRooms, statements)
			}
		}
	})
}

// comparable decodes a sync answer for comparison: ages and presence's
// last activity (which move) left out, state lists in event id order (their order is not meaningful).
func comparable(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(x any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			if u, ok := x["unsigned"].(map[string]any); ok {
				delete(u, "age")
			}
			delete(x, "last_active_ago") // presence
			if st, ok := x["state"].(map[string]any); ok {
				if evs, ok := st["events"].([]any); ok {
					slices.SortFunc(evs, func(a, b any) int {
						return strings.Compare(fmt.Sprint(a.(map[string]any)["event_id"]), fmt.Sprint(b.(map[string]any)["event_id"]))
					})
				}
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(v)
	return v
}

// TestColdBigRoomReads: a room too big for its view to keep its state
// (over 256 entries), read by a member after a restart — a lazy-loading
// sync, GET /members and GET /state — answers from the store without
// loading the room into the rooms cache, and exactly what the same reads
// answer once the room is loaded.
func TestColdBigRoomReads(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "All staff"})
		members := seedAccounts(t, s, "m", 300)
		joinAll(t, s, room, members)
		ctx := context.Background()
		for i := range 4 { // a timeline of a few senders
			if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: members[i*70], Content: json.RawMessage(`{"msgtype":"m.text","body":"hello"}`)}, nil); err != nil {
				t.Fatal(err)
			}
		}
		s = s.Restart(t)
		reader := s.Anonymous(t)
		reader.UserID, reader.DeviceID, reader.Token = alice.UserID, alice.DeviceID, alice.Token
		filter := url.QueryEscape(fmt.Sprintf(`{"room":{"rooms":[%q],"state":{"lazy_load_members":true},"timeline":{"limit":10}}}`, room))
		reads := func() (syncBody, membersBody, stateBody map[string]any) {
			get := func(path string) map[string]any {
				r := reader.Do("GET", path, nil)
				if r.Status != 200 {
					t.Fatalf("%s: %d %s", path, r.Status, r.Body)
				}
				// /state answers a list: wrapped, for comparable (which
				// orders state lists); /members's chunk is ordered here.
				body := r.Body
				if body[0] == '[' {
					body = []byte(`{"state":{"events":` + string(body) + `}}`)
				}
				v := comparable(t, body)
				if chunk, ok := v["chunk"].([]any); ok {
					slices.SortFunc(chunk, func(a, b any) int {
						return strings.Compare(fmt.Sprint(a.(map[string]any)["event_id"]), fmt.Sprint(b.(map[string]any)["event_id"]))
					})
				}
				return v
			}
			syncBody = get("/_matrix/client/v3/sync?timeout=0&filter=" + filter)
			delete(syncBody, "next_batch")
			delete(syncBody, "presence")
			return syncBody, get("/_matrix/client/v3/rooms/" + esc(room) + "/members"), get("/_matrix/client/v3/rooms/" + esc(room) + "/state")
		}
		coldSync, coldMembers, coldState := reads()
		if s.Rooms.StateLoaded(room) {
			t.Fatal("reading the room loaded it into the rooms cache")
		}
		// The lazy state: the room's own state, the reader's and the
		// senders' member events, no one else's.
		state := coldSync["rooms"].(map[string]any)["join"].(map[string]any)[room].(map[string]any)["state"].(map[string]any)["events"].([]any)
		shown := map[string]bool{}
		for _, e := range state {
			e := e.(map[string]any)
			if e["type"] == "m.room.member" {
				shown[e["state_key"].(string)] = true
			}
		}
		want := map[string]bool{alice.UserID: true}
		for i := range 4 {
			want[members[i*70]] = true
		}
		if !reflect.DeepEqual(shown, want) {
			t.Fatalf("lazy-loaded members %v, want %v", shown, want)
		}
		if n := len(coldMembers["chunk"].([]any)); n != 301 {
			t.Fatalf("/members: %d events, want 301", n)
		}
		r, err := s.Rooms.LockRoom(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		r.Unlock()
		warmSync, warmMembers, warmState := reads()
		for _, c := range []struct {
			name       string
			cold, warm map[string]any
		}{{"lazy sync", coldSync, warmSync}, {"/members", coldMembers, warmMembers}, {"/state", coldState, warmState}} {
			if !reflect.DeepEqual(c.cold, c.warm) {
				a, _ := json.Marshal(c.cold)
				b, _ := json.Marshal(c.warm)
				t.Fatalf("%s of the room not loaded differs from the loaded room's:\ncold: %s\nwarm: %s", c.name, a, b)
			}
		}
	})
}
