package httputil

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// connection and reads the client's next request: a re-poll of /sync is
// served there, outside net/http (repoll.go), anything else goes back to
// the server (ParkListener), which serves it as a new connection's.
//
// What a parked request does not do is notice that its client went away
// before it answers: nothing reads the connection then. The answer's
// write fails, or the server reads the end of the connection right
// after, at the latest when the poll's timeout ends.

// ParkListener wraps the listener that srv, the router's server, accepts
// from, so that connections of parked requests come back to it
// (Request.Park); a router whose listener was not wrapped answers parked
// requests in place. The requests read outside net/http after a parked
// answer keep srv's timeouts.
func (rt *Router) ParkListener(ln net.Listener, srv *http.Server) net.Listener {
	pl := &parkListener{Listener: ln, rt: rt, back: make(chan net.Conn), accepted: make(chan accepted), done: make(chan struct{}), reading: map[net.Conn]struct{}{}}
	// As net/http: ReadTimeout stands in for a timeout not set.
	pl.idleTimeout, pl.headerTimeout = cmp.Or(srv.IdleTimeout, srv.ReadTimeout), cmp.Or(srv.ReadHeaderTimeout, srv.ReadTimeout)
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
	remote    string // the client's address, for its next requests
	start     time.Time
	method    string // GET, HEAD or POST (sliding sync): for metrics and errors
	head      bool
	keepAlive bool
	hurry     func()
	answered  bool // under rt.parked.mu
	starting  bool // under rt.parked.mu: its start runs (see Answer)
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
// place for the answer. A handler parks after it read its body: what is
// left unread on the connection is taken for the next request.
func (r *Request) Park(start func(p *Parked) (hurry func())) Stream {
	rt, req := r.router, r.Request
	return func(w http.ResponseWriter) {
		ctx := context.Background()
		if info, ok := req.Context().Value(requestKey{}).(*requestInfo); ok {
			ctx = context.WithValue(ctx, requestKey{}, info)
		}
		// Kept strings are copied: a substring would keep the request's
		// whole line.
		p := &Parked{rt: rt, ctx: ctx, pattern: r.pattern, path: strings.Clone(req.URL.Path), remote: req.RemoteAddr, start: r.start, method: parkedMethod(req.Method), head: req.Method == http.MethodHead}
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
		p.keepAlive = req.ProtoAtLeast(1, 1) && !req.Close && sameAddr(conn.LocalAddr(), pl.Addr())
		rt.parked.add(p, start)
	}
}

// parkedMethod is a parked request's method as a constant: the request's
// own string is part of its request line.
func parkedMethod(m string) string {
	switch m {
	case http.MethodHead:
		return http.MethodHead
	case http.MethodPost:
		return http.MethodPost
	}
	return http.MethodGet
}

var errNoParking = errors.New("the listener does not take parked connections back")

// Answer answers a parked request with a handler's result or error, as
// the router would have. Only its first call (of Answer or AnswerHere)
// counts. The connection's next requests are then read on a goroutine
// of their own.
func (p *Parked) Answer(out any, err error) { p.answer(out, err, false) }

// AnswerHere is Answer from a goroutine that has nothing left to do (a
// timer's): it goes on to read and serve the connection's next requests,
// until one parks again or the connection goes back to net/http. That
// spares a goroutine per woken poll.
func (p *Parked) AnswerHere(out any, err error) { p.answer(out, err, true) }

func (p *Parked) answer(out any, err error, here bool) {
	first, starting := p.rt.parked.remove(p)
	if !first {
		return
	}
	if p.inPlace != nil {
		p.inPlace <- parkedAnswer{out, err}
		return
	}
	// The answer is made in a re-poll's buffers: the connection's next
	// request is read with them.
	rc := getRepollConn()
	rec := &rc.w.recorder
	writeCORS(rec)
	if info, ok := p.ctx.Value(requestKey{}).(*requestInfo); ok {
		rec.header.Set("X-Request-Id", info.id)
	}
	method := p.method
	if err != nil {
		// Errors read the request: its method, path and context.
		req := (&http.Request{Method: method, URL: &url.URL{Path: p.path}, Header: http.Header{}}).WithContext(p.ctx)
		p.rt.writeError(rec, req, err)
	} else {
		writeResult(rec, out)
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if p.rt.Observe != nil {
		p.rt.Observe(p.pattern, method, rec.status, time.Since(p.start))
	}
	l := p.rt.parking
	switch {
	case !l.reply(rc, p.conn, p.keepAlive, p.head):
		putRepollConn(rc)
	case here && !starting:
		l.serveConn(rc, p.conn, p.pending, p.remote)
	default:
		// Answered while it parks (starting): its request's goroutine,
		// net/http's or a re-poll's, is still in Park.
		putRepollConn(rc)
		go l.serveConn(nil, p.conn, p.pending, p.remote)
	}
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
	serving  int         // re-polls being served outside net/http (serveOne)
	stopping atomic.Bool // StopParked: new ones are hurried at once; written under mu
	answered sync.Cond   // signalled when requests and serving both fall to 0
}

// add registers p and starts its wait.
func (s *parkedSet) add(p *Parked, start func(*Parked) func()) {
	s.mu.Lock()
	if s.requests == nil {
		s.requests = map[*Parked]struct{}{}
		s.answered.L = &s.mu
	}
	s.requests[p] = struct{}{}
	p.starting = true
	s.mu.Unlock()
	hurry := start(p) // may answer already
	s.mu.Lock()
	p.hurry, p.starting = hurry, false
	stopping := s.stopping.Load() && !p.answered
	s.mu.Unlock()
	if stopping {
		hurry()
	}
}

// remove unregisters p; first is false when it was answered already,
// starting true while its start runs.
func (s *parkedSet) remove(p *Parked) (first, starting bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.answered {
		return false, false
	}
	p.answered = true
	delete(s.requests, p)
	s.signal()
	return true, p.starting
}

// beginServe counts a re-poll being served outside net/http, which
// WaitParked waits for as http.Server.Shutdown waits for active
// connections; false: the server stops, and serves no new request.
func (s *parkedSet) beginServe() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return false
	}
	s.serving++
	return true
}

