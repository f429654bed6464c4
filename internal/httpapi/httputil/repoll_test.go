package httputil

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// repollServer is a router behind a real http.Server whose listener
// takes parked connections back. Its /sync echoes what it was asked (the
// request as the router's handler sees it), or parks when asked to
// (park=1) until the test answers it.
type repollServer struct {
	t      *testing.T
	rt     *Router
	srv    *http.Server
	addr   string
	parked chan *Parked
}

func newRepollServer(t *testing.T, srv *http.Server) *repollServer {
	return newRepollServerOn(t, srv, "127.0.0.1:0")
}

// newRepollServerOn is newRepollServer listening on addr.
func newRepollServerOn(t *testing.T, srv *http.Server, addr string) *repollServer {
	t.Helper()
	rt, _ := newTestRouter()
	s := &repollServer{t: t, rt: rt, srv: srv, parked: make(chan *Parked, 16)}
	echo := func(r *Request) (any, error) {
		if r.Query("park") == "1" {
			if _, err := r.Body(); err != nil { // as a handler reads its body before it parks
				return nil, err
			}
			return r.Park(func(p *Parked) func() {
				s.parked <- p
				return func() { p.Answer(map[string]string{"hurried": "yes"}, nil) }
			}), nil
		}
		h := r.Header.Clone()
		delete(h, "User-Agent")
		body, err := r.Body()
		if err != nil {
			return nil, err
		}
		return map[string]any{
			"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery, "uri": r.RequestURI,
			"host": r.Host, "proto": r.Proto, "close": r.Close, "headers": h, "ip": r.ClientIP(),
			"length": r.ContentLength, "body": string(body),
		}, nil
	}
	// A stalled body is answered 408 half a second after its request.
	rt.BodyTimeout, rt.BodyMinRate = 500*time.Millisecond, 1
	rt.Handle("GET /_matrix/client/v3/sync", AuthNone, echo)
	rt.Handle("POST /_matrix/client/v3/sync", AuthNone, echo)
	rt.Handle("GET /_matrix/client/v3/other", AuthNone, echo)
	rt.Handle("POST "+slidingSyncPath, AuthNone, echo, BodyLimit(slidingBodyLimit))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	if tcp := ln.Addr().(*net.TCPAddr); tcp.IP.IsUnspecified() {
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
	}
	srv.Handler = rt
	pl := rt.ParkListener(ln, srv)
	go func() { _ = srv.Serve(pl) }()
	t.Cleanup(func() {
		rt.StopParked()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = rt.WaitParked(ctx)
	})
	return s
}

// slidingBodyLimit is the test server's limit on sliding sync bodies:
// above what is served in place (maxRepollBody).
const slidingBodyLimit = 100 << 10

// slidingPoll is a raw sliding sync request with body.
func slidingPoll(query, body string) string {
	return "POST " + slidingSyncPath + query + " HTTP/1.1\r\nHost: luxchat\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// conn is a raw client connection.
type testConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (s *repollServer) dial() *testConn {
	s.t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return &testConn{t: s.t, c: c, br: bufio.NewReader(c)}
}

// send writes raw. A server refusing a big head answers before it read
// it all and the write may fail: that shows in the answer.
func (c *testConn) send(raw string) {
	_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c.c, raw)
}

// answer reads one answer; nil when the connection ended first.
func (c *testConn) answer() *answer { return c.answerTo(http.MethodGet) }

// answerTo reads the answer to a request of that method.
func (c *testConn) answerTo(method string) *answer {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return nil
		}
		c.t.Fatalf("read answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	return &answer{resp: resp, body: body}
}

type answer struct {
	resp *http.Response
	body []byte
}

