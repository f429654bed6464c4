package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"testing"
	"time"

	ts "luxchat/internal/testserver"
)

const ssPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

type ssRoom struct {
	Name              *string          `json:"name"`
	Avatar            json.RawMessage  `json:"avatar"`
	Heroes            []map[string]any `json:"heroes"`
	Initial           bool             `json:"initial"`
	ExpandedTimeline  bool             `json:"expanded_timeline"`
	IsDM              *bool            `json:"is_dm"`
	Membership        string           `json:"membership"`
	Lists             []string         `json:"lists"`
	InviteState       []event          `json:"invite_state"`
	RequiredState     []event          `json:"required_state"`
	Timeline          []event          `json:"timeline"`
	PrevBatch         string           `json:"prev_batch"`
	Limited           bool             `json:"limited"`
	NumLive           *int             `json:"num_live"`
	BumpStamp         *int64           `json:"bump_stamp"`
	JoinedCount       *int             `json:"joined_count"`
	InvitedCount      *int             `json:"invited_count"`
	NotificationCount *int64           `json:"notification_count"`
	HighlightCount    *int64           `json:"highlight_count"`
}

type ssResp struct {
	Pos   string `json:"pos"`
	TxnID string `json:"txn_id"`
	Lists map[string]struct {
		Count int `json:"count"`
	} `json:"lists"`
	Rooms      map[string]ssRoom `json:"rooms"`
	Extensions struct {
		ToDevice *struct {
			NextBatch string  `json:"next_batch"`
			Events    []event `json:"events"`
		} `json:"to_device"`
		E2EE *struct {
			DeviceLists *struct {
				Changed []string `json:"changed"`
				Left    []string `json:"left"`
			} `json:"device_lists"`
			OTKCounts map[string]int `json:"device_one_time_keys_count"`
			Fallback  []string       `json:"device_unused_fallback_key_types"`
		} `json:"e2ee"`
		AccountData *struct {
			Global []event            `json:"global"`
			Rooms  map[string][]event `json:"rooms"`
		} `json:"account_data"`
		Receipts *struct {
			Rooms map[string]event `json:"rooms"`
		} `json:"receipts"`
		Typing *struct {
			Rooms map[string]event `json:"rooms"`
		} `json:"typing"`
	} `json:"extensions"`
}

// slide sends a sliding sync request (pos and timeout in the query, as
// current clients do).
func slide(t *testing.T, c *ts.Client, pos string, timeoutMS int, body any) ssResp {
	t.Helper()
	q := "?timeout=" + fmt.Sprint(timeoutMS)
	if pos != "" {
		q += "&pos=" + pos
	}
	var r ssResp
	c.MustDo("POST", ssPath+q, body, &r)
	return r
}

func allList(rng [2]int, limit int, state any) map[string]any {
	return map[string]any{"ranges": [][2]int{rng}, "timeline_limit": limit, "required_state": state}
}

func ssBodies(r ssRoom) []string { return bodies(r.Timeline) }

func stateTypes(r ssRoom) []string {
	var out []string
	for _, e := range r.RequiredState {
		k := ""
		if e.StateKey != nil {
			k = *e.StateKey
		}
		out = append(out, e.Type+"|"+k)
	}
	sort.Strings(out)
	return out
}

// TestSlidingSyncLists holds the core of MSC4186: a window of the room
// list ordered by activity, room fields and timelines, only changes on
// the next pos, long polls woken by news, and M_UNKNOWN_POS.
func TestSlidingSyncLists(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		var roomIDs []string
		for i := range 5 {
			id := alice.CreateRoom(map[string]any{"name": fmt.Sprintf("room %d", i), "preset": "public_chat"})
			bob.Join(id)
			roomIDs = append(roomIDs, id)
		}
		// Activity order: room 2 then 0, newest first.
		bob.SendText(roomIDs[0], "zero")
		bob.SendText(roomIDs[2], "two-a")
		bob.SendText(roomIDs[2], "two-b")
		body := map[string]any{
			"conn_id": "main", "txn_id": "t1",
			"lists": map[string]any{"all": allList([2]int{0, 1}, 1, [][]string{{"m.room.create", ""}, {"m.room.member", "$LAZY"}})},
		}
		r := slide(t, alice, "", 0, body)
		if r.TxnID != "t1" || r.Pos == "" {
			t.Fatalf("txn_id/pos: %+v", r)
		}
		if r.Lists["all"].Count != 5 {
			t.Fatalf("count = %d, want 5", r.Lists["all"].Count)
		}
		if len(r.Rooms) != 2 || r.Rooms[roomIDs[2]].Name == nil || r.Rooms[roomIDs[0]].Name == nil {
			t.Fatalf("window [0,1] should be rooms 2 and 0: %v", ssKeys(r.Rooms))
		}
		r2 := r.Rooms[roomIDs[2]]
		if *r2.Name != "room 2" || !r2.Initial || r2.Membership != "join" || !slices.Equal(ssBodies(r2), []string{"two-b"}) || !r2.Limited || r2.PrevBatch == "" {
			t.Fatalf("room 2: %+v", r2)
		}
		if r2.JoinedCount == nil || *r2.JoinedCount != 2 || r2.BumpStamp == nil || r2.Lists[0] != "all" {
			t.Fatalf("room 2 counts/bump: %+v", r2)
		}
		// Lazy members: bob's member event (the timeline's sender) and the
		// create event; nothing else.
		if got := stateTypes(r2); !slices.Equal(got, []string{"m.room.create|", "m.room.member|" + bob.UserID}) {
			t.Fatalf("required_state = %v", got)
		}
		if *r.Rooms[roomIDs[2]].BumpStamp <= *r.Rooms[roomIDs[0]].BumpStamp {
			t.Fatal("bump_stamp should follow activity")
		}
		// Nothing new: a poll with timeout 0 answers with no rooms.
		r = slide(t, alice, r.Pos, 0, body)
		if len(r.Rooms) != 0 {
			t.Fatalf("unchanged rooms were sent again: %v", ssKeys(r.Rooms))
		}
		// A long poll wakes on news in a room of the window and sends only
		// the new event, with num_live; the lazy member is not resent.
		done := make(chan ssResp, 1)
		go func() { done <- slide(t, alice, r.Pos, 10000, body) }()
		// It waits parked, as /sync's long polls do: no goroutine.
		waitFor(t, func() bool { return s.Parked() == 1 }, func() string { return fmt.Sprintf("%d polls parked", s.Parked()) })
		bob.SendText(roomIDs[0], "zero-b")
		select {
		case r = <-done:
		case <-time.After(8 * time.Second):
			t.Fatal("long poll not woken")
		}
		r0 := r.Rooms[roomIDs[0]]
		if len(r.Rooms) != 1 || r0.Initial || !slices.Equal(ssBodies(r0), []string{"zero-b"}) || r0.Limited || r0.NumLive == nil || *r0.NumLive != 1 {
			t.Fatalf("incremental: %+v", r.Rooms)
		}
		if len(r0.RequiredState) != 0 || r0.Name != nil {
			t.Fatalf("unchanged state resent: %+v", r0)
		}
		// A long poll with nothing new answers at its timeout, empty.
		start := time.Now()
		r = slide(t, alice, r.Pos, 300, body)
		if len(r.Rooms) != 0 || time.Since(start) < 250*time.Millisecond {
			t.Fatalf("idle poll: %v after %v", ssKeys(r.Rooms), time.Since(start))
		}
		// Growing the window sends only the rooms not sent yet.
		grown := map[string]any{"conn_id": "main", "lists": map[string]any{"all": allList([2]int{0, 4}, 1, [][]string{{"m.room.create", ""}, {"m.room.member", "$LAZY"}})}}
		r = slide(t, alice, r.Pos, 0, grown)
		if len(r.Rooms) != 3 {
			t.Fatalf("grown window sent %d rooms, want 3 new ones", len(r.Rooms))
		}
		for id, rm := range r.Rooms {
			if !rm.Initial || id == roomIDs[0] || id == roomIDs[2] {
				t.Fatalf("grown window: %s %+v", id, rm)
			}
		}
		// A retried pos is answered again (the client may not have got
		// the answer); an older one is unknown, so is a made-up one.
		again := slide(t, alice, r.Pos, 0, grown)
		next := slide(t, alice, again.Pos, 0, grown)
		_ = next
		for _, bad := range []string{r.Pos, "nonsense", "abc_1"} {
			res := alice.Do("POST", ssPath+"?pos="+bad, map[string]any{"conn_id": "main"})
			if res.Status != http.StatusBadRequest || res.ErrCode() != "M_UNKNOWN_POS" {
				t.Fatalf("pos %q: %d %s", bad, res.Status, res.Body)
			}
		}
		// Another conn_id is another connection: its pos is not main's.
		other := slide(t, alice, "", 0, map[string]any{"conn_id": "other"})
		if res := alice.Do("POST", ssPath+"?pos="+other.Pos, map[string]any{"conn_id": "main"}); res.ErrCode() != "M_UNKNOWN_POS" {
			t.Fatalf("pos of another connection: %d %s", res.Status, res.Body)
		}
	})
}

func ssKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestSlidingSyncFiltersAndMembership holds the list filters, room
// subscriptions, invites (stripped state), kicks, and the object form of
// required_state.
func TestSlidingSyncFiltersAndMembership(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		plain := alice.CreateRoom(map[string]any{"name": "plain", "preset": "public_chat"})
		enc := alice.CreateRoom(map[string]any{"name": "enc", "initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
		space := alice.CreateRoom(map[string]any{"name": "space", "preset": "public_chat", "creation_content": map[string]any{"type": "m.space"}})
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(space)+"/state/m.space.child/"+esc(plain), map[string]any{"via": []string{"localhost"}}, nil)
		dm := bob.CreateRoom(map[string]any{"is_direct": true, "invite": []string{alice.UserID}})
		alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/m.direct", map[string]any{bob.UserID: []string{dm}}, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/rooms/"+esc(enc)+"/tags/m.favourite", map[string]any{}, nil)
		all := [2]int{0, 20}
		lists := map[string]any{
			"invites":   map[string]any{"ranges": [][2]int{all}, "timeline_limit": 0, "filters": map[string]any{"is_invite": true}},
			"dms":       map[string]any{"ranges": [][2]int{all}, "timeline_limit": 0, "filters": map[string]any{"is_dm": true}},
			"encrypted": map[string]any{"range": all, "timeline_limit": 0, "filters": map[string]any{"is_encrypted": true}},
			"spaces":    map[string]any{"ranges": [][2]int{all}, "timeline_limit": 0, "filters": map[string]any{"room_types": []string{"m.space"}}},
			"rooms":     map[string]any{"ranges": [][2]int{all}, "timeline_limit": 0, "filters": map[string]any{"not_room_types": []string{"m.space"}, "is_invited": false}},
			"in_space":  map[string]any{"ranges": [][2]int{all}, "timeline_limit": 0, "filters": map[string]any{"spaces": []string{space}}},
			"fav":       map[string]any{"ranges": [][2]int{all}, "timeline_limit": 0, "filters": map[string]any{"tags": []string{"m.favourite"}}},
			"not_fav":   map[string]any{"ranges": [][2]int{all}, "timeline_limit": 0, "filters": map[string]any{"not_tags": []string{"m.favourite"}, "is_invite": false}},
		}
		r := slide(t, alice, "", 0, map[string]any{"lists": lists})
		want := map[string][]string{
			"invites": {dm}, "dms": {dm}, "encrypted": {enc, dm}, // private: encrypted by default "spaces": {space},
			"rooms": {plain, enc}, "in_space": {plain}, "fav": {enc}, "not_fav": {plain, space},
		}
		for name, ids := range want {
			var got []string
			for id, rm := range r.Rooms {
				if slices.Contains(rm.Lists, name) {
					got = append(got, id)
				}
			}
			sort.Strings(got)
			sort.Strings(ids)
			if !slices.Equal(got, ids) || r.Lists[name].Count != len(ids) {
				t.Errorf("list %s: %v (count %d), want %v", name, got, r.Lists[name].Count, ids)
			}
		}
		inv := r.Rooms[dm]
		if inv.Membership != "invite" || len(inv.InviteState) == 0 || inv.IsDM == nil || !*inv.IsDM {
			t.Fatalf("invite: %+v", inv)
		}
		// A subscription (object form of required_state: everything but
		// the create event) sends its room's state in full, once, and its
		// timeline longer (the list asked for none): not initial, the
		// client has the rest.
		sub := map[string]any{"room_subscriptions": map[string]any{
			plain:                   map[string]any{"timeline_limit": 5, "required_state": map[string]any{"include": []any{map[string]any{}}, "exclude": []any{map[string]any{"type": "m.room.create"}}}},
			"!nosuchroom:localhost": map[string]any{"timeline_limit": 5},
		}}
		r = slide(t, alice, r.Pos, 0, sub)
		p := r.Rooms[plain]
		if len(r.Rooms) != 1 || p.Initial || !p.ExpandedTimeline || len(p.Timeline) == 0 {
			t.Fatalf("subscription: %v %+v", ssKeys(r.Rooms), p)
		}
		types := stateTypes(p)
		if slices.Contains(types, "m.room.create|") || !slices.Contains(types, "m.room.name|") || !slices.Contains(types, "m.room.member|"+alice.UserID) {
			t.Fatalf("required_state object form: %v", types)
		}
		// Kept without being named again; gone after unsubscribing.
		alice.SendText(plain, "hello")
		r = slide(t, alice, r.Pos, 0, map[string]any{})
		if !slices.Equal(ssBodies(r.Rooms[plain]), []string{"hello"}) {
			t.Fatalf("sticky subscription: %+v", r.Rooms)
		}
		r = slide(t, alice, r.Pos, 0, map[string]any{"unsubscribe_rooms": []string{plain}})
		alice.SendText(plain, "unseen")
		r = slide(t, alice, r.Pos, 0, map[string]any{})
		if len(r.Rooms) != 0 {
			t.Fatalf("unsubscribed room sent: %v", ssKeys(r.Rooms))
		}
		// Joining the invite makes it a joined room sent in full; being
		// kicked shows the room once, with the kick, though Bob did not
		// leave himself.
		alice.Join(dm)
		one := map[string]any{"lists": map[string]any{"all": allList([2]int{0, 10}, 3, [][]string{{"*", "*"}})}}
		r = slide(t, alice, r.Pos, 0, one)
		if rm := r.Rooms[dm]; !rm.Initial || rm.Membership != "join" {
			t.Fatalf("joined invite: %+v", rm)
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(plain)+"/invite", map[string]any{"user_id": bob.UserID}, nil)
		bob.Join(plain)
		br := slide(t, bob, "", 0, one)
		if _, ok := br.Rooms[plain]; !ok {
			t.Fatalf("bob's rooms: %v", ssKeys(br.Rooms))
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(plain)+"/kick", map[string]any{"user_id": bob.UserID, "reason": "bye"}, nil)
		br = slide(t, bob, br.Pos, 0, one)
		k := br.Rooms[plain]
		if k.Membership != "leave" || len(k.Timeline) == 0 || k.Timeline[len(k.Timeline)-1].Type != "m.room.member" {
			t.Fatalf("kick: %+v", k)
		}
		// A new connection still lists the room Bob was kicked from; not a
		// room he left himself.
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(dm)+"/leave", map[string]any{}, nil)
		fresh := slide(t, bob, "", 0, one)
		if _, ok := fresh.Rooms[plain]; !ok {
			t.Fatalf("kicked room not listed: %v", ssKeys(fresh.Rooms))
		}
		if _, ok := fresh.Rooms[dm]; ok {
			t.Fatal("a room left by the user is listed on a new connection")
		}
	})
}

