package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// oneConn is a client of one keep-alive connection that reports whether
// each request reused it.
type oneConn struct {
	t     *testing.T
	hc    *http.Client
	url   string
	token string
}

func newOneConn(t *testing.T, s *ts.Server, c *ts.Client) *oneConn {
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &oneConn{t: t, hc: &http.Client{Transport: tr}, url: s.URL, token: c.Token}
}

// get returns the answer's status and body, and whether the request went
// over the connection of the one before.
func (c *oneConn) get(path string) (status int, body []byte, reused bool) {
	c.t.Helper()
	req, _ := http.NewRequest("GET", c.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, body, reused
}

// TestLongPollParked: a long poll that finds nothing waits parked outside
// net/http (httputil.Park) and is answered as any other: at its timeout,
// or with the message that woke it, on a connection the client keeps
// using; a server shutting down answers its parked polls first.
func TestLongPollParked(t *testing.T) {
	park := ts.WithConfig(func(c *config.Config) { c.Limits.ParkLongPolls = true })
	t.Run("sqlite", func(t *testing.T) { testLongPollParked(t, ts.New(t, park)) })
	t.Run("postgres", func(t *testing.T) { testLongPollParked(t, ts.New(t, park, ts.WithPostgres(t))) })
}

func testLongPollParked(t *testing.T, s *ts.Server) {
	{
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(roomID)
		conn := newOneConn(t, s, bob)
		status, body, _ := conn.get("/_matrix/client/v3/sync?timeout=0")
		var r syncResp
		if status != 200 || json.Unmarshal(body, &r) != nil {
			t.Fatalf("initial sync: %d %s", status, body)
		}

		// Timeouts: answered, token kept, connection kept.
		for i := range 2 {
			status, body, reused := conn.get("/_matrix/client/v3/sync?timeout=300&since=" + r.NextBatch)
			var next syncResp
			if status != 200 || json.Unmarshal(body, &next) != nil {
				t.Fatalf("poll %d: %d %s", i, status, body)
			}
			if next.NextBatch != r.NextBatch || len(next.Rooms.Join) != 0 {
				t.Errorf("poll %d with nothing new: %s", i, body)
			}
			if !reused {
				t.Errorf("poll %d: a new connection, want the one kept alive", i)
			}
		}

		// A message wakes a parked poll; the connection serves on.
		got := make(chan syncResp, 1)
		go func() {
			var next syncResp
			_, body, _ := conn.get("/_matrix/client/v3/sync?timeout=20000&since=" + r.NextBatch)
			_ = json.Unmarshal(body, &next)
			got <- next
		}()
		waitParked(t, s, 1)
		alice.SendText(roomID, "wake up")
		next := <-got
		if b := bodies(next.Rooms.Join[roomID].Timeline.Events); !slices.Equal(b, []string{"wake up"}) {
			t.Errorf("woken poll: %v, want the message", b)
		}
		if status, body, reused := conn.get("/_matrix/client/v3/account/whoami"); status != 200 || !reused {
			t.Errorf("request after a woken poll: %d %s, reused %v", status, body, reused)
		}

		// Shutting down answers parked polls.
		go func() {
			status, _, _ := conn.get("/_matrix/client/v3/sync?timeout=60000&since=" + next.NextBatch)
			got <- syncResp{NextBatch: http.StatusText(status)}
		}()
		waitParked(t, s, 1)
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		if r := <-got; r.NextBatch != "OK" {
			t.Errorf("parked poll at shutdown: %s, want OK", r.NextBatch)
		}
	}
}

// rawConn is a client connection without a goroutine of its own: it
// writes requests and reads answers when told, so tests can pipeline,
// hang up, and count the server's goroutines alone.
type rawConn struct {
	t     *testing.T
	c     net.Conn
	br    *bufio.Reader
	token string
}

func dialRaw(t *testing.T, s *ts.Server, token string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c), token: token}
}

func (r *rawConn) request(method, path string) string {
	return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: luxchat\r\nAuthorization: Bearer %s\r\n\r\n", method, path, r.token)
}

// send writes requests in one write (several: pipelined).
func (r *rawConn) send(reqs ...string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, strings.Join(reqs, "")); err != nil {
		r.t.Fatal(err)
	}
}