// closed reports whether the server ended the connection (read gets EOF).
func (c *testConn) closed() bool {
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.br.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// parkedConn is a connection whose parked poll was answered: what it
// sends next is read by the re-poll reader.
func (s *repollServer) parkedConn() *testConn {
	s.t.Helper()
	c := s.dial()
	c.send("GET /_matrix/client/v3/sync?park=1 HTTP/1.1\r\nHost: luxchat\r\n\r\n")
	p := <-s.parked
	p.Answer(map[string]string{"woken": "yes"}, nil)
	if a := c.answer(); a == nil || a.resp.StatusCode != 200 || string(a.body) != `{"woken":"yes"}` {
		s.t.Fatalf("parked poll's answer: %+v", a)
	}
	return c
}

// comparable is an answer without what differs between two requests
// (the date, the request id).
func comparable(a *answer) string {
	if a == nil {
		return "connection closed"
	}
	h := a.resp.Header.Clone()
	delete(h, "Date")
	delete(h, "X-Request-Id")
	keys := slices.Sorted(maps.Keys(h))
	var b strings.Builder
	b.WriteString(a.resp.Proto + " " + a.resp.Status + "\n")
	for _, k := range keys {
		b.WriteString(k + ": " + strings.Join(h[k], ",") + "\n")
	}
	body := a.body
	var echo map[string]any
	if json.Unmarshal(body, &echo) == nil {
		delete(echo, "headers") // compared below, without X-Request-Id
		body, _ = json.Marshal(echo)
	}
	b.Write(body)
	return b.String()
}

// TestRepollLikeNetHTTP: whatever a client sends after a parked answer
// is answered as net/http and the router answer it on a new connection:
// the same status, headers and body, the request seen alike by the
// handler, the connection kept or closed alike. Plain re-polls of /sync
// are served outside net/http; the rest is handed to net/http.
func TestRepollLikeNetHTTP(t *testing.T) {
	s := newRepollServer(t, &http.Server{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10})
	big := strings.Repeat("a", 6000)
	huge := strings.Repeat("b", 16<<10)
	cases := []struct {
		name, raw string
		inPlace   bool
	}{
		{"sync", "GET /_matrix/client/v3/sync?since=s1&timeout=0 HTTP/1.1\r\nHost: luxchat\r\nX-Custom: a\r\nx-custom: b\r\n\r\n", true},
		{"r0 sync", "GET /_matrix/client/r0/sync HTTP/1.1\r\nHost: luxchat:8008\r\n\r\n", true},
		{"connection close", "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nConnection: close\r\n\r\n", true},
		{"pragma", "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nPragma: no-cache\r\nAccept:  */*  \r\n\r\n", true},
		{"request id kept", "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nX-Request-Id: abc\r\n\r\n", true},
		{"NUL in the query", "GET /_matrix/client/v3/sync?since=%00 HTTP/1.1\r\nHost: luxchat\r\n\r\n", true},
		{"invalid UTF-8 in the query", "GET /_matrix/client/v3/sync?since=%ff HTTP/1.1\r\nHost: luxchat\r\n\r\n", true},
		{"HTTP/1.0", "GET /_matrix/client/v3/sync HTTP/1.0\r\nHost: luxchat\r\n\r\n", false},
		{"HTTP/1.0 keep-alive", "GET /_matrix/client/v3/sync HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false},
		{"no Host", "GET /_matrix/client/v3/sync HTTP/1.1\r\n\r\n", false},
		{"two Hosts", "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
		{"bad header name", "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nBad Name: x\r\n\r\n", false},
		{"bad header value", "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nX: a\x01b\r\n\r\n", false},
		{"folded header", "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nX: a\r\n b\r\n\r\n", false},
		{"bare LF", "GET /_matrix/client/v3/sync HTTP/1.1\nHost: luxchat\n\n", false},
		{"body", "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 2\r\n\r\n{}", false},
		{"chunked body", "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", false},
		{"POST", "POST /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 2\r\n\r\n{}", false},
		{"HEAD", "HEAD /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"OPTIONS", "OPTIONS /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"other path", "GET /_matrix/client/v3/other HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"a longer path", "GET /_matrix/client/v3/syncx HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"unclean path", "GET /_matrix/client/v3/sync/../other HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"escaped path", "GET /_matrix/client/v3/sync%3F HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"absolute form", "GET http://luxchat/_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"unknown path", "GET /nowhere HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"garbage", "hello\r\n\r\n", false},
		{"head over the reader's buffer", "GET /_matrix/client/v3/sync?filter=" + big + " HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"head over the server's limit", "GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nX-Big: " + huge + "\r\n\r\n", false},
		// Sliding sync: a POST with a small body is served in place.
		{"sliding sync", slidingPoll("?pos=p1&timeout=30000", `{"lists":{"all":{"ranges":[[0,19]]}}}`), true},
		{"sliding sync, empty body", slidingPoll("", ""), true},
		{"sliding sync, body past the reader's buffer", slidingPoll("?pos=p2", `{"x":"`+big+`"}`), true},
		{"sliding sync, body over the bound served here", slidingPoll("?pos=p3", `{"x":"`+strings.Repeat("c", maxRepollBody)+`"}`), false},
		{"sliding sync, body over the route's limit", slidingPoll("?pos=p4", `{"x":"`+strings.Repeat("d", slidingBodyLimit)+`"}`), false},
		{"sliding sync, Content-Length shorter than the body", "POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 2\r\n\r\n{}xx", true},
		{"sliding sync, body missing", "POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 10\r\n\r\n", false},
		{"sliding sync, body short", "POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 10\r\n\r\n{}", false},
		{"sliding sync, no Content-Length", "POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"sliding sync, two Content-Lengths", "POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", false},
		{"sliding sync, signed Content-Length", "POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\nContent-Length: +2\r\n\r\n{}", false},
		{"sliding sync, chunked", "POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", false},
		{"sliding sync, Expect", "POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}", false},
		{"sliding sync, HTTP/1.0", "POST " + slidingSyncPath + " HTTP/1.0\r\nHost: luxchat\r\nContent-Length: 2\r\n\r\n{}", false},
		{"sliding sync, GET", "GET " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\n\r\n", false},
		{"sliding sync, a longer path", "POST " + slidingSyncPath + "x HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 2\r\n\r\n{}", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method, _, _ := strings.Cut(tc.raw, " ")
			fresh := s.dial()
			fresh.t = t
			fresh.send(tc.raw)
			want := fresh.answerTo(method)

			c := s.parkedConn()
			c.t = t
			served, back := s.rt.Repolls()
			c.send(tc.raw)
			got := c.answerTo(method)
			if comparable(got) != comparable(want) {
				t.Errorf("after a parked answer:\n%s\nnet/http on a new connection:\n%s", comparable(got), comparable(want))
			}
			if got != nil && want != nil {
				var g, w struct{ Headers http.Header }
				_ = json.Unmarshal(got.body, &g)
				_ = json.Unmarshal(want.body, &w)
				if !reflect.DeepEqual(g.Headers, w.Headers) {
					t.Errorf("headers seen by the handler: %v, net/http's: %v", g.Headers, w.Headers)
				}
				if want.resp.Header.Get("X-Request-Id") != "" && got.resp.Header.Get("X-Request-Id") == "" {
					t.Errorf("no X-Request-Id")
				}
			}
			served2, back2 := s.rt.Repolls()
			if tc.inPlace && served2 != served+1 || !tc.inPlace && back2 != back+1 {
				t.Errorf("served in place %d→%d, handed back %d→%d; want in place %v", served, served2, back, back2, tc.inPlace)
			}
			// The connection lives on, or ends, as net/http's does.
			next := "GET /_matrix/client/v3/sync?n=2 HTTP/1.1\r\nHost: luxchat\r\n\r\n"
			if want != nil && !want.resp.Close {
				fresh.send(next)
				c.send(next)
				if g, w := comparable(c.answer()), comparable(fresh.answer()); g != w {
					t.Errorf("next request after it:\n%s\nnet/http:\n%s", g, w)
				}
			} else if !c.closed() {
				t.Errorf("connection kept, net/http closes it")
			}
		})
	}
}

// TestRepollCycles: a keep-alive connection parks, is answered and polls
// again, many times over, each re-poll parked again by the reader; a
// pipelined request behind a parked poll is answered after it, in order.
func TestRepollCycles(t *testing.T) {
	s := newRepollServer(t, &http.Server{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 10 * time.Second})
	c := s.dial()
	poll := "GET /_matrix/client/v3/sync?park=1 HTTP/1.1\r\nHost: luxchat\r\n\r\n"
	c.send(poll)
	for i := range 5 {
		p := <-s.parked
		p.Answer(map[string]int{"n": i}, nil)
		if a := c.answer(); a == nil || string(a.body) != `{"n":`+string(rune('0'+i))+`}` {
			t.Fatalf("answer %d: %+v", i, a)
		}
		c.send(poll)
	}
	p := <-s.parked
	if served, back := s.rt.Repolls(); served != 5 || back != 0 {
		t.Errorf("%d re-polls served in place, %d handed back; want 5, 0", served, back)
	}
	// Pipelined: a poll that parks, a request behind it, then one more
	// poll behind that, all in one write.
	p.Answer(map[string]string{"n": "last"}, nil)
	c.answer()
	c.send(poll + "GET /_matrix/client/v3/sync?after=1 HTTP/1.1\r\nHost: luxchat\r\n\r\n" + poll)
	p = <-s.parked
	p.Answer(map[string]string{"n": "first"}, nil)
	if a := c.answer(); a == nil || string(a.body) != `{"n":"first"}` {
		t.Fatalf("pipelined poll: %+v", a)
	}
	if a := c.answer(); a == nil || !strings.Contains(string(a.body), `"query":"after=1"`) {
		t.Fatalf("request pipelined behind the poll: %+v", a)
	}
	p = <-s.parked
	p.Answer(map[string]string{"n": "third"}, nil)
	if a := c.answer(); a == nil || string(a.body) != `{"n":"third"}` {
		t.Fatalf("third pipelined request: %+v", a)
	}
}

// TestRepollSlidingSync: a sliding sync connection long-polls on one
// keep-alive connection, each re-poll (a POST whose body changes between
// polls) read in place, served with its own body and parked again; a
// request pipelined behind a poll's body is answered after it; a body
// over the route's own limit, below the bound served here, is refused
// by net/http as on a new connection.
func TestRepollSlidingSync(t *testing.T) {
	s := newRepollServer(t, &http.Server{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 10 * time.Second})
	c := s.dial()
	c.send(slidingPoll("?park=1", `{"lists":{"all":{"ranges":[[0,0]]}}}`))
	for i := range 4 {
		p := <-s.parked
		p.Answer(map[string]int{"n": i}, nil)
		if a := c.answerTo(http.MethodPost); a == nil || string(a.body) != `{"n":`+strconv.Itoa(i)+`}` {
			t.Fatalf("answer %d: %+v", i, a)
		}
		// The next poll: the same, or with another range (served at once
		// to show what the handler read).
		body := `{"lists":{"all":{"ranges":[[0,` + strconv.Itoa(i+1) + `]]}}}`
		c.send(slidingPoll("?pos="+strconv.Itoa(i), body))
		a := c.answerTo(http.MethodPost)
		var echo struct{ Method, Body, Query string }
		if a == nil || json.Unmarshal(a.body, &echo) != nil || echo.Method != http.MethodPost || echo.Body != body || echo.Query != "pos="+strconv.Itoa(i) {
			t.Fatalf("re-poll %d: %+v", i, a)
		}
		c.send(slidingPoll("?park=1", body))
	}
	p := <-s.parked
	if served, back := s.rt.Repolls(); served != 8 || back != 0 {
		t.Errorf("%d re-polls served in place, %d handed back; want 8, 0", served, back)
	}
	// Pipelined behind a parked poll's body: a poll, then a GET.
	p.Answer(map[string]string{"n": "last"}, nil)
	c.answerTo(http.MethodPost)
	c.send(slidingPoll("?park=1", `{}`) + "GET /_matrix/client/v3/sync?after=1 HTTP/1.1\r\nHost: luxchat\r\n\r\n")
	p = <-s.parked
	p.Answer(map[string]string{"n": "first"}, nil)
	if a := c.answerTo(http.MethodPost); a == nil || string(a.body) != `{"n":"first"}` {
		t.Fatalf("pipelined poll: %+v", a)
	}
	if a := c.answer(); a == nil || !strings.Contains(string(a.body), `"query":"after=1"`) {
		t.Fatalf("request pipelined behind the poll: %+v", a)
	}

	// A route whose limit is below the bound served here keeps it.
	small := newRepollServer(t, &http.Server{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 10 * time.Second})
	small.rt.routes[slidingSyncPath][http.MethodPost] = route{auth: AuthNone, maxBody: 1000, h: small.rt.routes[slidingSyncPath][http.MethodPost].h}
	over := slidingPoll("", `{"x":"`+strings.Repeat("e", 1000)+`"}`)
	fresh := small.dial()
	fresh.send(over)
	want := fresh.answerTo(http.MethodPost)
	pc := small.parkedConn()
	pc.send(over)
	got := pc.answerTo(http.MethodPost)
	if want == nil || want.resp.StatusCode != http.StatusRequestEntityTooLarge || comparable(got) != comparable(want) {
		t.Errorf("body over the route's limit after a parked answer:\n%s\nnet/http:\n%s", comparable(got), comparable(want))
	}
	if served, back := small.rt.Repolls(); served != 0 || back != 1 {
		t.Errorf("%d served in place, %d handed back; want 0, 1", served, back)
	}
}

// TestRepollListeningEverywhere: a server listening on every address
// (0.0.0.0, as in a container) keeps its parked polls' connections alive
// (their local address is 127.0.0.1, not the listener's); it once closed
// each after its answer.
func TestRepollListeningEverywhere(t *testing.T) {
	s := newRepollServerOn(t, &http.Server{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 10 * time.Second}, "0.0.0.0:0")
	c := s.parkedConn()
	c.send("GET /_matrix/client/v3/sync?park=1 HTTP/1.1\r\nHost: luxchat\r\n\r\n")
	var p *Parked
	select {
	case p = <-s.parked:
	case <-time.After(10 * time.Second):
		t.Fatal("the second poll did not arrive: the connection was closed after the first answer")
	}
	p.Answer(map[string]string{"again": "yes"}, nil)
	if a := c.answer(); a == nil || string(a.body) != `{"again":"yes"}` || a.resp.Close {
		t.Fatalf("second poll on the connection: %+v", a)
	}
	if served, _ := s.rt.Repolls(); served != 1 {
		t.Errorf("%d re-polls served outside net/http, want 1", served)
	}
}

// TestRepollTimeouts: after a parked answer, a client that sends nothing
// is closed at the server's idle timeout, and one whose head trickles
// (slowloris) at its header timeout, as net/http closes them: without
// an answer. A server shutting down closes the connections waiting for
// their next request.
func TestRepollTimeouts(t *testing.T) {
	s := newRepollServer(t, &http.Server{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 600 * time.Millisecond})
	idle := s.parkedConn()
	if !idle.closed() {
		t.Errorf("idle connection not closed")
	}
	for _, c := range []*testConn{s.parkedConn(), s.dial()} {
		c.send("GET /_matrix/client/v3/sync?x=1 HTTP/1.1\r\nHost: lux")
		for range 10 {
			time.Sleep(50 * time.Millisecond)
			if _, err := c.c.Write([]byte("x")); err != nil {
				break
			}
		}
		if !c.closed() {
			t.Errorf("trickling head not cut")
		}
	}
	// A client leaving mid-head, then one leaving while idle: the server
	// serves on.
	c := s.parkedConn()
	c.send("GET /_matrix/client/v3/sync HTTP/1.1\r\nHo")
	c.c.Close()
	s.parkedConn().c.Close()
	c = s.dial()
	c.send("GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\n\r\n")
	if a := c.answer(); a == nil || a.resp.StatusCode != 200 {
		t.Fatalf("after clients left: %+v", a)
	}

	s2 := newRepollServer(t, &http.Server{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute})
	waiting := s2.parkedConn()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s2.rt.StopParked()
	if err := s2.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s2.rt.WaitParked(ctx); err != nil {
		t.Fatal(err)
	}
	if !waiting.closed() {
		t.Errorf("connection waiting for its next request kept at shutdown")
	}
}

// FuzzParseSyncHead: a head the re-poll reader takes is one net/http
// reads as the same request, a sliding sync POST's with the same body
// length; nothing panics.
func FuzzParseSyncHead(f *testing.F) {
	for _, seed := range []string{
		"GET /_matrix/client/v3/sync?since=s1&timeout=30000 HTTP/1.1\r\nHost: luxchat\r\nAuthorization: Bearer abc\r\n\r\n",
		"GET /_matrix/client/r0/sync HTTP/1.1\r\nhost: x\r\nconnection: Close\r\npragma: no-cache\r\n\r\n",
		"GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nX:\r\nX: \t a b \t\r\n\r\nGET /next",
		"GET /_matrix/client/v3/sync HTTP/1.1\nHost: luxchat\n\n",
		"GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\n b\r\n\r\n",
		"GET /_matrix/client/v3/sync?% HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET /_matrix/client/v3/sync#x HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 0\r\n\r\n",
		"GET /_matrix/client/v3/sync\r\n\r\n",
		"POST /_matrix/client/v3/sync HTTP/1.1\r\n\r\n",
		"GET /_matrix/client/v3/sync HTTP/1.1\n\r\n",
		"POST " + slidingSyncPath + "?pos=a_1&timeout=30000 HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 12\r\n\r\n{\"lists\":{}}",
		"POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 007\r\nContent-Length: 7\r\n\r\n",
		"POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 99999999999\r\n\r\n",
		"POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST " + slidingSyncPath + " HTTP/1.1\r\nHost: luxchat\r\n\r\n",
		"GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: luxchat\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := headEnd(data)
		maybeSync(data)
		if n == 0 {
			return
		}
		req := parseSyncHead(data[:n])
		if req == nil {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:n])))
		if err != nil {
			t.Fatalf("taken here, refused by net/http (%v): %q", err, data[:n])
		}
		if req.Method != want.Method || req.URL.String() != want.URL.String() || req.Host != want.Host ||
			req.Close != want.Close || req.Proto != want.Proto || req.RequestURI != want.RequestURI ||
			req.ContentLength != want.ContentLength || req.Method == http.MethodGet && want.ContentLength != 0 ||
			!reflect.DeepEqual(req.Header, want.Header) {
			t.Fatalf("read differently from net/http:\n%+v\n%+v\n%q", req, want, data[:n])
		}
	})
}

// BenchmarkRepoll: one op is a round of 100 parked polls answered (each
// from a goroutine of its own, as a timer's), their clients' next polls
// read outside net/http, served through the router and parked again:
// what the transport and the router cost woken polls. It reports the
// allocations per poll (the client's are few: it reads answers of a
// known length into one buffer).
func BenchmarkRepoll(b *testing.B) {
	const conns = 100
	rt, _ := newTestRouter()
	parked := make(chan *Parked, conns)
	rt.Handle("GET /_matrix/client/v3/sync", AuthNone, func(r *Request) (any, error) {
		return r.Park(func(p *Parked) func() { parked <- p; return func() {} }), nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: rt, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}
	go func() { _ = srv.Serve(rt.ParkListener(ln, srv)) }()
	defer srv.Close()
	poll := []byte("GET /_matrix/client/v3/sync?since=s1_2_3&timeout=30000&filter=1 HTTP/1.1\r\nHost: luxchat\r\nAuthorization: Bearer abcdefghijklmnop\r\nUser-Agent: bench\r\nAccept-Encoding: gzip\r\n\r\n")
	body := &Response{Raw: []byte(`{"next_batch":"s2","rooms":{}}`)}
	cs := make([]net.Conn, conns)
	for i := range cs {
		if cs[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			b.Fatal(err)
		}
		defer cs[i].Close()
		if _, err := cs[i].Write(poll); err != nil {
			b.Fatal(err)
		}
	}
	// Every answer has one length (a Date and a request id of fixed
	// length): read the first one's.
	answerLen := 0
	var wire []byte
	for i, c := range cs {
		p := <-parked
		go p.AnswerHere(body, nil)
		if i > 0 {
			continue
		}
		buf := make([]byte, 4096)
		for !bytes.Contains(wire, []byte("\r\n\r\n")) || len(wire) < bytes.Index(wire, []byte("\r\n\r\n"))+4+len(body.Raw) {
			n, err := c.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			wire = append(wire, buf[:n]...)
		}
		answerLen = bytes.Index(wire, []byte("\r\n\r\n")) + 4 + len(body.Raw)
	}
	ps := make([]*Parked, 0, conns)
	bufs := make([][]byte, conns)
	for i := range bufs {
		bufs[i] = make([]byte, answerLen)
	}
	round := func(first bool) {
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Go(func() {
				if !first || i > 0 {
					if _, err := io.ReadFull(c, bufs[i]); err != nil {
						b.Error(err)
					}
				}
				_, _ = c.Write(poll)
			})
		}
		wg.Wait()
		ps = ps[:0]
		for range conns {
			ps = append(ps, <-parked)
		}
		for _, p := range ps {
			go p.AnswerHere(body, nil)
		}
	}
	round(true)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for b.Loop() {
		round(false)
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N*conns), "allocs/poll")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N*conns), "B/poll")
	for _, c := range cs {
		_, _ = io.ReadFull(c, bufs[0])
	}
}