// TestSlidingSyncExtensions holds to_device (acknowledged messages are
// deleted), e2ee (key counts, device list changes), account data,
// receipts and typing.
func TestSlidingSyncExtensions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := newE2EEUser(t, s, "alice")
		bob := newE2EEUser(t, s, "bob")
		alice.upload(t, 3, true)
		bob.upload(t, 1, false)
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		ev := bob.SendText(room, "hi")
		exts := map[string]any{
			"to_device": map[string]any{"enabled": true}, "e2ee": map[string]any{"enabled": true},
			"account_data": map[string]any{"enabled": true}, "receipts": map[string]any{"enabled": true},
			"typing": map[string]any{"enabled": true},
		}
		body := map[string]any{"lists": map[string]any{"all": allList([2]int{0, 9}, 1, [][]string{})}, "extensions": exts}
		alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/m.test", map[string]any{"a": 1}, nil)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(ev), map[string]any{}, nil)
		bob.MustDo("PUT", "/_matrix/client/v3/sendToDevice/m.test/tx1", map[string]any{"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]int{"n": 1}}}}, nil)
		r := slide(t, alice.Client, "", 0, body)
		x := r.Extensions
		if x.ToDevice == nil || len(x.ToDevice.Events) != 1 || x.ToDevice.NextBatch == "" {
			t.Fatalf("to_device: %+v", x.ToDevice)
		}
		if x.E2EE == nil || x.E2EE.OTKCounts["signed_curve25519"] != 3 || !slices.Equal(x.E2EE.Fallback, []string{"signed_curve25519"}) {
			t.Fatalf("e2ee: %+v", x.E2EE)
		}
		if x.AccountData == nil || !slices.ContainsFunc(x.AccountData.Global, func(e event) bool { return e.Type == "m.test" }) {
			t.Fatalf("account_data: %+v", x.AccountData)
		}
		if x.Receipts == nil || x.Receipts.Rooms[room].Type != "m.receipt" {
			t.Fatalf("receipts: %+v", x.Receipts)
		}
		// Not acknowledged (no since): sent again. Acknowledged: deleted,
		// and the next message comes alone.
		r = slide(t, alice.Client, r.Pos, 0, map[string]any{"lists": body["lists"]})
		if len(r.Extensions.ToDevice.Events) != 1 {
			t.Fatalf("unacknowledged to-device message not resent: %+v", r.Extensions.ToDevice)
		}
		since := r.Extensions.ToDevice.NextBatch
		bob.MustDo("PUT", "/_matrix/client/v3/sendToDevice/m.test/tx2", map[string]any{"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]int{"n": 2}}}}, nil)
		r = slide(t, alice.Client, r.Pos, 0, map[string]any{"lists": body["lists"], "extensions": map[string]any{"to_device": map[string]any{"since": since}}})
		if td := r.Extensions.ToDevice; len(td.Events) != 1 || td.Events[0].Content["n"] != float64(2) {
			t.Fatalf("after acknowledgement: %+v", td)
		}
		// A long poll wakes for typing, a receipt, account data, a device
		// list change and a to-device message, each alone.
		pos := r.Pos
		since = r.Extensions.ToDevice.NextBatch
		step := func(what string, act func(), check func(ssResp) bool) {
			t.Helper()
			done := make(chan ssResp, 1)
			go func() {
				done <- slide(t, alice.Client, pos, 10000, map[string]any{"lists": body["lists"], "extensions": map[string]any{"to_device": map[string]any{"since": since}}})
			}()
			time.Sleep(50 * time.Millisecond)
			act()
			select {
			case r := <-done:
				if !check(r) {
					b, _ := json.Marshal(r)
					t.Fatalf("%s: %s", what, b)
				}
				pos = r.Pos
				if r.Extensions.ToDevice != nil {
					since = r.Extensions.ToDevice.NextBatch
				}
			case <-time.After(8 * time.Second):
				t.Fatalf("%s: long poll not woken", what)
			}
		}
		step("typing", func() {
			bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/typing/"+esc(bob.UserID), map[string]any{"typing": true, "timeout": 30000}, nil)
		}, func(r ssResp) bool {
			ids, _ := r.Extensions.Typing.Rooms[room].Content["user_ids"].([]any)
			return len(ids) == 1 && ids[0] == bob.UserID
		})
		step("receipt", func() {
			bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(ev), map[string]any{}, nil)
		}, func(r ssResp) bool { return r.Extensions.Receipts.Rooms[room].Type == "m.receipt" })
		step("room account data", func() {
			alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/rooms/"+esc(room)+"/account_data/m.x", map[string]any{"b": 2}, nil)
		}, func(r ssResp) bool { return len(r.Extensions.AccountData.Rooms[room]) == 1 })
		step("device list", func() {
			bob2 := bob.login(t)
			bob2.upload(t, 1, false)
		}, func(r ssResp) bool {
			return r.Extensions.E2EE.DeviceLists != nil && slices.Contains(r.Extensions.E2EE.DeviceLists.Changed, bob.UserID)
		})
		step("to-device", func() {
			bob.MustDo("PUT", "/_matrix/client/v3/sendToDevice/m.test/tx3", map[string]any{"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]int{"n": 3}}}}, nil)
		}, func(r ssResp) bool {
			return len(r.Extensions.ToDevice.Events) == 1 && r.Extensions.ToDevice.Events[0].Content["n"] == float64(3)
		})
		// A claimed one-time key shows in the counts.
		bob.MustDo("POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: "signed_curve25519"}}}, nil)
		r = slide(t, alice.Client, pos, 0, map[string]any{"lists": body["lists"]})
		if r.Extensions.E2EE.OTKCounts["signed_curve25519"] != 2 {
			t.Fatalf("key count after a claim: %+v", r.Extensions.E2EE)
		}
	})
}

// TestSlidingSyncBadInput: bad requests get Matrix errors, never a 500.
func TestSlidingSyncBadInput(t *testing.T) {
	s := ts.New(t)
	c := s.Register(t, "alice")
	for body, code := range map[string]string{
		`[]`: "M_BAD_JSON", `{"lists": 5}`: "M_BAD_JSON", `{"lists": {"a": {"ranges": [[3, 1]]}}}`: "M_INVALID_PARAM",
		`{"lists": {"a": {"ranges": [[0]]}}}`: "M_INVALID_PARAM", `{"lists": {"a": {"required_state": [["a"]]}}}`: "M_INVALID_PARAM",
		`{"lists": {"a": {"timeline_limit": -1}}}`: "M_INVALID_PARAM", `{"room_subscriptions": {"nope": {}}}`: "M_INVALID_PARAM",
		`{"set_presence": "away"}`: "M_INVALID_PARAM", `{"extensions": {"to_device": {"since": "x"}}}`: "M_INVALID_PARAM",
		`{"extensions": {"e2ee": 1}}`: "M_BAD_JSON", `{"lists": {"a": {"required_state": {"include": 3}}}}`: "M_INVALID_PARAM",
	} {
		r := c.Do("POST", ssPath, body)
		if r.Status != http.StatusBadRequest || r.ErrCode() != code {
			t.Errorf("%s: %d %s, want %s", body, r.Status, r.Body, code)
		}
	}
	if r := c.Do("POST", ssPath+"?timeout=abc&pos=x", `{}`); r.Status != http.StatusBadRequest {
		t.Errorf("bad timeout: %d %s", r.Status, r.Body)
	}
}

// TestSlidingSyncConnectionsBounded: a restart forgets connections (their
// pos answers M_UNKNOWN_POS and a new connection starts cleanly), and a
// device keeps at most ten, the least recently used going first.
func TestSlidingSyncConnectionsBounded(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{"name": "r"})
	body := func(conn string) map[string]any {
		return map[string]any{"conn_id": conn, "lists": map[string]any{"a": allList([2]int{0, 9}, 1, nil)}}
	}
	var pos []string
	for i := range 11 {
		pos = append(pos, slide(t, alice, "", 0, body(fmt.Sprint("c", i))).Pos)
	}
	if res := alice.Do("POST", ssPath+"?pos="+pos[0], body("c0")); res.ErrCode() != "M_UNKNOWN_POS" {
		t.Fatalf("the 11th connection should have dropped the first: %d %s", res.Status, res.Body)
	}
	r := slide(t, alice, pos[10], 0, body("c10"))
	if len(r.Rooms) != 0 {
		t.Fatalf("c10 resent: %v", ssKeys(r.Rooms))
	}
	s.Restart(t) // the client keeps its address
	if res := alice.Do("POST", ssPath+"?pos="+r.Pos, body("c10")); res.Status != http.StatusBadRequest || res.ErrCode() != "M_UNKNOWN_POS" {
		t.Fatalf("pos from before a restart: %d %s", res.Status, res.Body)
	}
	r = slide(t, alice, "", 0, body("c10"))
	if rm := r.Rooms[room]; !rm.Initial || rm.Name == nil || *rm.Name != "r" {
		t.Fatalf("new connection after a restart: %+v", r.Rooms)
	}
}

// TestSlidingSyncRoomFields holds what a room's entry says as it changes:
// heroes of an unnamed room, a name set later (and removed: null), unread
// counts moving with a receipt, is_dm moving with m.direct, a larger
// timeline_limit sending the newest events again, lazy members sent once,
// and a room the user leaves shown once with the leave.
func TestSlidingSyncRoomFields(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		bob.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(bob.UserID)+"/displayname", map[string]any{"displayname": "Bobby"}, nil)
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		for i := range 4 {
			bob.SendText(room, fmt.Sprint("m", i))
		}
		lazy := [][]string{{"m.room.member", "$LAZY"}, {"m.room.member", "$ME"}}
		body := map[string]any{"lists": map[string]any{"a": allList([2]int{0, 0}, 1, lazy)}}
		r := slide(t, alice, "", 0, body)
		rm := r.Rooms[room]
		if rm.Name != nil || len(rm.Heroes) != 1 || rm.Heroes[0]["user_id"] != bob.UserID || rm.Heroes[0]["displayname"] != "Bobby" {
			t.Fatalf("heroes of an unnamed room: %+v", rm)
		}
		if got := stateTypes(rm); !slices.Equal(got, []string{"m.room.member|" + alice.UserID, "m.room.member|" + bob.UserID}) {
			t.Fatalf("lazy and $ME members: %v", got)
		}
		if rm.NotificationCount == nil || *rm.NotificationCount != 4 {
			t.Fatalf("notification_count: %+v", rm.NotificationCount)
		}
		// Bob again: his member event was sent, it is not sent again.
		bob.SendText(room, "m4")
		r = slide(t, alice, r.Pos, 0, body)
		rm = r.Rooms[room]
		if len(rm.RequiredState) != 0 || !slices.Equal(ssBodies(rm), []string{"m4"}) || *rm.NotificationCount != 5 {
			t.Fatalf("lazy member resent or counts wrong: %+v", rm)
		}
		// A read receipt moves the counts: the room comes with them alone.
		last := rm.Timeline[0].EventID
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(last), map[string]any{}, nil)
		r = slide(t, alice, r.Pos, 0, body)
		rm = r.Rooms[room]
		if rm.NotificationCount == nil || *rm.NotificationCount != 0 || len(rm.Timeline) != 0 {
			t.Fatalf("after a receipt: %+v", rm)
		}
		// A name set, then removed.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.name/", map[string]any{"name": "Named"}, nil)
		r = slide(t, alice, r.Pos, 0, body)
		if rm = r.Rooms[room]; rm.Name == nil || *rm.Name != "Named" || rm.Initial {
			t.Fatalf("name set: %+v", rm)
		}
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.name/", map[string]any{}, nil)
		var raw struct {
			Rooms map[string]map[string]json.RawMessage `json:"rooms"`
			Pos   string                                `json:"pos"`
		}
		alice.MustDo("POST", ssPath+"?pos="+r.Pos, body, &raw)
		if string(raw.Rooms[room]["name"]) != "null" {
			t.Fatalf("removed name: %s", raw.Rooms[room]["name"])
		}
		r.Pos = raw.Pos
		// m.direct names the room: is_dm comes alone.
		alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/m.direct", map[string]any{bob.UserID: []string{room}}, nil)
		r = slide(t, alice, r.Pos, 0, body)
		if rm = r.Rooms[room]; rm.IsDM == nil || !*rm.IsDM {
			t.Fatalf("is_dm: %+v", rm)
		}
		// A larger timeline_limit sends the newest events again.
		// The client holds m3, m4 and the two name events: 6 is more.
		bigger := map[string]any{"lists": map[string]any{"a": allList([2]int{0, 0}, 6, lazy)}}
		r = slide(t, alice, r.Pos, 0, bigger)
		if rm = r.Rooms[room]; rm.Initial || !rm.ExpandedTimeline || len(rm.Timeline) != 6 || !rm.Limited {
			t.Fatalf("expanded timeline: %+v", rm)
		}
		// prev_batch pages back from the timeline with /messages.
		page := messages(t, alice, room, "dir=b&limit=1&from="+rm.PrevBatch)
		if len(page.Chunk) != 1 || page.Chunk[0].EventID == rm.Timeline[0].EventID {
			t.Fatalf("prev_batch page: %+v", page.Chunk)
		}
		// Leaving (with a message unread): shown once, membership leave;
		// then quiet.
		bob.SendText(room, "unread")
		r = slide(t, alice, r.Pos, 0, bigger)
		if rm = r.Rooms[room]; rm.NotificationCount == nil || *rm.NotificationCount != 1 {
			t.Fatalf("unread before leaving: %+v", rm)
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		bigger = map[string]any{"lists": map[string]any{"a": allList([2]int{0, 9}, 3, lazy)}}
		r = slide(t, alice, r.Pos, 0, bigger)
		if rm = r.Rooms[room]; rm.Membership != "leave" || len(rm.Timeline) == 0 || rm.Timeline[len(rm.Timeline)-1].Type != "m.room.member" {
			t.Fatalf("leave: %+v", rm)
		}
	})
}

