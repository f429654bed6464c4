package httputil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"luxchat/internal/matrix/errcode"
)

// Parking long polls. A /sync long poll that finds nothing to send waits
// up to its timeout, and a server with 10,000 connected clients holds
// 10,000 of them. Waiting inside net/http, each keeps its connection's
// goroutine (with the stack the request's work grew), a second goroutine
// watching for the client's close, 4 KiB read and write buffers and the
// request's state: about 35 KiB. A parked request gives all that back:
// the handler takes the connection over (Park) and returns; what is left
// is the connection and what the handler keeps to answer later (a
// waiter registered where its news comes from and a timer, no
// goroutine). Whoever answers (Parked.Answer) writes the answer on the
// connection and hands it back to the server (ParkListener), which
// serves its next request as it would a new connection's.
//
// What a parked request does not do is notice that its client went away
// before it answers: nothing reads the connection then. The answer's
// write fails, or the server reads the end of the connection right
// after, at the latest when the poll's timeout ends.

// ParkListener wraps the listener the router's server accepts from, so
// that connections of parked requests come back to it (Request.Park); a
// router whose listener was not wrapped answers parked requests in place.
func (rt *Router) ParkListener(ln net.Listener) net.Listener {
	pl := &parkListener{Listener: ln, back: make(chan net.Conn), accepted: make(chan accepted), done: make(chan struct{})}
	go pl.pump()
	rt.parking = pl
	return pl
}

// CanPark reports whether Park waits outside net/http (the router's
// listener was wrapped by ParkListener).
func (r *Request) CanPark() bool { return r.router != nil && r.router.parking != nil }

// Parked is a request waiting for its answer outside net/http: its
// connection and what the answer needs, nothing of the request. It is
// answered once, from any goroutine.
type Parked struct {
	rt        *Router
	ctx       context.Context // the request's id and logger; ends with nothing
	conn      net.Conn        // nil: answered in place (inPlace)
	pending   []byte          // a pipelined request read with this one
	inPlace   chan parkedAnswer
	pattern   string
	path      string
	start     time.Time
	head      bool
	keepAlive bool
	hurry     func()
	answered  bool // under rt.parked.mu
}

type parkedAnswer struct {
	out any
	err error
}

// Context is the context a parked request's work runs in: it carries the
// request's id and logger, and is never cancelled (a parked request ends
// with its answer).
func (p *Parked) Context() context.Context { return p.ctx }

// Park takes the request's connection over and returns at once: start
// is called with the parked request and arranges for its Answer, from
// any goroutine, later; it returns hurry, which makes that answer come
// soon (the server stops: see StopParked). When the connection cannot
// be taken over (not HTTP/1, or a test's recorder) the handler waits in
// place for the answer.
func (r *Request) Park(start func(p *Parked) (hurry func())) Stream {
	rt, req := r.router, r.Request
	return func(w http.ResponseWriter) {
		ctx := context.Background()
		if info, ok := req.Context().Value(requestKey{}).(*requestInfo); ok {
			ctx = context.WithValue(ctx, requestKey{}, info)
		}
		// Kept strings are copied: a substring would keep the request's
		// whole line.
		p := &Parked{rt: rt, ctx: ctx, pattern: r.pattern, path: strings.Clone(req.URL.Path), start: r.start, head: req.Method == http.MethodHead}
		pl := rt.parking
		var conn net.Conn
		var rw *bufio.ReadWriter
		err := errNoParking
		if pl != nil {
			conn, rw, err = http.NewResponseController(w).Hijack()
		}
		if err != nil {
			p.inPlace = make(chan parkedAnswer, 1)
			rt.parked.add(p, start)
			var a parkedAnswer
			select {
			case a = <-p.inPlace:
			case <-req.Context().Done(): // the client left: answer now
				p.hurry()
				a = <-p.inPlace
			}
			rt.answer(w, req, a.out, a.err)
			return
		}
		if sw, ok := w.(*statusWriter); ok {
			sw.parked = true // observed when answered
		}
		if n := rw.Reader.Buffered(); n > 0 { // a pipelined request
			p.pending, _ = rw.Reader.Peek(n)
			p.pending = bytes.Clone(p.pending)
		}
		// A connection of another listener (none serves this router
		// today) is closed after its answer rather than served here.
		p.conn = conn
		p.keepAlive = req.ProtoAtLeast(1, 1) && !req.Close && conn.LocalAddr().String() == pl.Addr().String()
		rt.parked.add(p, start)
	}
}

var errNoParking = errors.New("the listener does not take parked connections back")

// Answer answers a parked request with a handler's result or error, as
// the router would have. Only its first call counts.
func (p *Parked) Answer(out any, err error) {
	if !p.rt.parked.remove(p) {
		return
	}
	if p.inPlace != nil {
		p.inPlace <- parkedAnswer{out, err}
		return
	}
	rec := &recorder{header: http.Header{}}
	writeCORS(rec)
	if info, ok := p.ctx.Value(requestKey{}).(*requestInfo); ok {
		rec.header.Set("X-Request-Id", info.id)
	}
	method := http.MethodGet
	if p.head {
		method = http.MethodHead
	}
	// Only errors read the request: its method, path and context.
	req := (&http.Request{Method: method, URL: &url.URL{Path: p.path}, Header: http.Header{}}).WithContext(p.ctx)
	p.rt.answer(rec, req, out, err)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if p.rt.Observe != nil {
		p.rt.Observe(p.pattern, method, rec.status, time.Since(p.start))
	}
	p.rt.parking.reply(p.conn, p.pending, rec, p.keepAlive, p.head)
}

