package httputil

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"sync/atomic"
)

// maxRequestID bounds an X-Request-Id we take from the caller (a proxy
// in front of us, usually); longer ones are replaced.
const maxRequestID = 64

type requestKey struct{}

// requestInfo is what the router puts in a request's context. The
// logger is made on first use: most requests log nothing.
type requestInfo struct {
	id   string
	base *slog.Logger
	log  atomic.Pointer[slog.Logger]
}

func (i *requestInfo) logger() *slog.Logger {
	if l := i.log.Load(); l != nil {
		return l
	}
	i.log.CompareAndSwap(nil, i.base.With("request_id", i.id))
	return i.log.Load()
}

// withRequestID gives r a request id, and a logger carrying it, in its
// context and sets it on the answer's X-Request-Id header. A router
// mounted inside another keeps the outer router's id; an incoming
// X-Request-Id is kept when it is short and printable, so that a
// proxy's logs and ours can be matched.
func (rt *Router) withRequestID(w http.ResponseWriter, r *http.Request) *http.Request {
	id := RequestID(r.Context())
	if id == "" {
		id = r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = rand.Text()
		}
	}
	w.Header().Set("X-Request-Id", id)
	base := rt.Log
	if base == nil {
		base = slog.Default()
	}
	info := &requestInfo{id: id, base: base}
	return r.WithContext(context.WithValue(r.Context(), requestKey{}, info))
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// RequestID returns the id of the request ctx belongs to, "" outside one.
func RequestID(ctx context.Context) string {
	if info, ok := ctx.Value(requestKey{}).(*requestInfo); ok {
		return info.id
	}
	return ""
}

// Logger returns the logger of the request ctx belongs to, which adds
// its request_id to every line; slog.Default() outside a request.
// Handlers log with it so that all lines of one request can be found.
func Logger(ctx context.Context) *slog.Logger {
	if info, ok := ctx.Value(requestKey{}).(*requestInfo); ok {
		return info.logger()
	}
	return slog.Default()
}
