package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/delayed"
	ts "luxchat/internal/testserver"
)

// Delayed events (MSC4140): what a sender sees of them once sent, the
// per-user limit under concurrent requests, rate limits when they fall
// due, the finalised list and its bound, and the log of a dropped one.

const delayIDKey = "org.matrix.msc4140.delay_id"

// logBuffer collects a server's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestDelayedEventsMore(t *testing.T) {
	forEachDelayedEngine(t, func(t *testing.T, engine string) {
		logs := &logBuffer{}
		s := delayedServer(t, engine, ts.WithLog(logs))

		t.Run("delay id in unsigned for its sender only", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, alice, bob)
			r := scheduleSend(t, alice, room, "100", map[string]any{"n": "message"})
			var msg struct {
				DelayID string `json:"delay_id"`
			}
			if r.Status != 200 || r.JSON(&msg) != nil {
				t.Fatalf("schedule: %d %s", r.Status, r.Body)
			}
			state := scheduleState(t, alice, room, "member", 100, map[string]any{"n": "state"})
			// Alice's second device sees it too: the MSC shows it to the
			// sender, not only to the device that scheduled it.
			alice2 := secondDevice(t, s, alice)
			waitUntil(t, 5*time.Second, "both sent", func() bool { return len(listDelayed(t, alice, "").DelayedEvents) == 0 })
			want := map[string]string{"message": msg.DelayID, "state": state}
			check := func(who string, evs []event, mine bool) {
				t.Helper()
				seen := 0
				for _, ev := range evs {
					n, _ := ev.Content["n"].(string)
					if ev.Type != testType || want[n] == "" {
						continue
					}
					seen++
					got, has := ev.Unsigned[delayIDKey]
					if mine && got != want[n] || !mine && has {
						t.Errorf("%s sees %s with unsigned %v (want delay id %v: %s)", who, n, ev.Unsigned, mine, want[n])
					}
					if _, ok := ev.Unsigned["transaction_id"]; ok {
						t.Errorf("%s sees a transaction_id on the delayed %s: %v", who, n, ev.Unsigned)
					}
				}
				if seen != 2 {
					t.Errorf("%s saw %d of the 2 delayed events", who, seen)
				}
			}
			check("alice in /messages", messages(t, alice, room, "dir=b&limit=50").Chunk, true)
			check("alice's second device in /messages", messages(t, alice2, room, "dir=b&limit=50").Chunk, true)
			check("bob in /messages", messages(t, bob, room, "dir=b&limit=50").Chunk, false)
			check("alice in /sync", doSync(t, alice, "timeout=0").Rooms.Join[room].Timeline.Events, true)
			check("bob in /sync", doSync(t, bob, "timeout=0").Rooms.Join[room].Timeline.Events, false)
			d := delayedOne(t, alice, state)
			var ev event
			alice.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(room), esc(d.EventID)), nil, &ev)
			if ev.Unsigned[delayIDKey] != state {
				t.Errorf("alice's /event: unsigned %v", ev.Unsigned)
			}
		})

		t.Run("concurrent schedules stay within the per-user limit", func(t *testing.T) {
			// Rounds of concurrent requests, each by a new user: a race
			// between the count and the insert shows in some of them.
			for round := range 8 {
				alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
				room := callRoom(t, alice, bob)
				const tries = 24 // the limit is 5
				statuses := make([]int, tries)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range tries {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						r := alice.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/%s/c%d?org.matrix.msc4140.delay=60000", esc(room), testType, i),
							map[string]any{})
						statuses[i] = r.Status
					}()
				}
				close(start)
				wg.Wait()
				ok := 0
				for _, st := range statuses {
					switch st {
					case 200:
						ok++
					case 429:
					default:
						t.Fatalf("statuses %v", statuses)
					}
				}
				n := len(listDelayed(t, alice, "").DelayedEvents)
				if ok != 5 || n != 5 {
					t.Fatalf("round %d: %d of %d concurrent schedules accepted, %d scheduled; the limit is 5", round, ok, tries, n)
				}
			}
		})

		t.Run("finalised events listed and bounded", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, alice, bob)
			cancelled := scheduleState(t, alice, room, "f1", 60000, map[string]any{})
			alice.MustDo("POST", msc4140Path+"/"+cancelled+"/cancel", map[string]any{}, nil)
			sent := scheduleState(t, alice, room, "f2", 60000, map[string]any{})
			alice.MustDo("POST", msc4140Path+"/"+sent+"/send", map[string]any{}, nil)
			scheduled := scheduleState(t, alice, room, "f3", 60000, map[string]any{})
			var l struct {
				DelayedEvents []map[string]any `json:"delayed_events"`
			}
			alice.MustDo("GET", msc4140Path+"?status=finalised", nil, &l)
			if len(l.DelayedEvents) != 2 || l.DelayedEvents[0]["delay_id"] != sent || l.DelayedEvents[0]["outcome"] != "send" ||
				l.DelayedEvents[0]["event_id"] == nil || l.DelayedEvents[1]["delay_id"] != cancelled || l.DelayedEvents[1]["outcome"] != "cancel" {
				t.Fatalf("finalised list %v", l.DelayedEvents)
			}
			if s := listDelayed(t, alice, "?status=scheduled"); len(s.DelayedEvents) != 1 || s.DelayedEvents[0].DelayID != scheduled {
				t.Fatalf("scheduled list %+v", s)
			}
			if r := alice.Do("GET", msc4140Path+"?status=gone", nil); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
				t.Fatalf("unknown status: %d %s", r.Status, r.Body)
			}
			if r := alice.Do("GET", msc4140Path+"?status=finalised&from=nonsense", nil); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
				t.Fatalf("bad token: %d %s", r.Status, r.Body)
			}
			// The bound: a user's most recent finalised events are kept.
			if _, err := s.Store.PruneDelayedEvents(context.Background(), 0, 1); err != nil {
				t.Fatal(err)
			}
			alice.MustDo("GET", msc4140Path+"?status=finalised", nil, &l)
			if len(l.DelayedEvents) != 1 || l.DelayedEvents[0]["delay_id"] != sent {
				t.Fatalf("after keeping 1: %v", l.DelayedEvents)
			}
			if s := listDelayed(t, alice, ""); len(s.DelayedEvents) != 1 {
				t.Fatalf("the bound dropped a scheduled event: %+v", s)
			}
		})

		t.Run("dropped when the user left, with the reason logged", func(t *testing.T) {
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			room := callRoom(t, bob, alice)
			id := scheduleState(t, alice, room, "left", 300, map[string]any{})
			alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
			var d delayedInfo
			waitUntil(t, 3*time.Second, "finalised", func() bool { d = delayedOne(t, alice, id); return d.FinalisedTS != 0 })
			if d.EventID != "" || d.Error["errcode"] != "M_FORBIDDEN" {
				t.Fatalf("delayed event of a user who left: %+v", d)
			}
			if st := stateOf(t, bob, room, "left"); st != nil {
				t.Fatalf("sent into a room its sender left: %v", st)
			}
			var line string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "delay_id="+id) {
					line = l
				}
			}
			if !strings.Contains(line, "delayed event dropped") || !strings.Contains(line, "errcode=M_FORBIDDEN") ||
				!strings.Contains(line, "reason=") || !strings.Contains(line, "user="+alice.UserID) {
				t.Fatalf("log line of the drop: %q", line)
			}
		})
	})
}