// TestSlidingSyncLeftRoomStaysQuiet: a room the user left (with a message
// unread) is shown once with the leave, then never again while unread
// counts move in the user's other rooms (a message, then a receipt) and
// events go on in the room itself.
func TestSlidingSyncLeftRoomStaysQuiet(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		left := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		busy := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(left)
		bob.Join(busy)
		bob.SendText(left, "unread")
		body := map[string]any{"lists": map[string]any{"a": allList([2]int{0, 9}, 1, [][]string{})}}
		r := slide(t, alice, "", 0, body)
		if rm := r.Rooms[left]; rm.NotificationCount == nil || *rm.NotificationCount != 1 {
			t.Fatalf("unread before leaving: %+v", rm)
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(left)+"/leave", map[string]any{}, nil)
		r = slide(t, alice, r.Pos, 0, body)
		if rm := r.Rooms[left]; rm.Membership != "leave" {
			t.Fatalf("leave: %+v", r.Rooms)
		}
		// poll answers with the raw room keys, so that absence is exact.
		poll := func(timeoutMS int) map[string]map[string]json.RawMessage {
			t.Helper()
			var raw struct {
				Pos   string                                `json:"pos"`
				Rooms map[string]map[string]json.RawMessage `json:"rooms"`
			}
			alice.MustDo("POST", ssPath+"?timeout="+fmt.Sprint(timeoutMS)+"&pos="+r.Pos, body, &raw)
			r.Pos = raw.Pos
			if _, ok := raw.Rooms[left]; ok {
				t.Fatalf("the left room sent again: %s", raw.Rooms[left])
			}
			return raw.Rooms
		}
		// A message in the other room moves its count: that room comes,
		// with its count, and only it.
		ev := bob.SendText(busy, "count me")
		if got := poll(0); len(got) != 1 || string(got[busy]["notification_count"]) != "1" {
			t.Fatalf("after a message elsewhere: %v", got)
		}
		// A receipt there moves it back to 0.
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(busy)+"/receipt/m.read/"+esc(ev), map[string]any{}, nil)
		if got := poll(0); len(got) != 1 || string(got[busy]["notification_count"]) != "0" {
			t.Fatalf("after a receipt elsewhere: %v", got)
		}
		// Events in the left room itself: a long poll is not answered
		// with it (it answers at its timeout, with no rooms).
		bob.SendText(left, "after")
		if got := poll(300); len(got) != 0 {
			t.Fatalf("events in the left room: %v", got)
		}
	})
}

