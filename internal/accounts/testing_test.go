package accounts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
	"luxchat/internal/testutil/pgtest"
)

// env is a Service on a fresh database, with a clock the test can move and
// a second connection to read rows as they are at rest.
type env struct {
	svc    *Service
	st     *store.Store
	raw    *sql.DB
	cfg    *config.Config
	offset atomic.Int64 // added to the real time, in ns
}

func (e *env) advance(d time.Duration) { e.offset.Add(int64(d)) }

// testConfig is the default configuration with a cheap argon2id cost.
func testConfig() *config.Config {
	cfg := config.Default()
	cfg.ServerName = "test.local"
	cfg.Registration.Mode = config.RegistrationOpen
	cfg.Auth.PasswordHashMemoryKiB = 256
	cfg.Auth.PasswordHashTime = 1
	return cfg
}

// forEachEngine runs f on SQLite and on PostgreSQL.
func forEachEngine(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		f(t, newEnv(t, store.Options{DataDir: dir}, "sqlite", "file:"+filepath.Join(dir, "luxchat.db")+"?_pragma=busy_timeout(10000)"))
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		f(t, newEnv(t, store.Options{PostgresDSN: dsn}, "pgx", dsn))
	})
}

func newEnv(t *testing.T, o store.Options, driver, dsn string) *env {
	t.Helper()
	st, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	e := &env{st: st, raw: raw, cfg: testConfig()}
	e.svc = New(e.cfg, st, quiet, Hooks{})
	e.svc.now = func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }
	return e
}

var (
	bg    = context.Background()
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// register creates a user through open registration and returns its login.
func (e *env) register(t *testing.T, username, password string) *LoginResult {
	t.Helper()
	res, err := e.svc.Register(bg, RegisterRequest{Username: username, Password: password, Auth: auth(AuthDummy, "")})
	if err != nil {
		t.Fatalf("register %s: %v", username, err)
	}
	return res
}

// auth builds an auth dict.
func auth(typ, session string, kv ...string) json.RawMessage {
	m := map[string]any{"type": typ}
	if session != "" {
		m["session"] = session
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return b
}

// passwordAuth is an m.login.password auth dict for user.
func passwordAuth(session, user, password string) json.RawMessage {
	m := map[string]any{"type": AuthPassword, "identifier": map[string]string{"type": "m.id.user", "user": user}, "password": password}
	if session != "" {
		m["session"] = session
	}
	b, _ := json.Marshal(m)
	return b
}

// wantCode fails unless err is a Matrix error with code.
func wantCode(t *testing.T, err error, code string) *errcode.Error {
	t.Helper()
	e, ok := errcode.As(err)
	if !ok || e.Code != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	return e
}

// wantAuthRequired fails unless err asks for more auth; failedCode is the
// code of the failed attempt, "" for none.
func wantAuthRequired(t *testing.T, err error, failedCode string) *AuthRequired {
	t.Helper()
	var ar *AuthRequired
	if !errors.As(err, &ar) {
		t.Fatalf("got %v, want user-interactive auth", err)
	}
	switch {
	case failedCode == "" && ar.Err != nil:
		t.Fatalf("unexpected failed attempt: %v", ar.Err)
	case failedCode != "" && (ar.Err == nil || ar.Err.Code != failedCode):
		t.Fatalf("failed attempt %v, want %s", ar.Err, failedCode)
	}
	if ar.Session == "" || len(ar.Flows) == 0 {
		t.Fatalf("incomplete auth response %+v", ar)
	}
	return ar
}

func (e *env) mustAuth(t *testing.T, token string) *Session {
	t.Helper()
	s, err := e.svc.Authenticate(bg, token)
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	return s
}

func (e *env) wantUnknownToken(t *testing.T, token string, soft bool) {
	t.Helper()
	_, err := e.svc.Authenticate(bg, token)
	ec := wantCode(t, err, "M_UNKNOWN_TOKEN")
	if got, _ := ec.Extra["soft_logout"].(bool); got != soft {
		t.Fatalf("soft_logout = %v, want %v", got, soft)
	}
}
