package httputil

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"luxchat/internal/matrix/errcode"
)

// logBuffer collects a router's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestRouter() (*Router, *logBuffer) {
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return NewRouter(nil, 1<<20, log), logs
}

func do(rt http.Handler, method, path string, body io.Reader, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, body)
	for k, v := range header {
		req.Header[k] = v
	}
	w := httptest.NewRecorder()
	rt.ServeHTTP(w, req)
	return w
}

func TestInternalErrorLogsCauseNotBody(t *testing.T) {
	const secret = "pq: connection refused to 10.1.2.3"
	for name, err := range map[string]error{
		"wrapped errcode": errcode.Internal().Wrap(errors.New(secret)),
		"plain error":     errors.New(secret),
	} {
		t.Run(name, func(t *testing.T) {
			rt, logs := newTestRouter()
			var ctxID string
			rt.Handle("GET /fail", AuthNone, func(r *Request) (any, error) {
				ctxID = RequestID(r.Context())
				return nil, err
			})
			w := do(rt, "GET", "/fail", nil, nil)
			if w.Code != http.StatusInternalServerError {
				t.Fatalf("status %d", w.Code)
			}
			if strings.Contains(w.Body.String(), "10.1.2.3") {
				t.Fatalf("the cause reached the client: %s", w.Body)
			}
			var body map[string]any
			if json.Unmarshal(w.Body.Bytes(), &body) != nil || body["errcode"] != "M_UNKNOWN" || body["error"] != "internal server error" {
				t.Fatalf("body %s", w.Body)
			}
			id := w.Header().Get("X-Request-Id")
			if id == "" || id != ctxID {
				t.Fatalf("X-Request-Id %q, handler saw %q", id, ctxID)
			}
			line := logs.String()
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, secret) || !strings.Contains(line, "request_id="+id) {
				t.Fatalf("log %q lacks the error, its cause or request_id=%s", line, id)
			}
		})
	}
}

func TestRefusalCauseLoggedAtDebug(t *testing.T) {
	rt, logs := newTestRouter()
	rt.Handle("GET /refuse", AuthNone, func(r *Request) (any, error) {
		return nil, errcode.Unknown("could not read request body").Wrap(errors.New("unexpected EOF"))
	})
	w := do(rt, "GET", "/refuse", nil, nil)
	if w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "EOF") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if line := logs.String(); !strings.Contains(line, "level=DEBUG") || !strings.Contains(line, "unexpected EOF") {
		t.Fatalf("log %q", line)
	}
}

func TestRequestID(t *testing.T) {
	rt, logs := newTestRouter()
	rt.Handle("GET /log", AuthNone, func(r *Request) (any, error) {
		Logger(r.Context()).Info("handler line")
		return nil, nil
	})
	for _, tc := range []struct {
		incoming string
		kept     bool
	}{
		{"", false},
		{"abc-123.DEF_4", true},
		{strings.Repeat("a", maxRequestID), true},
		{strings.Repeat("a", maxRequestID+1), false},
		{"has space", false},
		{"new\nline", false},
		{"é", false},
	} {
		h := http.Header{}
		if tc.incoming != "" {
			h["X-Request-Id"] = []string{tc.incoming}
		}
		w := do(rt, "GET", "/log", nil, h)
		id := w.Header().Get("X-Request-Id")
		if id == "" || (id == tc.incoming) != tc.kept || !validRequestID(id) {
			t.Errorf("incoming %q: answered %q", tc.incoming, id)
		}
		if !strings.Contains(logs.String(), `msg="handler line" request_id=`+id+"\n") {
			t.Errorf("handler's line lacks request_id=%s: %q", id, logs.String())
		}
	}
	// Unknown paths and wrong methods carry one too.
	if w := do(rt, "GET", "/nowhere", nil, nil); w.Code != http.StatusNotFound || w.Header().Get("X-Request-Id") == "" {
		t.Errorf("404: %d %q", w.Code, w.Header().Get("X-Request-Id"))
	}
	if w := do(rt, "POST", "/log", nil, nil); w.Code != http.StatusMethodNotAllowed || w.Header().Get("X-Request-Id") == "" {
		t.Errorf("405: %d %q", w.Code, w.Header().Get("X-Request-Id"))
	}
	if Logger(t.Context()) != slog.Default() || RequestID(t.Context()) != "" {
		t.Error("outside a request: not the default logger")
	}
}