// TestSlidingSyncParkedAtShutdown: a parked sliding sync poll answers
// (200, a pos) when the server stops, instead of holding the shutdown.
func TestSlidingSyncParkedAtShutdown(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	r := slide(t, alice, "", 0, map[string]any{})
	done := make(chan *ts.Response, 1)
	go func() { done <- alice.Do("POST", ssPath+"?timeout=60000&pos="+r.Pos, map[string]any{}) }()
	waitFor(t, func() bool { return s.Parked() == 1 }, func() string { return fmt.Sprintf("%d polls parked", s.Parked()) })
	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		var out ssResp
		if res.Status != http.StatusOK || res.JSON(&out) != nil || out.Pos == "" {
			t.Fatalf("at shutdown: %d %s", res.Status, res.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("parked poll not answered at shutdown (%v)", time.Since(start))
	}
}

// TestSlidingSyncExpandedTimeline: a room the client holds one event of,
// asked for with a longer timeline (Element X subscribes to a room it
// opens with timeline_limit 20 while its list asks for 1), comes at once
// with its newest events, expanded_timeline set and not initial; a limit
// no longer than what the client holds sends nothing again, and a room
// whose whole history was sent is never expanded.
func TestSlidingSyncExpandedTimeline(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"name": "busy", "preset": "public_chat"})
		bob.Join(room)
		for i := range 6 {
			bob.SendText(room, fmt.Sprint("m", i))
		}
		small := alice.CreateRoom(map[string]any{"name": "small"})
		lazy := [][]string{{"m.room.name", ""}, {"m.room.member", "$LAZY"}}
		list := map[string]any{"a": allList([2]int{0, 9}, 1, lazy)}
		r := slide(t, alice, "", 0, map[string]any{"lists": list})
		if rm := r.Rooms[room]; !slices.Equal(ssBodies(rm), []string{"m5"}) || !rm.Limited {
			t.Fatalf("first answer: %+v", rm)
		}
		// The subscription asks for 4: the four newest come, m5 with them.
		sub := func(limit int) map[string]any {
			return map[string]any{"lists": list, "room_subscriptions": map[string]any{
				room: map[string]any{"timeline_limit": limit, "required_state": lazy}}}
		}
		r = slide(t, alice, r.Pos, 0, sub(4))
		rm := r.Rooms[room]
		if rm.Initial || !rm.ExpandedTimeline || !slices.Equal(ssBodies(rm), []string{"m2", "m3", "m4", "m5"}) || !rm.Limited || rm.PrevBatch == "" {
			t.Fatalf("expanded: %+v", rm)
		}
		if rm.NumLive == nil || *rm.NumLive != 0 || rm.Name != nil {
			t.Fatalf("expanded room: nothing live, its name not sent again: %+v", rm)
		}
		// The lazy members of the older events' senders were sent before
		// (bob): not again.
		for _, e := range rm.RequiredState {
			t.Fatalf("state sent again with the expanded timeline: %+v", e)
		}
		if _, ok := r.Rooms[small]; ok {
			t.Fatal("a room whose whole timeline was sent was expanded")
		}
		// Asking for 3 now (the client holds 4): nothing comes again.
		r = slide(t, alice, r.Pos, 0, map[string]any{"lists": list, "unsubscribe_rooms": []string{room}})
		r = slide(t, alice, r.Pos, 0, sub(3))
		if len(r.Rooms) != 0 {
			t.Fatalf("a limit the client holds resent: %v", ssKeys(r.Rooms))
		}
		// A new event then: it comes alone, live.
		bob.SendText(room, "m6")
		r = slide(t, alice, r.Pos, 0, sub(3))
		if rm = r.Rooms[room]; rm.ExpandedTimeline || !slices.Equal(ssBodies(rm), []string{"m6"}) || *rm.NumLive != 1 {
			t.Fatalf("after expansion, a new event: %+v", rm)
		}
		// Beyond the room's whole history: all of it, not limited; then
		// never again.
		r = slide(t, alice, r.Pos, 0, sub(100))
		if rm = r.Rooms[room]; !rm.ExpandedTimeline || rm.Limited || len(rm.Timeline) < 10 {
			t.Fatalf("whole history: %d events, %+v", len(rm.Timeline), rm)
		}
		r = slide(t, alice, r.Pos, 0, sub(100))
		if len(r.Rooms) != 0 {
			t.Fatalf("sent again: %v", ssKeys(r.Rooms))
		}
	})
}

