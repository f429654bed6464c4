package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

type pushRule struct {
	RuleID     string            `json:"rule_id"`
	Default    bool              `json:"default"`
	Enabled    bool              `json:"enabled"`
	Pattern    string            `json:"pattern"`
	Conditions []json.RawMessage `json:"conditions"`
	Actions    []json.RawMessage `json:"actions"`
}

type ruleset map[string][]pushRule

func ruleIDs(rules []pushRule) string {
	var ids []string
	for _, r := range rules {
		if !r.Default {
			ids = append(ids, r.RuleID)
		}
	}
	return strings.Join(ids, " ")
}

func pushRulesInSync(t *testing.T, sync map[string]any) ruleset {
	t.Helper()
	ad, _ := sync["account_data"].(map[string]any)
	evs, _ := ad["events"].([]any)
	for _, e := range evs {
		ev := e.(map[string]any)
		if ev["type"] == "m.push_rules" {
			data, _ := json.Marshal(ev["content"].(map[string]any)["global"])
			var rs ruleset
			if err := json.Unmarshal(data, &rs); err != nil {
				t.Fatal(err)
			}
			return rs
		}
	}
	return nil
}

const rulesPath = "/_matrix/client/v3/pushrules/global/"

func TestPushRulesAPI(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		first := alice.Sync("timeout=0")
		rs := pushRulesInSync(t, first)
		if rs == nil || len(rs["override"]) == 0 || rs["override"][0].RuleID != ".m.rule.master" {
			t.Fatalf("initial sync has no default m.push_rules: %v", first["account_data"])
		}
		var all struct {
			Global ruleset `json:"global"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/m.push_rules", nil, &all)
		if len(all.Global["override"]) == 0 {
			t.Fatalf("GET account_data/m.push_rules: %+v", all)
		}
		if r := alice.Do("PUT", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/account_data/m.push_rules", map[string]any{"global": map[string]any{}}); r.Status != 400 {
			t.Fatalf("PUT account_data/m.push_rules: %d", r.Status)
		}
		alice.MustDo("GET", "/_matrix/client/v3/pushrules/", nil, &all)
		if len(all.Global["underride"]) == 0 || all.Global["content"] == nil || all.Global["room"] == nil {
			t.Fatalf("GET /pushrules/: %+v", all.Global)
		}

		put := func(kind, id, query string, body any) *ts.Response {
			return alice.Do("PUT", rulesPath+kind+"/"+url.PathEscape(id)+query, body)
		}
		notify := map[string]any{"actions": []any{"notify"}}
		for _, id := range []string{"a", "b"} {
			if r := put("content", id, "", map[string]any{"pattern": "cake*", "actions": []any{"notify"}}); r.Status != 200 {
				t.Fatalf("put %s: %d %s", id, r.Status, r.Body)
			}
		}
		if r := put("content", "c", "?after=b", map[string]any{"pattern": "tea", "actions": []any{"notify"}}); r.Status != 200 {
			t.Fatalf("after: %s", r.Body)
		}
		if r := put("content", "d", "?before=a", map[string]any{"pattern": "tea", "actions": []any{"notify"}}); r.Status != 200 {
			t.Fatalf("before: %s", r.Body)
		}
		var content []pushRule
		alice.MustDo("GET", rulesPath+"content/", nil, &content)
		if got := ruleIDs(content); got != "b c d a" {
			t.Fatalf("content order %q", got)
		}
		errs := []struct {
			name, kind, id, query string
			body                  any
			status                int
			code                  string
		}{
			{"unknown before", "content", "x", "?before=nope", map[string]any{"pattern": "p", "actions": []any{}}, 400, "M_UNKNOWN"},
			{"unknown after", "content", "x", "?after=nope", map[string]any{"pattern": "p", "actions": []any{}}, 400, "M_UNKNOWN"},
			{"relative to a server rule", "underride", "x", "?before=.m.rule.message", notify, 400, "M_UNKNOWN"},
			{"dot rule id", "override", ".mine", "", notify, 400, "M_INVALID_PARAM"},
			{"server rule", "underride", ".m.rule.message", "", notify, 400, "M_INVALID_PARAM"},
			{"backslash", "override", `a\b`, "", notify, 400, "M_INVALID_PARAM"},
			{"no pattern", "content", "x", "", notify, 400, "M_INVALID_PARAM"},
			{"bad condition", "override", "x", "", map[string]any{"actions": []any{}, "conditions": []any{map[string]any{"kind": "event_match", "key": "type"}}}, 400, "M_INVALID_PARAM"},
			{"bad member count", "override", "x", "", map[string]any{"actions": []any{}, "conditions": []any{map[string]any{"kind": "room_member_count", "is": "two"}}}, 400, "M_INVALID_PARAM"},
			{"bad action", "override", "x", "", map[string]any{"actions": []any{"ring_bell"}}, 400, "M_INVALID_PARAM"},
			{"no actions", "override", "x", "", map[string]any{}, 400, "M_MISSING_PARAM"},
			{"not json", "override", "x", "", []byte("{"), 400, "M_NOT_JSON"},
			{"unknown kind", "global", "x", "", notify, 400, "M_INVALID_PARAM"},
		}
		for _, e := range errs {
			r := put(e.kind, e.id, e.query, e.body)
			if r.Status != e.status || r.ErrCode() != e.code {
				t.Errorf("%s: %d %s", e.name, r.Status, r.Body)
			}
		}
		// An override with a condition of a future kind is stored (it never matches).
		if r := put("override", "future", "", map[string]any{"actions": []any{"notify"}, "conditions": []any{map[string]any{"kind": "org.example.future"}}}); r.Status != 200 {
			t.Fatalf("future condition: %s", r.Body)
		}
		var rule pushRule
		alice.MustDo("GET", rulesPath+"override/future", nil, &rule)
		if rule.RuleID != "future" || !rule.Enabled || rule.Default || len(rule.Conditions) != 1 {
			t.Fatalf("rule %+v", rule)
		}
		if r := alice.Do("GET", rulesPath+"override/nope", nil); r.Status != 404 || r.ErrCode() != "M_NOT_FOUND" {
			t.Fatalf("missing rule: %d %s", r.Status, r.Body)
		}
		// Server-default rules: enabled and actions change, deletion does not.
		alice.MustDo("PUT", rulesPath+"underride/.m.rule.message/enabled", map[string]any{"enabled": false}, nil)
		var enabled struct {
			Enabled bool `json:"enabled"`
		}
		alice.MustDo("GET", rulesPath+"underride/.m.rule.message/enabled", nil, &enabled)
		if enabled.Enabled {
			t.Fatal(".m.rule.message still enabled")
		}
		alice.MustDo("PUT", rulesPath+"underride/.m.rule.message/actions", map[string]any{"actions": []any{"notify", map[string]any{"set_tweak": "sound", "value": "bell"}}}, nil)
		var actions struct {
			Actions []json.RawMessage `json:"actions"`
		}
		alice.MustDo("GET", rulesPath+"underride/.m.rule.message/actions", nil, &actions)
		if len(actions.Actions) != 2 || !strings.Contains(string(actions.Actions[1]), "bell") {
			t.Fatalf("actions %s", actions.Actions)
		}
		if r := alice.Do("PUT", rulesPath+"underride/.m.rule.message/enabled", map[string]any{}); r.Status != 400 {
			t.Fatalf("enabled without a value: %d", r.Status)
		}
		if r := alice.Do("DELETE", rulesPath+"underride/.m.rule.message", nil); r.Status < 400 {
			t.Fatalf("deleted a server-default rule: %d", r.Status)
		}
		if r := alice.Do("PUT", rulesPath+"override/nope/enabled", map[string]any{"enabled": true}); r.Status != 404 {
			t.Fatalf("enable a missing rule: %d", r.Status)
		}
		alice.MustDo("DELETE", rulesPath+"content/c", nil, nil)
		if r := alice.Do("GET", rulesPath+"content/c", nil); r.Status != 404 {
			t.Fatalf("deleted rule still there: %d", r.Status)
		}
		if r := alice.Do("GET", rulesPath+"override/future/nonsense", nil); r.Status != 404 || r.ErrCode() != "M_UNRECOGNIZED" {
			t.Fatalf("unknown path: %d %s", r.Status, r.Body)
		}
		// The changes reach syncs as the m.push_rules account data.
		next := alice.Sync("timeout=0&since=" + first["next_batch"].(string))
		rs = pushRulesInSync(t, next)
		if rs == nil {
			t.Fatal("incremental sync has no m.push_rules")
		}
		if got := ruleIDs(rs["content"]); got != "b d a" {
			t.Fatalf("content rules in sync %q", got)
		}
		for _, r := range rs["underride"] {
			if r.RuleID == ".m.rule.message" && r.Enabled {
				t.Fatal("sync shows .m.rule.message enabled")
			}
		}
		if rs := pushRulesInSync(t, alice.Sync("timeout=0")); ruleIDs(rs["override"]) != "future" {
			t.Fatalf("initial sync rules %+v", rs["override"])
		}
	})
}

type counts struct {
	NotificationCount int `json:"notification_count"`
	HighlightCount    int `json:"highlight_count"`
}

type countsSync struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Unread       counts            `json:"unread_notifications"`
			UnreadThread map[string]counts `json:"unread_thread_notifications"`
		} `json:"join"`
	} `json:"rooms"`
}

func syncCounts(t *testing.T, c *ts.Client, query string) countsSync {
	t.Helper()
	var s countsSync
	c.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&"+query, nil, &s)
	return s
}

// forEachCrowd runs f on both engines twice: with rooms of a few members,
// whose notifications are stored per member, and (crowd) with rooms whose
// messages notify enough members to be stored once for the room, and big
// enough for the server to keep their local members grouped by push
// rules between events (64); f calls fill on each room it creates to add
// the crowd.
func forEachCrowd(t *testing.T, f func(t *testing.T, s *ts.Server, fill func(room string))) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		t.Run("few", func(t *testing.T) { f(t, s, func(string) {}) })
	})
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		t.Run("crowd", func(t *testing.T) {
			var crowd []string
			err := s.Store.InTx(t.Context(), func(tx *store.Tx) error {
				for i := range 64 {
					u := fmt.Sprintf("@crowd%d:%s", i, s.Config.ServerName)
					crowd = append(crowd, u)
					if err := tx.CreateUser(t.Context(), store.User{UserID: u}); err != nil && !errors.Is(err, store.ErrExists) {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			f(t, s, func(room string) {
				for _, u := range crowd {
					if _, err := s.Rooms.ChangeMembership(t.Context(), rooms.MemberChange{RoomID: room, Sender: u, Target: u, Membership: "join"}); err != nil {
						t.Fatal(err)
					}
				}
			})
		})
	})
}

// compactPushes moves the staged notifications to their per-user rows
// now, as the server's loop does a second after a burst.
func compactPushes(t *testing.T, s *ts.Server) {
	t.Helper()
	if err := s.Push.Compact(t.Context()); err != nil {
		t.Fatal(err)
	}
	if left, err := s.Store.StagedPushes(t.Context(), 1); err != nil || len(left) != 0 {
		t.Fatalf("staged notifications left: %v %v", left, err)
	}
}

func mention(body string, users ...string) map[string]any {
	return map[string]any{"msgtype": "m.text", "body": body, "m.mentions": map[string]any{"user_ids": users}}
}

func receipt(t *testing.T, c *ts.Client, roomID, eventID, threadID string) {
	t.Helper()
	body := map[string]any{}
	if threadID != "" {
		body["thread_id"] = threadID
	}
	c.MustDo("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/receipt/m.read/%s", esc(roomID), esc(eventID)), body, nil)
}

func TestNotificationCountsInSync(t *testing.T) {
	forEachCrowd(t, func(t *testing.T, s *ts.Server, fill func(string)) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		fill(room)
		bob.Join(room)
		carol.Join(room)
		alice.SendText(room, "hello")
		alice.Send(room, "m.room.message", mention("hey bob", bob.UserID))
		alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.notice", "body": "a notice never notifies"})
		got := syncCounts(t, bob, "").Rooms.Join[room].Unread
		if got.NotificationCount != 2 || got.HighlightCount != 1 {
			t.Fatalf("bob's counts %+v", got)
		}
		if got := syncCounts(t, carol, "").Rooms.Join[room].Unread; got.NotificationCount != 2 || got.HighlightCount != 0 {
			t.Fatalf("carol's counts %+v", got)
		}
		// The same once the per-event rows were moved to per-user rows.
		compactPushes(t, s)
		if got := syncCounts(t, bob, "").Rooms.Join[room].Unread; got.NotificationCount != 2 || got.HighlightCount != 1 {
			t.Fatalf("bob's counts later %+v", got)
		}
		if got := syncCounts(t, alice, "").Rooms.Join[room].Unread; got.NotificationCount != 0 {
			t.Fatalf("the sender's own messages count: %+v", got)
		}
		// A thread: its events count per thread root when the filter asks.
		root := alice.SendText(room, "thread root")
		alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "in thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		reply := alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "bob!", "m.mentions": map[string]any{"user_ids": []string{bob.UserID}},
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		threaded := url.QueryEscape(`{"room":{"timeline":{"unread_thread_notifications":true}}}`)
		sc := syncCounts(t, bob, "filter="+threaded)
		jr := sc.Rooms.Join[room]
		if jr.Unread.NotificationCount != 3 || jr.Unread.HighlightCount != 1 {
			t.Fatalf("main timeline counts %+v", jr.Unread)
		}
		if c := jr.UnreadThread[root]; c.NotificationCount != 2 || c.HighlightCount != 1 || len(jr.UnreadThread) != 1 {
			t.Fatalf("thread counts %+v", jr.UnreadThread)
		}
		if got := syncCounts(t, bob, "").Rooms.Join[room].Unread; got.NotificationCount != 5 || got.HighlightCount != 2 {
			t.Fatalf("unthreaded counts %+v", got)
		}
		// A main-timeline receipt clears the main timeline only.
		receipt(t, bob, room, root, "main")
		sc2 := syncCounts(t, bob, "filter="+threaded+"&since="+sc.NextBatch)
		jr = sc2.Rooms.Join[room]
		if jr.Unread.NotificationCount != 0 || jr.UnreadThread[root].NotificationCount != 2 {
			t.Fatalf("after a main receipt: %+v %+v", jr.Unread, jr.UnreadThread)
		}
		// A receipt in the thread clears the thread.
		receipt(t, bob, room, reply, root)
		jr = syncCounts(t, bob, "filter="+threaded+"&since="+sc2.NextBatch).Rooms.Join[room]
		if jr.Unread.NotificationCount != 0 || len(jr.UnreadThread) != 0 {
			t.Fatalf("after a thread receipt: %+v %+v", jr.Unread, jr.UnreadThread)
		}
		// carol reads everything with one unthreaded receipt.
		receipt(t, carol, room, reply, "")
		if got := syncCounts(t, carol, "").Rooms.Join[room].Unread; got.NotificationCount != 0 {
			t.Fatalf("after an unthreaded receipt: %+v", got)
		}
		// The count comes in the same sync as the event, and survives a restart.
		since := syncCounts(t, carol, "").NextBatch
		ev := alice.Send(room, "m.room.message", mention("carol?", carol.UserID))
		var inc struct {
			Rooms struct {
				Join map[string]struct {
					Timeline struct {
						Events []event `json:"events"`
					} `json:"timeline"`
					Unread counts `json:"unread_notifications"`
				} `json:"join"`
			} `json:"rooms"`
		}
		carol.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&since="+since, nil, &inc)
		if j := inc.Rooms.Join[room]; len(j.Timeline.Events) != 1 || j.Timeline.Events[0].EventID != ev || j.Unread.NotificationCount != 1 || j.Unread.HighlightCount != 1 {
			t.Fatalf("incremental sync %+v", j)
		}
		// A redacted message notifies no more.
		oops := alice.SendText(room, "oops, wrong room")
		if got := syncCounts(t, carol, "").Rooms.Join[room].Unread; got.NotificationCount != 2 {
			t.Fatalf("before the redaction %+v", got)
		}
		alice.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/redact/%s/r1", esc(room), esc(oops)), map[string]any{}, nil)
		if got := syncCounts(t, carol, "").Rooms.Join[room].Unread; got.NotificationCount != 1 {
			t.Fatalf("after the redaction %+v", got)
		}
		oops = alice.SendText(room, "oops again")
		compactPushes(t, s) // moved to per-user rows, then redacted
		alice.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/redact/%s/r2", esc(room), esc(oops)), map[string]any{}, nil)
		if got := syncCounts(t, carol, "").Rooms.Join[room].Unread; got.NotificationCount != 1 {
			t.Fatalf("after the second redaction %+v", got)
		}
		s.Restart(t)
		if got := syncCounts(t, carol, "").Rooms.Join[room].Unread; got.NotificationCount != 1 || got.HighlightCount != 1 {
			t.Fatalf("after restart %+v", got)
		}
		// Sending a message marks what came before it as read.
		carol.SendText(room, "on it")
		if got := syncCounts(t, carol, "").Rooms.Join[room].Unread; got.NotificationCount != 0 || got.HighlightCount != 0 {
			t.Fatalf("after carol's own message %+v", got)
		}
		if got := syncCounts(t, bob, "").Rooms.Join[room].Unread; got.NotificationCount != 2 {
			t.Fatalf("bob's counts after carol's message %+v", got)
		}
	})
}

func TestNotificationsList(t *testing.T) {
	forEachCrowd(t, func(t *testing.T, s *ts.Server, fill func(string)) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Lunch"})
		fill(room)
		bob.Join(room)
		alice.Send(room, "m.room.message", mention("read me", bob.UserID))
		second := alice.SendText(room, "plain")
		third := alice.SendText(room, "newest")
		receipt(t, bob, room, second, "")
		type page struct {
			NextToken     string `json:"next_token"`
			Notifications []struct {
				Actions []json.RawMessage `json:"actions"`
				Event   event             `json:"event"`
				Read    bool              `json:"read"`
				RoomID  string            `json:"room_id"`
				TS      int64             `json:"ts"`
			} `json:"notifications"`
		}
		var p page
		bob.MustDo("GET", "/_matrix/client/v3/notifications", nil, &p)
		if len(p.Notifications) != 3 || p.NextToken != "" {
			t.Fatalf("notifications %+v", p)
		}
		n := p.Notifications[0]
		if n.Event.EventID != third || n.Read || n.RoomID != room || n.TS == 0 || string(n.Actions[0]) != `"notify"` {
			t.Fatalf("newest %+v", n)
		}
		if !p.Notifications[1].Read || !p.Notifications[2].Read {
			t.Fatal("notifications before the receipt are not read")
		}
		bob.MustDo("GET", "/_matrix/client/v3/notifications?only=highlight", nil, &p)
		if len(p.Notifications) != 1 || p.Notifications[0].Event.Content["body"] != "read me" {
			t.Fatalf("only=highlight %+v", p)
		}
		bob.MustDo("GET", "/_matrix/client/v3/notifications?limit=2", nil, &p)
		if len(p.Notifications) != 2 || p.NextToken == "" {
			t.Fatalf("first page %+v", p)
		}
		bob.MustDo("GET", "/_matrix/client/v3/notifications?limit=2&from="+p.NextToken, nil, &p)
		if len(p.Notifications) != 1 || p.Notifications[0].Event.Content["body"] != "read me" {
			t.Fatalf("second page %+v", p)
		}
		var none page
		alice.MustDo("GET", "/_matrix/client/v3/notifications", nil, &none)
		if len(none.Notifications) != 0 {
			t.Fatalf("alice sees %+v", none)
		}
		for _, q := range []string{"from=x", "limit=x", "only=everything"} {
			if r := bob.Do("GET", "/_matrix/client/v3/notifications?"+q, nil); r.Status != 400 {
				t.Errorf("%s: %d %s", q, r.Status, r.Body)
			}
		}
	})
}

// TestReadNotificationsDropped: a read receipt deletes the notifications
// it read that did not highlight, once out of staging, and compaction
// leaves out those read while staged; highlights stay listed. A crowded
// room's room-wide notification is shared, and stays (read).
func TestReadNotificationsDropped(t *testing.T) {
	forEachCrowd(t, func(t *testing.T, s *ts.Server, fill func(string)) {
		crowd := strings.Contains(t.Name(), "crowd")
		ctx := context.Background()
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		fill(room)
		bob.Join(room)
		list := func() (bodies []string) {
			t.Helper()
			var p struct {
				Notifications []struct {
					Event event `json:"event"`
					Read  bool  `json:"read"`
				} `json:"notifications"`
			}
			bob.MustDo("GET", "/_matrix/client/v3/notifications", nil, &p)
			for _, n := range p.Notifications {
				bodies = append(bodies, fmt.Sprintf("%s %v", n.Event.Content["body"], n.Read))
			}
			return bodies
		}
		compact := func() {
			t.Helper()
			if err := s.Push.Compact(ctx); err != nil {
				t.Fatal(err)
			}
		}
		alice.Send(room, "m.room.message", mention("read me", bob.UserID))
		first := alice.SendText(room, "first")
		receipt(t, bob, room, first, "") // before compaction
		compact()
		second := alice.SendText(room, "second")
		alice.SendText(room, "third")
		compact()
		receipt(t, bob, room, second, "") // after compaction
		want := []string{"third false", "read me true"}
		if crowd {
			want = []string{"third false", "second true", "first true", "read me true"}
		}
		if got := list(); !slices.Equal(got, want) {
			t.Fatalf("notifications %v, want %v", got, want)
		}
		if counts := syncCounts(t, bob, "").Rooms.Join[room].Unread; counts.NotificationCount != 1 || counts.HighlightCount != 0 {
			t.Fatalf("counts %+v", counts)
		}
	})
}

// gateway is a push gateway for tests: it records notifications, and
// fails the first fail requests with a 500.
type gateway struct {
	*httptest.Server
	mu       gosync.Mutex
	fail     int
	requests int
	got      []map[string]any
	reject   map[string]bool
	arrived  chan struct{}
}

func newGateway(t *testing.T, fail int) *gateway {
	g := &gateway{fail: fail, reject: map[string]bool{}, arrived: make(chan struct{}, 100)}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		defer g.mu.Unlock()
		g.requests++
		if r.URL.Path != "/_matrix/push/v1/notify" || r.Method != "POST" {
			w.WriteHeader(404)
			return
		}
		if g.fail > 0 {
			g.fail--
			w.WriteHeader(500)
			return
		}
		var n struct {
			Notification map[string]any `json:"notification"`
		}
		if err := json.Unmarshal(body, &n); err != nil {
			w.WriteHeader(400)
			return
		}
		g.got = append(g.got, n.Notification)
		rejected := []string{}
		for _, d := range n.Notification["devices"].([]any) {
			if k := d.(map[string]any)["pushkey"].(string); g.reject[k] {
				rejected = append(rejected, k)
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"rejected": rejected})
		g.arrived <- struct{}{}
	}))
	t.Cleanup(g.Close)
	return g
}

// wait returns the first notification received for an event.
func (g *gateway) wait(t *testing.T, eventID string) map[string]any {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		g.mu.Lock()
		for _, n := range g.got {
			if n["event_id"] == eventID {
				g.mu.Unlock()
				return n
			}
		}
		g.mu.Unlock()
		select {
		case <-g.arrived:
		case <-deadline:
			t.Fatalf("no push for %s", eventID)
		}
	}
}

func allowLoopbackGateways(c *config.Config) { c.Push.DenyNetworks = nil }

func setPusher(c *ts.Client, gw, pushkey string, extra map[string]any) *ts.Response {
	body := map[string]any{
		"kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
		"app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
		"data": map[string]any{"url": gw + "/_matrix/push/v1/notify", "custom": "kept"},
	}
	for k, v := range extra {
		body[k] = v
	}
	return c.Do("POST", "/_matrix/client/v3/pushers/set", body)
}

func TestPushersAndGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("waits a second for the push retry: not under -short")
	}
	t.Run("sqlite", func(t *testing.T) { testPushers(t, ts.New(t, ts.WithConfig(allowLoopbackGateways))) })
	t.Run("postgres", func(t *testing.T) {
		testPushers(t, ts.New(t, ts.WithPostgres(t), ts.WithConfig(allowLoopbackGateways)))
	})
}

func testPushers(t *testing.T, s *ts.Server) {
	gw := newGateway(t, 1)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")

	// Pushers: validation, listing, deletion.
	bad := []struct {
		name  string
		extra map[string]any
		code  string
	}{
		{"no url", map[string]any{"data": map[string]any{}}, "M_MISSING_PARAM"},
		{"wrong path", map[string]any{"data": map[string]any{"url": gw.URL + "/push"}}, "M_INVALID_PARAM"},
		{"not http", map[string]any{"data": map[string]any{"url": "ftp://example.org/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"},
		{"bad format", map[string]any{"data": map[string]any{"url": gw.URL + "/_matrix/push/v1/notify", "format": "full"}}, "M_INVALID_PARAM"},
		{"no lang", map[string]any{"lang": ""}, "M_MISSING_PARAM"},
		{"email", map[string]any{"kind": "email"}, "M_INVALID_PARAM"},
		{"long app id", map[string]any{"app_id": strings.Repeat("a", 65)}, "M_INVALID_PARAM"},
	}
	for _, b := range bad {
		if r := setPusher(bob, gw.URL, "k", b.extra); r.Status != 400 || r.ErrCode() != b.code {
			t.Errorf("%s: %d %s", b.name, r.Status, r.Body)
		}
	}
	if r := bob.Do("POST", "/_matrix/client/v3/pushers/set", map[string]any{"app_id": "a", "pushkey": "k"}); r.ErrCode() != "M_MISSING_PARAM" {
		t.Errorf("no kind: %s", r.Body)
	}
	if r := setPusher(bob, gw.URL, "bobkey", nil); r.Status != 200 {
		t.Fatalf("set pusher: %s", r.Body)
	}
	var ps struct {
		Pushers []struct {
			AppID   string         `json:"app_id"`
			Pushkey string         `json:"pushkey"`
			Kind    string         `json:"kind"`
			Lang    string         `json:"lang"`
			Data    map[string]any `json:"data"`
		} `json:"pushers"`
	}
	bob.MustDo("GET", "/_matrix/client/v3/pushers", nil, &ps)
	if len(ps.Pushers) != 1 || ps.Pushers[0].Pushkey != "bobkey" || ps.Pushers[0].Kind != "http" || ps.Pushers[0].Data["custom"] != "kept" {
		t.Fatalf("pushers %+v", ps)
	}
	alice.MustDo("GET", "/_matrix/client/v3/pushers", nil, &ps)
	if len(ps.Pushers) != 0 {
		t.Fatalf("alice sees bob's pushers: %+v", ps)
	}

	// A mention reaches the gateway, after one failed attempt.
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Ops"})
	bob.Join(room)
	ev := alice.Send(room, "m.room.message", mention("bob, look", bob.UserID))
	n := gw.wait(t, ev)
	dev := n["devices"].([]any)[0].(map[string]any)
	tweaks := dev["tweaks"].(map[string]any)
	if n["room_id"] != room || n["type"] != "m.room.message" || n["sender"] != alice.UserID || n["room_name"] != "Ops" ||
		n["prio"] != "high" || n["content"].(map[string]any)["body"] != "bob, look" {
		t.Fatalf("notification %v", n)
	}
	if dev["app_id"] != "org.example.app" || dev["pushkey"] != "bobkey" || dev["data"].(map[string]any)["custom"] != "kept" || dev["data"].(map[string]any)["url"] != nil ||
		tweaks["highlight"] != true || tweaks["sound"] != "default" {
		t.Fatalf("device %v", dev)
	}
	if c := n["counts"].(map[string]any); c["unread"].(float64) < 1 {
		t.Fatalf("counts %v", c)
	}
	gw.mu.Lock()
	if gw.requests < 2 {
		t.Errorf("the failed attempt was not retried: %d requests", gw.requests)
	}
	gw.mu.Unlock()

	// An encrypted one-to-one room: .m.rule.encrypted_room_one_to_one, and
	// event_id_only pushers get no content.
	if r := setPusher(bob, gw.URL, "bobkey", map[string]any{"data": map[string]any{"url": gw.URL + "/_matrix/push/v1/notify", "format": "event_id_only"}}); r.Status != 200 {
		t.Fatalf("update pusher: %s", r.Body)
	}
	dm := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}, "is_direct": true,
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	bob.Join(dm)
	enc := alice.Send(dm, "m.room.encrypted", map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn", "sender_key": "k", "session_id": "s", "device_id": "D"})
	n = gw.wait(t, enc)
	if n["content"] != nil || n["type"] != nil || n["room_id"] != dm {
		t.Fatalf("event_id_only notification %v", n)
	}
	if tw := n["devices"].([]any)[0].(map[string]any)["tweaks"].(map[string]any); tw["sound"] != "default" || tw["highlight"] != nil {
		t.Fatalf("one-to-one tweaks %v", tw)
	}

	// A pushkey the gateway rejects deletes its pusher.
	gw.mu.Lock()
	gw.reject["bobkey"] = true
	gw.mu.Unlock()
	gw.wait(t, alice.SendText(dm, "anyone?"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		bob.MustDo("GET", "/_matrix/client/v3/pushers", nil, &ps)
		if len(ps.Pushers) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rejected pusher was kept")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// kind null deletes; logging out deletes the device's pushers.
	if r := setPusher(bob, gw.URL, "k2", nil); r.Status != 200 {
		t.Fatal(string(r.Body))
	}
	bob.MustDo("POST", "/_matrix/client/v3/pushers/set", map[string]any{"kind": nil, "app_id": "org.example.app", "pushkey": "k2"}, nil)
	bob.MustDo("GET", "/_matrix/client/v3/pushers", nil, &ps)
	if len(ps.Pushers) != 0 {
		t.Fatalf("kind null kept %+v", ps)
	}
	bob2 := s.Register(t, "bob2")
	if r := setPusher(bob2, gw.URL, "k3", nil); r.Status != 200 {
		t.Fatal(string(r.Body))
	}
	bob2.MustDo("POST", "/_matrix/client/v3/logout", map[string]any{}, nil)
	if left, err := s.Push.Pushers(context.Background(), bob2.UserID); err != nil || len(left) != 0 {
		t.Fatalf("logout kept the pusher: %+v %v", left, err)
	}
}

func TestUserRulesDecideCounts(t *testing.T) {
	forEachCrowd(t, func(t *testing.T, s *ts.Server, fill func(string)) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		fill(room)
		quiet := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		carol := s.Register(t, "carol")
		for _, r := range []string{room, quiet} {
			bob.Join(r)
			carol.Join(r) // three members: no one-to-one rules
		}
		bob.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(bob.UserID)+"/displayname", map[string]any{"displayname": "Bobby"}, nil)
		// The deprecated condition still works in a user's rule.
		bob.MustDo("PUT", rulesPath+"override/my-name", map[string]any{
			"conditions": []any{map[string]any{"kind": "contains_display_name"}},
			"actions":    []any{"notify", map[string]any{"set_tweak": "highlight"}},
		}, nil)
		bob.MustDo("PUT", rulesPath+"room/"+esc(quiet), map[string]any{"actions": []any{}}, nil)
		alice.SendText(room, "is Bobby around?")
		alice.SendText(room, "Bobbyish is not a name")
		alice.SendText(quiet, "nobody hears this")
		sc := syncCounts(t, bob, "")
		if got := sc.Rooms.Join[room].Unread; got.NotificationCount != 2 || got.HighlightCount != 1 {
			t.Fatalf("counts %+v", got)
		}
		if got := sc.Rooms.Join[quiet].Unread; got.NotificationCount != 0 {
			t.Fatalf("muted room counts %+v", got)
		}
		// Disabling .m.rule.message silences plain messages from then on.
		bob.MustDo("PUT", rulesPath+"underride/.m.rule.message/enabled", map[string]any{"enabled": false}, nil)
		alice.SendText(room, "silent")
		if got := syncCounts(t, bob, "").Rooms.Join[room].Unread; got.NotificationCount != 2 {
			t.Fatalf("after disabling .m.rule.message %+v", got)
		}
	})
}

// Pusher URLs are chosen by users: by default pushes never reach loopback
// or private addresses.
func TestPushDeniedNetworks(t *testing.T) {
	s := ts.New(t)
	gw := newGateway(t, 0)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	if r := setPusher(bob, gw.URL, "k", nil); r.Status != 200 {
		t.Fatal(string(r.Body))
	}
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.Join(room)
	alice.Send(room, "m.room.message", mention("psst", bob.UserID))
	// The push, queued with the event, has been tried once (it failed, or
	// it is gone): what reached the gateway by then tells.
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err := s.Store.DuePushes(t.Context(), math.MaxInt64, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(q) == 0 || q[0].Attempts > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the push was not tried: %+v", q)
		}
		time.Sleep(10 * time.Millisecond)
	}
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if gw.requests != 0 {
		t.Fatalf("a push reached a loopback gateway: %d requests", gw.requests)
	}
}

// TestRoomWideNotificationsFollowMembership checks that a message stored
// once for a crowded room counts for those who were members when it was
// sent: not for one who joined later, still after a profile change (a
// join after a join), no longer after leaving and joining again.
func TestRoomWideNotificationsFollowMembership(t *testing.T) {
	forEachCrowd(t, func(t *testing.T, s *ts.Server, fill func(string)) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		fill(room)
		alice.SendText(room, "before bob")
		alice.SendText(room, "still before bob")
		bob.Join(room)
		count := func(want int) {
			t.Helper()
			if got := syncCounts(t, bob, "").Rooms.Join[room].Unread; got.NotificationCount != want {
				t.Fatalf("bob's count %d, want %d", got.NotificationCount, want)
			}
		}
		count(0)
		alice.SendText(room, "welcome bob")
		count(1)
		compactPushes(t, s)
		count(1)
		bob.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(bob.UserID)+"/displayname", map[string]any{"displayname": "Bob B."}, nil)
		count(1)
		alice.SendText(room, "nice name")
		count(2)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		bob.Join(room)
		count(0)
		alice.SendText(room, "welcome back")
		count(1)
		compactPushes(t, s)
		count(1)
		// The sender counts none of their own messages, listed or counted.
		if got := syncCounts(t, alice, "").Rooms.Join[room].Unread; got.NotificationCount != 0 {
			t.Fatalf("alice's count %+v", got)
		}
		var list struct {
			Notifications []struct {
				Event event `json:"event"`
			} `json:"notifications"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/notifications", nil, &list)
		if len(list.Notifications) != 0 {
			t.Fatalf("alice's notifications %+v", list.Notifications)
		}
		bob.MustDo("GET", "/_matrix/client/v3/notifications", nil, &list)
		if len(list.Notifications) == 0 || list.Notifications[0].Event.Content["body"] != "welcome back" {
			t.Fatalf("bob's notifications %+v", list.Notifications)
		}
		for _, n := range list.Notifications {
			if b := n.Event.Content["body"]; b == "before bob" || b == "still before bob" {
				t.Fatalf("bob is notified of %q", b)
			}
		}
	})
}

