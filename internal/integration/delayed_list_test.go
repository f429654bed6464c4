package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"luxchat/internal/config"
	"luxchat/internal/delayed"
	ts "luxchat/internal/testserver"
)

// Delayed events: the listing's filters and pagination (MSC4486), and
// application services exempt from rate limits when their events fall
// due.

type listedDelayed struct {
	DelayID     string `json:"delay_id"`
	RoomID      string `json:"room_id"`
	Type        string `json:"type"`
	DelayMS     int64  `json:"delay_ms"`
	ScheduledAt int64  `json:"scheduled_at"`
	FinalisedTS int64  `json:"finalised_ts"`
	EventID     string `json:"event_id"`
	Error       any    `json:"error"`
}

type listedPage struct {
	DelayedEvents []listedDelayed `json:"delayed_events"`
	NextBatch     string          `json:"next_batch"`
	UnstableNext  string          `json:"org.matrix.msc4486.next_batch"`
}

func listPage(t *testing.T, c *ts.Client, query string) listedPage {
	t.Helper()
	var p listedPage
	c.MustDo("GET", msc4140Path+"?"+query, nil, &p)
	return p
}

func idsOf(p listedPage) []string {
	var ids []string
	for _, e := range p.DelayedEvents {
		ids = append(ids, e.DelayID)
	}
	return ids
}

