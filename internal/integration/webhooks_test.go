package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// Payloads modelled on the senders' own documentation: Alertmanager's
// webhook_config (version 4) and Grafana's webhook contact point.
const (
	amFiring = `{
  "version": "4",
  "groupKey": "{}:{alertname=\"HighRequestLatency\"}",
  "truncatedAlerts": 0,
  "status": "firing",
  "receiver": "luxchat-ops",
  "groupLabels": {"alertname": "HighRequestLatency"},
  "commonLabels": {"alertname": "HighRequestLatency", "job": "api", "severity": "critical"},
  "commonAnnotations": {"summary": "High request latency"},
  "externalURL": "http://alertmanager.example:9093",
  "alerts": [
    {"status": "firing", "labels": {"alertname": "HighRequestLatency", "instance": "api-1:9090", "job": "api", "severity": "critical"},
     "annotations": {"summary": "High request latency", "description": "p99 latency of api-1 is 1.2s <script>alert(1)</script>", "runbook_url": "https://runbooks.example/latency"},
     "startsAt": "2026-12-07T09:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
     "generatorURL": "http://prometheus.example:9090/graph?g0.expr=latency%3E1", "fingerprint": "a1b2c3d4e5f60001"},
    {"status": "firing", "labels": {"alertname": "HighRequestLatency", "instance": "api-2:9090", "job": "api", "severity": "critical"},
     "annotations": {"summary": "High request latency", "description": "p99 latency of api-2 is 1.4s"},
     "startsAt": "2026-12-07T09:00:30Z", "endsAt": "0001-01-01T00:00:00Z",
     "generatorURL": "javascript:alert(1)", "fingerprint": "a1b2c3d4e5f60002"}
  ]
}`
	// api-1 resolved, api-2 still firing unchanged: the group is still firing.
	amPartlyResolved = `{
  "version": "4", "groupKey": "{}:{alertname=\"HighRequestLatency\"}", "status": "firing", "receiver": "luxchat-ops",
  "groupLabels": {"alertname": "HighRequestLatency"}, "commonLabels": {"alertname": "HighRequestLatency", "job": "api", "severity": "critical"},
  "commonAnnotations": {"summary": "High request latency"}, "externalURL": "http://alertmanager.example:9093",
  "alerts": [
    {"status": "resolved", "labels": {"alertname": "HighRequestLatency", "instance": "api-1:9090", "job": "api", "severity": "critical"},
     "annotations": {"summary": "High request latency", "description": "p99 latency of api-1 is 1.2s <script>alert(1)</script>", "runbook_url": "https://runbooks.example/latency"},
     "startsAt": "2026-12-07T09:00:00Z", "endsAt": "2026-12-07T09:20:00Z",
     "generatorURL": "http://prometheus.example:9090/graph?g0.expr=latency%3E1", "fingerprint": "a1b2c3d4e5f60001"},
    {"status": "firing", "labels": {"alertname": "HighRequestLatency", "instance": "api-2:9090", "job": "api", "severity": "critical"},
     "annotations": {"summary": "High request latency", "description": "p99 latency of api-2 is 1.4s"},
     "startsAt": "2026-12-07T09:00:30Z", "endsAt": "0001-01-01T00:00:00Z",
     "generatorURL": "javascript:alert(1)", "fingerprint": "a1b2c3d4e5f60002"}
  ]
}`
	grafanaFiring = `{
  "receiver": "My Super Webhook", "status": "firing", "orgId": 1,
  "alerts": [{
    "status": "firing",
    "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
    "annotations": {"description": "The system has high memory usage", "runbook_url": "https://myrunbook.com/runbook/1234", "summary": "This alert was triggered for zone us-1"},
    "startsAt": "2021-10-12T09:51:03.157076+02:00", "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit", "fingerprint": "c6eadffa33fcdf37",
    "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1",
    "dashboardURL": "https://play.grafana.org/d/abc", "panelURL": "https://play.grafana.org/d/abc?viewPanel=2",
    "values": {"B": 44.23943737541908, "C": 1}
  }],
  "groupLabels": {}, "commonLabels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
  "commonAnnotations": {}, "externalURL": "https://play.grafana.org/", "version": "1",
  "groupKey": "{}:{alertname=\"High memory usage\"}", "truncatedAlerts": 0,
  "title": "[FIRING:1]  (High memory usage blue us-1)", "state": "alerting", "message": "**Firing**"
}`
)