// TestNotifiedMembersFollowMembership checks who a message notifies in a
// crowded room as members leave, are kicked or banned, join again and
// change their rules: the server keeps a big room's local members
// grouped by rules between events, and none of these may leave it stale.
func TestNotifiedMembersFollowMembership(t *testing.T) {
	forEachCrowd(t, func(t *testing.T, s *ts.Server, fill func(string)) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		fill(room)
		bob.Join(room)
		carol.Join(room)
		listed := func(c *ts.Client) map[string]bool {
			t.Helper()
			var list struct {
				Notifications []struct {
					Event event `json:"event"`
				} `json:"notifications"`
			}
			c.MustDo("GET", "/_matrix/client/v3/notifications", nil, &list)
			out := map[string]bool{}
			for _, n := range list.Notifications {
				out[fmt.Sprint(n.Event.Content["body"])] = true
			}
			return out
		}
		expect := func(c *ts.Client, want map[string]bool) {
			t.Helper()
			compactPushes(t, s)
			if got := listed(c); !maps.Equal(got, want) {
				t.Fatalf("%s is notified of %v, want %v", c.UserID, got, want)
			}
		}
		alice.Send(room, "m.room.message", mention("1 bob here", bob.UserID))
		expect(bob, map[string]bool{"1 bob here": true})
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		alice.Send(room, "m.room.message", mention("2 bob left", bob.UserID))
		expect(bob, map[string]bool{"1 bob here": true})
		bob.Join(room)
		alice.Send(room, "m.room.message", mention("3 bob back", bob.UserID))
		expect(bob, map[string]bool{"1 bob here": true, "3 bob back": true})
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/kick", map[string]any{"user_id": bob.UserID}, nil)
		alice.Send(room, "m.room.message", mention("4 bob kicked", bob.UserID))
		expect(bob, map[string]bool{"1 bob here": true, "3 bob back": true})
		bob.Join(room)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/ban", map[string]any{"user_id": bob.UserID}, nil)
		alice.Send(room, "m.room.message", mention("5 bob banned", bob.UserID))
		alice.SendText(room, "6 to everyone")
		expect(bob, map[string]bool{"1 bob here": true, "3 bob back": true})
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/unban", map[string]any{"user_id": bob.UserID}, nil)
		bob.Join(room)
		alice.SendText(room, "7 to everyone")
		expect(bob, map[string]bool{"1 bob here": true, "3 bob back": true, "7 to everyone": true})
		// Carol, a member all along, is notified of every message (mentions
		// of bob included) until she mutes the room, then again after.
		heard := map[string]bool{}
		for _, m := range []string{"1 bob here", "2 bob left", "3 bob back", "4 bob kicked", "5 bob banned", "6 to everyone", "7 to everyone"} {
			heard[m] = true
		}
		expect(carol, heard)
		carol.MustDo("PUT", rulesPath+"room/"+esc(room), map[string]any{"actions": []any{}}, nil)
		alice.SendText(room, "8 carol muted")
		expect(carol, heard)
		carol.MustDo("DELETE", rulesPath+"room/"+esc(room), nil, nil)
		alice.SendText(room, "9 carol listens")
		heard["9 carol listens"] = true
		expect(carol, heard)
	})
}

