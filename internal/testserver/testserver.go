// Package testserver starts a real luxchat server for tests: a real store
// (SQLite in a temp dir, or a throw-away PostgreSQL database), real HTTP on
// a loopback port, and small client helpers.
package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/federation"
	"luxchat/internal/server"
	"luxchat/internal/testutil/pgtest"
)

// Server is a running test server.
type Server struct {
	URL string
	// HooksURL is where the webhooks are served: URL, or the listener
	// of WithHooksListener.
	HooksURL string
	Config   *config.Config
	*server.Server
	stop func() error
	opts []Option // to start it again: see Restart
	// transport carries the requests of this server's clients; its idle
	// connections are closed at Stop (see New).
	transport *http.Transport
	// AdminURL is the listen.admin listener's base URL (WithAdminListener),
	// else URL.
	AdminURL string
}

// Stop shuts the server down gracefully and returns Serve's result.
func (s *Server) Stop() error { return s.stop() }

// Option changes the test server's configuration (or setup).
type Option func(*setup)

// setup is what options change.
type setup struct {
	cfg        *config.Config
	fedLn      net.Listener           // federation listener made by Federation.Server
	dns        federation.DNS         // replaces the federation client's DNS when set
	clientAddr string                 // client listener address; empty: any free port
	cut        func(host string) bool // hosts the server cannot reach (see Federation.Cut)
	inbound    func(r *http.Request, body []byte)
	fed        *Federation  // set by Federation.Server and ServerNamed
	hooksLn    net.Listener // listen.hooks (see WithHooksListener)
	adminLn    net.Listener // listen.admin's listener (WithAdminListener)
	logTo      io.Writer    // also log here, from level Info (see WithLog)
}

// WithHooksListener serves the incoming webhooks on a listener of their
// own (listen.hooks) at Server.HooksURL, not on the client listener.
func WithHooksListener(t testing.TB) Option {
	return func(s *setup) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.hooksLn = ln
		s.cfg.Listen.Hooks = ln.Addr().String()
	}
}

// WithAdminListener serves the admin API on a listener of its own
// (listen.admin), at the Server's AdminURL.
func WithAdminListener(t testing.TB) Option {
	return func(s *setup) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.adminLn = ln
		s.cfg.Listen.Admin = ln.Addr().String()
	}
}

// WithLog also writes the server's log, from level Info, to w (which
// must be safe for concurrent use): for tests of what is logged.
func WithLog(w io.Writer) Option { return func(s *setup) { s.logTo = w } }

// ObserveInbound is an option that calls f with each request the
// federation listener receives, before it is handled.
func ObserveInbound(f func(r *http.Request, body []byte)) Option {
	return func(s *setup) { s.inbound = f }
}

// WithPostgres runs the server on a fresh PostgreSQL database.
func WithPostgres(t testing.TB) Option {
	dsn := pgtest.NewDatabase(t)
	return func(s *setup) { s.cfg.Database = dsn }
}

// WithConfig edits the configuration directly.
func WithConfig(f func(*config.Config)) Option { return func(s *setup) { f(s.cfg) } }