// TestSlidingSyncPushRules: a connection's first answer carries the
// user's m.push_rules in the account_data extension, as /sync's initial
// sync does (the default rules of a user who never changed them; the
// stored ones, once, of one who did), and a later change comes as a change.
func TestSlidingSyncPushRules(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		body := map[string]any{"extensions": map[string]any{"account_data": map[string]any{"enabled": true}}}
		rules := func(r ssResp) []event {
			t.Helper()
			if r.Extensions.AccountData == nil {
				t.Fatal("no account_data extension")
			}
			var out []event
			for _, e := range r.Extensions.AccountData.Global {
				if e.Type == "m.push_rules" {
					out = append(out, e)
				}
			}
			return out
		}
		masterEnabled := func(e event) any {
			t.Helper()
			global, _ := e.Content["global"].(map[string]any)
			override, _ := global["override"].([]any)
			for _, r := range override {
				if m, _ := r.(map[string]any); m["rule_id"] == ".m.rule.master" {
					return m["enabled"]
				}
			}
			t.Fatalf("no .m.rule.master in %v", e.Content)
			return nil
		}
		r := slide(t, alice, "", 0, body)
		got := rules(r)
		if len(got) != 1 || masterEnabled(got[0]) != false {
			t.Fatalf("default push rules: %+v", got)
		}
		// Not again on the next pos: nothing changed.
		r = slide(t, alice, r.Pos, 0, body)
		if got = rules(r); len(got) != 0 {
			t.Fatalf("push rules sent again: %+v", got)
		}
		alice.MustDo("PUT", "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled", map[string]any{"enabled": true}, nil)
		r = slide(t, alice, r.Pos, 0, body)
		if got = rules(r); len(got) != 1 || masterEnabled(got[0]) != true {
			t.Fatalf("changed push rules: %+v", got)
		}
		// A new connection: the stored rules, once.
		r = slide(t, alice, "", 0, map[string]any{"conn_id": "other", "extensions": body["extensions"]})
		if got = rules(r); len(got) != 1 || masterEnabled(got[0]) != true {
			t.Fatalf("stored push rules on a new connection: %+v", got)
		}
	})
}

