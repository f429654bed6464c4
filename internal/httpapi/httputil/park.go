package httputil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
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
// request's state: about 35 KiB. A parked poll gives all that back: the
// handler takes the connection over, waits in a goroutine of its own
// holding only the connection and what the wait needs, writes the answer
// itself and hands the connection back to the server (ParkListener),
// which serves its next request as it would a new connection's.
//
// What a parked poll does not do is notice that its client went away
// before it answers: the answer's write fails then and the connection is
// closed, at the latest when the poll's timeout ends.

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

// Park answers the request with what wait returns, waiting for it
// outside net/http when the router's listener allows (see ParkListener).
// wait runs in a new goroutine with a context that carries the request's
// id and logger but ends with the server only: it must not use the
// request, which is gone by then (copy what it needs first).
func (r *Request) Park(wait func(ctx context.Context) (any, error)) Stream {
	rt, req := r.router, r.Request
	return func(w http.ResponseWriter) {
		pl := rt.parking
		if pl == nil {
			out, err := wait(req.Context())
			rt.answer(w, req, out, err)
			return
		}
		header := w.Header().Clone()
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil { // not HTTP/1 (or a test's recorder): wait in place
			out, err := wait(req.Context())
			rt.answer(w, req, out, err)
			return
		}
		if sw, ok := w.(*statusWriter); ok {
			sw.parked = true // observed when answered
		}
		var pending []byte
		if n := rw.Reader.Buffered(); n > 0 { // a pipelined request
			pending, _ = rw.Reader.Peek(n)
			pending = bytes.Clone(pending)
		}
		ctx := context.Background()
		if info, ok := req.Context().Value(requestKey{}).(*requestInfo); ok {
			ctx = context.WithValue(ctx, requestKey{}, info)
		}
		// Only what the answer needs outlives the handler. A connection
		// of another listener (none serves this router today) is closed
		// after its answer rather than served here.
		p := &parked{rt: rt, conn: conn, pending: pending, header: header, pattern: r.pattern, start: r.start,
			keepAlive: req.ProtoAtLeast(1, 1) && !req.Close && conn.LocalAddr().String() == pl.Addr().String(),
			req:       (&http.Request{Method: req.Method, URL: &url.URL{Path: req.URL.Path}, Header: http.Header{}}).WithContext(ctx)}
		pl.active.Add(1)
		pl.waiting.Add(1)
		go p.run(ctx, wait, pl)
	}
}

// parked is a request waiting outside net/http.
type parked struct {
	rt        *Router
	conn      net.Conn
	pending   []byte
	header    http.Header
	req       *http.Request // method, path and context, for the error log
	pattern   string
	start     time.Time
	keepAlive bool
}

func (p *parked) run(ctx context.Context, wait func(ctx context.Context) (any, error), pl *parkListener) {
	defer pl.active.Done()
	out, err := p.wait(ctx, wait)
	pl.waiting.Add(-1)
	rec := &recorder{header: p.header}
	p.rt.answer(rec, p.req, out, err)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if p.rt.Observe != nil {
		p.rt.Observe(p.pattern, p.req.Method, rec.status, time.Since(p.start))
	}
	pl.reply(p.conn, p.pending, rec, p.keepAlive, p.req.Method == http.MethodHead)
}

// answer writes a handler's result or error as the router does.
func (rt *Router) answer(w http.ResponseWriter, r *http.Request, out any, err error) {
	if err != nil {
		rt.writeError(w, r, err)
		return
	}
	writeResult(w, out)
}

// wait runs wait, turning a panic into an internal error as the
// router does for handlers.
func (p *parked) wait(ctx context.Context, wait func(ctx context.Context) (any, error)) (out any, err error) {
	defer func() {
		if v := recover(); v != nil {
			Logger(ctx).Error("panic in parked handler", "method", p.req.Method, "path", p.req.URL.Path, "panic", v, "stack", string(debug.Stack()))
			out, err = nil, errcode.Internal()
		}
	}()
	return wait(ctx)
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
	active   sync.WaitGroup // parked requests not answered yet
	waiting  atomic.Int64   // how many
}

// Parked is how many requests wait parked now.
func (rt *Router) Parked() int {
	if rt.parking == nil {
		return 0
	}
	return int(rt.parking.waiting.Load())
}

// WaitParked waits until every parked request was answered, or ctx ends:
// a server shutting down waits for them as http.Server.Shutdown waits
// for the requests it serves.
func (rt *Router) WaitParked(ctx context.Context) error {
	if rt.parking == nil {
		return nil
	}
	done := make(chan struct{})
	go func() { rt.parking.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
