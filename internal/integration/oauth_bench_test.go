package integration

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// newOAuthServerB is the benchmarks' server: SQLite, or PostgreSQL with
// LUXCHAT_BENCH_POSTGRES=1 (and LUXCHAT_TEST_POSTGRES).
func newOAuthServerB(b *testing.B) *ts.Server {
	opts := []ts.Option{ts.WithConfig(func(c *config.Config) {
		c.OAuth.Enabled = true
		c.Auth.AccessTokenLifetime = config.Duration{Duration: 5 * time.Minute}
	})}
	if os.Getenv("LUXCHAT_BENCH_POSTGRES") != "" {
		opts = append(opts, ts.WithPostgres(b))
	}
	return ts.New(b, opts...)
}

func localpart(userID string) string { return strings.TrimPrefix(strings.Split(userID, ":")[0], "@") }

// tokenCPU adds up the CPU time of the timed requests: this process's,
// and on PostgreSQL that of its connections' backends, read from /proc
// (the pool's connections are listed once, after the warm-up: it keeps
// them, so no look-up of the database runs in the measured span).
type tokenCPU struct {
	s              *ts.Server
	pids           []int
	wall, self, pg time.Duration
	self0, pg0     time.Duration
	t0             time.Time
}

func newTokenCPU(b *testing.B, s *ts.Server) *tokenCPU {
	c := &tokenCPU{s: s}
	backends, err := s.Store.Backends(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range backends {
		if be.Type == "client backend" {
			c.pids = append(c.pids, be.PID)
		}
	}
	return c
}

func (c *tokenCPU) backendsCPU() time.Duration {
	var sum time.Duration
	for _, pid := range c.pids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/schedstat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

func (c *tokenCPU) begin() { c.pg0, c.self0, c.t0 = c.backendsCPU(), processCPU(), time.Now() }

func (c *tokenCPU) end() {
	c.wall += time.Since(c.t0)
	c.self += processCPU() - c.self0
	c.pg += c.backendsCPU() - c.pg0
}

func (c *tokenCPU) report(b *testing.B) {
	b.ReportMetric(float64(c.wall.Microseconds())/float64(b.N), "wall-us/op")
	b.ReportMetric(float64(c.self.Microseconds())/float64(b.N), "cpu-us/op")
	if c.s.Store.Engine == store.Postgres {
		b.ReportMetric(float64(c.pg.Microseconds())/float64(b.N), "pg-cpu-us/op")
	}
}

// BenchmarkOAuthToken times the token endpoint (POST
// /_luxchat/oauth2/token over loopback HTTP, SQLite): "code" is the
// authorization code grant (client and code checked, PKCE, the device
// created and the token pair stored in one transaction; the browser steps
// that make each code are outside the timer), "refresh" the refresh token
// grant (rotation). cpu-us/op is this process's CPU time, server and
// benchmark client together, during the timed requests; pg-cpu-us/op on
// PostgreSQL (LUXCHAT_BENCH_POSTGRES=1) that of the server's database
// connections.
func BenchmarkOAuthToken(b *testing.B) {
	b.Run("code", func(b *testing.B) {
		s := newOAuthServerB(b)
		alice := s.Register(b, "alice")
		local := localpart(alice.UserID)
		clientID := webClient(b, s)
		br := newBrowser(b)
		c := newTokenCPU(b, s)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			loc := consent(b, s, br, authorizeURL(s, clientID, "urn:matrix:client:api:*", "st", ""), local, true)
			code := callbackParams(b, loc).Get("code")
			c.begin()
			b.StartTimer()
			st, out := exchange(b, s, clientID, code, pkceVerifier)
			b.StopTimer()
			c.end()
			if st != http.StatusOK {
				b.Fatalf("exchange: %d %v", st, out)
			}
			b.StartTimer()
		}
		c.report(b)
	})
	b.Run("refresh", func(b *testing.B) {
		s := newOAuthServerB(b)
		alice := s.Register(b, "alice")
		clientID := webClient(b, s)
		tok := oauthLogin(b, s, clientID, localpart(alice.UserID), "BENCHDEV")
		rt := tok["refresh_token"].(string)
		c := newTokenCPU(b, s)
		b.ReportAllocs()
		for b.Loop() {
			c.begin()
			st, out := refreshGrant(b, s, clientID, rt)
			c.end()
			if st != http.StatusOK {
				b.Fatalf("refresh: %d %v", st, out)
			}
			rt = out["refresh_token"].(string)
		}
		c.report(b)
	})
}