// hookServer is a test server for webhooks: plaintext rooms by default
// (the plain poster refuses encrypted ones).
func hookServer(t *testing.T, postgres bool, opts ...ts.Option) *ts.Server {
	opts = append(opts, ts.WithConfig(func(c *config.Config) { c.Encryption.Default = false }))
	if postgres {
		opts = append(opts, ts.WithPostgres(t))
	}
	return ts.New(t, opts...)
}

func forEachHookEngine(t *testing.T, f func(t *testing.T, postgres bool)) {
	t.Run("sqlite", func(t *testing.T) { f(t, false) })
	t.Run("postgres", func(t *testing.T) { f(t, true) })
}

type hookInfo struct {
	ID     string `json:"id"`
	URL    string `json:"url"`
	RoomID string `json:"room_id"`
}

func createHook(t *testing.T, admin *ts.Client, room, name string) hookInfo {
	t.Helper()
	var out struct {
		Webhook   hookInfo `json:"webhook"`
		BotUserID string   `json:"bot_user_id"`
	}
	admin.MustDo("POST", "/_luxchat/admin/v1/webhooks", map[string]string{"room": room, "name": name}, &out)
	if out.Webhook.ID == "" || !strings.Contains(out.Webhook.URL, "/_luxchat/hooks/"+out.Webhook.ID+"_") {
		t.Fatalf("created %+v", out)
	}
	return out.Webhook
}

