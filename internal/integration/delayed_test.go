package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
	"luxchat/internal/testutil/pgtest"
)

// Delayed events (MSC4140) over HTTP, on both engines.

const (
	msc4140Path = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
	testType    = "com.example.test"
)

// delayedServer starts a server whose users may schedule few delayed
// events, so that the limit is reached quickly.
func delayedServer(t *testing.T, engine string, opts ...ts.Option) *ts.Server {
	opts = append([]ts.Option{ts.WithConfig(func(c *config.Config) { c.DelayedEvents.MaxPerUser = 5 })}, opts...)
	if engine == "postgres" {
		opts = append(opts, ts.WithPostgres(t))
	}
	return ts.New(t, opts...)
}

func forEachDelayedEngine(t *testing.T, f func(t *testing.T, engine string)) {
	for _, e := range []string{"sqlite", "postgres"} {
		t.Run(e, func(t *testing.T) { f(t, e) })
	}
}

// callRoom makes a room where anyone joined may send testType state, and
// joins bob to it.
func callRoom(t *testing.T, alice, bob *ts.Client) string {
	t.Helper()
	room := alice.CreateRoom(map[string]any{"preset": "public_chat",
		"power_level_content_override": map[string]any{"events": map[string]int{testType: 0}}})
	bob.Join(room)
	return room
}

var delayedTxn int

func scheduleSend(t *testing.T, c *ts.Client, room string, delay string, content any) *ts.Response {
	t.Helper()
	delayedTxn++
	return c.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/%s/dtx%d?org.matrix.msc4140.delay=%s", esc(room), testType, delayedTxn, delay), content)
}

func scheduleState(t *testing.T, c *ts.Client, room, key string, delayMS int, content any) string {
	t.Helper()
	var out struct {
		DelayID string `json:"delay_id"`
	}
	c.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/%s/%s?org.matrix.msc4140.delay=%d", esc(room), testType, esc(key), delayMS), content, &out)
	if out.DelayID == "" {
		t.Fatal("no delay_id")
	}
	return out.DelayID
}

type delayedList struct {
	DelayedEvents []struct {
		DelayID  string         `json:"delay_id"`
		RoomID   string         `json:"room_id"`
		Type     string         `json:"type"`
		StateKey *string        `json:"state_key"`
		DelayMS  int64          `json:"delay_ms"`
		Content  map[string]any `json:"content"`
	} `json:"delayed_events"`
	NextBatch string `json:"next_batch"`
}

func listDelayed(t *testing.T, c *ts.Client, query string) delayedList {
	t.Helper()
	var l delayedList
	c.MustDo("GET", msc4140Path+query, nil, &l)
	return l
}

type delayedInfo struct {
	EventID     string         `json:"event_id"`
	FinalisedTS int64          `json:"finalised_ts"`
	Error       map[string]any `json:"error"`
}

func delayedOne(t *testing.T, c *ts.Client, id string) delayedInfo {
	t.Helper()
	var d delayedInfo
	c.MustDo("GET", msc4140Path+"/"+id, nil, &d)
	return d
}

// stateOf returns the content of a testType state event, nil when absent.
func stateOf(t *testing.T, c *ts.Client, room, key string) map[string]any {
	t.Helper()
	r := c.Do("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/%s/%s", esc(room), testType, esc(key)), nil)
	if r.Status == http.StatusNotFound {
		return nil
	}
	var m map[string]any
	if r.Status != 200 || r.JSON(&m) != nil {
		t.Fatalf("state: %d %s", r.Status, r.Body)
	}
	return m
}