func TestDelayedEventsListFilters(t *testing.T) {
	forEachDelayedEngine(t, func(t *testing.T, engine string) {
		s := delayedServer(t, engine, ts.WithConfig(func(c *config.Config) { c.DelayedEvents.MaxPerUser = 150 }))
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room1, room2 := callRoom(t, alice, bob), callRoom(t, alice, bob)
		// A room of bob's where alice may not change the power levels.
		room3 := bob.CreateRoom(map[string]any{"preset": "public_chat"})
		alice.Join(room3)

		// Scheduled, in the order they are due: a, m (a message), b.
		a := scheduleState(t, alice, room1, "a", 600000, map[string]any{})
		var m struct {
			DelayID string `json:"delay_id"`
		}
		if r := scheduleSend(t, alice, room1, "700000", map[string]any{"body": "later"}); r.Status != 200 || r.JSON(&m) != nil {
			t.Fatalf("schedule message: %d %s", r.Status, r.Body)
		}
		b := scheduleState(t, alice, room2, "b", 800000, map[string]any{})
		// Finalised: cancelled, sent, failed (refused when due).
		cancelled := scheduleState(t, alice, room1, "c", 500000, map[string]any{})
		alice.MustDo("POST", msc4140Path+"/"+cancelled+"/cancel", map[string]any{}, nil)
		sent := scheduleState(t, alice, room2, "s", 400000, map[string]any{})
		alice.MustDo("POST", msc4140Path+"/"+sent+"/send", map[string]any{}, nil)
		var f struct {
			DelayID string `json:"delay_id"`
		}
		alice.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/state/m.room.power_levels/?org.matrix.msc4140.delay=100", esc(room3)),
			map[string]any{"users": map[string]int{alice.UserID: 100}}, &f)
		waitUntil(t, 5*time.Second, "the power levels refused", func() bool { return delayedOne(t, alice, f.DelayID).FinalisedTS != 0 })

		// Without parameters, MSC4140's listing: the scheduled ones.
		if got := idsOf(listPage(t, alice, "")); !slices.Equal(got, []string{a, m.DelayID, b}) {
			t.Fatalf("default listing %v, want %v", got, []string{a, m.DelayID, b})
		}
		// With MSC4486's parameters and no status: all of them, by send
		// time; dir=b the latest first. f was due first (100 ms).
		all := []string{f.DelayID, sent, cancelled, a, m.DelayID, b}
		forward := listPage(t, alice, "org.matrix.msc4486.dir=f")
		if got := idsOf(forward); !slices.Equal(got, all) {
			t.Fatalf("dir=f listing %v, want %v", got, all)
		}
		back := slices.Clone(all)
		slices.Reverse(back)
		if got := idsOf(listPage(t, alice, "dir=b")); !slices.Equal(got, back) {
			t.Fatalf("dir=b listing %v, want %v", got, back)
		}
		// The unstable name wins over the stable one.
		if got := idsOf(listPage(t, alice, "dir=f&org.matrix.msc4486.dir=b")); !slices.Equal(got, back) {
			t.Fatalf("unstable dir=b beside dir=f: %v", got)
		}
		for _, e := range forward.DelayedEvents {
			switch e.DelayID {
			case sent:
				if e.FinalisedTS == 0 || e.EventID == "" {
					t.Errorf("sent event listed as %+v", e)
				}
			case f.DelayID:
				if e.FinalisedTS == 0 || e.Error == nil || e.EventID != "" {
					t.Errorf("failed event listed as %+v", e)
				}
			case cancelled:
				if e.FinalisedTS == 0 || e.Error != nil || e.EventID != "" {
					t.Errorf("cancelled event listed as %+v", e)
				}
			default:
				if e.FinalisedTS != 0 {
					t.Errorf("scheduled event listed as finalised: %+v", e)
				}
			}
		}

		// Filters, alone and together, stable and unstable.
		for _, c := range []struct {
			query string
			want  []string
		}{
			{"status=scheduled", []string{a, m.DelayID, b}},
			{"status=sent", []string{sent}},
			{"org.matrix.msc4486.status=cancelled", []string{cancelled}},
			{"status=failed", []string{f.DelayID}},
			{"room_id=" + url.QueryEscape(room1), []string{cancelled, a, m.DelayID}},
			{"org.matrix.msc4486.room_id=" + url.QueryEscape(room1) + "&status=scheduled&dir=b", []string{m.DelayID, a}},
			{"type=m.room.power_levels", []string{f.DelayID}},
			{"type=" + testType + "&room_id=" + url.QueryEscape(room2), []string{sent, b}},
			{"room_id=" + url.QueryEscape("!nowhere:elsewhere"), nil},
		} {
			if got := idsOf(listPage(t, alice, c.query)); !slices.Equal(got, c.want) {
				t.Errorf("?%s: %v, want %v", c.query, got, c.want)
			}
		}
		// The send time range, both ends included.
		due := map[string]int64{}
		for _, e := range forward.DelayedEvents {
			due[e.DelayID] = e.ScheduledAt + e.DelayMS
		}
		q := fmt.Sprintf("from_ts=%d&org.matrix.msc4486.to_ts=%d", due[cancelled], due[m.DelayID])
		if got := idsOf(listPage(t, alice, q)); !slices.Equal(got, []string{cancelled, a, m.DelayID}) {
			t.Errorf("?%s: %v", q, got)
		}
		if got := idsOf(listPage(t, alice, fmt.Sprintf("to_ts=%d", due[sent]))); !slices.Equal(got, []string{f.DelayID, sent}) {
			t.Errorf("to_ts: %v", got)
		}
		// Another user sees none of them.
		if got := idsOf(listPage(t, bob, "dir=f")); len(got) != 0 {
			t.Errorf("bob lists alice's delayed events: %v", got)
		}

		// Bad values: M_INVALID_PARAM.
		for _, q := range []string{"dir=x", "org.matrix.msc4486.dir=", "from_ts=soon", "to_ts=-1", "from_ts=1e3", "status=gone",
			"org.matrix.msc4486.status=finalized", "room_id=notaroom", "room_id=", "type=", "from=nonsense", "from=1_x",
			"status=finalised&room_id=" + url.QueryEscape(room1)} {
			if r := alice.Do("GET", msc4140Path+"?"+q, nil); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
				t.Errorf("?%s: %d %s", q, r.Status, r.Body)
			}
		}

		// Pagination: 120 more, listed in pages both ways, each event once.
		want := []string{a, m.DelayID, b}
		for i := range 120 {
			want = append(want, scheduleState(t, alice, room2, fmt.Sprint("p", i), 900000+i, map[string]any{}))
		}
		for _, dir := range []string{"f", "b"} {
			var seen []string
			from, pages := "", 0
			for {
				q := "org.matrix.msc4486.dir=" + dir + "&status=scheduled"
				if from != "" {
					q += "&org.matrix.msc4486.from=" + url.QueryEscape(from)
				}
				p := listPage(t, alice, q)
				pages++
				if p.NextBatch != p.UnstableNext {
					t.Fatalf("next_batch %q and its unstable name %q differ", p.NextBatch, p.UnstableNext)
				}
				seen = append(seen, idsOf(p)...)
				if p.NextBatch == "" {
					break
				}
				if pages > 5 {
					t.Fatal("pagination does not end")
				}
				from = p.NextBatch
			}
			if pages < 2 || len(seen) != 123 {
				t.Fatalf("dir=%s: %d events in %d pages, want 123 in 2 or more", dir, len(seen), pages)
			}
			// In order and each once.
			w := slices.Clone(want)
			if dir == "b" {
				slices.Reverse(w)
			}
			if !slices.Equal(seen, w) {
				t.Fatalf("dir=%s: pages list %v, want %v", dir, seen, w)
			}
		}
		// The default listing pages the same way (Complement's listing
		// without parameters still sees the first page of scheduled ones).
		p := listPage(t, alice, "")
		if len(p.DelayedEvents) != 100 || p.NextBatch == "" {
			t.Fatalf("default first page: %d events, next %q", len(p.DelayedEvents), p.NextBatch)
		}
		if rest := listPage(t, alice, "from="+url.QueryEscape(p.NextBatch)); len(rest.DelayedEvents) != 23 || rest.NextBatch != "" {
			t.Fatalf("default second page: %d events, next %q", len(rest.DelayedEvents), rest.NextBatch)
		}
	})
}