// receiptReaders lists who has a receipt of a type in an m.receipt event.
func receiptReaders(e event, typ string) []string {
	var out []string
	for _, byType := range e.Content {
		m, _ := byType.(map[string]any)
		users, _ := m[typ].(map[string]any)
		for u := range users {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out
}

// TestSlidingSyncReceiptsAndTyping: a room sent new to the connection
// (initial) gets its receipts in full — the user's own and those on the
// events of its timeline — not only those since the last pos; receipts
// and typing that changed while a room was out of the window (or
// unsubscribed) come when it is back.
func TestSlidingSyncReceiptsAndTyping(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		carol := s.Register(t, "carol")
		r1 := alice.CreateRoom(map[string]any{"name": "r1", "preset": "public_chat"})
		bob.Join(r1)
		carol.Join(r1)
		old := carol.SendText(r1, "old")
		last := carol.SendText(r1, "last")
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(r1)+"/receipt/m.read/"+esc(old), map[string]any{}, nil)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(r1)+"/receipt/m.read/"+esc(last), map[string]any{}, nil)
		r2 := alice.CreateRoom(map[string]any{"name": "r2", "preset": "public_chat"})
		bob.Join(r2)
		carol.Join(r2)
		carol.SendText(r2, "newer") // r2 tops the list
		exts := map[string]any{"receipts": map[string]any{"enabled": true}, "typing": map[string]any{"enabled": true}}
		top := map[string]any{"lists": map[string]any{"a": allList([2]int{0, 0}, 1, [][]string{})}, "extensions": exts}
		r := slide(t, alice, "", 0, top)
		if _, ok := r.Rooms[r1]; ok {
			t.Fatalf("r1 is not in the window [0,0]: %v", ssKeys(r.Rooms))
		}
		// An unrelated receipt moves the stream past the old ones.
		carol.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(r2)+"/receipt/m.read/"+esc(carol.SendText(r2, "x")), map[string]any{}, nil)
		r = slide(t, alice, r.Pos, 0, top)
		// r1 comes into the window (grown): initial, with its timeline's
		// receipt (bob's, on "last") and alice's own (on an older event).
		both := map[string]any{"lists": map[string]any{"a": allList([2]int{0, 1}, 1, [][]string{})}}
		r = slide(t, alice, r.Pos, 0, both)
		if rm := r.Rooms[r1]; !rm.Initial {
			t.Fatalf("r1 not sent new: %+v", rm)
		}
		if got := receiptReaders(r.Extensions.Receipts.Rooms[r1], "m.read"); !slices.Equal(got, sortedIDs(alice.UserID, bob.UserID)) {
			t.Fatalf("receipts of a room new to the connection: %v (%+v)", got, r.Extensions.Receipts.Rooms[r1])
		}
		// r1 out of the window again; meanwhile bob reads and types in it.
		r = slide(t, alice, r.Pos, 0, top)
		carol.SendText(r2, "r2 on top")
		r = slide(t, alice, r.Pos, 0, top)
		if _, ok := r.Rooms[r2]; !ok {
			t.Fatalf("r2 should be the window: %v", ssKeys(r.Rooms))
		}
		latest := carol.SendText(r1, "unseen")
		carol.SendText(r2, "r2 stays on top")
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(r1)+"/receipt/m.read/"+esc(latest), map[string]any{}, nil)
		bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(r1)+"/typing/"+esc(bob.UserID), map[string]any{"typing": true, "timeout": 30000}, nil)
		r = slide(t, alice, r.Pos, 0, top)
		if _, ok := r.Extensions.Receipts.Rooms[r1]; ok {
			t.Fatal("a receipt of a room out of the window was sent")
		}
		if _, ok := r.Extensions.Typing.Rooms[r1]; ok {
			t.Fatal("typing of a room out of the window was sent")
		}
		// Back in the window: what changed meanwhile comes.
		r = slide(t, alice, r.Pos, 0, both)
		if rm := r.Rooms[r1]; rm.Initial || !slices.Contains(ssBodies(rm), "unseen") {
			t.Fatalf("r1 back in the window: %+v", rm)
		}
		if got := receiptReaders(r.Extensions.Receipts.Rooms[r1], "m.read"); !slices.Contains(got, bob.UserID) {
			t.Fatalf("bob's receipt made while r1 was out of the window: %v", got)
		}
		if ids, _ := r.Extensions.Typing.Rooms[r1].Content["user_ids"].([]any); len(ids) != 1 || ids[0] != bob.UserID {
			t.Fatalf("bob typing while r1 was out of the window: %+v", r.Extensions.Typing.Rooms[r1])
		}
		// The same for a subscription dropped and taken again.
		subOnly := map[string]any{"lists": map[string]any{}, "room_subscriptions": map[string]any{r1: map[string]any{"timeline_limit": 1}}}
		r = slide(t, alice, r.Pos, 0, subOnly)
		r = slide(t, alice, r.Pos, 0, map[string]any{"lists": map[string]any{}, "unsubscribe_rooms": []string{r1}})
		carol.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(r1)+"/receipt/m.read/"+esc(latest), map[string]any{}, nil)
		r = slide(t, alice, r.Pos, 0, map[string]any{"lists": map[string]any{}})
		if _, ok := r.Extensions.Receipts.Rooms[r1]; ok {
			t.Fatal("a receipt of an unsubscribed room was sent")
		}
		r = slide(t, alice, r.Pos, 0, subOnly)
		if got := receiptReaders(r.Extensions.Receipts.Rooms[r1], "m.read"); !slices.Contains(got, carol.UserID) {
			t.Fatalf("carol's receipt made while r1 was unsubscribed: %v", got)
		}
	})
}

