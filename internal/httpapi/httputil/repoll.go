package httputil

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Re-polls served outside net/http. After a parked request's answer its
// client's next request comes on the same connection, most often the
// next long poll of the same /sync. Handed to net/http, the connection
// would cost a new connection's setup and net/http's read of the request
// (~20 µs a poll: a thousand polls woken by one message make 20 ms). So
// the connection is read here first (serveConn): a plain bodiless
// `GET /_matrix/client/{v3,r0}/sync`, or a sliding sync POST with a small
// Content-Length body, is served in place through the router
// (serveLiteral: request id, CORS, auth, body limits, metrics, the
// handler, errors), which parks it again when there is nothing new, and
// this goroutine ends; any other request, or anything this reader does
// not take as plainly valid (parseSyncHead), goes to net/http with the
// bytes read so far, and net/http answers it as it would have: its
// errors, its limits, its bodies.

// repollBufSize is the reader's buffer (net/http's too): a request head
// longer than that goes to net/http, whose limit is larger.
const repollBufSize = 4096

// slidingSyncPath is simplified sliding sync's (MSC4186): its re-polls
// are POSTs with a small JSON body.
const slidingSyncPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// syncPaths are the request-target prefixes served here: the client
// API's /sync (the router maps r0 to v3) and sliding sync.
var syncPaths = [...]string{"GET /_matrix/client/v3/sync", "GET /_matrix/client/r0/sync", "POST " + slidingSyncPath}

// maxRepollBody bounds the body of a re-poll served here (a sliding sync
// request's lists and extensions: a few KiB); a larger one, or one over
// the route's own limit, goes to net/http.
const maxRepollBody = 64 << 10

// repollConn is what a re-poll uses, pooled: a thousand polls woken at
// once would otherwise allocate a reader and an answer each.
type repollConn struct {
	src pendingConn // the connection, after the bytes read before
	br  *bufio.Reader
	w   repollWriter
	out []byte // the answer on the wire
}

var repollConns = sync.Pool{New: func() any {
	rc := &repollConn{}
	rc.br = bufio.NewReaderSize(&rc.src, repollBufSize)
	rc.w.header = http.Header{}
	return rc
}}

// getRepollConn returns a repollConn with an empty answer.
func getRepollConn() *repollConn {
	rc := repollConns.Get().(*repollConn)
	rc.w.reset()
	return rc
}

// putRepollConn puts rc back, unless it grew for a big answer (an
// initial sync's).
func putRepollConn(rc *repollConn) {
	if cap(rc.out) > 64<<10 || rc.w.body.Cap() > 64<<10 {
		return
	}
	rc.src = pendingConn{}
	rc.br.Reset(&rc.src)
	rc.w.conn, rc.w.br = nil, nil
	repollConns.Put(rc)
}

// repollWriter is the ResponseWriter of a request served on a parked
// connection: it keeps the answer to write it in one piece, and gives
// the connection to Park (Hijack).
type repollWriter struct {
	recorder
	conn     net.Conn
	br       *bufio.Reader
	hijacked bool
}

func (w *repollWriter) reset() {
	clear(w.header)
	w.status, w.hijacked = 0, false
	w.body.Reset()
}

// Hijack hands the connection to Park; the reader holds any pipelined
// request, which Park keeps.
func (w *repollWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return w.conn, bufio.NewReadWriter(w.br, nil), nil
}

// serveConn serves the requests that follow a parked request's answer on
// its connection, pending first (read with the parked request), until
// one parks again, goes to net/http, or the connection ends. rc, when
// not nil, is the answer's (getRepollConn).
func (l *parkListener) serveConn(rc *repollConn, c net.Conn, pending []byte, remote string) {
	if len(pending) > repollBufSize { // cannot happen: read into a buffer of that size
		if rc != nil {
			putRepollConn(rc)
		}
		l.handBack(c, pending)
		return
	}
	if rc == nil {
		rc = getRepollConn()
	}
	defer putRepollConn(rc)
	rc.src = pendingConn{Conn: c, pending: pending}
	rc.br.Reset(&rc.src)
	if len(pending) > 0 {
		_, _ = rc.br.Peek(len(pending)) // all of it in the reader: the hand-back and Park see it there
	}
	for {
		n, ours, err := l.readHead(c, rc.br)
		if err != nil {
			c.Close() // as net/http: the client left, or was too slow
			return
		}
		head, _ := rc.br.Peek(n)
		var req *http.Request
		if ours {
			req = parseSyncHead(head)
		}
		if req != nil && req.Method == http.MethodPost && req.ContentLength > l.bodyLimit(req.URL.Path) {
			req = nil
		}
		if req == nil {
			buffered, _ := rc.br.Peek(rc.br.Buffered())
			l.handedBack.Add(1)
			l.handBack(c, bytes.Clone(buffered))
			return
		}
		if req.ContentLength > 0 {
			body, read, err := l.readBody(c, rc.br, n, int(req.ContentLength))
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				// A slow body: net/http reads it, under its own limits.
				l.handedBack.Add(1)
				l.handBack(c, read)
				return
			case err != nil:
				c.Close()
				return
			}
			req.Body = &repollBody{Reader: bytes.NewReader(body)}
		} else {
			_, _ = rc.br.Discard(n)
		}
		l.served.Add(1)
		req.RemoteAddr = remote
		if !l.serveOne(rc, c, req) {
			return
		}
	}
}