// TestDelayedEventsAppServiceNotRateLimited schedules, through the
// as_token of a service registered with rate_limited: false, more
// delayed events due at one moment than the rate limit allows: all are
// sent. The same through a service registered with rate_limited: true
// meets the limit.
func TestDelayedEventsAppServiceNotRateLimited(t *testing.T) {
	forEachDelayedEngine(t, func(t *testing.T, engine string) {
		br, withAS := newBridge(t) // rate_limited: false
		limitedFile := filepath.Join(t.TempDir(), "limited.yaml")
		if err := os.WriteFile(limitedFile, []byte("id: limited\nurl: null\nas_token: as-limited\nhs_token: hs-limited\n"+
			"sender_localpart: _limited_bot\nrate_limited: true\nnamespaces:\n  users: [{exclusive: true, regex: \"@_limited_.*\"}]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := delayedServer(t, engine, withAS, ts.WithConfig(func(c *config.Config) {
			c.AppServices.ConfigFiles = append(c.AppServices.ConfigFiles, limitedFile)
			c.DelayedEvents.MaxPerUser = 20
			c.RateLimits.Enabled = true
			c.RateLimits.PerSecond = 0.001 // no token comes back during the test
			c.RateLimits.Burst = 5
		}))
		server := s.Config.ServerName
		br.start(t, s.URL, server)
		defer br.stop()
		ctx := context.Background()
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat",
			"power_level_content_override": map[string]any{"events": map[string]int{testType: 0}}})

		// The exempt service's bot, through mautrix-go's MSC4140 support.
		bot := br.as.BotIntent()
		if err := bot.EnsureJoined(ctx, id.RoomID(room)); err != nil {
			t.Fatalf("bot join: %v", err)
		}
		const n = 8 // the burst is 5
		var exempt []string
		for i := range n {
			resp, err := bot.SendStateEvent(ctx, id.RoomID(room), mevent.NewEventType(testType), fmt.Sprint("bot", i),
				map[string]any{"i": i}, mautrix.ReqSendEvent{UnstableDelay: 300 * time.Millisecond})
			if err != nil || resp.UnstableDelayID == "" {
				t.Fatalf("bot schedule %d: %v %+v", i, err, resp)
			}
			exempt = append(exempt, string(resp.UnstableDelayID))
		}
		// The limited service's bot, over plain HTTP with its as_token.
		lim := s.Anonymous(t)
		lim.Token = "as-limited"
		lim.UserID = "@_limited_bot:" + server
		lim.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/join", map[string]any{}, nil) // one of its 5 tokens
		// Its requests are limited too, so its events are scheduled
		// through the service, as its as_token would have.
		var limited []string
		for i := range n {
			key := fmt.Sprint("lim", i)
			id, err := s.Delayed.Schedule(ctx, delayed.Request{UserID: lim.UserID, AppService: "limited", RoomID: room, Type: testType,
				StateKey: &key, Content: json.RawMessage(`{}`), DelayMS: 300})
			if err != nil {
				t.Fatal(err)
			}
			limited = append(limited, id)
		}

		outcomes := func(c func(id string) (finalised bool, eventID string, errJSON []byte), ids []string) (sent, refused int) {
			waitUntil(t, 10*time.Second, "all finalised", func() bool {
				sent, refused = 0, 0
				for _, id := range ids {
					fin, ev, ej := c(id)
					switch {
					case !fin:
						return false
					case ev != "":
						sent++
					case bytes.Contains(ej, []byte("M_LIMIT_EXCEEDED")):
						refused++
					default:
						t.Fatalf("%s finalised with %s", id, ej)
					}
				}
				return true
			})
			return sent, refused
		}
		get := func(user string) func(string) (bool, string, []byte) {
			return func(delayID string) (bool, string, []byte) {
				e, err := s.Delayed.Get(ctx, user, delayID)
				if err != nil {
					t.Fatal(err)
				}
				return e.FinalisedTS != 0, e.EventID, e.Error
			}
		}
		if sent, refused := outcomes(get(bot.UserID.String()), exempt); sent != n || refused != 0 {
			t.Fatalf("exempt service: %d sent, %d refused by the rate limit; want all %d sent", sent, refused, n)
		}
		for i := range n {
			if st := stateOf(t, alice, room, fmt.Sprint("bot", i)); st == nil {
				t.Fatalf("bot's delayed state %d not in the room", i)
			}
		}
		if sent, refused := outcomes(get(lim.UserID), limited); refused == 0 || sent+refused != n {
			t.Fatalf("rate-limited service: %d sent, %d refused; want some refused", sent, refused)
		}
	})
}