func TestMountedRouterKeepsRequestID(t *testing.T) {
	outer, _ := newTestRouter()
	inner, _ := newTestRouter()
	var seen string
	inner.Handle("GET /inner/x", AuthNone, func(r *Request) (any, error) {
		seen = RequestID(r.Context())
		return nil, nil
	})
	outer.Mount("/inner/", inner)
	w := do(outer, "GET", "/inner/x", nil, nil)
	if id := w.Header().Get("X-Request-Id"); w.Code != 200 || id == "" || id != seen {
		t.Fatalf("%d: header %q, inner handler %q", w.Code, id, seen)
	}
}

func TestPanicLoggedWithRequestID(t *testing.T) {
	rt, logs := newTestRouter()
	rt.Handle("GET /panic", AuthNone, func(r *Request) (any, error) { panic("boom") })
	w := do(rt, "GET", "/panic", nil, nil)
	id := w.Header().Get("X-Request-Id")
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "boom") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if line := logs.String(); !strings.Contains(line, "panic=boom") || !strings.Contains(line, "request_id="+id) {
		t.Fatalf("log %q", line)
	}
}

// fakeServers accepts requests whose Authorization names an allowed
// origin and records what the router asked of it.
type fakeServers struct {
	prechecked, verified bool
	body                 []byte
}

func (f *fakeServers) Precheck(r *http.Request) error {
	f.prechecked = true
	switch r.Header.Get("Authorization") {
	case "":
		return errcode.Unauthorized("missing X-Matrix authorization")
	case "X-Matrix origin=denied":
		return errcode.Forbidden("federation with denied is not allowed")
	}
	return nil
}

func (f *fakeServers) Verify(r *http.Request, body []byte) (string, error) {
	f.verified, f.body = true, body
	if r.Header.Get("Authorization") != "X-Matrix origin=good" {
		return "", errcode.Unauthorized("invalid signature")
	}
	return "good", nil
}

// watchedBody records whether anything read it.
type watchedBody struct {
	io.Reader
	read bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.read = true
	return b.Reader.Read(p)
}

func TestServerSignedRoutes(t *testing.T) {
	rt, _ := newTestRouter()
	servers := &fakeServers{}
	rt.Servers = servers
	ran := false
	var origin, body string
	rt.Handle("PUT /send", AuthServer, func(r *Request) (any, error) {
		ran = true
		origin = r.Origin
		b, err := r.Body()
		body = string(b)
		return nil, err
	})
	for _, tc := range []struct {
		auth    string
		status  int
		errcode string
		read    bool // the body was read
	}{
		{"", http.StatusUnauthorized, "M_UNAUTHORIZED", false},
		{"X-Matrix origin=denied", http.StatusForbidden, "M_FORBIDDEN", false},
		{"X-Matrix origin=forged", http.StatusUnauthorized, "M_UNAUTHORIZED", true},
		{"X-Matrix origin=good", http.StatusOK, "", true},
	} {
		*servers, ran, origin, body = fakeServers{}, false, "", ""
		rb := &watchedBody{Reader: strings.NewReader(`{"pdus":[]}`)}
		h := http.Header{}
		if tc.auth != "" {
			h.Set("Authorization", tc.auth)
		}
		w := do(rt, "PUT", "/send", rb, h)
		var got map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &got)
		if w.Code != tc.status || (tc.errcode != "" && got["errcode"] != tc.errcode) {
			t.Errorf("%q: %d %s", tc.auth, w.Code, w.Body)
		}
		if !servers.prechecked || rb.read != tc.read || servers.verified != tc.read {
			t.Errorf("%q: prechecked %v, body read %v, verified %v", tc.auth, servers.prechecked, rb.read, servers.verified)
		}
		if ran != (tc.status == http.StatusOK) {
			t.Errorf("%q: handler ran: %v", tc.auth, ran)
		}
		if ran && (origin != "good" || body != `{"pdus":[]}` || string(servers.body) != body) {
			t.Errorf("handler saw origin %q body %q; verifier body %q", origin, body, servers.body)
		}
	}
}

func TestServerSignedRouteNeedsVerifier(t *testing.T) {
	rt, _ := newTestRouter()
	defer func() {
		if recover() == nil {
			t.Fatal("a server-signed route was registered without a verifier")
		}
	}()
	rt.Handle("GET /x", AuthServer, func(*Request) (any, error) { return nil, nil })
}
