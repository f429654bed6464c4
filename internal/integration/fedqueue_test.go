package integration

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/e2ee/e2eetest"
	ts "luxchat/internal/testserver"
)

// fqPair is two federating servers: a (police) and b (gouv).
type fqPair struct {
	fed  *ts.Federation
	a, b *ts.Server
}

var fqHosts = []string{"police.test", "gouv.test"}

// fqFast allows the two hosts only and retries failed transactions fast.
func fqFast(hosts ...string) ts.Option {
	return ts.WithConfig(func(c *config.Config) {
		c.Federation.AllowedServers = append([]string(nil), hosts...)
		c.Federation.RetryBaseDelay = 50 * time.Millisecond
		c.Federation.RetryMaxDelay = 300 * time.Millisecond
	})
}

// fqEngines runs f with a on SQLite then on PostgreSQL (b on SQLite).
func fqEngines(t *testing.T, f func(t *testing.T, p *fqPair)) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			p := &fqPair{fed: newFederation(t)}
			optsA := []ts.Option{p.fed.ServerNamed(fqHosts[0]), fqFast(fqHosts...)}
			if pg {
				optsA = append(optsA, ts.WithPostgres(t))
			}
			p.a = ts.New(t, optsA...)
			p.b = ts.New(t, p.fed.ServerNamed(fqHosts[1]), fqFast(fqHosts...))
			f(t, p)
		})
	}
}

// fqSyncUntil syncs from since until check accepts a response and
// returns its next_batch.
func fqSyncUntil(t *testing.T, c *ts.Client, since, what string, check func(s map[string]any) bool) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		q := "timeout=1000"
		if since != "" {
			q += "&since=" + url.QueryEscape(since)
		}
		s := c.Sync(q)
		if check(s) {
			return s["next_batch"].(string)
		}
		if next, ok := s["next_batch"].(string); ok && since != "" {
			since = next
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never saw %s", c.UserID, what)
		}
	}
}

// path walks nested maps.
func path(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func evList(v any) []map[string]any {
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func fqBodies(t *testing.T, c *ts.Client, roomID string) []string {
	t.Helper()
	var out []string
	for _, e := range messages(t, c, roomID, "dir=f&limit=200").Chunk {
		if b, ok := e.Content["body"].(string); ok && e.Type == "m.room.message" {
			out = append(out, b)
		}
	}
	return out
}

// fqRoom makes a public room on a with alice, joined by bob from b.
func fqRoom(t *testing.T, p *fqPair, alice, bob *ts.Client) string {
	t.Helper()
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(p.a.Config.ServerName), map[string]any{}, nil)
	return roomID
}

func TestFedQueueEventsReachOtherServerAndSurviveDowntime(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		roomID := fqRoom(t, p, alice, bob)

		// No manual relay: the outbound queue carries alice's message.
		alice.SendText(roomID, "first")
		fqSyncUntil(t, bob, "", "alice's first message", func(s map[string]any) bool {
			for _, e := range evList(path(s, "rooms", "join", roomID, "timeline", "events")) {
				if path(e, "content", "body") == "first" {
					return true
				}
			}
			return false
		})
		bob.SendText(roomID, "reply")
		fqSyncUntil(t, alice, "", "bob's reply", func(s map[string]any) bool {
			for _, e := range evList(path(s, "rooms", "join", roomID, "timeline", "events")) {
				if path(e, "content", "body") == "reply" {
					return true
				}
			}
			return false
		})

		// b goes down; alice keeps talking; b comes back and gets each
		// message once, in order.
		if err := p.b.Stop(); err != nil {
			t.Fatal(err)
		}
		var missed []string
		for i := range 7 {
			body := fmt.Sprintf("while down %d", i)
			alice.SendText(roomID, body)
			missed = append(missed, body)
		}
		waitFailures(t, p.a, p.b.Config.ServerName, 2) // some attempts fail meanwhile
		p.b = p.b.Restart(t)
		want := append([]string{"first", "reply"}, missed...)
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := fqBodies(t, bob, roomID)
			if slices.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("bob's timeline after the restart: %q, want %q", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Nothing left queued for b.
		deadline = time.Now().Add(10 * time.Second)
		for p.a.Outbox.Depths(t.Context())[p.b.Config.ServerName] != 0 {
			if time.Now().After(deadline) {
				t.Fatal("items left in the outbox after delivery")
			}
			time.Sleep(20 * time.Millisecond)
		}

		// A kick reaches the kicked user's server, though no one of it is
		// left in the room.
		bobSince := bob.Sync("timeout=0")["next_batch"].(string)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/kick", map[string]any{"user_id": bob.UserID, "reason": "bye"}, nil)
		fqSyncUntil(t, bob, bobSince, "the kick", func(s map[string]any) bool { return path(s, "rooms", "leave", roomID) != nil })
	})
}