// hookPost posts body to a hook URL as a monitoring system would: no
// access token.
func hookPost(t *testing.T, url string, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// hookPath rewrites a hook URL (made from the configuration) onto the
// test server's address.
func hookPath(s *ts.Server, u string) string {
	i := strings.Index(u, "/_luxchat/hooks/")
	return s.HooksURL + u[i:]
}

func botMessages(t *testing.T, c *ts.Client, roomID, bot string) []event {
	t.Helper()
	var out []event
	for _, e := range messages(t, c, roomID, "dir=f&limit=100").Chunk {
		if e.Type == "m.room.message" && e.Sender == bot {
			out = append(out, e)
		}
	}
	return out
}

func TestWebhooksAlerts(t *testing.T) {
	forEachHookEngine(t, func(t *testing.T, pg bool) {
		s := hookServer(t, pg)
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		alice := s.Register(t, "alice")
		bot := "@alerts:" + s.Config.ServerName

		// An invite-only room: the bot cannot join until invited, and
		// making the hook says so.
		room := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Ops"})
		r := admin.Do("POST", "/_luxchat/admin/v1/webhooks", map[string]string{"room": room})
		if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "invite it") {
			t.Fatalf("hook for a room the bot cannot join: %d %s", r.Status, r.Body)
		}
		// Only administrators make hooks.
		if r := alice.Do("POST", "/_luxchat/admin/v1/webhooks", map[string]string{"room": room}); r.Status != http.StatusForbidden {
			t.Fatalf("non-admin: %d %s", r.Status, r.Body)
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]string{"user_id": bot}, nil)
		hook := createHook(t, admin, room, "prometheus")
		url := hookPath(s, hook.URL)

		// A second room with its own hook: nothing posted to the first
		// reaches it.
		other := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		otherHook := createHook(t, admin, other, "other")

		// Firing: one message per alert of the group.
		code, body := hookPost(t, url, amFiring)
		if code != http.StatusOK {
			t.Fatalf("firing: %d %s", code, body)
		}
		msgs := botMessages(t, alice, room, bot)
		if len(msgs) != 2 {
			t.Fatalf("firing group of 2 became %d messages", len(msgs))
		}
		first := msgs[0]
		b, _ := first.Content["body"].(string)
		fb, _ := first.Content["formatted_body"].(string)
		for _, want := range []string{"FIRING", "[critical]", "HighRequestLatency", "High request latency", "instance=api-1:9090", "job=api", "http://prometheus.example:9090/graph", "https://runbooks.example/latency"} {
			if !strings.Contains(b, want) {
				t.Errorf("body lacks %q:\n%s", want, b)
			}
		}
		if first.Content["msgtype"] != "m.notice" || first.Content["format"] != "org.matrix.custom.html" {
			t.Errorf("content %v", first.Content)
		}
		if strings.Contains(fb, "<script>") || !strings.Contains(fb, "&lt;script&gt;") || !strings.Contains(fb, `<a href="http://prometheus.example:9090/graph?g0.expr=latency%3E1">Source</a>`) {
			t.Errorf("formatted_body not escaped or without its link:\n%s", fb)
		}
		if b2, _ := msgs[1].Content["formatted_body"].(string); strings.Contains(b2, "javascript:") {
			t.Errorf("a javascript: link was kept:\n%s", b2)
		}

		// The same notification again (Alertmanager's repeat_interval):
		// nothing new in the room.
		if code, body := hookPost(t, url, amFiring); code != http.StatusOK || !strings.Contains(body, `"collapsed":2`) {
			t.Fatalf("repeat: %d %s", code, body)
		}
		if n := len(botMessages(t, alice, room, bot)); n != 2 {
			t.Fatalf("a repeat was posted again: %d messages", n)
		}

		// api-1 resolves: its message is edited and answered; api-2's
		// unchanged alert is left out.
		if code, body := hookPost(t, url, amPartlyResolved); code != http.StatusOK || !strings.Contains(body, `"collapsed":1`) {
			t.Fatalf("resolved: %d %s", code, body)
		}
		msgs = botMessages(t, alice, room, bot)
		if len(msgs) != 4 {
			t.Fatalf("after the resolution: %d messages", len(msgs))
		}
		edit, reply := msgs[2], msgs[3]
		rel, _ := edit.Content["m.relates_to"].(map[string]any)
		nc, _ := edit.Content["m.new_content"].(map[string]any)
		if rel["rel_type"] != "m.replace" || rel["event_id"] != first.EventID || !strings.Contains(fmt.Sprint(nc["body"]), "RESOLVED") || !strings.Contains(fmt.Sprint(nc["body"]), "resolved 2026-12-07 09:20:00 UTC") {
			t.Fatalf("edit %v", edit.Content)
		}
		rrel, _ := reply.Content["m.relates_to"].(map[string]any)
		irt, _ := rrel["m.in_reply_to"].(map[string]any)
		if irt["event_id"] != first.EventID || !strings.Contains(fmt.Sprint(reply.Content["body"]), "Resolved") {
			t.Fatalf("reply %v", reply.Content)
		}
		// A client sees the edit applied to the first message.
		var relations struct {
			Chunk []event `json:"chunk"`
		}
		alice.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(room)+"/relations/"+esc(first.EventID)+"/m.replace", nil, &relations)
		if len(relations.Chunk) != 1 || relations.Chunk[0].EventID != edit.EventID {
			t.Fatalf("relations %+v", relations.Chunk)
		}
		// And the resolution repeated is left out too.
		if code, body := hookPost(t, url, amPartlyResolved); code != http.StatusOK || !strings.Contains(body, `"collapsed":2`) {
			t.Fatalf("resolved again: %d %s", code, body)
		}

		// Grafana's payload: its links and values.
		if code, body := hookPost(t, url, grafanaFiring); code != http.StatusOK || !strings.Contains(body, `"format":"grafana"`) {
			t.Fatalf("grafana: %d %s", code, body)
		}
		msgs = botMessages(t, alice, room, bot)
		g := msgs[len(msgs)-1]
		gb, _ := g.Content["body"].(string)
		gfb, _ := g.Content["formatted_body"].(string)
		for _, want := range []string{"FIRING", "High memory usage", "This alert was triggered for zone us-1", "Values: B=44.23943737541908, C=1", "team=blue", "Silence: https://play.grafana.org/alerting/silence/new", "Dashboard: https://play.grafana.org/d/abc", "Panel: https://play.grafana.org/d/abc?viewPanel=2"} {
			if !strings.Contains(gb, want) {
				t.Errorf("grafana body lacks %q:\n%s", want, gb)
			}
		}
		if !strings.Contains(gfb, `>Silence</a>`) || !strings.Contains(gfb, `>Dashboard</a>`) {
			t.Errorf("grafana formatted_body:\n%s", gfb)
		}

		// Generic text and HTML.
		if code, body := hookPost(t, url, `{"text": "Deploy 1.42 done", "html": "<b>Deploy 1.42</b> done"}`); code != http.StatusOK {
			t.Fatalf("generic: %d %s", code, body)
		}
		msgs = botMessages(t, alice, room, bot)
		if g := msgs[len(msgs)-1]; g.Content["body"] != "Deploy 1.42 done" || g.Content["formatted_body"] != "<b>Deploy 1.42</b> done" {
			t.Fatalf("generic %v", g.Content)
		}
		total := len(msgs)

		// Bad bodies: clear errors, nothing posted.
		for _, c := range []struct {
			body, code string
			status     int
		}{
			{"not json", "M_NOT_JSON", 400},
			{"", "M_NOT_JSON", 400},
			{"[]", "M_BAD_JSON", 400},
			{`{"hello": 1}`, "M_BAD_JSON", 400},
			{`{"text": ""}`, "M_BAD_JSON", 400},
			{`{"text": 5}`, "M_BAD_JSON", 400},
			{`{"version": "4", "alerts": [{"status": "weird"}]}`, "M_BAD_JSON", 400},
			{`{"version": "4", "alerts": {}}`, "M_BAD_JSON", 400},
			{`{"version": "4", "alerts": [{"status": "firing", "labels": {"a": 1}}]}`, "M_BAD_JSON", 400},
			{`{"text": "` + strings.Repeat("x", 600<<10) + `"}`, "M_TOO_LARGE", 413},
		} {
			code, body := hookPost(t, url, c.body)
			if code != c.status || !strings.Contains(body, c.code) {
				t.Errorf("body %.40q: %d %s, want %d %s", c.body, code, body, c.status, c.code)
			}
		}
		if n := len(botMessages(t, alice, room, bot)); n != total {
			t.Fatalf("bad bodies posted: %d messages, want %d", n, total)
		}
		// Nothing reached the other room.
		if n := len(botMessages(t, alice, other, bot)); n != 0 {
			t.Fatalf("the other room got %d messages", n)
		}

		// Unknown ids and wrong secrets: the same 404.
		id, secret, _ := strings.Cut(strings.TrimPrefix(url, s.HooksURL+"/_luxchat/hooks/"), "_")
		wrong := []byte(secret)
		wrong[0] ^= 1
		var bodies []string
		for _, tok := range []string{id + "_" + string(wrong), "aaaaaaaaaaaaa_" + secret, "nothing", id, "../" + id} {
			code, body := hookPost(t, s.HooksURL+"/_luxchat/hooks/"+tok, `{"text": "x"}`)
			if code != http.StatusNotFound {
				t.Errorf("token %q: %d %s", tok, code, body)
			}
			bodies = append(bodies, body)
		}
		if bodies[0] != bodies[1] {
			t.Errorf("a wrong secret and an unknown id answer differently: %s / %s", bodies[0], bodies[1])
		}

		// Rotation: the old URL is 404, the new one posts.
		var rot struct {
			Webhook hookInfo `json:"webhook"`
		}
		admin.MustDo("POST", "/_luxchat/admin/v1/webhooks/"+hook.ID+"/rotate", map[string]any{}, &rot)
		if code, _ := hookPost(t, url, `{"text": "old"}`); code != http.StatusNotFound {
			t.Fatalf("old URL after rotation: %d", code)
		}
		newURL := hookPath(s, rot.Webhook.URL)
		if newURL == url {
			t.Fatal("rotation kept the URL")
		}
		if code, body := hookPost(t, newURL, `{"text": "new"}`); code != http.StatusOK {
			t.Fatalf("new URL: %d %s", code, body)
		}

		// The list shows both hooks without their secrets.
		var list struct {
			Webhooks []map[string]any `json:"webhooks"`
		}
		admin.MustDo("GET", "/_luxchat/admin/v1/webhooks", nil, &list)
		if len(list.Webhooks) != 2 || list.Webhooks[0]["url"] != nil || list.Webhooks[0]["name"] != "prometheus" {
			t.Fatalf("list %v", list.Webhooks)
		}

		// Revocation.
		admin.MustDo("DELETE", "/_luxchat/admin/v1/webhooks/"+hook.ID, nil, nil)
		if code, _ := hookPost(t, newURL, `{"text": "after revoke"}`); code != http.StatusNotFound {
			t.Fatalf("revoked hook: %d", code)
		}
		if r := admin.Do("POST", "/_luxchat/admin/v1/webhooks/"+hook.ID+"/rotate", map[string]any{}); r.Status != http.StatusNotFound {
			t.Fatalf("rotate a revoked hook: %d %s", r.Status, r.Body)
		}
		admin.MustDo("GET", "/_luxchat/admin/v1/webhooks", nil, &list)
		if list.Webhooks[0]["revoked"] != true || list.Webhooks[1]["revoked"] != false {
			t.Fatalf("list after revoke %v", list.Webhooks)
		}
		// The other hook still works, into its own room only.
		if code, _ := hookPost(t, hookPath(s, otherHook.URL), `{"text": "other"}`); code != http.StatusOK {
			t.Fatalf("other hook: %d", code)
		}
		if n := len(botMessages(t, alice, other, bot)); n != 1 {
			t.Fatalf("other room: %d", n)
		}
	})
}

