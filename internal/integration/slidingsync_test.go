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
		time.Sleep(100 * time.Millisecond)
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