func TestFedQueueEDUsCrossServers(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		roomID := fqRoom(t, p, alice, bob)
		msg := alice.SendText(roomID, "read me")
		since := fqSyncUntil(t, bob, "", "alice's message", func(s map[string]any) bool {
			for _, e := range evList(path(s, "rooms", "join", roomID, "timeline", "events")) {
				if path(e, "content", "body") == "read me" {
					return true
				}
			}
			return false
		})

		t.Run("typing", func(t *testing.T) {
			alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/typing/"+esc(alice.UserID), map[string]any{"typing": true, "timeout": 20000}, nil)
			since = fqSyncUntil(t, bob, since, "alice typing", func(s map[string]any) bool {
				for _, e := range evList(path(s, "rooms", "join", roomID, "ephemeral", "events")) {
					if e["type"] == "m.typing" && slices.Contains(path(e, "content", "user_ids").([]any), any(alice.UserID)) {
						return true
					}
				}
				return false
			})
		})

		t.Run("receipts", func(t *testing.T) {
			alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/receipt/m.read/"+esc(msg), map[string]any{}, nil)
			since = fqSyncUntil(t, bob, since, "alice's receipt", func(s map[string]any) bool {
				for _, e := range evList(path(s, "rooms", "join", roomID, "ephemeral", "events")) {
					if e["type"] == "m.receipt" && path(e, "content", msg, "m.read", alice.UserID) != nil {
						return true
					}
				}
				return false
			})
		})

		t.Run("presence", func(t *testing.T) {
			alice.MustDo("PUT", "/_matrix/client/v3/presence/"+esc(alice.UserID)+"/status", map[string]any{"presence": "unavailable", "status_msg": "in a meeting"}, nil)
			since = fqSyncUntil(t, bob, since, "alice's presence", func(s map[string]any) bool {
				for _, e := range evList(path(s, "presence", "events")) {
					if e["sender"] == alice.UserID && path(e, "content", "status_msg") == "in a meeting" {
						return true
					}
				}
				return false
			})
		})

		t.Run("to-device", func(t *testing.T) {
			alice.MustDo("PUT", "/_matrix/client/v3/sendToDevice/m.test/fq1", map[string]any{
				"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"secret": "for bob"}}},
			}, nil)
			since = fqSyncUntil(t, bob, since, "alice's to-device message", func(s map[string]any) bool {
				for _, e := range evList(path(s, "to_device", "events")) {
					if e["sender"] == alice.UserID && e["type"] == "m.test" && path(e, "content", "secret") == "for bob" {
						return true
					}
				}
				return false
			})
		})

		t.Run("device lists and keys", func(t *testing.T) {
			aliceKeys := e2eetest.NewDevice(alice.UserID, alice.DeviceID)
			alice.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{
				"device_keys": aliceKeys.DeviceKeys(), "one_time_keys": aliceKeys.OneTimeKeys(2),
			}, nil)
			since = fqSyncUntil(t, bob, since, "alice in device_lists.changed", func(s map[string]any) bool {
				changed, _ := path(s, "device_lists", "changed").([]any)
				return slices.Contains(changed, any(alice.UserID))
			})
			// bob's server asks alice's.
			var q struct {
				DeviceKeys map[string]map[string]map[string]any `json:"device_keys"`
				Failures   map[string]any                       `json:"failures"`
			}
			bob.MustDo("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}}, &q)
			if k := q.DeviceKeys[alice.UserID][alice.DeviceID]; k == nil || path(k, "keys", "ed25519:"+alice.DeviceID) == nil {
				t.Fatalf("remote keys query: %+v", q)
			}
			// A second query is answered from the kept list, the same.
			var q2 struct {
				DeviceKeys map[string]map[string]map[string]any `json:"device_keys"`
			}
			bob.MustDo("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}}, &q2)
			if path(q2.DeviceKeys[alice.UserID][alice.DeviceID], "keys") == nil {
				t.Fatalf("second query: %+v", q2)
			}
			// Claims hand out alice's one-time keys, once each.
			seen := map[string]bool{}
			for range 2 {
				var c struct {
					OneTimeKeys map[string]map[string]map[string]any `json:"one_time_keys"`
					Failures    map[string]any                       `json:"failures"`
				}
				bob.MustDo("POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: "signed_curve25519"}}}, &c)
				keys := c.OneTimeKeys[alice.UserID][alice.DeviceID]
				if len(keys) != 1 {
					t.Fatalf("claim: %+v", c)
				}
				for id := range keys {
					if seen[id] {
						t.Fatalf("one-time key %s handed out twice", id)
					}
					seen[id] = true
				}
			}
			// A new device of alice's: bob hears of it and sees it.
			alice2 := p.a.Anonymous(t)
			var login struct {
				AccessToken string `json:"access_token"`
				DeviceID    string `json:"device_id"`
			}
			alice2.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
				"identifier": map[string]string{"type": "m.id.user", "user": alice.UserID}, "password": "correct horse battery"}, &login)
			alice2.Token = login.AccessToken
			alice2.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": e2eetest.NewDevice(alice.UserID, login.DeviceID).DeviceKeys()}, nil)
			since = fqSyncUntil(t, bob, since, "alice's new device announced", func(s map[string]any) bool {
				changed, _ := path(s, "device_lists", "changed").([]any)
				return slices.Contains(changed, any(alice.UserID))
			})
			var q3 struct {
				DeviceKeys map[string]map[string]map[string]any `json:"device_keys"`
			}
			bob.MustDo("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}}, &q3)
			if len(q3.DeviceKeys[alice.UserID]) != 2 {
				t.Fatalf("after the new device: %v", q3.DeviceKeys[alice.UserID])
			}
		})

		t.Run("profile", func(t *testing.T) {
			alice.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/displayname", map[string]any{"displayname": "Alice of Police"}, nil)
			var prof map[string]any
			bob.MustDo("GET", "/_matrix/client/v3/profile/"+esc(alice.UserID), nil, &prof)
			if prof["displayname"] != "Alice of Police" {
				t.Fatalf("remote profile: %v", prof)
			}
		})
	})
}