// read reads the next answer (to a request of that method).
func (r *rawConn) read(method string) (*http.Response, []byte) {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("read the answer to %s: %v", method, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("read the body of %s: %v", method, err)
	}
	return resp, body
}

func (r *rawConn) sync(resp *http.Response, body []byte) syncResp {
	r.t.Helper()
	var out syncResp
	if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil || out.NextBatch == "" {
		r.t.Fatalf("sync answer: %d %s", resp.StatusCode, body)
	}
	return out
}

// TestLongPollParkedMany: many polls parked at once hold no goroutine of
// the server; news wakes all of them, each connection serves on; polls
// of clients that hung up end; pipelined requests and HEAD are answered
// in order; a server stopping answers every parked poll.
func TestLongPollParkedMany(t *testing.T) {
	park := ts.WithConfig(func(c *config.Config) { c.Limits.ParkLongPolls = true })
	t.Run("sqlite", func(t *testing.T) { testLongPollParkedMany(t, ts.New(t, park)) })
	t.Run("postgres", func(t *testing.T) { testLongPollParkedMany(t, ts.New(t, park, ts.WithPostgres(t))) })
}

func testLongPollParkedMany(t *testing.T, s *ts.Server) {
	const users, connsPerUser = 10, 10
	alice := s.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	var clients []*ts.Client
	for i := range users {
		c := s.Register(t, fmt.Sprintf("user%d", i))
		c.Join(roomID)
		clients = append(clients, c)
	}
	// Everyone online first (coming online is news for the others).
	var since syncResp
	for _, c := range clients {
		if err := json.Unmarshal(c.Do("GET", "/_matrix/client/v3/sync?timeout=0", nil).Body, &since); err != nil {
			t.Fatal(err)
		}
	}
	// The same token serves every user (stream positions), once all joined.
	poll := func(timeoutMS int) string {
		return fmt.Sprintf("/_matrix/client/v3/sync?timeout=%d&since=%s", timeoutMS, since.NextBatch)
	}
	runtime.GC()
	before := runtime.NumGoroutine()

	// Many parked at once, no goroutine each.
	var conns []*rawConn
	for _, c := range clients {
		for range connsPerUser {
			rc := dialRaw(t, s, c.Token)
			rc.send(rc.request("GET", poll(60000)))
			conns = append(conns, rc)
		}
	}
	waitParked(t, s, len(conns))
	n := len(conns)
	waitFor(t, func() bool { return runtime.NumGoroutine() < before+n/4 },
		func() string {
			return fmt.Sprintf("%d goroutines with %d polls parked, %d before", runtime.NumGoroutine(), n, before)
		})

	// One message wakes them all; each connection serves on.
	alice.SendText(roomID, "all of you")
	for i, rc := range conns {
		r := rc.sync(rc.read("GET"))
		if b := bodies(r.Rooms.Join[roomID].Timeline.Events); !slices.Equal(b, []string{"all of you"}) {
			t.Fatalf("poll %d woken: %v, want the message", i, b)
		}
		if i%10 == 0 {
			rc.send(rc.request("GET", "/_matrix/client/v3/account/whoami"))
			if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(string(body), clients[i/connsPerUser].UserID) {
				t.Fatalf("whoami after a woken poll: %d %s", resp.StatusCode, body)
			}
		}
	}
	waitParked0(t, s)
	var now syncResp
	if err := json.Unmarshal(clients[0].Do("GET", "/_matrix/client/v3/sync?timeout=0&since="+since.NextBatch, nil).Body, &now); err != nil {
		t.Fatal(err)
	}
	since = now

	// Clients that hang up while parked: woken or timed out, their polls
	// end and the others are served.
	for i := range 10 {
		rc := dialRaw(t, s, clients[i%users].Token)
		timeout := 60000
		if i%2 == 1 {
			timeout = 500
		}
		rc.send(rc.request("GET", poll(timeout)))
		conns[i] = rc
	}
	waitParked(t, s, 10)
	for _, rc := range conns[:10] {
		rc.c.Close()
	}
	alice.SendText(roomID, "anyone there?")
	waitParked0(t, s)
	var after syncResp
	if err := json.Unmarshal(clients[0].Do("GET", "/_matrix/client/v3/sync?timeout=0&since="+since.NextBatch, nil).Body, &after); err != nil {
		t.Fatal(err)
	}
	if b := bodies(after.Rooms.Join[roomID].Timeline.Events); !slices.Equal(b, []string{"anyone there?"}) {
		t.Fatalf("after the hang-ups: %v", b)
	}
	since = after

	// Pipelined: a poll and a request behind it in one write, answered
	// in order, the poll at its timeout; then HEAD, without a body.
	rc := dialRaw(t, s, clients[0].Token)
	rc.send(rc.request("GET", poll(300)), rc.request("GET", "/_matrix/client/v3/account/whoami"))
	if r := rc.sync(rc.read("GET")); r.NextBatch != since.NextBatch {
		t.Errorf("pipelined poll: token %s, want %s", r.NextBatch, since.NextBatch)
	}
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(string(body), clients[0].UserID) {
		t.Fatalf("whoami pipelined behind a poll: %d %s", resp.StatusCode, body)
	}
	rc.send(rc.request("HEAD", poll(300)))
	if resp, body := rc.read("HEAD"); resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength <= 0 {
		t.Fatalf("HEAD of a poll: %d, Content-Length %d, %d bytes of body", resp.StatusCode, resp.ContentLength, len(body))
	}
	rc.send(rc.request("GET", "/_matrix/client/v3/account/whoami"))
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(string(body), clients[0].UserID) {
		t.Fatalf("whoami after HEAD of a poll: %d %s", resp.StatusCode, body)
	}

	// Stopping answers every parked poll.
	for i := range conns[:20] {
		rc := dialRaw(t, s, clients[i%users].Token)
		rc.send(rc.request("GET", poll(60000)))
		conns[i] = rc
	}
	waitParked(t, s, 20)
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop() }()
	for _, rc := range conns[:20] {
		rc.sync(rc.read("GET"))
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// waitParked0 waits until no poll is parked.
func waitParked0(t *testing.T, s *ts.Server) {
	t.Helper()
	waitFor(t, func() bool { return s.Parked() == 0 }, func() string { return fmt.Sprintf("%d polls still parked", s.Parked()) })
}

// waitFor waits up to 20 s for ok.
func waitFor(t *testing.T, ok func() bool, what func() string) {
	t.Helper()
	for range 2000 {
		if ok() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal(what())
}

// waitParked waits until n long polls are parked.
func waitParked(t *testing.T, s *ts.Server, n int) {
	t.Helper()
	for range 1000 {
		if s.Parked() >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d polls parked, want %d", s.Parked(), n)
}

// TestLongPollInPlace: with limits.park_long_polls off, long polls wait
// on their connection's goroutine and are answered as parked ones are.
func TestLongPollInPlace(t *testing.T) {
	off := ts.WithConfig(func(c *config.Config) { c.Limits.ParkLongPolls = false })
	s := ts.New(t, off)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.Join(roomID)
	conn := newOneConn(t, s, bob)
	_, body, _ := conn.get("/_matrix/client/v3/sync?timeout=0")
	var r syncResp
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	status, body, reused := conn.get("/_matrix/client/v3/sync?timeout=300&since=" + r.NextBatch)
	var next syncResp
	if status != 200 || json.Unmarshal(body, &next) != nil || next.NextBatch != r.NextBatch || !reused {
		t.Fatalf("poll with nothing new: %d %s, reused %v", status, body, reused)
	}
	got := make(chan syncResp, 1)
	go func() {
		var woken syncResp
		_, body, _ := conn.get("/_matrix/client/v3/sync?timeout=20000&since=" + r.NextBatch)
		_ = json.Unmarshal(body, &woken)
		got <- woken
	}()
	alice.SendText(roomID, "in place")
	if b := bodies((<-got).Rooms.Join[roomID].Timeline.Events); !slices.Equal(b, []string{"in place"}) {
		t.Errorf("woken poll: %v, want the message", b)
	}
	if n := s.Parked(); n != 0 {
		t.Errorf("%d polls parked with parking off", n)
	}
}
