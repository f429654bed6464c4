package integration

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// Every room, report, media and server endpoint of the admin API answers
// a user who is not an administrator 403 M_FORBIDDEN, before it looks at
// its target.
func TestAdminRoomsForbidden(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		r := esc(room)
		for _, c := range []struct{ method, path string }{
			{"GET", "/_synapse/admin/v1/rooms"},
			{"GET", "/_synapse/admin/v1/rooms/" + r},
			{"GET", "/_synapse/admin/v1/rooms/" + r + "/members"},
			{"GET", "/_synapse/admin/v1/rooms/" + r + "/state"},
			{"GET", "/_synapse/admin/v1/rooms/" + r + "/messages"},
			{"GET", "/_synapse/admin/v1/rooms/" + r + "/block"},
			{"PUT", "/_synapse/admin/v1/rooms/" + r + "/block"},
			{"POST", "/_synapse/admin/v1/rooms/" + r + "/make_room_admin"},
			{"DELETE", "/_synapse/admin/v2/rooms/" + r},
			{"GET", "/_synapse/admin/v2/rooms/" + r + "/delete_status"},
			{"GET", "/_synapse/admin/v2/rooms/delete_status/abc"},
			{"GET", "/_synapse/admin/v1/event_reports"},
			{"GET", "/_synapse/admin/v1/event_reports/1"},
			{"DELETE", "/_synapse/admin/v1/event_reports/1"},
			{"POST", "/_synapse/admin/v1/media/quarantine/localhost/abc"},
			{"POST", "/_synapse/admin/v1/media/unquarantine/localhost/abc"},
			{"POST", "/_synapse/admin/v1/room/" + r + "/media/quarantine"},
			{"POST", "/_synapse/admin/v1/user/" + esc(alice.UserID) + "/media/quarantine"},
			{"DELETE", "/_synapse/admin/v1/media/localhost/abc"},
			{"POST", "/_synapse/admin/v1/purge_media_cache?before_ts=1"},
			{"GET", "/_synapse/admin/v1/statistics/users/media"},
			{"GET", "/_synapse/admin/v1/server_version"},
			{"GET", "/_synapse/admin/v1/federation/destinations"},
			{"GET", "/_synapse/admin/v1/federation/destinations/other.test"},
			{"POST", "/_synapse/admin/v1/federation/destinations/other.test/reset_connection"},
		} {
			resp := alice.Do(c.method, c.path, map[string]any{"block": true})
			if resp.Status != http.StatusForbidden || resp.ErrCode() != "M_FORBIDDEN" {
				t.Errorf("%s %s as a user: %d %s", c.method, c.path, resp.Status, resp.Body)
			}
			if resp := s.Anonymous(t).Do(c.method, c.path, nil); resp.Status != http.StatusUnauthorized {
				t.Errorf("%s %s without a token: %d %s", c.method, c.path, resp.Status, resp.Body)
			}
		}
		// The room is untouched.
		if m := alice.Do("GET", "/_matrix/client/v3/rooms/"+r+"/joined_members", nil); m.Status != 200 {
			t.Fatalf("room after refused calls: %d %s", m.Status, m.Body)
		}
	})
}

// wantFields fails unless obj has every one of Synapse's documented
// field names.
func wantFields(t *testing.T, what string, obj map[string]any, fields ...string) {
	t.Helper()
	for _, f := range fields {
		if _, ok := obj[f]; !ok {
			t.Errorf("%s: no %q in %v", what, f, obj)
		}
	}
}

