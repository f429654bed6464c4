package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	ts "luxchat/internal/testserver"
)

func TestSyncFeatures(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		carol.Join(room)

		// A stored filter with a timeline limit and lazy-loaded members.
		var fr struct {
			FilterID string `json:"filter_id"`
		}
		bob.MustDo("POST", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/filter",
			map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 5}, "state": map[string]any{"lazy_load_members": true}}}, &fr)
		var stored map[string]any
		bob.MustDo("GET", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/filter/"+fr.FilterID, nil, &stored)
		if stored["room"] == nil {
			t.Fatalf("stored filter %v", stored)
		}
		first := doSync(t, bob, "timeout=0&filter="+fr.FilterID)
		jr := first.Rooms.Join[room]
		if jr.Summary["m.joined_member_count"] != float64(3) {
			t.Fatalf("summary %v", jr.Summary)
		}
		for i := range 12 {
			alice.SendText(room, fmt.Sprint("burst ", i))
		}
		// Limited incremental sync: the last 5, and prev_batch leads to the rest.
		inc := doSync(t, bob, "timeout=0&filter="+fr.FilterID+"&since="+first.NextBatch)
		tl := inc.Rooms.Join[room].Timeline
		if !tl.Limited || !slices.Equal(bodies(tl.Events), []string{"burst 7", "burst 8", "burst 9", "burst 10", "burst 11"}) {
			t.Fatalf("limited=%v timeline %v", tl.Limited, bodies(tl.Events))
		}
		p := messages(t, bob, room, "dir=b&limit=3&from="+url.QueryEscape(tl.PrevBatch))
		if !slices.Equal(bodies(p.Chunk), []string{"burst 6", "burst 5", "burst 4"}) {
			t.Fatalf("prev_batch pagination %v", bodies(p.Chunk))
		}
		// Lazy loading: only the senders' member events come with the state.
		for _, e := range inc.Rooms.Join[room].State.Events {
			if e.Type == "m.room.member" && *e.StateKey == carol.UserID {
				t.Fatal("lazy loading sent a member who did not speak")
			}
		}
		// An inline filter works too.
		inline := doSync(t, bob, "timeout=0&filter="+url.QueryEscape(`{"room":{"timeline":{"limit":1}}}`))
		if n := len(inline.Rooms.Join[room].Timeline.Events); n != 1 {
			t.Fatalf("inline filter: %d events", n)
		}

		// Account data, room tags and fully read markers reach sync.
		bob.MustDo("PUT", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/account_data/lu.test", map[string]int{"n": 1}, nil)
		bob.MustDo("PUT", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/rooms/"+esc(room)+"/tags/m.favourite", map[string]float64{"order": 0.5}, nil)
		var raw map[string]json.RawMessage
		bob.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(inc.NextBatch), nil, &raw)
		var ad struct {
			AccountData struct {
				Events []event `json:"events"`
			} `json:"account_data"`
			Rooms struct {
				Join map[string]struct {
					AccountData struct {
						Events []event `json:"events"`
					} `json:"account_data"`
				} `json:"join"`
			} `json:"rooms"`
		}
		b, _ := json.Marshal(raw)
		_ = json.Unmarshal(b, &ad)
		if len(ad.AccountData.Events) != 1 || ad.AccountData.Events[0].Type != "lu.test" {
			t.Fatalf("global account data %+v", ad.AccountData)
		}
		roomAD := ad.Rooms.Join[room].AccountData.Events
		if len(roomAD) != 1 || roomAD[0].Type != "m.tag" || roomAD[0].Content["tags"] == nil {
			t.Fatalf("room account data %+v", roomAD)
		}
		var tags map[string]map[string]any
		bob.MustDo("GET", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/rooms/"+esc(room)+"/tags", nil, &tags)
		if tags["tags"]["m.favourite"] == nil {
			t.Fatalf("tags %v", tags)
		}

		// Presence of a room mate.
		alice.MustDo("PUT", "/_matrix/client/v3/presence/"+esc(alice.UserID)+"/status", map[string]string{"presence": "unavailable", "status_msg": "in a meeting"}, nil)
		var pres map[string]any
		bob.MustDo("GET", "/_matrix/client/v3/presence/"+esc(alice.UserID)+"/status", nil, &pres)
		if pres["presence"] != "unavailable" || pres["status_msg"] != "in a meeting" {
			t.Fatalf("presence %v", pres)
		}

		// Leaving shows the room under "leave" in the next sync.
		before := doSync(t, carol, "timeout=0")
		carol.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		after := doSync(t, carol, "timeout=0&since="+before.NextBatch)
		if _, ok := after.Rooms.Leave[room]; !ok {
			t.Fatalf("left room missing from sync: %+v", after.Rooms)
		}
		if _, ok := after.Rooms.Join[room]; ok {
			t.Fatal("left room still under join")
		}

		// Members at an earlier point: before Carol left she was joined.
		var members struct {
			Chunk []event `json:"chunk"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/members?membership=join&at="+url.QueryEscape(before.NextBatch), nil, &members)
		if len(members.Chunk) != 3 {
			t.Fatalf("members at earlier token: %d", len(members.Chunk))
		}
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/members?membership=join", nil, &members)
		if len(members.Chunk) != 2 {
			t.Fatalf("members now: %d", len(members.Chunk))
		}
	})
}

func TestHealthAndMetrics(t *testing.T) {
	s := ts.New(t)
	r := s.Anonymous(t).Do("GET", "/health", nil)
	if r.Status != 200 || string(r.Body) != `{"status":"ok"}` {
		t.Fatalf("health %d %s", r.Status, r.Body)
	}
	var v struct {
		Versions []string `json:"versions"`
	}
	s.Anonymous(t).MustDo("GET", "/_matrix/client/versions", nil, &v)
	if !slices.Contains(v.Versions, "v1.3") {
		t.Fatalf("versions %v", v.Versions)
	}
}

// Every sync carries the key counts, even one that finds nothing new.
func TestIdleSyncCarriesKeyCounts(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	var first struct {
		NextBatch string `json:"next_batch"`
	}
	alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=0", nil, &first)
	var idle map[string]json.RawMessage
	alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(first.NextBatch), nil, &idle)
	if idle["device_unused_fallback_key_types"] == nil || idle["device_one_time_keys_count"] == nil {
		t.Fatalf("idle sync lacks key counts: %v", idle)
	}
}

// Shutting down answers waiting long polls and finishes quickly.
func TestGracefulShutdownEndsLongPolls(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	first := doSync(t, alice, "timeout=0")
	done := make(chan int, 1)
	go func() {
		r := alice.Do("GET", "/_matrix/client/v3/sync?timeout=30000&since="+url.QueryEscape(first.NextBatch), nil)
		done <- r.Status
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	select {
	case status := <-done:
		if status != 200 {
			t.Fatalf("long poll ended with %d", status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll still running after shutdown")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
}
