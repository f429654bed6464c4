package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
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