func sortedIDs(ids ...string) []string {
	sort.Strings(ids)
	return ids
}

// TestSlidingSyncNoPresenceExtension: no MSC defines a presence extension
// for simplified sliding sync (MSC4186 only names it as a future one, and
// Synapse has none), so a request naming one — or any unknown extension —
// is answered as if it did not (the MSC's rule for unknown extensions),
// also after a presence change.
func TestSlidingSyncNoPresenceExtension(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		body := map[string]any{"lists": map[string]any{"a": allList([2]int{0, 9}, 1, [][]string{})},
			"extensions": map[string]any{"presence": map[string]any{"enabled": true}, "org.example.unknown": map[string]any{"enabled": true}}}
		var raw struct {
			Pos        string                     `json:"pos"`
			Extensions map[string]json.RawMessage `json:"extensions"`
		}
		alice.MustDo("POST", ssPath, body, &raw)
		if len(raw.Extensions) != 0 {
			t.Fatalf("extensions answered: %v", ssKeys(raw.Extensions))
		}
		bob.MustDo("PUT", "/_matrix/client/v3/presence/"+esc(bob.UserID)+"/status", map[string]any{"presence": "unavailable", "status_msg": "away"}, nil)
		raw.Extensions = nil
		res := alice.Do("POST", ssPath+"?timeout=300&pos="+raw.Pos, body)
		if res.Status != http.StatusOK || res.JSON(&raw) != nil || len(raw.Extensions) != 0 {
			t.Fatalf("after a presence change: %d %s", res.Status, res.Body)
		}
	})
}

// TestSlidingSyncBounds: what a careless or hostile client can send is
// bounded or refused with a clear error, and never shows a room the user
// is not in: a window far past the list, overlapping ranges, the most
// subscriptions and required_state entries allowed and one more,
// subscriptions to rooms of others, an unknown extension, and a pos
// replayed after its answer was lost.
func TestSlidingSyncBounds(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		bob := s.Register(t, "bob")
		var mine []string
		for i := range 3 {
			mine = append(mine, alice.CreateRoom(map[string]any{"name": fmt.Sprint("r", i)}))
		}
		secret := bob.CreateRoom(map[string]any{"name": "bob's", "preset": "private_chat"})
		bob.SendText(secret, "not for alice")

		huge := map[string]any{"lists": map[string]any{"a": map[string]any{"ranges": [][2]int64{{0, 1 << 40}}, "timeline_limit": 1}}}
		if r := slide(t, alice, "", 0, huge); r.Lists["a"].Count != 3 || len(r.Rooms) != 3 {
			t.Fatalf("window past the list: count %d, rooms %v", r.Lists["a"].Count, ssKeys(r.Rooms))
		}
		overlap := map[string]any{"lists": map[string]any{"a": map[string]any{"ranges": [][2]int{{0, 1}, {1, 2}, {0, 2}}, "timeline_limit": 1}}}
		if r := slide(t, alice, "", 0, overlap); len(r.Rooms) != 3 {
			t.Fatalf("overlapping ranges: %v", ssKeys(r.Rooms))
		}

		subs := func(n int) map[string]any {
			m := map[string]any{secret: map[string]any{"timeline_limit": 5, "required_state": [][2]string{{"*", "*"}}}}
			for i := 1; len(m) < n; i++ {
				m[fmt.Sprintf("!nope%d:localhost", i)] = map[string]any{"timeline_limit": 1}
			}
			return map[string]any{"room_subscriptions": m}
		}
		if r := slide(t, alice, "", 0, subs(500)); len(r.Rooms) != 0 {
			t.Fatalf("500 subscriptions to rooms alice is not in: %v", ssKeys(r.Rooms))
		}
		if r := alice.Do("POST", ssPath, subs(501)); r.Status != http.StatusBadRequest || r.ErrCode() != "M_INVALID_PARAM" {
			t.Fatalf("501 subscriptions: %d %s", r.Status, r.Body)
		}
		state := func(n int) map[string]any {
			var st [][2]string
			for i := range n {
				st = append(st, [2]string{fmt.Sprint("org.example.t", i), ""})
			}
			return map[string]any{"lists": map[string]any{"a": allList([2]int{0, 9}, 1, st)}}
		}
		if r := slide(t, alice, "", 0, state(100)); len(r.Rooms) != 3 {
			t.Fatalf("100 required_state entries: %v", ssKeys(r.Rooms))
		}
		if r := alice.Do("POST", ssPath, state(101)); r.Status != http.StatusBadRequest || r.ErrCode() != "M_INVALID_PARAM" {
			t.Fatalf("101 required_state entries: %d %s", r.Status, r.Body)
		}
		unknown := map[string]any{"lists": huge["lists"], "extensions": map[string]any{"org.example.nope": map[string]any{"enabled": true}}}
		if r := slide(t, alice, "", 0, unknown); len(r.Rooms) != 3 {
			t.Fatalf("unknown extension: %v", ssKeys(r.Rooms))
		}

		// A pos replayed (its answer lost on the way) gets what came after
		// it again, not M_UNKNOWN_POS and not nothing.
		body := map[string]any{"conn_id": "replay", "lists": map[string]any{"a": allList([2]int{0, 9}, 5, nil)}}
		first := slide(t, alice, "", 0, body)
		alice.SendText(mine[0], "once")
		lost := slide(t, alice, first.Pos, 0, body)
		again := slide(t, alice, first.Pos, 0, body)
		for name, r := range map[string]ssResp{"answer": lost, "replayed answer": again} {
			if got := ssBodies(r.Rooms[mine[0]]); !slices.Equal(got, []string{"once"}) {
				t.Fatalf("%s: timeline %v, want [once]", name, got)
			}
		}
		if r := slide(t, alice, again.Pos, 0, body); len(r.Rooms) != 0 {
			t.Fatalf("after the replay, nothing new: %v", ssKeys(r.Rooms))
		}
	})
}