func TestAdminRooms(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		names := []string{"Delta", "alpha", "Charlie", "bravo", "echo"}
		ids := map[string]string{}
		for i, n := range names {
			body := map[string]any{"name": n, "preset": "private_chat"}
			if i == 0 {
				body = map[string]any{"name": n, "preset": "public_chat", "visibility": "public", "room_alias_name": "delta"}
			}
			ids[n] = alice.CreateRoom(body)
		}
		delta := ids["Delta"]
		bob.Join(delta)
		alice.SendText(delta, "before the admin looked")

		// The list, by name (case folded as Synapse's), paged.
		var page struct {
			Rooms     []map[string]any `json:"rooms"`
			Offset    int              `json:"offset"`
			Total     int              `json:"total_rooms"`
			NextBatch *int             `json:"next_batch"`
			PrevBatch *int             `json:"prev_batch"`
		}
		var got []string
		from := 0
		for {
			page.NextBatch, page.PrevBatch, page.Rooms = nil, nil, nil
			admin.MustDo("GET", fmt.Sprintf("/_synapse/admin/v1/rooms?limit=2&from=%d", from), nil, &page)
			for _, r := range page.Rooms {
				got = append(got, r["name"].(string))
			}
			if page.Total != 5 || page.Offset != from || (from > 0) != (page.PrevBatch != nil) {
				t.Fatalf("page at %d: total %d offset %d prev %v", from, page.Total, page.Offset, page.PrevBatch)
			}
			if page.NextBatch == nil {
				break
			}
			from = *page.NextBatch
		}
		if strings.Join(got, ",") != "Charlie,Delta,alpha,bravo,echo" && strings.Join(got, ",") != "alpha,bravo,Charlie,Delta,echo" {
			t.Fatalf("rooms by name: %v", got)
		}
		wantFields(t, "room of the list", page.Rooms[0], "room_id", "name", "canonical_alias", "joined_members", "joined_local_members",
			"version", "creator", "encryption", "federatable", "public", "join_rules", "guest_access", "history_visibility", "state_events", "room_type")

		// Order by members, search, filters.
		admin.MustDo("GET", "/_synapse/admin/v1/rooms?order_by=joined_members", nil, &page)
		if page.Rooms[0]["room_id"] != delta || page.Rooms[0]["joined_members"].(float64) != 2 || page.Rooms[0]["joined_local_members"].(float64) != 2 {
			t.Fatalf("largest room first: %v", page.Rooms[0])
		}
		admin.MustDo("GET", "/_synapse/admin/v1/rooms?order_by=joined_members&dir=b", nil, &page)
		if page.Rooms[len(page.Rooms)-1]["room_id"] != delta {
			t.Fatalf("dir=b: %v", page.Rooms)
		}
		admin.MustDo("GET", "/_synapse/admin/v1/rooms?search_term=ELT", nil, &page)
		if page.Total != 1 || page.Rooms[0]["room_id"] != delta || page.Rooms[0]["public"] != true || page.Rooms[0]["canonical_alias"] != "#delta:localhost" {
			t.Fatalf("search: %+v", page)
		}
		admin.MustDo("GET", "/_synapse/admin/v1/rooms?search_term="+esc(ids["echo"][1:6]), nil, &page)
		if page.Total != 1 || page.Rooms[0]["room_id"] != ids["echo"] {
			t.Fatalf("search by id: %+v", page)
		}
		admin.MustDo("GET", "/_synapse/admin/v1/rooms?public_rooms=false", nil, &page)
		if page.Total != 4 {
			t.Fatalf("public_rooms=false: %d", page.Total)
		}
		for _, bad := range []string{"limit=-1", "from=x", "order_by=nope", "dir=x", "public_rooms=maybe"} {
			if r := admin.Do("GET", "/_synapse/admin/v1/rooms?"+bad, nil); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
				t.Errorf("%s: %d %s", bad, r.Status, r.Body)
			}
		}

		// Details, members, state.
		var det map[string]any
		admin.MustDo("GET", "/_synapse/admin/v1/rooms/"+esc(delta), nil, &det)
		wantFields(t, "details", det, "room_id", "name", "topic", "avatar", "canonical_alias", "joined_members", "joined_local_members",
			"joined_local_devices", "version", "creator", "encryption", "federatable", "public", "join_rules", "guest_access",
			"history_visibility", "state_events", "room_type", "forgotten")
		if det["creator"] != alice.UserID || det["joined_local_devices"].(float64) != 2 || det["forgotten"] != false || det["join_rules"] != "public" {
			t.Fatalf("details: %v", det)
		}
		var members struct {
			Members []string `json:"members"`
			Total   int      `json:"total"`
		}
		admin.MustDo("GET", "/_synapse/admin/v1/rooms/"+esc(delta)+"/members", nil, &members)
		sort.Strings(members.Members)
		want := []string{alice.UserID, bob.UserID}
		sort.Strings(want)
		if members.Total != 2 || strings.Join(members.Members, ",") != strings.Join(want, ",") {
			t.Fatalf("members: %+v", members)
		}
		var state struct {
			State []map[string]any `json:"state"`
		}
		admin.MustDo("GET", "/_synapse/admin/v1/rooms/"+esc(delta)+"/state?type=m.room.create", nil, &state)
		if len(state.State) != 1 || state.State[0]["type"] != "m.room.create" {
			t.Fatalf("state of a type: %v", state)
		}
		admin.MustDo("GET", "/_synapse/admin/v1/rooms/"+esc(delta)+"/state", nil, &state)
		if len(state.State) < 6 {
			t.Fatalf("state: %d events", len(state.State))
		}
		for _, p := range []string{"", "/members", "/state", "/messages"} {
			if r := admin.Do("GET", "/_synapse/admin/v1/rooms/"+esc("!unknown:localhost")+p, nil); r.Status != 404 || r.ErrCode() != "M_NOT_FOUND" {
				t.Errorf("unknown room %s: %d %s", p, r.Status, r.Body)
			}
			if r := admin.Do("GET", "/_synapse/admin/v1/rooms/"+esc("not-a-room")+p, nil); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
				t.Errorf("bad room id %s: %d %s", p, r.Status, r.Body)
			}
		}

		// Messages: the administrator, who is not in the room, reads a
		// room whose history only members see.
		private := ids["bravo"]
		alice.SendText(private, "for members only")
		if r := admin.Do("GET", "/_matrix/client/v3/rooms/"+esc(private)+"/messages?dir=b", nil); r.Status != 403 {
			t.Fatalf("client /messages for a non-member: %d", r.Status)
		}
		var msgs struct {
			Chunk []map[string]any `json:"chunk"`
			Start string           `json:"start"`
			End   string           `json:"end"`
		}
		admin.MustDo("GET", "/_synapse/admin/v1/rooms/"+esc(private)+"/messages?dir=b&limit=1", nil, &msgs)
		if len(msgs.Chunk) != 1 || msgs.Chunk[0]["content"].(map[string]any)["body"] != "for members only" || msgs.Start == "" || msgs.End == "" {
			t.Fatalf("admin messages: %+v", msgs)
		}
		admin.MustDo("GET", "/_synapse/admin/v1/rooms/"+esc(private)+"/messages?dir=b&from="+msgs.End, nil, &msgs)
		if len(msgs.Chunk) < 5 || msgs.Chunk[len(msgs.Chunk)-1]["type"] != "m.room.create" {
			t.Fatalf("admin messages, next page: %d events", len(msgs.Chunk))
		}

		// Block: joins and invites refused, listed with its author.
		var blk map[string]any
		admin.MustDo("GET", "/_synapse/admin/v1/rooms/"+esc(ids["echo"])+"/block", nil, &blk)
		if blk["block"] != false || blk["user_id"] != nil {
			t.Fatalf("not blocked: %v", blk)
		}
		admin.MustDo("PUT", "/_synapse/admin/v1/rooms/"+esc(delta)+"/block", map[string]any{"block": true}, &blk)
		admin.MustDo("GET", "/_synapse/admin/v1/rooms/"+esc(delta)+"/block", nil, &blk)
		if blk["block"] != true || blk["user_id"] != admin.UserID {
			t.Fatalf("blocked: %v", blk)
		}
		carol := s.Register(t, "carol")
		if r := carol.Do("POST", "/_matrix/client/v3/join/"+esc(delta), map[string]any{}); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("join of a blocked room: %d %s", r.Status, r.Body)
		}
		if r := admin.Do("PUT", "/_synapse/admin/v1/rooms/"+esc(delta)+"/block", map[string]any{"block": "yes"}); r.Status != 400 {
			t.Fatalf("block: \"yes\": %d", r.Status)
		}
		admin.MustDo("PUT", "/_synapse/admin/v1/rooms/"+esc(delta)+"/block", map[string]any{"block": false}, &blk)
		carol.Join(delta)
		// A room unknown here may be blocked in advance.
		admin.MustDo("PUT", "/_synapse/admin/v1/rooms/"+esc("!future:elsewhere.test")+"/block", map[string]any{"block": true}, &blk)

		// make_room_admin: carol gets alice's power in a room she is not in.
		admin.MustDo("POST", "/_synapse/admin/v1/rooms/"+esc(ids["alpha"])+"/make_room_admin", map[string]any{"user_id": carol.UserID}, nil)
		var pl struct {
			Users map[string]int `json:"users"`
		}
		carol.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(ids["alpha"])+"/state/m.room.power_levels/", nil, &pl)
		if pl.Users[carol.UserID] != 100 {
			t.Fatalf("make_room_admin: %v", pl.Users)
		}
		if r := admin.Do("POST", "/_synapse/admin/v1/rooms/"+esc(ids["alpha"])+"/make_room_admin", map[string]any{"user_id": "@ghost:localhost"}); r.Status != 404 {
			t.Fatalf("make_room_admin of an unknown user: %d %s", r.Status, r.Body)
		}
	})
}