// waitUntil polls cond every 20 ms until it holds or the deadline passes.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDelayedEvents(t *testing.T) {
	forEachDelayedEngine(t, func(t *testing.T, engine string) {
		s := delayedServer(t, engine)
		anon := s.Anonymous(t)

		t.Run("advertised", func(t *testing.T) {
			var v struct {
				Unstable map[string]bool `json:"unstable_features"`
			}
			anon.MustDo("GET", "/_matrix/client/versions", nil, &v)
			if !v.Unstable["org.matrix.msc4140"] {
				t.Fatal("org.matrix.msc4140 not in unstable_features")
			}
			alice := s.Register(t, "alice")
			var c struct {
				Capabilities map[string]map[string]any `json:"capabilities"`
			}
			alice.MustDo("GET", "/_matrix/client/v3/capabilities", nil, &c)
			if got := c.Capabilities["org.matrix.msc4140.delayed_events"]; got["max_delay_ms"] != float64(86400000) || got["max_scheduled"] != float64(5) {
				t.Fatalf("capability %v", got)
			}
			if r := anon.Do("GET", msc4140Path, nil); r.Status != 401 {
				t.Fatalf("list without a token: %d", r.Status)
			}
		})

		t.Run("fires on time into another member's sync", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, alice, bob)
			since := doSync(t, bob, "timeout=0").NextBatch
			const delay = 1500 * time.Millisecond
			start := time.Now()
			r := scheduleSend(t, alice, room, "1500", map[string]any{"n": 1})
			var first struct {
				DelayID string `json:"delay_id"`
			}
			if r.Status != 200 || r.JSON(&first) != nil || first.DelayID == "" {
				t.Fatalf("schedule: %d %s", r.Status, r.Body)
			}
			// The same transaction again (no body, as a retry may be)
			// answers the same delay id and schedules nothing.
			delayedTxn--
			var again struct {
				DelayID string `json:"delay_id"`
			}
			if r := scheduleSend(t, alice, room, "1500", nil); r.Status != 200 || r.JSON(&again) != nil || again.DelayID != first.DelayID {
				t.Fatalf("repeated transaction: %d %s (first %s)", r.Status, r.Body, first.DelayID)
			}
			l := listDelayed(t, alice, "")
			if len(l.DelayedEvents) != 1 || l.DelayedEvents[0].DelayID != first.DelayID || l.DelayedEvents[0].DelayMS != 1500 ||
				l.DelayedEvents[0].Content["n"] != float64(1) || l.DelayedEvents[0].RoomID != room {
				t.Fatalf("list %+v", l)
			}
			if l := listDelayed(t, bob, ""); len(l.DelayedEvents) != 0 {
				t.Fatalf("bob sees alice's delayed events: %+v", l)
			}
			var arrived time.Duration
			for arrived == 0 {
				sr := doSync(t, bob, "timeout=5000&since="+since)
				since = sr.NextBatch
				for _, ev := range sr.Rooms.Join[room].Timeline.Events {
					if ev.Type == testType && ev.Sender == alice.UserID && ev.Content["n"] == float64(1) {
						arrived = time.Since(start)
					}
				}
				if arrived == 0 && time.Since(start) > delay+5*time.Second {
					t.Fatal("the delayed event never reached bob's sync")
				}
			}
			if arrived < delay || arrived > delay+time.Second {
				t.Fatalf("sent after %v, want %v (+1 s)", arrived, delay)
			}
			if l := listDelayed(t, alice, ""); len(l.DelayedEvents) != 0 {
				t.Fatalf("still scheduled after sending: %+v", l)
			}
			d := delayedOne(t, alice, first.DelayID)
			if d.EventID == "" || d.FinalisedTS == 0 {
				t.Fatalf("finalised %+v", d)
			}
			t.Logf("sent %v after scheduling with a delay of %v", arrived, delay)
		})

		t.Run("cancel", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, alice, bob)
			id := scheduleState(t, alice, room, "cancelled", 1000, map[string]any{"setter": "never"})
			// Without a token: the delay id is the credential.
			anon.MustDo("POST", msc4140Path+"/"+id+"/cancel", map[string]any{}, nil)
			anon.MustDo("POST", msc4140Path+"/"+id+"/cancel", map[string]any{}, nil) // a retry succeeds too
			if r := bob.Do("POST", msc4140Path+"/"+id+"/cancel", map[string]any{}); r.Status != 404 {
				t.Fatalf("another user's token: %d", r.Status)
			}
			if l := listDelayed(t, alice, ""); len(l.DelayedEvents) != 0 {
				t.Fatalf("listed after cancel: %+v", l)
			}
			time.Sleep(1500 * time.Millisecond)
			if st := stateOf(t, alice, room, "cancelled"); st != nil {
				t.Fatalf("a cancelled event was sent: %v", st)
			}
			if d := delayedOne(t, alice, id); d.FinalisedTS == 0 || d.EventID != "" || d.Error != nil {
				t.Fatalf("cancelled event %+v", d)
			}
			for _, a := range []string{"send", "restart"} {
				if r := alice.Do("POST", msc4140Path+"/"+id+"/"+a, map[string]any{}); r.Status != 409 {
					t.Fatalf("%s after cancel: %d %s", a, r.Status, r.Body)
				}
			}
			if r := alice.Do("POST", msc4140Path+"/nosuchid/cancel", map[string]any{}); r.Status != 404 || r.ErrCode() != "M_NOT_FOUND" {
				t.Fatalf("unknown id: %d %s", r.Status, r.Body)
			}
			if r := alice.Do("POST", msc4140Path+"/"+id+"/oops", map[string]any{}); r.Status != 404 {
				t.Fatalf("unknown action: %d", r.Status)
			}
			if r := alice.Do("POST", msc4140Path+"/"+id, map[string]any{}); r.Status != 400 {
				t.Fatalf("no action: %d", r.Status)
			}
		})

		t.Run("restart pushes the time back", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, alice, bob)
			start := time.Now()
			id := scheduleState(t, alice, room, "restarted", 1500, map[string]any{"setter": "timeout"})
			time.Sleep(1000 * time.Millisecond)
			// The action in the body, the MSC's earlier form.
			restarted := time.Now() // before the server's clock restarts
			alice.MustDo("POST", msc4140Path+"/"+id, map[string]any{"action": "restart"}, nil)
			time.Sleep(1000 * time.Millisecond)
			if st := stateOf(t, alice, room, "restarted"); st != nil {
				t.Fatalf("sent %v after start though restarted", time.Since(start))
			}
			waitUntil(t, 3*time.Second, "restarted event sent", func() bool { return stateOf(t, bob, room, "restarted") != nil })
			if since := time.Since(restarted); since < 1500*time.Millisecond {
				t.Fatalf("sent %v after the restart", since)
			}
		})

		t.Run("send now", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, alice, bob)
			id := scheduleState(t, alice, room, "now", 100000, map[string]any{"setter": "send"})
			anon.MustDo("POST", msc4140Path+"/"+id+"/send", map[string]any{}, nil)
			if st := stateOf(t, bob, room, "now"); st["setter"] != "send" {
				t.Fatalf("state after send: %v", st)
			}
			anon.MustDo("POST", msc4140Path+"/"+id+"/send", map[string]any{}, nil) // a retry succeeds
			if r := alice.Do("POST", msc4140Path+"/"+id+"/cancel", map[string]any{}); r.Status != 409 {
				t.Fatalf("cancel after send: %d", r.Status)
			}
			if d := delayedOne(t, alice, id); d.EventID == "" {
				t.Fatalf("sent event %+v", d)
			}
			if r := bob.Do("GET", msc4140Path+"/"+id, nil); r.Status != 404 {
				t.Fatalf("bob reads alice's delayed event: %d", r.Status)
			}
		})

		t.Run("per-user limit", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, alice, bob)
			var ids []string
			for i := range 5 {
				ids = append(ids, scheduleState(t, alice, room, "limit"+strconv.Itoa(i), 60000+i*1000, map[string]any{}))
			}
			r := scheduleSend(t, alice, room, "60000", map[string]any{})
			if r.Status != 429 || r.ErrCode() != "M_LIMIT_EXCEEDED" {
				t.Fatalf("sixth: %d %s", r.Status, r.Body)
			}
			if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 55 || ra > 60 {
				t.Fatalf("Retry-After %q, want about 60 s", r.Header.Get("Retry-After"))
			}
			// Others are not limited by alice's count.
			if r := scheduleSend(t, bob, room, "60000", map[string]any{}); r.Status != 200 {
				t.Fatalf("bob: %d %s", r.Status, r.Body)
			}
			alice.MustDo("POST", msc4140Path+"/"+ids[0]+"/cancel", map[string]any{}, nil)
			if r := scheduleSend(t, alice, room, "60000", map[string]any{}); r.Status != 200 {
				t.Fatalf("after a cancel: %d %s", r.Status, r.Body)
			}
			// Paging: the soonest first, in pages with next_batch.
			l := listDelayed(t, alice, "")
			// (the message, due in 60 s, before limit1, due in 61 s)
			if len(l.DelayedEvents) != 5 || l.NextBatch != "" || l.DelayedEvents[0].StateKey != nil || *l.DelayedEvents[1].StateKey != "limit1" {
				t.Fatalf("list %+v", l)
			}
		})

		t.Run("bad delays", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, alice, bob)
			for _, d := range []string{"-5", "abc", "0", "1.5", "1e3", "", "99999999999999999999999", "0x10"} {
				if r := scheduleSend(t, alice, room, d, map[string]any{}); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
					t.Fatalf("delay %q: %d %s", d, r.Status, r.Body)
				}
			}
			r := scheduleSend(t, alice, room, strconv.Itoa(24*3600*1000+1), map[string]any{})
			if r.Status != 400 || r.ErrCode() != "M_MAX_DELAY_EXCEEDED" {
				t.Fatalf("above the maximum: %d %s", r.Status, r.Body)
			}
			// The MSC's own endpoint answers M_FORBIDDEN there.
			r = alice.Do("PUT", fmt.Sprintf("/_matrix/client/unstable/org.matrix.msc4140/rooms/%s/delayed_event/%s/big", esc(room), testType),
				map[string]any{"delay_ms": 24*3600*1000 + 1, "content": map[string]any{}})
			if r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
				t.Fatalf("delayed_event above the maximum: %d %s", r.Status, r.Body)
			}
			for _, body := range []any{map[string]any{"delay_ms": -1, "content": map[string]any{}}, map[string]any{"delay_ms": "5", "content": map[string]any{}},
				map[string]any{"delay_ms": 1.5, "content": map[string]any{}}, map[string]any{"content": map[string]any{}}, map[string]any{"delay_ms": 5, "content": 3}} {
				r := alice.Do("PUT", fmt.Sprintf("/_matrix/client/unstable/org.matrix.msc4140/rooms/%s/delayed_event/%s/bad%d", esc(room), testType, time.Now().UnixNano()), body)
				if r.Status != 400 {
					t.Fatalf("delayed_event %v: %d %s", body, r.Status, r.Body)
				}
			}
			if r := alice.Do("PUT", "/_matrix/client/v3/rooms/%21x:y/send/m.room.message/nobody?org.matrix.msc4140.delay=1000", "not json"); r.Status != 400 {
				t.Fatalf("not JSON: %d %s", r.Status, r.Body)
			}
			if l := listDelayed(t, alice, ""); len(l.DelayedEvents) != 0 {
				t.Fatalf("bad requests scheduled %+v", l)
			}
			// The MSC's own endpoint schedules state with the key in the body.
			var out struct {
				DelayID string `json:"delay_id"`
			}
			alice.MustDo("PUT", fmt.Sprintf("/_matrix/client/unstable/org.matrix.msc4140/rooms/%s/delayed_event/%s/ok", esc(room), testType),
				map[string]any{"delay_ms": 200, "state_key": "body", "content": map[string]any{"via": "delayed_event"}}, &out)
			waitUntil(t, 3*time.Second, "delayed_event sent", func() bool { return stateOf(t, bob, room, "body") != nil })
		})

		t.Run("another user's state over the key cancels", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, alice, bob)
			mine := scheduleState(t, alice, room, "mine", 1500, map[string]any{"setter": "delayed"})
			theirs := scheduleState(t, alice, room, "theirs", 1500, map[string]any{"setter": "delayed"})
			// Alice's own state over her key leaves her delayed event
			// alone (a call member's join before its delayed leave).
			alice.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/%s/mine", esc(room), testType), map[string]any{"setter": "alice"}, nil)
			// Bob's state over the other key cancels that one.
			bob.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/%s/theirs", esc(room), testType), map[string]any{"setter": "bob"}, nil)
			d := delayedOne(t, alice, theirs)
			if d.FinalisedTS == 0 || d.Error["errcode"] != "M_CANCELLED_BY_STATE_UPDATE" {
				t.Fatalf("overwritten delayed event %+v", d)
			}
			if l := listDelayed(t, alice, ""); len(l.DelayedEvents) != 1 || l.DelayedEvents[0].DelayID != mine {
				t.Fatalf("list %+v", l)
			}
			waitUntil(t, 3*time.Second, "alice's own delayed state", func() bool { return stateOf(t, bob, room, "mine")["setter"] == "delayed" })
			if st := stateOf(t, bob, room, "theirs"); st["setter"] != "bob" {
				t.Fatalf("bob's state replaced: %v", st)
			}
		})

		t.Run("dropped when the user left", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, bob, alice) // bob's room: it lives on after alice leaves
			r := scheduleSend(t, alice, room, "300", map[string]any{"n": "after leaving"})
			var out struct {
				DelayID string `json:"delay_id"`
			}
			if r.Status != 200 || r.JSON(&out) != nil {
				t.Fatalf("schedule: %d %s", r.Status, r.Body)
			}
			alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
			var d delayedInfo
			waitUntil(t, 3*time.Second, "finalised", func() bool { d = delayedOne(t, alice, out.DelayID); return d.FinalisedTS != 0 })
			if d.EventID != "" || d.Error["errcode"] != "M_FORBIDDEN" {
				t.Fatalf("delayed event of a user who left: %+v", d)
			}
			// A room that does not exist: refused when due, too.
			r = scheduleSend(t, alice, "!nosuchroom:"+s.Config.ServerName, "100", map[string]any{})
			var ghost struct {
				DelayID string `json:"delay_id"`
			}
			if r.Status != 200 || r.JSON(&ghost) != nil {
				t.Fatalf("schedule into an unknown room: %d %s", r.Status, r.Body)
			}
			waitUntil(t, 3*time.Second, "finalised", func() bool { d = delayedOne(t, alice, ghost.DelayID); return d.FinalisedTS != 0 })
			if d.EventID != "" || d.Error == nil {
				t.Fatalf("delayed event for an unknown room: %+v", d)
			}
			for _, ev := range messages(t, bob, room, "dir=b&limit=50").Chunk {
				if ev.Type == testType {
					t.Fatalf("sent into a room its sender left: %+v", ev)
				}
			}
		})

		t.Run("events due moments apart all go", func(t *testing.T) {
			// Scheduled one after the other, they fall due a millisecond
			// or so apart, some while others are being sent.
			bob := s.Register(t, "bob")
			room := bob.CreateRoom(map[string]any{"preset": "public_chat",
				"power_level_content_override": map[string]any{"events": map[string]int{testType: 0}}})
			var callers []*ts.Client
			for range 10 {
				c := s.Register(t, "caller")
				c.Join(room)
				callers = append(callers, c)
			}
			for i := range 5 {
				for j, c := range callers {
					scheduleState(t, c, room, fmt.Sprintf("member%d_%d", j, i), 300, map[string]any{})
				}
			}
			for _, c := range callers {
				waitUntil(t, 5*time.Second, "all delayed events sent", func() bool { return len(listDelayed(t, c, "").DelayedEvents) == 0 })
			}
		})

		t.Run("survives a restart", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, alice, bob)
			scheduleState(t, alice, room, "overdue", 300, map[string]any{})
			scheduleState(t, alice, room, "later", 3000, map[string]any{})
			s2 := s.Restart(t)
			s = s2
			alice.URL, bob.URL, anon.URL = s2.URL, s2.URL, s2.URL
			time.Sleep(500 * time.Millisecond) // the first fell due while down, or just after
			waitUntil(t, 2*time.Second, "overdue event after restart", func() bool { return stateOf(t, bob, room, "overdue") != nil })
			if st := stateOf(t, bob, room, "later"); st != nil {
				t.Fatal("the later event came early")
			}
			waitUntil(t, 5*time.Second, "later event after restart", func() bool { return stateOf(t, bob, room, "later") != nil })
		})
	})
}