// New starts a server that lives until the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Registration.Mode = config.RegistrationOpen
	cfg.RateLimits.Enabled = false
	cfg.Auth.PasswordHashMemoryKiB = 1024
	cfg.Auth.PasswordHashTime = 1
	su := &setup{cfg: cfg}
	for _, o := range opts {
		o(su)
	}
	if su.clientAddr == "" {
		su.clientAddr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", su.clientAddr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen.Client = ln.Addr().String()
	level := slog.LevelWarn
	if os.Getenv("LUXCHAT_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if su.logTo != nil {
		log = slog.New(teeHandler{log.Handler(), slog.NewTextHandler(su.logTo, &slog.HandlerOptions{Level: slog.LevelInfo})})
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if su.hooksLn != nil {
		srv.SetHooksListener(su.hooksLn)
	}
	if su.dns != nil && srv.Federation != nil {
		srv.Federation.SetDNS(su.dns)
	}
	if su.cut != nil && srv.Federation != nil {
		srv.Federation.SetPartition(su.cut)
	}
	if su.inbound != nil {
		srv.WrapFederationHandler(func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
				su.inbound(r, body)
				h.ServeHTTP(w, r)
			})
		})
	}
	srv.AdminListener = su.adminLn
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, ln, su.fedLn) }()
	if su.fed != nil {
		su.fed.add(srv)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Each test client stands for a device with its own connection: keep
	// them all (the default keeps 2 per host and redials the rest).
	tr.MaxIdleConnsPerHost = 4096
	ts := &Server{URL: "http://" + ln.Addr().String(), Config: cfg, Server: srv, opts: opts, transport: tr}
	ts.HooksURL = ts.URL
	if su.hooksLn != nil {
		ts.HooksURL = "http://" + su.hooksLn.Addr().String()
	}
	ts.AdminURL = ts.URL
	if su.adminLn != nil {
		ts.AdminURL = "http://" + su.adminLn.Addr().String()
	}
	var once sync.Once
	ts.stop = func() error {
		var err error
		once.Do(func() {
			cancel()
			// A connection a client dialled but never used (a transport
			// dials a spare when all are busy) holds a graceful shutdown
			// for 5 s (http.Server.Shutdown): close those of the clients
			// and of the other servers, as processes that exit would.
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			timeout := time.After(20 * time.Second)
			for {
				tr.CloseIdleConnections()
				http.DefaultTransport.(*http.Transport).CloseIdleConnections()
				if su.fed != nil {
					su.fed.closeIdle()
				}
				select {
				case err = <-done:
					return
				case <-timeout:
					err = fmt.Errorf("server did not shut down")
					return
				case <-tick.C:
				}
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Error(err)
		}
	})
	return ts
}

// Client talks to a test server as one user.
type Client struct {
	t        testing.TB
	URL      string
	UserID   string
	DeviceID string
	Token    string
	http     *http.Client
}

var counter atomic.Int64

// Anonymous returns a client without an access token.
func (s *Server) Anonymous(t testing.TB) *Client {
	return &Client{t: t, URL: s.URL, http: &http.Client{Timeout: 60 * time.Second, Transport: s.transport}}
}

// Register creates a user with open registration (name gets a unique
// suffix) and returns its client.
func (s *Server) Register(t testing.TB, name string) *Client {
	t.Helper()
	c := s.Anonymous(t)
	local := fmt.Sprintf("%s%d", strings.ToLower(name), counter.Add(1))
	body := map[string]any{"username": local, "password": "correct horse battery", "auth": map[string]string{"type": "m.login.dummy"}}
	var resp struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	c.MustDo("POST", "/_matrix/client/v3/register", body, &resp)
	c.UserID, c.Token, c.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return c
}

// SetT points the client's failures at another test (fuzz iterations).
func (c *Client) SetT(t testing.TB) { c.t = t }

// Response is a decoded answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r *Response) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// ErrCode returns the errcode of an error body.
func (r *Response) ErrCode() string {
	var e struct {
		Errcode string `json:"errcode"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Errcode
}

// Do sends a request. body may be nil, []byte (sent raw) or a value
// encoded as JSON.
func (c *Client) Do(method, path string, body any) *Response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// MustDo sends a request, fails the test unless it returns 200, and decodes
// the answer into out (when non-nil).
func (c *Client) MustDo(method, path string, body, out any) {
	c.t.Helper()
	r := c.Do(method, path, body)
	if r.Status != http.StatusOK {
		c.t.Fatalf("%s %s: status %d: %s", method, path, r.Status, r.Body)
	}
	if out != nil {
		if err := r.JSON(out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, r.Body, err)
		}
	}
}

// CreateRoom creates a room and returns its id.
func (c *Client) CreateRoom(body map[string]any) string {
	c.t.Helper()
	var resp struct {
		RoomID string `json:"room_id"`
	}
	c.MustDo("POST", "/_matrix/client/v3/createRoom", body, &resp)
	return resp.RoomID
}

var txn atomic.Int64

// Send sends a message event and returns its id.
func (c *Client) Send(roomID, evType string, content any) string {
	c.t.Helper()
	var resp struct {
		EventID string `json:"event_id"`
	}
	c.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/%s/t%d", url.PathEscape(roomID), evType, txn.Add(1)), content, &resp)
	return resp.EventID
}

// SendText sends an m.text message.
func (c *Client) SendText(roomID, body string) string {
	return c.Send(roomID, "m.room.message", map[string]string{"msgtype": "m.text", "body": body})
}

// Join joins a room.
func (c *Client) Join(roomID string) {
	c.t.Helper()
	c.MustDo("POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), map[string]any{}, nil)
}

// Sync runs /sync with the given query (e.g. "since=…&timeout=0").
func (c *Client) Sync(query string) map[string]any {
	c.t.Helper()
	var out map[string]any
	c.MustDo("GET", "/_matrix/client/v3/sync?"+query, nil, &out)
	return out
}

// teeHandler passes records to two handlers.
type teeHandler struct{ a, b slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || h.b.Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.a.Enabled(ctx, r.Level) {
		err = h.a.Handle(ctx, r.Clone())
	}
	if h.b.Enabled(ctx, r.Level) {
		err = errors.Join(err, h.b.Handle(ctx, r))
	}
	return err
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(as), h.b.WithAttrs(as)}
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{h.a.WithGroup(name), h.b.WithGroup(name)}
}