// bodyLimit is the largest body served here for a request of path: the
// route's limit (the router's MaxBody unless the route sets its own), at
// most maxRepollBody; -1 when the path has no POST route.
func (l *parkListener) bodyLimit(path string) int64 {
	rr, ok := l.rt.routes[path][http.MethodPost]
	if !ok {
		return -1
	}
	if limit := cmp.Or(rr.maxBody, l.rt.MaxBody); limit > 0 && limit < maxRepollBody {
		return limit
	}
	return maxRepollBody
}

// readBody reads a request's head (n bytes, buffered in br) and its body
// (size bytes) and returns the body. A body not there with the head must
// come within the server's header timeout (or the router's body grace
// when set); when it does not, err is os.ErrDeadlineExceeded and read
// holds every byte read of the request, for net/http.
func (l *parkListener) readBody(c net.Conn, br *bufio.Reader, n, size int) (body, read []byte, err error) {
	if br.Buffered() < n+size {
		timeout := cmp.Or(l.rt.BodyTimeout, l.headerTimeout)
		if timeout > 0 {
			_ = c.SetReadDeadline(time.Now().Add(timeout))
			defer func() { _ = c.SetReadDeadline(time.Time{}) }()
		}
	}
	if n+size <= br.Size() {
		if _, err := br.Peek(n + size); err != nil {
			buffered, _ := br.Peek(br.Buffered())
			return nil, bytes.Clone(buffered), err
		}
		all, _ := br.Peek(n + size)
		body = bytes.Clone(all[n:])
		_, _ = br.Discard(n + size)
		return body, nil, nil
	}
	all := make([]byte, n+size)
	got, err := io.ReadFull(br, all)
	if err != nil {
		return nil, all[:got], err
	}
	return all[n:], nil, nil
}

// repollBody is a body read before its request is served; Close is a
// no-op, as the body is all read.
type repollBody struct{ *bytes.Reader }

func (repollBody) Close() error { return nil }

// serveOne serves one request through the router, and reports whether
// the connection is still this loop's to read.
func (l *parkListener) serveOne(rc *repollConn, c net.Conn, req *http.Request) bool {
	w := &rc.w
	w.reset()
	w.conn, w.br = c, rc.br
	if !l.rt.parked.beginServe() { // the server stops: as net/http, no new request on an idle connection
		c.Close()
		return false
	}
	l.rt.serveLiteral(w, req)
	l.rt.parked.endServe()
	if w.hijacked { // parked again
		return false
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return l.reply(rc, c, !req.Close, false)
}

// readHead waits for the next request's head (its request line and
// headers) and returns its length with the blank line; ours is false when
// it is not one served here (the request line says so, or the head does
// not fit the reader), and n is then 0. Timeouts are the server's: the
// idle one before the first byte, the header one after it.
//
// A head that comes whole with its first bytes (the usual re-poll) is
// read without the header timeout: it is set only before a second read,
// and a deadline is cleared only when one was set (each is a timer
// update; a thousand re-polls come per message into a big room). One
// left set for net/http (anything not ours) is replaced by its own.
func (l *parkListener) readHead(c net.Conn, br *bufio.Reader) (n int, ours bool, err error) {
	// Whether a read deadline is set on c: with a pipelined request
	// (bytes buffered) it is not known, and is cleared as before.
	deadline := br.Buffered() > 0
	if br.Buffered() == 0 {
		if l.idleTimeout > 0 {
			_ = c.SetReadDeadline(time.Now().Add(l.idleTimeout))
			deadline = true
		}
		if !l.startRead(c) {
			return 0, false, net.ErrClosed
		}
		_, err := br.Peek(1)
		l.endRead(c)
		if err != nil {
			return 0, false, err
		}
	}
	for header := false; ; header = true {
		buf, _ := br.Peek(br.Buffered())
		if !maybeSync(buf) {
			return 0, false, nil
		}
		if end := headEnd(buf); end > 0 {
			if deadline {
				_ = c.SetReadDeadline(time.Time{})
			}
			return end, true, nil
		}
		if len(buf) == br.Size() {
			return 0, false, nil
		}
		if !header {
			switch {
			case l.headerTimeout > 0:
				_ = c.SetReadDeadline(time.Now().Add(l.headerTimeout))
				deadline = true
			case deadline:
				_ = c.SetReadDeadline(time.Time{})
				deadline = false
			}
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return 0, false, err
		}
	}
}

// maybeSync reports whether buf can be the start of a request served
// here: its request line begins with one of syncPaths, then '?' or ' '.
func maybeSync(buf []byte) bool {
	for _, p := range syncPaths {
		if len(buf) <= len(p) {
			if string(buf) == p[:len(buf)] {
				return true
			}
		} else if string(buf[:len(p)]) == p && (buf[len(p)] == '?' || buf[len(p)] == ' ') {
			return true
		}
	}
	return false
}

// headEnd is the length of the head at the start of buf, up to and with
// its blank line, or 0 when buf does not hold it all yet. A bare LF ends
// lines as it does for net/http (parseSyncHead then leaves the request
// to net/http).
func headEnd(buf []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		switch {
		case i < len(buf) && buf[i] == '\n':
			return i + 1
		case i+1 < len(buf) && buf[i] == '\r' && buf[i+1] == '\n':
			return i + 2
		}
	}
}

