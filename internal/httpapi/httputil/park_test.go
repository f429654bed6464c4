package httputil

import (
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"
)

// errListener fails its first Accept as a reset in the accept queue
// does, then hands out a connection.
type errListener struct {
	net.Listener
	calls int
	conn  net.Conn
}

func (l *errListener) Accept() (net.Conn, error) {
	l.calls++
	if l.calls == 1 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.ECONNABORTED}
	}
	if l.calls == 2 {
		return l.conn, nil
	}
	select {} // no more connections
}

func (l *errListener) Close() error { return nil }

// TestParkListenerAcceptsAfterError: an accept error that is not the
// listener closing goes to the server and accepting goes on (it once
// stopped for good, and no new connection was ever served again).
func TestParkListenerAcceptsAfterError(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	rt := &Router{}
	ln := rt.ParkListener(&errListener{conn: c1}, &http.Server{})
	defer ln.Close()
	if _, err := ln.Accept(); err == nil || !errors.Is(err, syscall.ECONNABORTED) {
		t.Fatalf("first Accept: %v, want the reset", err)
	}
	c, err := ln.Accept()
	if err != nil || c != c1 {
		t.Fatalf("Accept after an error: %v, %v; want the next connection", c, err)
	}
}