func TestAdminEventReportsAndMedia(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Reported"})
		bob.Join(room)
		var evs []string
		for i := 0; i < 3; i++ {
			evs = append(evs, alice.SendText(room, fmt.Sprintf("bad %d", i)))
			bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report/"+esc(evs[i]), map[string]any{"reason": fmt.Sprint("r", i), "score": -50}, nil)
		}
		var list struct {
			Reports []map[string]any `json:"event_reports"`
			Next    *int             `json:"next_token"`
			Total   int              `json:"total"`
		}
		admin.MustDo("GET", "/_synapse/admin/v1/event_reports?limit=2", nil, &list)
		if list.Total != 3 || len(list.Reports) != 2 || list.Next == nil || *list.Next != 2 || list.Reports[0]["event_id"] != evs[2] {
			t.Fatalf("reports, newest first: %+v", list)
		}
		wantFields(t, "report", list.Reports[0], "id", "received_ts", "room_id", "name", "event_id", "user_id", "reason", "score", "sender", "canonical_alias")
		if list.Reports[0]["sender"] != alice.UserID || list.Reports[0]["user_id"] != bob.UserID || list.Reports[0]["name"] != "Reported" {
			t.Fatalf("report: %v", list.Reports[0])
		}
		list.Next = nil
		admin.MustDo("GET", "/_synapse/admin/v1/event_reports?dir=f&room_id="+esc(room[1:5])+"&user_id="+esc(bob.UserID), nil, &list)
		if list.Total != 3 || list.Reports[0]["event_id"] != evs[0] || list.Next != nil {
			t.Fatalf("reports, oldest first, filtered: %+v", list)
		}
		admin.MustDo("GET", "/_synapse/admin/v1/event_reports?user_id=nobody", nil, &list)
		if list.Total != 0 || list.Reports == nil {
			t.Fatalf("reports of nobody: %+v", list)
		}
		admin.MustDo("GET", "/_synapse/admin/v1/event_reports?dir=f", nil, &list)
		id := int(list.Reports[0]["id"].(float64))
		var one map[string]any
		admin.MustDo("GET", fmt.Sprintf("/_synapse/admin/v1/event_reports/%d", id), nil, &one)
		ej, _ := one["event_json"].(map[string]any)
		if ej == nil || ej["content"].(map[string]any)["body"] != "bad 0" || one["reason"] != "r0" || one["score"].(float64) != -50 {
			t.Fatalf("one report: %v", one)
		}
		admin.MustDo("DELETE", fmt.Sprintf("/_synapse/admin/v1/event_reports/%d", id), nil, nil)
		for _, c := range []struct {
			method, path string
			status       int
		}{
			{"GET", fmt.Sprintf("/_synapse/admin/v1/event_reports/%d", id), 404},
			{"DELETE", fmt.Sprintf("/_synapse/admin/v1/event_reports/%d", id), 404},
			{"GET", "/_synapse/admin/v1/event_reports/abc", 400},
			{"GET", "/_synapse/admin/v1/event_reports/-1", 400},
			{"GET", "/_synapse/admin/v1/event_reports?limit=x", 400},
		} {
			if r := admin.Do(c.method, c.path, nil); r.Status != c.status {
				t.Errorf("%s %s: %d %s", c.method, c.path, r.Status, r.Body)
			}
		}

		// Media: quarantined media is not found, released it is again.
		mid := upload(t, alice, "text/plain", "a.txt", []byte("hello"))
		upload(t, alice, "text/plain", "b.txt", []byte("world!"))
		alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.file", "body": "a.txt", "url": "mxc://localhost/" + mid})
		get := func(c *ts.Client) int {
			resp, _ := mediaReq(t, c, "GET", dl+mid, nil, nil, true)
			return resp.StatusCode
		}
		if get(bob) != 200 {
			t.Fatal("media before quarantine")
		}
		admin.MustDo("POST", "/_synapse/admin/v1/media/quarantine/localhost/"+mid, map[string]any{}, nil)
		if get(bob) != 404 || get(admin) != 404 {
			t.Fatal("quarantined media is served")
		}
		admin.MustDo("POST", "/_synapse/admin/v1/media/unquarantine/localhost/"+mid, map[string]any{}, nil)
		if get(bob) != 200 {
			t.Fatal("released media is not served")
		}
		var nq struct {
			N int `json:"num_quarantined"`
		}
		admin.MustDo("POST", "/_synapse/admin/v1/room/"+esc(room)+"/media/quarantine", map[string]any{}, &nq)
		if nq.N != 1 || get(bob) != 404 {
			t.Fatalf("room quarantine: %d", nq.N)
		}
		admin.MustDo("POST", "/_synapse/admin/v1/user/"+esc(alice.UserID)+"/media/quarantine", map[string]any{}, &nq)
		if nq.N != 1 {
			t.Fatalf("user quarantine: %d", nq.N)
		}
		for _, bad := range []string{"/_synapse/admin/v1/media/quarantine/bad%20name/" + mid, "/_synapse/admin/v1/media/quarantine/localhost/a%2Fb"} {
			if r := admin.Do("POST", bad, map[string]any{}); r.Status != 400 && r.Status != 404 {
				t.Errorf("%s: %d %s", bad, r.Status, r.Body)
			}
		}

		// Statistics.
		var stats struct {
			Users []map[string]any `json:"users"`
			Total int              `json:"total"`
		}
		admin.MustDo("GET", "/_synapse/admin/v1/statistics/users/media", nil, &stats)
		if stats.Total != 1 || stats.Users[0]["user_id"] != alice.UserID || stats.Users[0]["media_count"].(float64) != 2 || stats.Users[0]["media_length"].(float64) != 11 {
			t.Fatalf("media statistics: %+v", stats)
		}
		wantFields(t, "media statistics", stats.Users[0], "displayname", "media_count", "media_length", "user_id")
		if r := admin.Do("GET", "/_synapse/admin/v1/statistics/users/media?order_by=size", nil); r.Status != 400 {
			t.Fatalf("bad order_by: %d", r.Status)
		}

		// Deletion.
		var del struct {
			Deleted []string `json:"deleted_media"`
			Total   int      `json:"total"`
		}
		admin.MustDo("DELETE", "/_synapse/admin/v1/media/localhost/"+mid, nil, &del)
		if del.Total != 1 || del.Deleted[0] != mid {
			t.Fatalf("delete: %+v", del)
		}
		if r := admin.Do("DELETE", "/_synapse/admin/v1/media/localhost/"+mid, nil); r.Status != 404 {
			t.Fatalf("deleted twice: %d", r.Status)
		}
		if r := admin.Do("DELETE", "/_synapse/admin/v1/media/other.test/"+mid, nil); r.Status != 400 {
			t.Fatalf("remote delete: %d", r.Status)
		}
		var purged map[string]any
		admin.MustDo("POST", "/_synapse/admin/v1/purge_media_cache?before_ts="+fmt.Sprint(time.Now().UnixMilli()), map[string]any{}, &purged)
		if purged["deleted"] != float64(0) {
			t.Fatalf("purge_media_cache: %v", purged)
		}
		if r := admin.Do("POST", "/_synapse/admin/v1/purge_media_cache", map[string]any{}); r.Status != 400 {
			t.Fatalf("purge_media_cache without before_ts: %d", r.Status)
		}

		// Server.
		var ver map[string]any
		admin.MustDo("GET", "/_synapse/admin/v1/server_version", nil, &ver)
		wantFields(t, "server_version", ver, "server_version")
	})
}

