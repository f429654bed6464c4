package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// shortBodyTimeout makes stalled bodies fail fast in tests.
func shortBodyTimeout(c *config.Config) {
	c.Limits.BodyReadTimeout = config.Duration{Duration: 200 * time.Millisecond}
	c.Limits.BodyMinRate = 1024
}

// rawRequest writes head (request line and headers, without the blank
// line) and then body on conn, leaves the rest of the announced body
// unsent, and reads the answer within wait.
func rawRequest(t *testing.T, conn net.Conn, head, body string, wait time.Duration) (*http.Response, []byte, time.Duration) {
	t.Helper()
	start := time.Now()
	_ = conn.SetDeadline(start.Add(wait))
	if _, err := io.WriteString(conn, strings.ReplaceAll(head, "\n", "\r\n")+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer within %s: %v", wait, err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, data, time.Since(start)
}

// A client API request whose body stops after a few bytes gets 408 once
// the body read timeout has passed, and its connection is closed; it does
// not hold the connection for minutes.
func TestStalledRequestBodyTimesOut(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the body read timeout: not under -short")
	}
	s := ts.New(t, ts.WithConfig(shortBodyTimeout))
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := fmt.Sprintf("PUT /_matrix/client/v3/rooms/%s/send/m.room.message/stall HTTP/1.1\nHost: x\nAuthorization: Bearer %s\nContent-Type: application/json\nContent-Length: 1048576",
		esc(room), alice.Token)
	resp, body, took := rawRequest(t, conn, head, `{"body":1`, 10*time.Second)
	if resp.StatusCode != http.StatusRequestTimeout || errcodeOf(body) != "M_UNKNOWN" {
		t.Fatalf("stalled body: %d %s", resp.StatusCode, body)
	}
	if took > 5*time.Second {
		t.Fatalf("stalled body answered after %s", took)
	}
	// The connection is done: nothing more is read from it.
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatalf("connection still open (%d bytes)", n)
	}
}

// An upload that arrives steadily, but takes longer than the body read
// timeout, still succeeds: the timeout bounds stalls, not slow links.
func TestSteadyUploadOutlastsBodyReadTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads slowly for 600 ms: not under -short")
	}
	s := ts.New(t, ts.WithConfig(shortBodyTimeout))
	alice := s.Register(t, "alice")
	const chunks, size = 8, 4096
	pr, pw := io.Pipe()
	go func() {
		chunk := strings.Repeat("x", size)
		for i := 0; i < chunks; i++ {
			if _, err := io.WriteString(pw, chunk); err != nil {
				return
			}
			time.Sleep(75 * time.Millisecond) // ~55 KB/s, 600 ms in all
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", s.URL+"/_matrix/media/v3/upload", pr)
	req.ContentLength = chunks * size
	req.Header.Set("Authorization", "Bearer "+alice.Token)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "mxc://") {
		t.Fatalf("steady upload: %d %s", resp.StatusCode, body)
	}
}