// parseSyncHead parses a head served here into the request net/http
// would hand the router, or returns nil for anything it does not take as
// plainly valid: another method, path or protocol version than a GET of
// /sync or a POST of sliding sync over HTTP/1.1, a GET with a body, a
// POST without one Content-Length (its body is read here, of that
// length), a Transfer-Encoding, an Expect or Upgrade, lines not ended by
// CRLF, folded lines, header names or values net/http refuses, a
// missing, repeated or invalid Host. Those go to net/http, which answers
// them as it always did.
func parseSyncHead(head []byte) *http.Request {
	s := string(head) // one copy; the request's strings are parts of it
	line, rest, ok := strings.Cut(s, "\r\n")
	if !ok {
		return nil
	}
	method := http.MethodGet
	target, ok := strings.CutPrefix(line, "GET ")
	if !ok {
		if target, ok = strings.CutPrefix(line, "POST "); !ok {
			return nil
		}
		method = http.MethodPost
	}
	target, ok = strings.CutSuffix(target, " HTTP/1.1")
	if !ok || strings.ContainsAny(target, " \t") {
		return nil
	}
	u, err := url.ParseRequestURI(target)
	switch {
	case err != nil:
		return nil
	case method == http.MethodGet && u.Path != "/_matrix/client/v3/sync" && u.Path != "/_matrix/client/r0/sync":
		return nil
	case method == http.MethodPost && u.Path != slidingSyncPath:
		return nil
	}
	lines := max(strings.Count(rest, "\n")-1, 0) // header lines, and a bound on values
	req := &http.Request{
		Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, lines), Body: http.NoBody, RequestURI: target,
	}
	values := make([]string, 0, lines) // one array for the headers' values
	hosts, lengths := 0, 0
	for rest != "\r\n" {
		line, rest, ok = strings.Cut(rest, "\r\n")
		if !ok || strings.Contains(line, "\n") || line == "" || line[0] == ' ' || line[0] == '\t' {
			return nil // a bare LF, or a folded line
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			return nil
		}
		value = strings.Trim(value, " \t")
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil
		}
		name = textproto.CanonicalMIMEHeaderKey(name)
		switch name {
		case "Host":
			hosts++
			if !httpguts.ValidHostHeader(value) {
				return nil
			}
			req.Host = value
			continue // as net/http: in Request.Host, not the headers
		case "Content-Length":
			// Plain digits only, and short: a longer body is not
			// served here anyway.
			if method != http.MethodPost || lengths > 0 || value == "" || len(value) > 9 || strings.Trim(value, "0123456789") != "" {
				return nil
			}
			lengths++
			req.ContentLength, _ = strconv.ParseInt(value, 10, 64)
		case "Transfer-Encoding", "Expect", "Upgrade", "Trailer":
			return nil
		case "Connection":
			if httpguts.HeaderValuesContainsToken([]string{value}, "close") {
				req.Close = true
			}
		}
		if vs := req.Header[name]; vs != nil {
			req.Header[name] = append(vs, value) // a repeated header: rare
		} else {
			values = append(values, value)
			req.Header[name] = values[len(values)-1 : len(values) : len(values)]
		}
	}
	if hosts != 1 || method == http.MethodPost && lengths != 1 {
		return nil
	}
	// As net/http does for HTTP/1.0 caches.
	if p := req.Header["Pragma"]; len(p) > 0 && p[0] == "no-cache" && req.Header["Cache-Control"] == nil {
		req.Header["Cache-Control"] = []string{"no-cache"}
	}
	return req
}

// Repolls counts the requests read after parked answers: served here,
// and handed to net/http.
func (rt *Router) Repolls() (served, handedBack uint64) {
	if rt.parking == nil {
		return 0, 0
	}
	return rt.parking.served.Load(), rt.parking.handedBack.Load()
}

// handBack gives the connection to net/http, which reads pending (what
// was read of its next request) first, as a new connection's.
func (l *parkListener) handBack(c net.Conn, pending []byte) {
	if len(pending) > 0 {
		c = &pendingConn{Conn: c, pending: pending}
	}
	select {
	case l.back <- c:
	case <-l.done:
		c.Close()
	}
}

// startRead registers a connection waiting for its next request, which
// the listener's Close ends (net/http closes its idle connections when
// it shuts down); false: closed already.
func (l *parkListener) startRead(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.reading[c] = struct{}{}
	return true
}

func (l *parkListener) endRead(c net.Conn) {
	l.mu.Lock()
	delete(l.reading, c)
	l.mu.Unlock()
}

// stopping reports whether the server stops: an answer then closes its
// connection.
func (l *parkListener) stopping() bool { return l.rt.parked.stopping.Load() }
