package integration

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// TestRepoll: the requests that follow a parked poll's answer on its
// connection (httputil's re-poll reader): re-polls of /sync served and
// parked again outside net/http cycle after cycle, each answer the
// message that woke it; other requests on the connection, pipelined
// ones in order; a token revoked or expired between two polls answered
// as on a new connection; clients closing, or asking to close.
func TestRepoll(t *testing.T) {
	short := ts.WithConfig(func(c *config.Config) { c.Auth.AccessTokenLifetime = config.Duration{Duration: 3 * time.Second} })
	t.Run("sqlite", func(t *testing.T) { testRepoll(t, ts.New(t, short)) })
	t.Run("postgres", func(t *testing.T) { testRepoll(t, ts.New(t, short, ts.WithPostgres(t))) })
}

func testRepoll(t *testing.T, s *ts.Server) {
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.Join(roomID)
	since := doSync(t, bob, "timeout=0").NextBatch
	poll := func(since string) string { return "/_matrix/client/v3/sync?timeout=20000&since=" + since }

	// Woken again and again on one connection: every poll after the
	// first is read, served and parked outside net/http.
	rc := dialRaw(t, s, bob.Token)
	served0, back0 := s.Repolls()
	for i := range 5 {
		rc.send(rc.request("GET", poll(since)))
		waitParked(t, s, 1)
		text := fmt.Sprintf("cycle %d", i)
		alice.SendText(roomID, text)
		r := rc.sync(rc.read("GET"))
		if b := bodies(r.Rooms.Join[roomID].Timeline.Events); !slices.Equal(b, []string{text}) {
			t.Fatalf("poll %d woken: %v, want %q", i, b, text)
		}
		since = r.NextBatch
	}
	if served, back := s.Repolls(); served-served0 < 4 || back != back0 {
		t.Errorf("%d re-polls served outside net/http, %d handed to it; want ≥ 4, 0", served-served0, back-back0)
	}

	// Other requests on the connection after a parked answer, one with
	// a body; then polls again, the r0 path too.
	rc.send(rc.request("GET", "/_matrix/client/v3/account/whoami"))
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(string(body), bob.UserID) {
		t.Fatalf("whoami after a woken poll: %d %s", resp.StatusCode, body)
	}
	msg := `{"msgtype":"m.text","body":"from bob"}`
	rc.send(fmt.Sprintf("PUT /_matrix/client/v3/rooms/%s/send/m.room.message/t1 HTTP/1.1\r\nHost: luxchat\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		esc(roomID), bob.Token, len(msg), msg))
	if resp, body := rc.read("PUT"); resp.StatusCode != 200 || !strings.Contains(string(body), "event_id") {
		t.Fatalf("send after a woken poll: %d %s", resp.StatusCode, body)
	}
	r := rc.sync(rc.read2(rc.request("GET", "/_matrix/client/r0/sync?timeout=20000&since="+since)))
	if b := bodies(r.Rooms.Join[roomID].Timeline.Events); !slices.Equal(b, []string{"from bob"}) {
		t.Fatalf("r0 poll after a send: %v", b)
	}
	since = r.NextBatch

	// Pipelined after a parked answer: a look, whoami, and a poll that
	// parks, in one write; answered in order.
	rc.send(rc.request("GET", poll(since)))
	waitParked(t, s, 1)
	alice.SendText(roomID, "before the pipeline")
	since = rc.sync(rc.read("GET")).NextBatch
	rc.send(rc.request("GET", "/_matrix/client/v3/sync?timeout=0&since="+since),
		rc.request("GET", "/_matrix/client/v3/account/whoami"),
		rc.request("GET", poll(since)))
	if r := rc.sync(rc.read("GET")); r.NextBatch != since || len(r.Rooms.Join) != 0 {
		t.Errorf("pipelined look with nothing new: %+v", r)
	}
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(string(body), bob.UserID) {
		t.Fatalf("pipelined whoami: %d %s", resp.StatusCode, body)
	}
	waitParked(t, s, 1)
	alice.SendText(roomID, "pipelined poll")
	r = rc.sync(rc.read("GET"))
	if b := bodies(r.Rooms.Join[roomID].Timeline.Events); !slices.Equal(b, []string{"pipelined poll"}) {
		t.Fatalf("pipelined poll: %v", b)
	}
	since = r.NextBatch

	// Connection: close on a re-poll: answered, then closed.
	rc.send(rc.request("GET", "/_matrix/client/v3/sync?timeout=300&since="+since))
	_ = rc.sync(rc.read("GET")) // parked, answered at its timeout
	rc.send(strings.Replace(rc.request("GET", "/_matrix/client/v3/sync?timeout=0&since="+since), "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
	resp, body := rc.read("GET")
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("re-poll with Connection: close: %d, close %v: %s", resp.StatusCode, resp.Close, body)
	}
	if _, err := rc.br.ReadByte(); err == nil {
		t.Errorf("connection kept after Connection: close")
	}

	// A token revoked between two polls of one connection, and one
	// expired: the re-poll gets the router's 401, as a new connection.
	for _, how := range []string{"revoked", "expired"} {
		c := loginExpiring(t, s, bob.UserID)
		rc := dialRaw(t, s, c.Token)
		rc.send(rc.request("GET", "/_matrix/client/v3/sync?timeout=300&since="+since))
		_ = rc.sync(rc.read("GET"))
		if how == "revoked" {
			c.MustDo("POST", "/_matrix/client/v3/logout", map[string]any{}, nil)
		} else {
			time.Sleep(3500 * time.Millisecond) // the token's lifetime
		}
		fresh := dialRaw(t, s, c.Token)
		freshResp, freshBody := fresh.read2(fresh.request("GET", poll(since)))
		rc.send(rc.request("GET", poll(since)))
		resp, body := rc.read("GET")
		if resp.StatusCode != http.StatusUnauthorized || string(body) != string(freshBody) || freshResp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s token on a re-poll: %d %s; on a new connection: %d %s", how, resp.StatusCode, body, freshResp.StatusCode, freshBody)
		}
		wantSoft := how == "expired"
		if strings.Contains(string(body), `"soft_logout":true`) != wantSoft {
			t.Errorf("%s token: %s, soft_logout want %v", how, body, wantSoft)
		}
		if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s token: headers %v, want the router's", how, resp.Header)
		}
	}

	// Clients leaving: one right after its parked answer, one mid-way
	// through its next request's head; nothing stays parked, the server
	// serves on.
	for _, partial := range []string{"", "GET /_matrix/client/v3/sync?timeout=1000 HTTP/1.1\r\nHost: lux"} {
		rc := dialRaw(t, s, bob.Token)
		rc.send(rc.request("GET", "/_matrix/client/v3/sync?timeout=200&since="+since))
		_ = rc.sync(rc.read("GET"))
		if partial != "" {
			rc.send(partial)
		}
		rc.c.Close()
	}
	waitParked0(t, s)
	if got := doSync(t, bob, "timeout=0&since="+since); got.NextBatch == "" {
		t.Fatal("no sync after clients left")
	}
}

// read2 sends one request and reads its answer.
func (r *rawConn) read2(req string) (*http.Response, []byte) {
	r.t.Helper()
	r.send(req)
	return r.read("GET")
}

// loginExpiring logs userID in on a new device with an access token that
// expires (the server's access token lifetime).
func loginExpiring(t *testing.T, s *ts.Server, userID string) *ts.Client {
	t.Helper()
	c := s.Anonymous(t)
	var login struct {
		AccessToken string `json:"access_token"`
	}
	c.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password", "refresh_token": true,
		"identifier": map[string]string{"type": "m.id.user", "user": userID}, "password": e2eePassword}, &login)
	c.Token, c.UserID = login.AccessToken, userID
	return c
}