// fedConn opens a TLS connection to a test server's federation listener.
func fedConn(t *testing.T, f *ts.Federation, s *ts.Server) net.Conn {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(f.CA)
	host, _, _ := strings.Cut(s.Config.ServerName, ":")
	conn, err := tls.Dial("tcp", s.Config.Listen.Federation, &tls.Config{RootCAs: roots, ServerName: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// On the federation listener, a server outside federation.allowed_servers
// is refused from its X-Matrix header alone, before any of its body is
// read: the refusal comes while the body is still unsent (the body read
// timeout here is far longer than the wait).
func TestFederationRefusesDisallowedOriginBeforeBody(t *testing.T) {
	f := newFederation(t)
	s := ts.New(t, f.Server(), ts.WithConfig(func(c *config.Config) {
		c.Federation.AllowedServers = []string{"friend.test"}
		c.Limits.BodyReadTimeout = config.Duration{Duration: time.Minute}
	}))
	conn := fedConn(t, f, s)
	head := "PUT /_matrix/federation/v1/send/txn1 HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 1048576\n" +
		`Authorization: X-Matrix origin="stranger.test",key="ed25519:a",sig="c2lnbmF0dXJl"`
	resp, body, _ := rawRequest(t, conn, head, "", 10*time.Second)
	if resp.StatusCode != http.StatusForbidden || errcodeOf(body) != "M_FORBIDDEN" {
		t.Fatalf("disallowed origin: %d %s", resp.StatusCode, body)
	}
}

// On the federation listener too, a body that stalls fails with 408.
func TestFederationStalledBodyTimesOut(t *testing.T) {
	f := newFederation(t)
	s := ts.New(t, f.Server(), ts.WithConfig(shortBodyTimeout))
	conn := fedConn(t, f, s)
	head := "PUT /_matrix/federation/v1/send/txn1 HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 1048576\n" +
		`Authorization: X-Matrix origin="anyone.test",key="ed25519:a",sig="c2lnbmF0dXJl"`
	resp, body, took := rawRequest(t, conn, head, `{"pdus":[`, 10*time.Second)
	if resp.StatusCode != http.StatusRequestTimeout || took > 5*time.Second {
		t.Fatalf("stalled federation body: %d %s after %s", resp.StatusCode, body, took)
	}
}

// loginAs tries a password login and returns the answer.
func loginAs(c *ts.Client, userID, password string, xff string) *ts.Response {
	body := map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]string{"type": "m.id.user", "user": userID}}
	if xff == "" {
		return c.Do("POST", "/_matrix/client/v3/login", body)
	}
	return doWithHeader(c, "POST", "/_matrix/client/v3/login", body, "X-Forwarded-For", xff)
}

// doWithHeader is Client.Do with one extra header.
func doWithHeader(c *ts.Client, method, path string, body any, key, value string) *ts.Response {
	data, _ := json.Marshal(body)
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(data))
	}
	req, _ := http.NewRequest(method, c.URL+path, rd)
	req.Header.Set(key, value)
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return &ts.Response{Status: -1, Body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &ts.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func retryAfter(r *ts.Response) time.Duration {
	var e struct {
		RetryAfterMS int64 `json:"retry_after_ms"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return time.Duration(e.RetryAfterMS) * time.Millisecond
}

// waitOut waits as long as a 429 says, then some.
func waitOut(r *ts.Response) { time.Sleep(retryAfter(r) + 20*time.Millisecond) }

const rightPassword = "correct horse battery" // testserver's Register

// Wrong passwords for one account are throttled after the free failures
// with waits that double, even with the right password during a wait,
// and a successful login clears the count. Rate limits are off here: the
// throttle stands on its own.
func TestFailedLoginsThrottledPerAccount(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the throttle: not under -short")
	}
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		anon := s.Anonymous(t)
		for i := 0; i < 3; i++ { // the default allows 5 failures; see below
			if r := loginAs(anon, alice.UserID, "wrong", ""); r.Status != 403 {
				t.Fatalf("wrong password %d: %d %s", i, r.Status, r.Body)
			}
		}
		if r := loginAs(anon, alice.UserID, rightPassword, ""); r.Status != 200 {
			t.Fatalf("right password after 3 failures: %d %s", r.Status, r.Body)
		}
	})
	t.Run("delays", func(t *testing.T) {
		s := ts.New(t, ts.WithConfig(func(c *config.Config) {
			c.RateLimits.FailedLogins = config.FailedLogins{Enabled: true, AccountFailures: 3, AddressFailures: 100,
				BaseDelay: config.Duration{Duration: 300 * time.Millisecond}, MaxDelay: config.Duration{Duration: 10 * time.Second}}
		}))
		alice := s.Register(t, "alice")
		anon := s.Anonymous(t)
		for i := 0; i < 3; i++ {
			if r := loginAs(anon, alice.UserID, "wrong", ""); r.Status != 403 {
				t.Fatalf("wrong password %d: %d %s", i, r.Status, r.Body)
			}
		}
		first := loginAs(anon, alice.UserID, rightPassword, "")
		if first.Status != 429 || first.ErrCode() != "M_LIMIT_EXCEEDED" || retryAfter(first) <= 0 || retryAfter(first) > 400*time.Millisecond {
			t.Fatalf("after 3 failures: %d %s", first.Status, first.Body)
		}
		waitOut(first)
		if r := loginAs(anon, alice.UserID, "wrong", ""); r.Status != 403 {
			t.Fatalf("wrong password after the wait: %d %s", r.Status, r.Body)
		}
		second := loginAs(anon, alice.UserID, "wrong", "")
		if second.Status != 429 || retryAfter(second) <= 300*time.Millisecond {
			t.Fatalf("the wait did not grow: %d %s", second.Status, second.Body)
		}
		waitOut(second)
		if r := loginAs(anon, alice.UserID, rightPassword, ""); r.Status != 200 {
			t.Fatalf("right password after the wait: %d %s", r.Status, r.Body)
		}
		// Cleared: the next failures start from zero.
		for i := 0; i < 3; i++ {
			if r := loginAs(anon, alice.UserID, "wrong", ""); r.Status != 403 {
				t.Fatalf("after a success, wrong password %d: %d %s", i, r.Status, r.Body)
			}
		}
	})
	t.Run("parallel burst", func(t *testing.T) {
		s := ts.New(t, ts.WithConfig(func(c *config.Config) {
			c.RateLimits.FailedLogins = config.FailedLogins{Enabled: true, AccountFailures: 3, AddressFailures: 1000,
				BaseDelay: config.Duration{Duration: time.Minute}, MaxDelay: config.Duration{Duration: time.Hour}}
		}))
		alice := s.Register(t, "alice")
		anon := s.Anonymous(t)
		var mu sync.Mutex
		counts := map[int]int{}
		var wg sync.WaitGroup
		for i := 0; i < 30; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := loginAs(anon, alice.UserID, fmt.Sprintf("guess%d", i), "")
				mu.Lock()
				counts[r.Status]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if counts[403] != 3 || counts[429] != 27 {
			t.Fatalf("30 parallel guesses reached the password check %d times: %v", counts[403], counts)
		}
	})
}

// Wrong passwords from one client address are throttled across accounts;
// the address is X-Forwarded-For only when the peer is a trusted proxy.
func TestFailedLoginsThrottledPerTrustedAddress(t *testing.T) {
	throttle := func(proxies []string) ts.Option {
		return ts.WithConfig(func(c *config.Config) {
			c.RateLimits.TrustedProxies = proxies
			c.RateLimits.FailedLogins = config.FailedLogins{Enabled: true, AccountFailures: 100, AddressFailures: 2,
				BaseDelay: config.Duration{Duration: time.Minute}, MaxDelay: config.Duration{Duration: time.Hour}}
		})
	}
	t.Run("behind a trusted proxy", func(t *testing.T) {
		s := ts.New(t, throttle([]string{"127.0.0.0/8"}))
		anon := s.Anonymous(t)
		// A client-supplied first entry is not believed: the proxy's own
		// entry (the last) names the client.
		for i, u := range []string{"@a:localhost", "@b:localhost"} {
			if r := loginAs(anon, u, "wrong", "6.6.6.6, 203.0.113.5"); r.Status != 403 {
				t.Fatalf("guess %d: %d %s", i, r.Status, r.Body)
			}
		}
		if r := loginAs(anon, "@c:localhost", "wrong", "7.7.7.7, 203.0.113.5"); r.Status != 429 {
			t.Fatalf("third guess from 203.0.113.5: %d %s", r.Status, r.Body)
		}
		if r := loginAs(anon, "@c:localhost", "wrong", "203.0.113.6"); r.Status != 403 {
			t.Fatalf("another client behind the proxy: %d %s", r.Status, r.Body)
		}
	})
	t.Run("direct peer", func(t *testing.T) {
		s := ts.New(t, throttle(nil))
		anon := s.Anonymous(t)
		for i, xff := range []string{"203.0.113.1", "203.0.113.2"} {
			if r := loginAs(anon, fmt.Sprintf("@u%d:localhost", i), "wrong", xff); r.Status != 403 {
				t.Fatalf("guess %d: %d %s", i, r.Status, r.Body)
			}
		}
		if r := loginAs(anon, "@u9:localhost", "wrong", "203.0.113.3"); r.Status != 429 {
			t.Fatalf("a forged X-Forwarded-For escaped the throttle: %d %s", r.Status, r.Body)
		}
	})
}

// The request rate limiter keys anonymous callers on the trusted client
// address too.
func TestRateLimitUsesTrustedClientAddress(t *testing.T) {
	s := ts.New(t, ts.WithConfig(func(c *config.Config) {
		c.RateLimits = config.RateLimits{Enabled: true, PerSecond: 0.001, Burst: 1, TrustedProxies: []string{"127.0.0.1/32"},
			FailedLogins: config.FailedLogins{}}
	}))
	anon := s.Anonymous(t)
	path := "/_matrix/client/v3/login"
	body := map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "nobody"}, "password": "x"}
	if r := doWithHeader(anon, "POST", path, body, "X-Forwarded-For", "198.51.100.1"); r.Status != 403 {
		t.Fatalf("first: %d %s", r.Status, r.Body)
	}
	if r := doWithHeader(anon, "POST", path, body, "X-Forwarded-For", "198.51.100.1"); r.Status != 429 {
		t.Fatalf("second from the same client: %d %s", r.Status, r.Body)
	}
	if r := doWithHeader(anon, "POST", path, body, "X-Forwarded-For", "198.51.100.2"); r.Status != 403 {
		t.Fatalf("another client: %d %s", r.Status, r.Body)
	}
}

// register/available does not answer while registration is closed (it
// would tell who has an account); with tokens it answers, since a token
// holder needs it to choose a name.
func TestRegisterAvailableNeedsOpenRegistration(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		local := strings.TrimPrefix(strings.Split(alice.UserID, ":")[0], "@")
		anon := s.Anonymous(t)
		check := func(mode string, name string, status int, code string) {
			t.Helper()
			s.Config.Registration.Mode = mode
			r := anon.Do("GET", "/_matrix/client/v3/register/available?username="+name, nil)
			if r.Status != status || (code != "" && r.ErrCode() != code) {
				t.Fatalf("%s, %s: %d %s", mode, name, r.Status, r.Body)
			}
		}
		check(config.RegistrationClosed, local, 403, "M_FORBIDDEN")
		check(config.RegistrationClosed, "free_name", 403, "M_FORBIDDEN")
		check(config.RegistrationToken, local, 400, "M_USER_IN_USE")
		check(config.RegistrationToken, "free_name", 200, "")
		check(config.RegistrationOpen, "free_name", 200, "")
	})
}

// Event ids longer than the spec's 255 bytes are refused wherever a client
// names an event: not found when reading, M_INVALID_PARAM when acting.
func TestOverlongEventIDsRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		long := "$" + strings.Repeat("a", 255)
		r := "/_matrix/client/v3/rooms/" + esc(room)
		for _, p := range []string{r + "/event/" + esc(long), r + "/context/" + esc(long), "/_matrix/client/v1/rooms/" + esc(room) + "/relations/" + esc(long)} {
			if resp := alice.Do("GET", p, nil); resp.Status != 404 || resp.ErrCode() != "M_NOT_FOUND" {
				t.Errorf("GET %s: %d %s", p[:60], resp.Status, resp.Body)
			}
		}
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"PUT", r + "/redact/" + esc(long) + "/t1", map[string]any{}},
			{"POST", r + "/receipt/m.read/" + esc(long), map[string]any{}},
			{"POST", r + "/receipt/m.fully_read/" + esc(long), map[string]any{}},
			{"POST", r + "/read_markers", map[string]any{"m.fully_read": long}},
			{"POST", r + "/report/" + esc(long), map[string]any{"reason": "spam"}},
			{"PUT", r + "/redact/not-an-event-id/t2", map[string]any{}},
		} {
			if resp := alice.Do(c.method, c.path, c.body); resp.Status != 400 || resp.ErrCode() != "M_INVALID_PARAM" {
				t.Errorf("%s %s: %d %s", c.method, c.path[:60], resp.Status, resp.Body)
			}
		}
		// In a room no other server takes part in, an unknown event
		// cannot exist: its redaction is refused (a federated room
		// accepts it: TestFedRedactUnknownEvent).
		if resp := alice.Do("PUT", r+"/redact/"+esc("$unknown-event")+"/t3", map[string]any{}); resp.Status != 404 || resp.ErrCode() != "M_NOT_FOUND" {
			t.Errorf("redact an unknown event of a local room: %d %s", resp.Status, resp.Body)
		}
		other := alice.SendText(alice.CreateRoom(map[string]any{}), "elsewhere")
		if resp := alice.Do("PUT", r+"/redact/"+esc(other)+"/t4", map[string]any{}); resp.Status != 404 {
			t.Errorf("redact another room's event: %d %s", resp.Status, resp.Body)
		}
		mine := alice.SendText(room, "mine")
		alice.MustDo("PUT", r+"/redact/"+esc(mine)+"/t5", map[string]any{}, nil)
	})
}

// Negative and out-of-range numbers in query parameters are
// M_INVALID_PARAM instead of being clamped or ignored.
func TestBadQueryNumbersRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		ev := alice.SendText(room, "hello")
		r := "/_matrix/client/v3/rooms/" + esc(room)
		for _, p := range []string{
			r + "/messages?dir=b&limit=-1",
			r + "/messages?dir=b&limit=99999999999999999999",
			r + "/messages?dir=b&limit=9007199254740992",
			r + "/messages?dir=b&filter=" + url.QueryEscape(`{"limit":-2}`),
			r + "/context/" + esc(ev) + "?limit=-5",
			"/_matrix/client/v1/rooms/" + esc(room) + "/relations/" + esc(ev) + "?limit=-1",
			"/_matrix/client/v3/sync?timeout=-1",
			"/_matrix/client/v3/notifications?limit=-1",
			"/_matrix/client/v3/publicRooms?limit=-1",
			"/_matrix/client/v1/media/download/localhost/abc?timeout_ms=-1",
		} {
			if resp := alice.Do("GET", p, nil); resp.Status != 400 || resp.ErrCode() != "M_INVALID_PARAM" {
				t.Errorf("GET %s: %d %s", p, resp.Status, resp.Body)
			}
		}
		if resp := alice.Do("GET", r+"/messages?dir=b&limit=0", nil); resp.Status != 200 {
			t.Errorf("limit=0: %d %s", resp.Status, resp.Body)
		}
	})
}

// A since token (sync) or from token (messages) past the server's current
// position was never issued by it: 400 M_INVALID_PARAM at once, not a
// long poll or an empty page. Tokens the server gave stay valid.
func TestTokensAheadOfServerRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		alice.SendText(room, "hello")
		cur := doSync(t, alice, "timeout=0")
		if resp := alice.Do("GET", "/_matrix/client/v3/sync?timeout=0&since="+cur.NextBatch, nil); resp.Status != 200 {
			t.Fatalf("own token: %d %s", resp.Status, resp.Body)
		}
		start := time.Now()
		resp := alice.Do("GET", "/_matrix/client/v3/sync?timeout=20000&since=s99999999_0_0_0_0_0_0", nil)
		if resp.Status != 400 || resp.ErrCode() != "M_INVALID_PARAM" || time.Since(start) > 10*time.Second {
			t.Fatalf("sync since ahead: %d %s", resp.Status, resp.Body)
		}
		if resp := alice.Do("GET", "/_matrix/client/v3/sync?timeout=0&since=s0_99999999_0_0_0_0_0", nil); resp.Status != 400 {
			t.Fatalf("sync since ahead in account data: %d %s", resp.Status, resp.Body)
		}
		for _, from := range []string{"t99999999", "s99999999_0_0_0_0_0_0"} {
			p := "/_matrix/client/v3/rooms/" + esc(room) + "/messages?dir=b&from=" + from
			if resp := alice.Do("GET", p, nil); resp.Status != 400 || resp.ErrCode() != "M_INVALID_PARAM" {
				t.Fatalf("messages from %s: %d %s", from, resp.Status, resp.Body)
			}
		}
		if p := messages(t, alice, room, "dir=b&from="+cur.NextBatch); len(bodies(p.Chunk)) != 1 {
			t.Fatalf("messages from the sync token: %+v", p.Chunk)
		}
	})
}

// Remote media whose server cannot be reached is the spec's 504
// M_NOT_YET_UPLOADED (not available now, worth retrying), not a 502,
// which the spec keeps for remote media that is too large.
func TestUnreachableRemoteMediaIsNotYetAvailable(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	for _, p := range []string{"/_matrix/client/v1/media/download/127.0.0.1:1/abc", "/_matrix/client/v1/media/thumbnail/127.0.0.1:1/abc?width=32&height=32"} {
		resp := alice.Do("GET", p, nil)
		if resp.Status != 504 || resp.ErrCode() != "M_NOT_YET_UPLOADED" {
			t.Fatalf("%s: %d %s", p, resp.Status, resp.Body)
		}
	}
}

// The new limits are validated when the configuration is read.
func TestAbuseLimitsConfigValidated(t *testing.T) {
	for _, bad := range []string{
		"rate_limits:\n  trusted_proxies: [\"10.0.0.1\"]\n",
		"rate_limits:\n  failed_logins:\n    account_failures: 0\n",
		"rate_limits:\n  failed_logins:\n    base_delay: 1h\n    max_delay: 1m\n",
		"limits:\n  body_read_timeout: 0s\n",
		"limits:\n  body_min_rate: 0\n",
	} {
		if _, err := config.Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	c, err := config.Parse([]byte("rate_limits:\n  enabled: false\n  trusted_proxies: [\"10.0.0.0/8\", \"::1/128\"]\n  failed_logins:\n    enabled: false\n    account_failures: 0\n"))
	if err != nil || len(c.RateLimits.TrustedProxies) != 2 || c.RateLimits.FailedLogins.Enabled {
		t.Fatalf("valid config: %v %+v", err, c)
	}
	d := config.Default()
	if !d.RateLimits.FailedLogins.Enabled || d.Limits.BodyReadTimeout.Duration <= 0 {
		t.Fatalf("defaults must protect: %+v %+v", d.RateLimits, d.Limits)
	}
}