// waitDeleted waits for a deletion to finish and returns its status.
func waitDeleted(t *testing.T, admin *ts.Client, deleteID string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st map[string]any
		admin.MustDo("GET", "/_synapse/admin/v2/rooms/delete_status/"+deleteID, nil, &st)
		if st["status"] == "complete" || st["status"] == "failed" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("deletion still %v", st["status"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The deletion of a room with purge leaves no event, state, media
// reference or search row of the room in any table that has a room_id
// column (read from the schema, so that tables added later are covered).
func TestAdminRoomDeletePurge(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		ctx := context.Background()
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		mod := s.Register(t, "moderator")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Doomed", "topic": "searchable topic", "room_alias_name": "doomed"})
		keep := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Kept"})
		bob.Join(room)
		alice.SendText(keep, "kept findable words")
		mid := upload(t, alice, "image/png", "x.png", []byte("not really a png"))
		ev := alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.image", "body": "findable picture", "url": "mxc://localhost/" + mid})
		for i := 0; i < 5; i++ {
			bob.SendText(room, fmt.Sprintf("findable words %d", i))
		}
		bob.Send(room, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": ev, "key": "👍"}})
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(ev), map[string]any{}, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/rooms/"+esc(room)+"/tags/u.work", map[string]any{}, nil)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report/"+esc(ev), map[string]any{"reason": "x"}, nil)

		idsBefore, pos, groups, err := s.Store.RoomEventKeys(ctx, room)
		if err != nil || len(idsBefore) < 10 || len(groups) == 0 {
			t.Fatalf("room before: %d events, %d groups, %v", len(idsBefore), len(groups), err)
		}
		before, err := s.Store.RoomTraces(ctx, room, idsBefore, pos, groups)
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range []string{"events", "room_state", "room_members", "state_group_entries", "media_refs", "search_text", "receipts", "account_data", "content_reports", "room_aliases", "event_relations"} {
			if before[tb] == 0 {
				t.Errorf("before the purge, %s has no row of the room: the test would prove nothing", tb)
			}
		}

		// Bad requests first.
		for _, c := range []struct {
			body   any
			status int
		}{
			{nil, 400},
			{map[string]any{"purge": "yes"}, 400},
			{map[string]any{"new_room_user_id": "@someone:elsewhere.test"}, 400},
		} {
			if r := admin.Do("DELETE", "/_synapse/admin/v2/rooms/"+esc(room), c.body); r.Status != c.status {
				t.Errorf("delete with %v: %d %s", c.body, r.Status, r.Body)
			}
		}
		if r := admin.Do("DELETE", "/_synapse/admin/v2/rooms/"+esc("!nowhere:localhost"), map[string]any{}); r.Status != 400 {
			t.Errorf("delete of an unknown room: %d %s", r.Status, r.Body)
		}
		if r := admin.Do("GET", "/_synapse/admin/v2/rooms/"+esc(keep)+"/delete_status", nil); r.Status != 404 {
			t.Errorf("status of a room never deleted: %d", r.Status)
		}

		var started struct {
			DeleteID string `json:"delete_id"`
		}
		admin.MustDo("DELETE", "/_synapse/admin/v2/rooms/"+esc(room), map[string]any{"block": true, "purge": true,
			"new_room_user_id": mod.UserID, "room_name": "Closed", "message": "This room was closed."}, &started)
		st := waitDeleted(t, admin, started.DeleteID)
		wantFields(t, "delete status", st, "delete_id", "room_id", "status", "shutdown_room")
		sr := st["shutdown_room"].(map[string]any)
		wantFields(t, "shutdown_room", sr, "kicked_users", "failed_to_kick_users", "local_aliases", "new_room_id")
		if st["status"] != "complete" || len(sr["kicked_users"].([]any)) != 2 || len(sr["failed_to_kick_users"].([]any)) != 0 ||
			len(sr["local_aliases"].([]any)) != 1 || sr["new_room_id"] == nil {
			t.Fatalf("status: %v", st)
		}
		var byRoom struct {
			Results []map[string]any `json:"results"`
		}
		admin.MustDo("GET", "/_synapse/admin/v2/rooms/"+esc(room)+"/delete_status", nil, &byRoom)
		if len(byRoom.Results) != 1 || byRoom.Results[0]["delete_id"] != started.DeleteID {
			t.Fatalf("status by room: %v", byRoom)
		}

		after, err := s.Store.RoomTraces(ctx, room, idsBefore, pos, groups)
		if err != nil {
			t.Fatal(err)
		}
		for tb, n := range after {
			if n != 0 && !store.KeptRoomTables[tb] {
				t.Errorf("after the purge %s still has %d rows of the room", tb, n)
			}
		}
		if after["blocked_rooms"] != 1 {
			t.Errorf("the block went with the room")
		}

		// What users see: the room is gone, the new room has the message
		// and them, the alias leads there, search finds nothing of it.
		newRoom := sr["new_room_id"].(string)
		if r := alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/messages?dir=b", nil); r.Status != 403 && r.Status != 404 {
			t.Fatalf("messages of the purged room: %d %s", r.Status, r.Body)
		}
		if r := alice.Do("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{}); r.Status != 403 {
			t.Fatalf("join of the deleted, blocked room: %d %s", r.Status, r.Body)
		}
		var joined struct {
			Joined []string `json:"joined_rooms"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/joined_rooms", nil, &joined)
		if strings.Join(joined.Joined, ",") != newRoom+","+keep && strings.Join(joined.Joined, ",") != keep+","+newRoom {
			t.Fatalf("alice's rooms: %v (new %s)", joined.Joined, newRoom)
		}
		m := messages(t, alice, newRoom, "dir=b")
		if !strings.Contains(strings.Join(bodies(m.Chunk), "|"), "This room was closed.") {
			t.Fatalf("new room: %v", bodies(m.Chunk))
		}
		var dir struct {
			RoomID string `json:"room_id"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/directory/room/"+esc("#doomed:localhost"), nil, &dir)
		if dir.RoomID != newRoom {
			t.Fatalf("alias now leads to %s", dir.RoomID)
		}
		var found struct {
			Results struct {
				Room struct {
					Count   int              `json:"count"`
					Results []map[string]any `json:"results"`
				} `json:"room_events"`
			} `json:"search_categories"`
		}
		alice.MustDo("POST", "/_matrix/client/v3/search", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "findable"}}}, &found)
		if len(found.Results.Room.Results) != 1 {
			t.Fatalf("search after the purge: %+v", found.Results.Room)
		}
		// The media stays (its reference went): it is not the room's.
		resp, _ := mediaReq(t, alice, "GET", dl+mid, nil, nil, true)
		if resp.StatusCode != 200 {
			t.Fatalf("media after the purge: %d", resp.StatusCode)
		}
		if r := admin.Do("GET", "/_synapse/admin/v1/rooms/"+esc(room), nil); r.Status != 404 {
			t.Fatalf("details of the purged room: %d", r.Status)
		}
	})
}

