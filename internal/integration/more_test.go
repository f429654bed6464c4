package integration

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

func TestModeration(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		carol.Join(room)
		// Bob (power 0) cannot kick Carol.
		if r := bob.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/kick", map[string]string{"user_id": carol.UserID}); r.Status != http.StatusForbidden {
			t.Fatalf("unprivileged kick: %d %s", r.Status, r.Body)
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/ban", map[string]string{"user_id": bob.UserID, "reason": "spam"}, nil)
		if r := bob.Do("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{}); r.Status != http.StatusForbidden {
			t.Fatalf("banned user rejoined: %d", r.Status)
		}
		if r := bob.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/b1", map[string]string{"body": "x"}); r.Status != http.StatusForbidden {
			t.Fatalf("banned user sent: %d", r.Status)
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/unban", map[string]string{"user_id": bob.UserID}, nil)
		bob.Join(room)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/kick", map[string]string{"user_id": carol.UserID}, nil)
		var members struct {
			Chunk []event `json:"chunk"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/members?not_membership=leave", nil, &members)
		if len(members.Chunk) != 2 {
			t.Fatalf("members after kick: %d", len(members.Chunk))
		}
	})
}

func TestKnock(t *testing.T) {
	s := ts.New(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"room_version": "10", "initial_state": []map[string]any{
		{"type": "m.room.join_rules", "state_key": "", "content": map[string]string{"join_rule": "knock"}},
	}})
	if r := bob.Do("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{}); r.Status != http.StatusForbidden {
		t.Fatalf("join without invite: %d", r.Status)
	}
	bob.MustDo("POST", "/_matrix/client/v3/knock/"+esc(room), map[string]string{"reason": "let me in"}, nil)
	sy := doSync(t, alice, "timeout=0")
	found := false
	for _, e := range sy.Rooms.Join[room].Timeline.Events {
		if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == bob.UserID && e.Content["membership"] == "knock" {
			found = true
		}
	}
	if !found {
		t.Fatal("alice does not see the knock")
	}
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]string{"user_id": bob.UserID}, nil)
	bob.Join(room)
}

func TestUpgrade(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"room_version": "10", "preset": "public_chat", "name": "Old", "room_alias_name": fmt.Sprint("upg", time.Now().UnixNano())})
		bob.Join(room)
		if r := bob.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/upgrade", map[string]string{"new_version": "12"}); r.Status != http.StatusForbidden {
			t.Fatalf("member upgraded: %d %s", r.Status, r.Body)
		}
		var up struct {
			ReplacementRoom string `json:"replacement_room"`
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/upgrade", map[string]string{"new_version": "12"}, &up)
		var tomb map[string]any
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.tombstone", nil, &tomb)
		if tomb["replacement_room"] != up.ReplacementRoom {
			t.Fatalf("tombstone %v", tomb)
		}
		var create map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(up.ReplacementRoom)+"/state/m.room.create", nil, &create)
		pred, _ := create["predecessor"].(map[string]any)
		if create["room_version"] != "12" || pred["room_id"] != room {
			t.Fatalf("new create %v", create)
		}
		var name map[string]string
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(up.ReplacementRoom)+"/state/m.room.name", nil, &name)
		if name["name"] != "Old" {
			t.Fatalf("name not carried: %v", name)
		}
		// Bob follows the tombstone.
		bob.Join(up.ReplacementRoom)
		// Regular members can no longer talk in the old room.
		if r := bob.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/old1", map[string]string{"body": "x"}); r.Status != http.StatusForbidden {
			t.Fatalf("old room still writable: %d", r.Status)
		}
	})
}

// Creators of a version 12 room hold no power level; upgrading such a room
// to an older version gives the upgrading creator an explicit top level.
func TestUpgradeFromVersion12ToOlder(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{"room_version": "12", "name": "New style"})
	var up struct {
		ReplacementRoom string `json:"replacement_room"`
	}
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/upgrade", map[string]string{"new_version": "11"}, &up)
	var pl struct {
		Users map[string]int `json:"users"`
	}
	alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(up.ReplacementRoom)+"/state/m.room.power_levels", nil, &pl)
	if pl.Users[alice.UserID] != 100 {
		t.Fatalf("alice's level in the v11 room: %v", pl.Users)
	}
	alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(up.ReplacementRoom)+"/state/m.room.topic", map[string]string{"topic": "still in charge"}, nil)
}

func TestIgnoredUsers(t *testing.T) {
	s := ts.New(t)
	alice, bob, troll := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "troll")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.Join(room)
	troll.Join(room)
	bob.MustDo("PUT", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/account_data/m.ignored_user_list", map[string]any{"ignored_users": map[string]any{troll.UserID: map[string]any{}}}, nil)
	troll.SendText(room, "noise")
	alice.SendText(room, "signal")
	if got := bodies(messages(t, bob, room, "dir=b&limit=20").Chunk); slices.Contains(got, "noise") || !slices.Contains(got, "signal") {
		t.Fatalf("bob sees %v", got)
	}
	sy := doSync(t, bob, "timeout=0")
	if got := bodies(sy.Rooms.Join[room].Timeline.Events); slices.Contains(got, "noise") {
		t.Fatalf("sync shows ignored user's message: %v", got)
	}
}

func TestSyncHidesHistoryBeforeJoin(t *testing.T) {
	s := ts.New(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "state_key": "", "content": map[string]string{"history_visibility": "joined"}},
	}})
	alice.SendText(room, "before")
	bob.Join(room)
	sy := doSync(t, bob, "timeout=0")
	if got := bodies(sy.Rooms.Join[room].Timeline.Events); slices.Contains(got, "before") {
		t.Fatalf("initial sync leaks history: %v", got)
	}
}

func TestContextAndTimestamp(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	var ids []string
	for i := range 5 {
		ids = append(ids, alice.SendText(room, fmt.Sprint("m", i)))
	}
	var ctx struct {
		Event        event   `json:"event"`
		EventsBefore []event `json:"events_before"`
		EventsAfter  []event `json:"events_after"`
	}
	alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/context/"+esc(ids[2])+"?limit=2", nil, &ctx)
	if ctx.Event.EventID != ids[2] || len(ctx.EventsBefore) != 1 || ctx.EventsBefore[0].EventID != ids[1] || len(ctx.EventsAfter) != 1 || ctx.EventsAfter[0].EventID != ids[3] {
		t.Fatalf("context: %+v", ctx)
	}
	var ts struct {
		EventID string `json:"event_id"`
	}
	alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/timestamp_to_event?dir=b&ts=%d", esc(room), time.Now().Add(time.Hour).UnixMilli()), nil, &ts)
	if ts.EventID != ids[4] {
		t.Fatalf("timestamp_to_event: %s, want %s", ts.EventID, ids[4])
	}
}

func TestRateLimit(t *testing.T) {
	s := ts.New(t, ts.WithConfig(func(c *config.Config) { c.RateLimits = config.RateLimits{Enabled: true, PerSecond: 1, Burst: 3} }))
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	var limited bool
	for i := range 10 {
		r := alice.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/rl%d", esc(room), i), map[string]string{"body": "x"})
		if r.Status == http.StatusTooManyRequests {
			var e struct {
				Errcode    string `json:"errcode"`
				RetryAfter int64  `json:"retry_after_ms"`
			}
			_ = r.JSON(&e)
			if e.Errcode != "M_LIMIT_EXCEEDED" || e.RetryAfter <= 0 {
				t.Fatalf("429 body %s", r.Body)
			}
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("never rate limited")
	}
}

func TestAliases(t *testing.T) {
	s := ts.New(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	alias := "#lobby" + fmt.Sprint(time.Now().UnixNano()) + ":localhost"
	alice.MustDo("PUT", "/_matrix/client/v3/directory/room/"+esc(alias), map[string]string{"room_id": room}, nil)
	if r := alice.Do("PUT", "/_matrix/client/v3/directory/room/"+esc(alias), map[string]string{"room_id": room}); r.Status != http.StatusConflict {
		t.Fatalf("duplicate alias: %d", r.Status)
	}
	var res struct {
		RoomID string `json:"room_id"`
	}
	bob.MustDo("GET", "/_matrix/client/v3/directory/room/"+esc(alias), nil, &res)
	if res.RoomID != room {
		t.Fatalf("alias resolves to %s", res.RoomID)
	}
	bob.Join(alias)
	if r := bob.Do("DELETE", "/_matrix/client/v3/directory/room/"+esc(alias), nil); r.Status != http.StatusForbidden {
		t.Fatalf("non-creator deleted alias: %d", r.Status)
	}
	alice.MustDo("DELETE", "/_matrix/client/v3/directory/room/"+esc(alias), nil, nil)
	if r := bob.Do("GET", "/_matrix/client/v3/directory/room/"+esc(alias), nil); r.Status != http.StatusNotFound {
		t.Fatalf("deleted alias still resolves: %d", r.Status)
	}
}

func TestUnreadCounts(t *testing.T) {
	forEachEngine(t, checkUnreadCounts)
	// Without push rules, sync counts messages after the read receipt.
	t.Run("push off", func(t *testing.T) {
		checkUnreadCounts(t, ts.New(t, ts.WithConfig(func(c *config.Config) { c.Push.Enabled = false })))
	})
}

func checkUnreadCounts(t *testing.T, s *ts.Server) {
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.Join(room)
	var last string
	for i := range 3 {
		last = alice.SendText(room, fmt.Sprint("unread ", i))
	}
	count := func() float64 {
		var out struct {
			Rooms struct {
				Join map[string]struct {
					Unread map[string]float64 `json:"unread_notifications"`
				} `json:"join"`
			} `json:"rooms"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/sync?timeout=0", nil, &out)
		return out.Rooms.Join[room].Unread["notification_count"]
	}
	if n := count(); n != 3 {
		t.Fatalf("unread %v, want 3", n)
	}
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/read_markers", map[string]string{"m.fully_read": last, "m.read.private": last}, nil)
	if n := count(); n != 0 {
		t.Fatalf("unread after read %v, want 0", n)
	}
}

func TestRestrictedJoin(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, eve := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "eve")
		space := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Department"})
		bob.Join(space)
		room := alice.CreateRoom(map[string]any{"room_version": "10", "initial_state": []map[string]any{
			{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
				"join_rule": "restricted", "allow": []map[string]string{{"type": "m.room_membership", "room_id": space}}}},
		}})
		// Eve is not in the allowed room: refused.
		if r := eve.Do("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{}); r.Status != http.StatusForbidden {
			t.Fatalf("outsider joined a restricted room: %d %s", r.Status, r.Body)
		}
		// Bob is: allowed, authorised by Alice.
		bob.Join(room)
		var member map[string]any
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.member/"+esc(bob.UserID), nil, &member)
		if member["membership"] != "join" || member["join_authorised_via_users_server"] != alice.UserID {
			t.Fatalf("member event %v", member)
		}
	})
}