// Recover, deferred by whatever works toward a parked request's answer
// outside net/http, turns a panic into an internal error, as the router
// does for handlers.
func (p *Parked) Recover() {
	if v := recover(); v != nil {
		Logger(p.ctx).Error("panic in parked handler", "path", p.path, "panic", v, "stack", string(debug.Stack()))
		p.Answer(nil, errcode.Internal())
	}
}

// answer writes a handler's result or error as the router does.
func (rt *Router) answer(w http.ResponseWriter, r *http.Request, out any, err error) {
	if err != nil {
		rt.writeError(w, r, err)
		return
	}
	writeResult(w, out)
}

// parkedSet is the router's parked requests not answered yet.
type parkedSet struct {
	mu       sync.Mutex
	requests map[*Parked]struct{}
	stopping bool // StopParked: new ones are hurried at once
	answered sync.Cond
}

// add registers p and starts its wait.
func (s *parkedSet) add(p *Parked, start func(*Parked) func()) {
	s.mu.Lock()
	if s.requests == nil {
		s.requests = map[*Parked]struct{}{}
		s.answered.L = &s.mu
	}
	s.requests[p] = struct{}{}
	s.mu.Unlock()
	hurry := start(p) // may answer already
	s.mu.Lock()
	p.hurry = hurry
	stopping := s.stopping && !p.answered
	s.mu.Unlock()
	if stopping {
		hurry()
	}
}

// remove unregisters p; false when it was answered already.
func (s *parkedSet) remove(p *Parked) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.answered {
		return false
	}
	p.answered = true
	delete(s.requests, p)
	if len(s.requests) == 0 {
		s.answered.Broadcast()
	}
	return true
}

// Parked is how many requests wait parked now.
func (rt *Router) Parked() int {
	rt.parked.mu.Lock()
	defer rt.parked.mu.Unlock()
	return len(rt.parked.requests)
}

// StopParked hurries every parked request, and those parked from now
// on, to their answers: the server is stopping. WaitParked waits for
// them.
func (rt *Router) StopParked() {
	s := &rt.parked
	s.mu.Lock()
	s.stopping = true
	var hurry []func()
	for p := range s.requests {
		if p.hurry != nil { // nil: still starting; add hurries it
			hurry = append(hurry, p.hurry)
		}
	}
	s.mu.Unlock()
	for _, h := range hurry {
		h()
	}
}

// WaitParked waits until every parked request was answered, or ctx ends:
// a server shutting down waits for them as http.Server.Shutdown waits
// for the requests it serves.
func (rt *Router) WaitParked(ctx context.Context) error {
	s := &rt.parked
	done := make(chan struct{})
	go func() {
		s.mu.Lock()
		for len(s.requests) > 0 {
			s.answered.Wait()
		}
		s.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recorder keeps an answer to write it on a parked connection.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }
func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}

// parkListener is a listener that also hands out connections coming back
// from parked requests.
type parkListener struct {
	net.Listener
	back     chan net.Conn
	accepted chan accepted
	done     chan struct{}
	once     sync.Once
}

type accepted struct {
	c   net.Conn
	err error
}

// pump accepts new connections for Accept until the listener closes.
// Other errors (a connection reset in the accept queue, too many open
// files) go to the server, which waits a little and accepts again.
func (l *parkListener) pump() {
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- accepted{c, err}:
		case <-l.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

func (l *parkListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.back:
		return c, nil
	case a := <-l.accepted:
		return a.c, a.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *parkListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// reply writes a parked request's answer as HTTP/1.1 and gives the
// connection back to the server, or closes it when it may not be kept.
func (l *parkListener) reply(c net.Conn, pending []byte, rec *recorder, keepAlive, head bool) {
	h := rec.header
	if h.Get("Connection") == "close" {
		keepAlive = false
	}
	if !keepAlive {
		h.Set("Connection", "close")
	}
	h.Set("Content-Length", strconv.Itoa(rec.body.Len()))
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	// One write: the status line, the headers, the body.
	out := make([]byte, 0, rec.body.Len()+512)
	out = fmt.Appendf(out, "HTTP/1.1 %d %s\r\n", rec.status, http.StatusText(rec.status))
	for k, vs := range h {
		for _, v := range vs {
			out = append(append(append(append(out, k...), ": "...), v...), "\r\n"...)
		}
	}
	out = append(out, "\r\n"...)
	if !head {
		out = append(out, rec.body.Bytes()...)
	}
	if _, err := c.Write(out); err != nil || !keepAlive {
		c.Close()
		return
	}
	if len(pending) > 0 {
		c = &pendingConn{Conn: c, pending: pending}
	}
	select {
	case l.back <- c:
	case <-l.done:
		c.Close()
	}
}

// pendingConn is a connection whose first bytes were read already.
type pendingConn struct {
	net.Conn
	pending []byte
}

func (c *pendingConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