func (s *parkedSet) endServe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serving--
	s.signal()
}

// signal wakes WaitParked when nothing is left; under s.mu.
func (s *parkedSet) signal() {
	if len(s.requests) == 0 && s.serving == 0 && s.answered.L != nil {
		s.answered.Broadcast()
	}
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
	s.stopping.Store(true)
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
		if s.answered.L == nil {
			s.answered.L = &s.mu
		}
		for len(s.requests) > 0 || s.serving > 0 {
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
	rt       *Router
	back     chan net.Conn
	accepted chan accepted
	done     chan struct{}
	once     sync.Once
	// The server's timeouts for the requests read after a parked
	// answer: before their first byte, and for their head.
	idleTimeout, headerTimeout time.Duration

	mu      sync.Mutex
	reading map[net.Conn]struct{} // connections waiting for their next request (startRead)
	closed  bool

	served, handedBack atomic.Uint64 // requests after a parked answer (Repolls)
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

// Close also ends the waits of connections idle between requests, as
// http.Server.Shutdown closes its idle connections.
func (l *parkListener) Close() error {
	l.once.Do(func() { close(l.done) })
	l.mu.Lock()
	l.closed = true
	for c := range l.reading {
		_ = c.SetReadDeadline(time.Now())
	}
	l.mu.Unlock()
	return l.Listener.Close()
}

// reply writes the answer in rc as HTTP/1.1, in one write, and reports
// whether the connection stays open for the next request; it closes it
// when not (the client or the answer asked for that, or the server
// stops).
func (l *parkListener) reply(rc *repollConn, c net.Conn, keepAlive, head bool) bool {
	rec := &rc.w.recorder
	keepAlive = keepAlive && rec.header.Get("Connection") != "close" && !l.stopping()
	rc.out = appendAnswer(rc.out[:0], rec, keepAlive, head)
	if _, err := c.Write(rc.out); err != nil || !keepAlive {
		c.Close()
		return false
	}
	return true
}

// appendAnswer appends an answer as HTTP/1.1 to out: the status line, the
// headers (Content-Length, Date and Connection its own, as net/http
// writes them) and the body, which HEAD leaves out.
func appendAnswer(out []byte, rec *recorder, keepAlive, head bool) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(rec.status), 10)
	out = append(append(append(out, ' '), http.StatusText(rec.status)...), "\r\n"...)
	for k, vs := range rec.header {
		switch k {
		case "Content-Length", "Date", "Connection":
			continue
		}
		for _, v := range vs {
			out = append(append(append(append(out, k...), ": "...), v...), "\r\n"...)
		}
	}
	if _, ok := rec.header["Content-Type"]; !ok {
		out = append(out, "Content-Type: application/json\r\n"...)
	}
	if !keepAlive {
		out = append(out, "Connection: close\r\n"...)
	}
	out = strconv.AppendInt(append(out, "Content-Length: "...), int64(rec.body.Len()), 10)
	out = time.Now().UTC().AppendFormat(append(out, "\r\nDate: "...), http.TimeFormat)
	out = append(out, "\r\n\r\n"...)
	if !head {
		out = append(out, rec.body.Bytes()...)
	}
	return out
}

// sameAddr reports whether local, a connection's local address, is one
// the listener at ln accepts on: the same port, and the same address
// unless the listener's is unspecified (it listens on every address, and
// a connection's own is 127.0.0.1 or another). TCP addresses are not
// rendered as strings.
func sameAddr(local, ln net.Addr) bool {
	ta, ok1 := local.(*net.TCPAddr)
	tb, ok2 := ln.(*net.TCPAddr)
	if ok1 && ok2 {
		return ta.Port == tb.Port && (tb.IP.IsUnspecified() || ta.IP.Equal(tb.IP) && ta.Zone == tb.Zone)
	}
	return local.String() == ln.String()
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

// CloseWrite lets net/http end its side of the connection before it
// closes it after an error answer (a FIN, not a reset that would lose
// the answer), as it does for the TCP connections it accepts.
func (c *pendingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