func TestWebhooksRefusals(t *testing.T) {
	forEachHookEngine(t, func(t *testing.T, pg bool) {
		s := hookServer(t, pg, ts.WithConfig(func(c *config.Config) { c.Webhooks.RateBurst, c.Webhooks.RatePerSecond = 3, 0.01 }))
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		bot := "@alerts:" + s.Config.ServerName

		// An encrypted room: the plain poster would post in the clear.
		enc := admin.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
			{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
		if r := admin.Do("POST", "/_luxchat/admin/v1/webhooks", map[string]string{"room": enc}); r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "encrypted") {
			t.Fatalf("encrypted room: %d %s", r.Status, r.Body)
		}
		// A room where messages need more power than the bot has.
		quiet := admin.CreateRoom(map[string]any{"preset": "public_chat", "power_level_content_override": map[string]any{"events_default": 50}})
		if r := admin.Do("POST", "/_luxchat/admin/v1/webhooks", map[string]string{"room": quiet}); r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "power level") {
			t.Fatalf("room the bot cannot post in: %d %s", r.Status, r.Body)
		}
		for _, bad := range []map[string]string{{}, {"room": "nonsense"}, {"room": "!nope:" + s.Config.ServerName}, {"room": "#nope:" + s.Config.ServerName}} {
			if r := admin.Do("POST", "/_luxchat/admin/v1/webhooks", bad); r.Status < 400 || r.Status >= 500 {
				t.Fatalf("bad create %v: %d %s", bad, r.Status, r.Body)
			}
		}
		if r := admin.Do("DELETE", "/_luxchat/admin/v1/webhooks/nosuchhook", nil); r.Status != http.StatusNotFound {
			t.Fatalf("revoke unknown: %d %s", r.Status, r.Body)
		}

		// A flood on one hook: 429 once its bucket is empty, with a
		// retry time; nothing past the burst is posted.
		room := admin.CreateRoom(map[string]any{"preset": "public_chat"})
		hook := createHook(t, admin, room, "")
		url := hookPath(s, hook.URL)
		limited := 0
		for i := 0; i < 6; i++ {
			code, body := hookPost(t, url, fmt.Sprintf(`{"text": "flood %d"}`, i))
			switch code {
			case http.StatusOK:
			case http.StatusTooManyRequests:
				if !strings.Contains(body, "M_LIMIT_EXCEEDED") || !strings.Contains(body, "retry_after_ms") {
					t.Fatalf("429 body %s", body)
				}
				limited++
			default:
				t.Fatalf("flood %d: %d %s", i, code, body)
			}
		}
		if limited != 3 {
			t.Fatalf("%d of 6 limited, want 3 (burst 3)", limited)
		}
		if n := len(botMessages(t, admin, room, bot)); n != 3 {
			t.Fatalf("%d messages posted in the flood", n)
		}
		// The bot kicked: the hook answers why, not a 500.
		admin.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/kick", map[string]string{"user_id": bot}, nil)
		hook2 := createHook(t, admin, room, "again") // the room is public: it joins again
		admin.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/ban", map[string]string{"user_id": bot}, nil)
		if code, body := hookPost(t, hookPath(s, hook2.URL), `{"text": "after ban"}`); code != http.StatusForbidden {
			t.Fatalf("post after the bot's ban: %d %s", code, body)
		}
	})
}