// countingServer is a TLS server for name (a .test host) that counts
// every connection it accepts.
func countingServer(t *testing.T, fed *ts.Federation, host string) (serverName string, conns *atomic.Int64) {
	t.Helper()
	certFile, keyFile := fed.Issue(host)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int64)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}), ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go func() { _ = srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})) }()
	t.Cleanup(func() { srv.Close() })
	return fmt.Sprintf("%s:%d", host, ln.Addr().(*net.TCPAddr).Port), conns
}

func TestFedQueueNeverContactsRefusedServers(t *testing.T) {
	fed := newFederation(t)
	a := ts.New(t, fed.ServerNamed("police.test"), fqFast(fqHosts...))
	outsider, conns := countingServer(t, fed, "outsider.test")
	alice := a.Register(t, "alice")
	stranger := "@x:" + outsider
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})

	// Whatever the invite's fate, nothing reaches the outsider.
	alice.Do("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": stranger})
	alice.SendText(roomID, "hello")
	alice.MustDo("PUT", "/_matrix/client/v3/sendToDevice/m.test/fq2", map[string]any{
		"messages": map[string]any{stranger: map[string]any{"DEV": map[string]any{"a": 1}}},
	}, nil)
	var q struct {
		Failures map[string]any `json:"failures"`
	}
	alice.MustDo("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{stranger: []string{}}}, &q)
	if q.Failures[outsider] == nil {
		t.Fatalf("keys query of a refused server: failures %v", q.Failures)
	}
	var c struct {
		Failures map[string]any `json:"failures"`
	}
	alice.MustDo("POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": map[string]any{stranger: map[string]string{"DEV": "signed_curve25519"}}}, &c)
	if c.Failures[outsider] == nil {
		t.Fatalf("keys claim of a refused server: failures %v", c.Failures)
	}
	if r := alice.Do("GET", "/_matrix/client/v3/profile/"+esc(stranger), nil); r.Status != 404 {
		t.Fatalf("profile of a refused server's user: %d %s", r.Status, r.Body)
	}
	// Whatever was queued has gone out: nothing can contact it later.
	waitIdle(t, a)
	if n := conns.Load(); n != 0 {
		t.Fatalf("the refused server was contacted %d times", n)
	}
	if d := a.Outbox.Depths(t.Context())[outsider]; d != 0 {
		t.Fatalf("%d items queued for a refused server", d)
	}
	if strings.Contains(string(mustJSONString(a.Outbox.Depths(t.Context()))), outsider) {
		t.Fatal("refused server has a queue")
	}
}