// Deleting a room while its members write to it: the deletion completes,
// every send either succeeded before it or is refused cleanly (never a
// 500), and nothing of the room is left.
func TestAdminRoomDeleteWhileSending(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		ctx := context.Background()
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		var senders []*ts.Client
		for i := 0; i < 4; i++ {
			c := s.Register(t, "sender")
			c.Join(room)
			senders = append(senders, c)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[int]int{}
		for _, c := range senders {
			wg.Add(1)
			go func(c *ts.Client) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					r := c.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/t%d", esc(room), i), map[string]any{"msgtype": "m.text", "body": "spam"})
					mu.Lock()
					statuses[r.Status]++
					mu.Unlock()
				}
			}(c)
		}
		// Let the senders get going.
		for {
			mu.Lock()
			n := statuses[200]
			mu.Unlock()
			if n >= 20 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		var started struct {
			DeleteID string `json:"delete_id"`
		}
		admin.MustDo("DELETE", "/_synapse/admin/v2/rooms/"+esc(room), map[string]any{"purge": true, "force_purge": true}, &started)
		st := waitDeleted(t, admin, started.DeleteID)
		close(stop)
		wg.Wait()
		if st["status"] != "complete" {
			t.Fatalf("deletion: %v", st)
		}
		for code, n := range statuses {
			if code >= 500 {
				t.Errorf("%d sends answered %d", n, code)
			}
		}
		traces, err := s.Store.RoomTraces(ctx, room, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for tb, n := range traces {
			if n != 0 && !store.KeptRoomTables[tb] {
				t.Errorf("after the purge %s still has %d rows of the room", tb, n)
			}
		}
		// The server goes on: other rooms work.
		other := alice.CreateRoom(map[string]any{})
		alice.SendText(other, "still here")
		t.Logf("sends: %v", statuses)
	})
}