// listen.hooks: the hooks on their own listener and not on the client's,
// which keeps the client API to itself.
func TestWebhooksOwnListener(t *testing.T) {
	forEachHookEngine(t, func(t *testing.T, pg bool) {
		s := hookServer(t, pg, ts.WithHooksListener(t))
		if s.HooksURL == s.URL {
			t.Fatal("no hooks listener")
		}
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		room := admin.CreateRoom(map[string]any{"preset": "public_chat"})
		hook := createHook(t, admin, room, "apart")
		if !strings.HasPrefix(hook.URL, s.HooksURL+"/_luxchat/hooks/") {
			t.Fatalf("URL %s is not on listen.hooks %s", hook.URL, s.HooksURL)
		}
		tok := hook.URL[strings.Index(hook.URL, "/_luxchat/hooks/"):]
		code, body := hookPost(t, s.URL+tok, `{"text": "on the client listener"}`)
		if code != http.StatusNotFound || !strings.Contains(body, "M_UNRECOGNIZED") {
			t.Fatalf("client listener served the hook: %d %s", code, body)
		}
		if code, body := hookPost(t, hook.URL, `{"text": "on listen.hooks"}`); code != http.StatusOK {
			t.Fatalf("hooks listener: %d %s", code, body)
		}
		resp, err := http.Get(s.HooksURL + "/_matrix/client/versions")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("hooks listener served the client API: %d", resp.StatusCode)
		}
		if n := len(botMessages(t, admin, room, "@alerts:"+s.Config.ServerName)); n != 1 {
			t.Fatalf("%d messages", n)
		}
	})
}