// waitFailures waits until n transactions from s to dest failed in a row.
func waitFailures(t *testing.T, s *ts.Server, dest string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Outbox.Failures(dest) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d failed transactions to %s, want %d", s.Outbox.Failures(dest), dest, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitIdle waits until s's outbox has nothing on its way to any server.
func waitIdle(t *testing.T, s *ts.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.Outbox.Idle() {
		if time.Now().After(deadline) {
			t.Fatalf("%s's outbox still busy: %v", s.Config.ServerName, s.Outbox.Depths(t.Context()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustJSONString(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// fqSendEDUs puts a transaction of EDUs from one server to another.
func fqSendEDUs(t *testing.T, from, to *ts.Server, txnID string, edus ...map[string]any) {
	t.Helper()
	body := map[string]any{"origin": from.Config.ServerName, "origin_server_ts": time.Now().UnixMilli(), "pdus": []any{}, "edus": edus}
	if err := from.Federation.Do(t.Context(), to.Config.ServerName, "PUT", "/_matrix/federation/v1/send/"+url.PathEscape(txnID), body, nil); err != nil {
		t.Fatal(err)
	}
}

func TestFedQueueInboundEDUsMustComeFromTheirServer(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		roomID := fqRoom(t, p, alice, bob)
		msg := alice.SendText(roomID, "hi")
		since := alice.Sync("timeout=0")["next_batch"].(string)

		// b speaks for alice, a user of a: every EDU is ignored.
		fqSendEDUs(t, p.b, p.a, "spoof1",
			map[string]any{"edu_type": "m.typing", "content": map[string]any{"room_id": roomID, "user_id": alice.UserID, "typing": true}},
			map[string]any{"edu_type": "m.receipt", "content": map[string]any{roomID: map[string]any{"m.read": map[string]any{
				alice.UserID: map[string]any{"data": map[string]any{"ts": 1}, "event_ids": []string{msg}}}}}},
			map[string]any{"edu_type": "m.presence", "content": map[string]any{"push": []any{map[string]any{
				"user_id": alice.UserID, "presence": "online", "status_msg": "spoofed", "last_active_ago": 1}}}},
			map[string]any{"edu_type": "m.direct_to_device", "content": map[string]any{"sender": alice.UserID, "type": "m.test", "message_id": "s1",
				"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"spoof": true}}}}},
			map[string]any{"edu_type": "m.device_list_update", "content": map[string]any{"user_id": alice.UserID, "device_id": "X", "stream_id": 1, "prev_id": []any{}, "deleted": true}},
		)
		// Then a genuine to-device message of bob's, sent twice under one
		// message id: delivered once.
		legit := map[string]any{"edu_type": "m.direct_to_device", "content": map[string]any{"sender": bob.UserID, "type": "m.test", "message_id": "m1",
			"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"legit": true}}}}}
		fqSendEDUs(t, p.b, p.a, "legit1", legit)
		fqSendEDUs(t, p.b, p.a, "legit2", legit)

		var seen []map[string]any
		since = fqSyncUntil(t, alice, since, "bob's to-device message", func(s map[string]any) bool {
			seen = append(seen, s)
			for _, e := range evList(path(s, "to_device", "events")) {
				if path(e, "content", "legit") == true {
					return true
				}
			}
			return false
		})
		seen = append(seen, alice.Sync("timeout=300&since="+url.QueryEscape(since)))
		legitCount := 0
		for _, s := range seen {
			for _, e := range evList(path(s, "to_device", "events")) {
				if path(e, "content", "spoof") != nil {
					t.Fatalf("spoofed to-device delivered: %v", e)
				}
				if path(e, "content", "legit") == true {
					legitCount++
				}
			}
			for _, e := range evList(path(s, "rooms", "join", roomID, "ephemeral", "events")) {
				if e["type"] == "m.typing" && slices.Contains(path(e, "content", "user_ids").([]any), any(alice.UserID)) {
					t.Fatalf("spoofed typing shown: %v", e)
				}
				if e["type"] == "m.receipt" && path(e, "content", msg, "m.read", alice.UserID) != nil {
					t.Fatalf("spoofed receipt shown: %v", e)
				}
			}
			for _, e := range evList(path(s, "presence", "events")) {
				if path(e, "content", "status_msg") == "spoofed" {
					t.Fatalf("spoofed presence shown: %v", e)
				}
			}
			if changed, _ := path(s, "device_lists", "changed").([]any); slices.Contains(changed, any(alice.UserID)) {
				t.Fatal("spoofed device list update shown")
			}
		}
		if legitCount != 1 {
			t.Fatalf("the to-device message arrived %d times", legitCount)
		}
	})
}

func TestFedQueueOpenID(t *testing.T) {
	fed := newFederation(t)
	a := ts.New(t, fed.ServerNamed("police.test"), fqFast(fqHosts...))
	b := ts.New(t, fed.ServerNamed("gouv.test"), fqFast(fqHosts...))
	alice := a.Register(t, "alice")
	var tok struct {
		AccessToken      string `json:"access_token"`
		TokenType        string `json:"token_type"`
		MatrixServerName string `json:"matrix_server_name"`
		ExpiresIn        int64  `json:"expires_in"`
	}
	alice.MustDo("POST", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/openid/request_token", map[string]any{}, &tok)
	if tok.TokenType != "Bearer" || tok.MatrixServerName != a.Config.ServerName || tok.ExpiresIn <= 0 || tok.AccessToken == "" {
		t.Fatalf("token: %+v", tok)
	}
	if r := alice.Do("POST", "/_matrix/client/v3/user/"+esc("@someone:"+a.Config.ServerName)+"/openid/request_token", map[string]any{}); r.Status != 403 {
		t.Fatalf("token for another user: %d %s", r.Status, r.Body)
	}
	// Another service checks the token with alice's server.
	var info struct {
		Sub string `json:"sub"`
	}
	if err := b.Federation.DoUnsigned(t.Context(), a.Config.ServerName, "GET", "/_matrix/federation/v1/openid/userinfo?access_token="+url.QueryEscape(tok.AccessToken), nil, &info); err != nil || info.Sub != alice.UserID {
		t.Fatalf("userinfo: %+v %v", info, err)
	}
	err := b.Federation.DoUnsigned(t.Context(), a.Config.ServerName, "GET", "/_matrix/federation/v1/openid/userinfo?access_token=nope", nil, &info)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "M_UNKNOWN_TOKEN") {
		t.Fatalf("unknown token: %v", err)
	}
}

func TestFedQueueRetriesAtOnceWhenTheDestinationCallsBack(t *testing.T) {
	fed := newFederation(t)
	slow := ts.WithConfig(func(c *config.Config) {
		c.Federation.RetryBaseDelay = time.Hour
		c.Federation.RetryMaxDelay = time.Hour
	})
	a := ts.New(t, fed.ServerNamed("police.test"), fqFast(fqHosts...), slow)
	b := ts.New(t, fed.ServerNamed("gouv.test"), fqFast(fqHosts...))
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := fqRoom(t, &fqPair{fed: fed, a: a, b: b}, alice, bob)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	alice.SendText(roomID, "while you were away")
	// a's first attempt fails: an hour of back-off begins.
	deadline := time.Now().Add(10 * time.Second)
	for a.Outbox.Depths(t.Context())[b.Config.ServerName] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing queued for b")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitFailures(t, a, b.Config.ServerName, 1)
	b.Restart(t) // same addresses: bob's client reaches it again
	// bob speaks: b's transaction reaches a, which retries b at once.
	bob.SendText(roomID, "back")
	deadline = time.Now().Add(15 * time.Second)
	for !slices.Contains(fqBodies(t, bob, roomID), "while you were away") {
		if time.Now().After(deadline) {
			t.Fatalf("a did not retry b when b called: bob sees %q", fqBodies(t, bob, roomID))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFedQueueDeviceListUpdatesChain(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		fqRoom(t, p, alice, bob)
		bName := p.b.Config.ServerName
		if err := p.b.Stop(); err != nil {
			t.Fatal(err)
		}
		type update struct {
			Type    string
			Content map[string]any
		}
		// queued waits until n updates are queued for b (announcements
		// are made after the change, in the background: each step is
		// awaited so that none is folded into the next).
		queued := func(n int) []update {
			var got []update
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, edus, err := p.a.Store.PendingOutbox(t.Context(), bName, 50, 100)
				if err != nil {
					t.Fatal(err)
				}
				got = got[:0]
				for _, e := range edus {
					var u struct {
						Type    string         `json:"edu_type"`
						Content map[string]any `json:"content"`
					}
					if json.Unmarshal(e.EDU, &u) == nil && (u.Type == "m.device_list_update" || u.Type == "m.signing_key_update") {
						got = append(got, update{u.Type, u.Content})
					}
				}
				if len(got) >= n || time.Now().After(deadline) {
					return got
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		// While b is down, alice's device changes pile up for it.
		alice.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": e2eetest.NewDevice(alice.UserID, alice.DeviceID).DeviceKeys()}, nil)
		queued(1)
		cs := e2eetest.NewCrossSigning(alice.UserID)
		alice.MustDo("POST", "/_matrix/client/v3/keys/device_signing/upload", cs.Upload(), nil)
		queued(2)
		alice.MustDo("DELETE", "/_matrix/client/v3/devices/"+esc(alice.DeviceID), map[string]any{"auth": map[string]any{
			"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": alice.UserID}, "password": "correct horse battery"}}, nil)
		got := queued(3)
		if len(got) != 3 {
			t.Fatalf("updates queued for b: %+v", got)
		}
		first, signing, deleted := got[0], got[1], got[2]
		if first.Type != "m.device_list_update" || first.Content["device_id"] != alice.DeviceID || first.Content["deleted"] != false ||
			first.Content["stream_id"] != float64(1) || len(first.Content["prev_id"].([]any)) != 0 || first.Content["keys"] == nil {
			t.Errorf("first update: %+v", first)
		}
		if signing.Type != "m.signing_key_update" || signing.Content["user_id"] != alice.UserID || signing.Content["master_key"] == nil ||
			signing.Content["self_signing_key"] == nil || signing.Content["user_signing_key"] != nil {
			t.Errorf("signing key update: %+v", signing)
		}
		if deleted.Type != "m.device_list_update" || deleted.Content["deleted"] != true || deleted.Content["stream_id"] != float64(2) ||
			!slices.Equal(deleted.Content["prev_id"].([]any), []any{float64(1)}) {
			t.Errorf("deletion: %+v", deleted)
		}
	})
}