// Joiners' rules are known without a read when they kept the defaults:
// the server remembers who stored rules, from before a restart and since.
// A joiner who stored a rule then gets what it asks for in a big room
// (whose members are kept grouped by rule set) and in a small one.
func TestJoinersStoredRulesAcrossRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol, dave := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol"), s.Register(t, "dave")
		pineapple := map[string]any{"pattern": "pineapple", "actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}}
		bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/content/pineapple", pineapple, nil)
		s = s.Restart(t)
		dave.MustDo("PUT", "/_matrix/client/v3/pushrules/global/content/pineapple", pineapple, nil) // after the start
		for _, size := range []int{0, 64} {
			room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
			joinAll(t, s, room, seedAccounts(t, s, fmt.Sprintf("crowd%d_", size), size))
			bob.Join(room)
			carol.Join(room)
			dave.Join(room)
			alice.SendText(room, "pineapple pie for everyone")
			for _, c := range []struct {
				who       *ts.Client
				highlight int
			}{{bob, 1}, {carol, 0}, {dave, 1}} {
				got := syncCounts(t, c.who, "").Rooms.Join[room].Unread
				if got.NotificationCount != 1 || got.HighlightCount != c.highlight {
					t.Fatalf("room of %d more: %s's counts %+v, want 1 notification, %d highlights", size, c.who.UserID, got, c.highlight)
				}
			}
		}
	})
}