// TestDelayedEventsSurviveKill9 schedules delayed events, kills the
// server process with SIGKILL and checks that after a start on the same
// data the overdue one is sent at once and the other at its time, once.
func TestDelayedEventsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server process")
	}
	bin := buildLuxchat(t)
	forEachDelayedEngine(t, func(t *testing.T, engine string) {
		p := startProcess(t, bin, engine)
		alice := p.register(t, "alice")
		bob := p.register(t, "bob")
		var room struct {
			RoomID string `json:"room_id"`
		}
		p.call(t, "POST", "/_matrix/client/v3/createRoom", alice, map[string]any{"preset": "public_chat",
			"power_level_content_override": map[string]any{"events": map[string]int{testType: 0}}}, &room)
		p.call(t, "POST", "/_matrix/client/v3/join/"+esc(room.RoomID), bob, map[string]any{}, nil)
		for _, d := range []struct {
			key   string
			delay int
		}{{"overdue", 500}, {"later", 4000}} {
			if st := p.call(t, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/%s/%s?org.matrix.msc4140.delay=%d", esc(room.RoomID), testType, d.key, d.delay),
				alice, map[string]any{"key": d.key}, nil); st != 200 {
				t.Fatalf("schedule %s: %d", d.key, st)
			}
		}
		p.kill(t)
		time.Sleep(time.Second)
		p.start(t)
		sent := func(key string) bool {
			return p.call(t, "GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/%s/%s", esc(room.RoomID), testType, key), bob, nil, nil) == 200
		}
		waitUntil(t, 2*time.Second, "overdue event after kill -9", func() bool { return sent("overdue") })
		if sent("later") {
			t.Fatal("the later event came early")
		}
		waitUntil(t, 5*time.Second, "later event after kill -9", func() bool { return sent("later") })
		var msgs messagesPage
		p.call(t, "GET", "/_matrix/client/v3/rooms/"+esc(room.RoomID)+"/messages?dir=b&limit=100", bob, nil, &msgs)
		var keys []string
		for _, ev := range msgs.Chunk {
			if ev.Type == testType {
				keys = append(keys, *ev.StateKey)
			}
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"later", "overdue"}) {
			t.Fatalf("delayed events in the timeline: %v", keys)
		}
		var l delayedList
		p.call(t, "GET", msc4140Path, alice, nil, &l)
		if len(l.DelayedEvents) != 0 {
			t.Fatalf("still scheduled: %+v", l)
		}
	})
}

