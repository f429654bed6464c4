package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

func newOAuthServerB(b *testing.B) *ts.Server {
	return ts.New(b, ts.WithConfig(func(c *config.Config) {
		c.OAuth.Enabled = true
		c.Auth.AccessTokenLifetime = config.Duration{Duration: 5 * time.Minute}
	}))
}

func localpart(userID string) string { return strings.TrimPrefix(strings.Split(userID, ":")[0], "@") }

// BenchmarkOAuthToken times the token endpoint (POST
// /_luxchat/oauth2/token over loopback HTTP, SQLite): "code" is the
// authorization code grant (client and code checked, PKCE, the device
// created and the token pair stored in one transaction; the browser steps
// that make each code are outside the timer), "refresh" the refresh token
// grant (rotation). cpu-us/op is this process's CPU time, server and
// benchmark client together, during the timed requests.
func BenchmarkOAuthToken(b *testing.B) {
	b.Run("code", func(b *testing.B) {
		s := newOAuthServerB(b)
		alice := s.Register(b, "alice")
		local := localpart(alice.UserID)
		clientID := webClient(b, s)
		br := newBrowser(b)
		var wall, cpu time.Duration
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			loc := consent(b, s, br, authorizeURL(s, clientID, "urn:matrix:client:api:*", "st", ""), local, true)
			code := callbackParams(b, loc).Get("code")
			c0, t0 := processCPU(), time.Now()
			b.StartTimer()
			st, out := exchange(b, s, clientID, code, pkceVerifier)
			b.StopTimer()
			wall += time.Since(t0)
			cpu += processCPU() - c0
			if st != http.StatusOK {
				b.Fatalf("exchange: %d %v", st, out)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(wall.Microseconds())/float64(b.N), "wall-us/op")
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
	})
	b.Run("refresh", func(b *testing.B) {
		s := newOAuthServerB(b)
		alice := s.Register(b, "alice")
		clientID := webClient(b, s)
		tok := oauthLogin(b, s, clientID, localpart(alice.UserID), "BENCHDEV")
		rt := tok["refresh_token"].(string)
		var wall, cpu time.Duration
		b.ReportAllocs()
		for b.Loop() {
			c0, t0 := processCPU(), time.Now()
			st, out := refreshGrant(b, s, clientID, rt)
			wall += time.Since(t0)
			cpu += processCPU() - c0
			if st != http.StatusOK {
				b.Fatalf("refresh: %d %v", st, out)
			}
			rt = out["refresh_token"].(string)
		}
		b.ReportMetric(float64(wall.Microseconds())/float64(b.N), "wall-us/op")
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
	})
}