// TestDelayedEventsRateLimitedWhenSent schedules more events due at one
// moment than the user's rate limit allows: those beyond it are not sent
// but finalised with M_LIMIT_EXCEEDED, and not retried.
func TestDelayedEventsRateLimitedWhenSent(t *testing.T) {
	forEachDelayedEngine(t, func(t *testing.T, engine string) {
		s := delayedServer(t, engine, ts.WithConfig(func(c *config.Config) {
			c.DelayedEvents.MaxPerUser = 20
			c.RateLimits.Enabled = true
			c.RateLimits.PerSecond = 0.001 // no token comes back during the test
			c.RateLimits.Burst = 5
		}))
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"}) // the first of alice's 5 tokens
		ctx := context.Background()
		var ids []string
		for i := range 6 {
			key := fmt.Sprint("burst", i)
			// Scheduled through the service: no request tokens spent.
			id, err := s.Delayed.Schedule(ctx, delayed.Request{UserID: alice.UserID, DeviceID: alice.DeviceID, RoomID: room,
				Type: "m.room.topic", StateKey: new(string), Content: json.RawMessage(`{"topic":"` + key + `"}`), DelayMS: 200})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		var sent, limited int
		waitUntil(t, 5*time.Second, "all finalised", func() bool {
			sent, limited = 0, 0
			for _, id := range ids {
				e, err := s.Delayed.Get(ctx, alice.UserID, id)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case e.FinalisedTS == 0:
					return false
				case e.EventID != "":
					sent++
				case bytes.Contains(e.Error, []byte(`"M_LIMIT_EXCEEDED"`)):
					limited++
				default:
					t.Fatalf("finalised %+v", e)
				}
			}
			return true
		})
		if sent != 4 || limited != 2 {
			t.Fatalf("%d sent and %d refused by the rate limit; want 4 and 2", sent, limited)
		}
		// The user's own requests meet the same (spent) limit.
		if r := alice.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/after", map[string]any{"body": "x"}); r.Status != http.StatusTooManyRequests {
			t.Fatalf("a send after the burst: %d", r.Status)
		}
	})
}

// secondDevice logs c's user in again (testserver's password).
func secondDevice(t *testing.T, s *ts.Server, c *ts.Client) *ts.Client {
	t.Helper()
	c2 := s.Anonymous(t)
	var resp struct {
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	c2.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": c.UserID}, "password": "correct horse battery"}, &resp)
	c2.UserID, c2.Token, c2.DeviceID = c.UserID, resp.AccessToken, resp.DeviceID
	return c2
}