// buildLuxchat builds the server binary for tests that run it as a
// process.
func buildLuxchat(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "luxchat")
	build := exec.Command("go", "build", "-o", bin, "luxchat/cmd/luxchat")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}
	return bin
}

// process is a luxchat server running as a child process.
type process struct {
	bin, cfg, base string
	cmd            *exec.Cmd
}

func startProcess(t *testing.T, bin, engine string) *process {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	db := "sqlite"
	if engine == "postgres" {
		db = pgtest.NewDatabase(t)
	}
	p := &process{bin: bin, cfg: filepath.Join(dir, "luxchat.yaml"), base: "http://" + addr}
	conf := fmt.Sprintf("listen: {client: %q}\ndata_dir: %q\ndatabase: %q\nregistration: {mode: open}\nrate_limits: {enabled: false}\n"+
		"auth: {password_hash_memory_kib: 1024, password_hash_time: 1}\nlog: {level: warn}\n", addr, filepath.Join(dir, "data"), db)
	if err := os.WriteFile(p.cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start(t)
	t.Cleanup(func() {
		if p.cmd != nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			_ = p.cmd.Wait()
		}
	})
	return p
}

func (p *process) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(p.bin, "serve", "--config", p.cfg)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(p.base + "/health"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("server did not start")
}

func (p *process) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// call sends a request with token (may be "") and decodes the answer
// into out; it returns the status.
func (p *process) call(t *testing.T, method, path, token string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, p.base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func (p *process) register(t *testing.T, name string) string {
	t.Helper()
	var reg struct {
		AccessToken string `json:"access_token"`
	}
	if st := p.call(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"username": name, "password": "delayed-test-password",
		"auth": map[string]string{"type": "m.login.dummy"}}, &reg); st != 200 {
		t.Fatalf("register %s: %d", name, st)
	}
	return reg.AccessToken
}
