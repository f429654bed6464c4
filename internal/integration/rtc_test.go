package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// The SFU these tests' servers advertise: no SFU runs, the tokens are
// checked with LiveKit's own verifier instead.
const (
	lkURL    = "wss://sfu.police.test"
	lkKey    = "luxchat-test-key"
	lkSecret = "a-test-secret-that-is-longer-than-32-characters"
	lkJWT    = "/_luxchat/livekit/jwt"
)

func withLiveKit(edit ...func(*config.Config)) ts.Option {
	return ts.WithConfig(func(c *config.Config) {
		c.RTC.LiveKit = config.LiveKit{URL: lkURL, Key: lkKey, Secret: lkSecret}
		for _, e := range edit {
			e(c)
		}
	})
}

// rtcEngines runs f against a fresh server with LiveKit configured, on
// SQLite and on PostgreSQL.
func rtcEngines(t *testing.T, f func(t *testing.T, s *ts.Server), opts ...ts.Option) {
	t.Run("sqlite", func(t *testing.T) { f(t, ts.New(t, append(opts, withLiveKit())...)) })
	t.Run("postgres", func(t *testing.T) { f(t, ts.New(t, append(opts, withLiveKit(), ts.WithPostgres(t))...)) })
}

type rtcTransport struct {
	Type       string `json:"type"`
	ServiceURL string `json:"livekit_service_url"`
}

func TestRTCTransportsAndWellKnown(t *testing.T) {
	t.Run("unconfigured", func(t *testing.T) {
		s := ts.New(t)
		alice := s.Register(t, "alice")
		if r := alice.Do("GET", "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports", nil); r.Status != 404 || r.ErrCode() != "M_UNRECOGNIZED" {
			t.Fatalf("transports without an SFU: %d %s", r.Status, r.Body)
		}
		if r := alice.Do("POST", lkJWT+"/get_token", map[string]any{}); r.Status != 404 || r.ErrCode() != "M_UNRECOGNIZED" {
			t.Fatalf("token service without an SFU: %d %s", r.Status, r.Body)
		}
		var wk map[string]any
		s.Anonymous(t).MustDo("GET", "/.well-known/matrix/client", nil, &wk)
		if _, ok := wk["org.matrix.msc4143.rtc_foci"]; ok {
			t.Fatalf("well-known advertises foci without an SFU: %v", wk)
		}
	})
	rtcEngines(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		const path = "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports"
		if r := s.Anonymous(t).Do("GET", path, nil); r.Status != 401 || r.ErrCode() != "M_MISSING_TOKEN" {
			t.Fatalf("transports without a token: %d %s", r.Status, r.Body)
		}
		want := []rtcTransport{{Type: "livekit", ServiceURL: s.URL + lkJWT}}
		var tr struct {
			Transports []rtcTransport `json:"rtc_transports"`
		}
		alice.MustDo("GET", path, nil, &tr)
		if !slices.Equal(tr.Transports, want) {
			t.Fatalf("transports: %+v, want %+v", tr.Transports, want)
		}
		var wk struct {
			Foci []rtcTransport `json:"org.matrix.msc4143.rtc_foci"`
		}
		s.Anonymous(t).MustDo("GET", "/.well-known/matrix/client", nil, &wk)
		if !slices.Equal(wk.Foci, want) {
			t.Fatalf("well-known foci: %+v, want %+v", wk.Foci, want)
		}
		var v struct {
			Unstable map[string]bool `json:"unstable_features"`
		}
		s.Anonymous(t).MustDo("GET", "/_matrix/client/versions", nil, &v)
		if !v.Unstable["org.matrix.msc4143"] {
			t.Fatalf("versions does not list org.matrix.msc4143: %v", v.Unstable)
		}
	})
	t.Run("service_url", func(t *testing.T) {
		s := ts.New(t, withLiveKit(func(c *config.Config) { c.PublicBaseURL = "https://matrix.police.test/" }))
		var tr struct {
			Transports []rtcTransport `json:"rtc_transports"`
		}
		s.Register(t, "alice").MustDo("GET", "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports", nil, &tr)
		if len(tr.Transports) != 1 || tr.Transports[0].ServiceURL != "https://matrix.police.test"+lkJWT {
			t.Fatalf("default service URL under public_base_url: %+v", tr.Transports)
		}
		s = ts.New(t, withLiveKit(func(c *config.Config) { c.RTC.LiveKit.ServiceURL = "https://lk-jwt.police.test/livekit/jwt" }))
		s.Register(t, "alice").MustDo("GET", "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports", nil, &tr)
		if len(tr.Transports) != 1 || tr.Transports[0].ServiceURL != "https://lk-jwt.police.test/livekit/jwt" {
			t.Fatalf("external token service: %+v", tr.Transports)
		}
	})
}

func TestRTCConfigRefusesBadLiveKit(t *testing.T) {
	for name, yaml := range map[string]string{
		"no secret":       "rtc: {livekit: {url: wss://sfu.test, key: k}}",
		"short secret":    "rtc: {livekit: {url: wss://sfu.test, key: k, secret: short}}",
		"http url":        "rtc: {livekit: {url: https://sfu.test, key: k, secret: " + lkSecret + "}}",
		"both secrets":    "rtc: {livekit: {url: wss://sfu.test, key: k, secret: " + lkSecret + ", secret_file: /nonexistent}}",
		"missing file":    "rtc: {livekit: {url: wss://sfu.test, key: k, secret_file: /nonexistent/secret}}",
		"service alone":   "rtc: {livekit: {service_url: https://jwt.test}}",
		"bad service url": "rtc: {livekit: {url: wss://sfu.test, key: k, secret: " + lkSecret + ", service_url: 'ftp://x'}}",
	} {
		if _, err := config.Parse([]byte(yaml)); err == nil || !strings.Contains(err.Error(), "rtc.livekit") {
			t.Errorf("%s: %v", name, err)
		}
	}
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(lkSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte("rtc: {livekit: {url: wss://sfu.test, key: k, secret_file: " + secretFile + "}}"))
	if err != nil {
		t.Fatal(err)
	}
	if _, secret, err := c.RTC.LiveKit.Credentials(); err != nil || secret != lkSecret {
		t.Fatalf("secret_file: %q %v", secret, err)
	}
}

// openIDToken asks c's server for an OpenID token of c's user.
func openIDToken(t *testing.T, c *ts.Client) map[string]any {
	t.Helper()
	var tok map[string]any
	c.MustDo("POST", "/_matrix/client/v3/user/"+esc(c.UserID)+"/openid/request_token", map[string]any{}, &tok)
	return tok
}

// lkHash is the unpadded base64 SHA-256 of the JSON array of parts: how
// lk-jwt-service pseudonymises LiveKit rooms and identities (computed
// here on its own, not with the server's code).
func lkHash(parts ...string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(',')
		}
		q, _ := json.Marshal(p)
		b.Write(q)
	}
	b.WriteByte(']')
	sum := sha256.Sum256([]byte(b.String()))
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

type lkAccess struct {
	URL string `json:"url"`
	JWT string `json:"jwt"`
}

type lkClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Nbf   int64  `json:"nbf"`
	Exp   int64  `json:"exp"`
	Video struct {
		Room         string `json:"room"`
		RoomJoin     bool   `json:"roomJoin"`
		RoomCreate   bool   `json:"roomCreate"`
		CanPublish   bool   `json:"canPublish"`
		CanSubscribe bool   `json:"canSubscribe"`
	} `json:"video"`
}

// errLiveKitRefused is a token LiveKit's verifier refused.
var errLiveKitRefused = errors.New("livekit verifier refused the token")

// verifyLiveKit checks jwt with livekit-server-sdk's TokenVerifier (npm,
// installed in e2e/js by `make tools` or e2e/run.sh) and returns its
// claims. Without node or the package the test fails under CI and is
// skipped loudly otherwise.
func verifyLiveKit(t *testing.T, key, secret, jwt string) (lkClaims, error) {
	t.Helper()
	dir, err := filepath.Abs("../../e2e/js")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", "livekit-server-sdk")); err != nil || serr != nil {
		msg := "!!! node or e2e/js/node_modules/livekit-server-sdk missing (make tools, or npm ci in e2e/js): LiveKit tokens NOT verified by LiveKit !!!"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command(node, filepath.Join(dir, "lib", "verify-livekit-token.js"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LIVEKIT_KEY="+key, "LIVEKIT_SECRET="+secret)
	cmd.Stdin = strings.NewReader(jwt)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 1 && strings.HasPrefix(stderr.String(), "refused:") {
			return lkClaims{}, fmt.Errorf("%w: %s", errLiveKitRefused, strings.TrimSpace(stderr.String()))
		}
		t.Fatalf("node verifier: %v: %s", err, stderr.String())
	}
	var c lkClaims
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		t.Fatalf("verifier output %q: %v", out.String(), err)
	}
	return c, nil
}

// checkGrant verifies a token with LiveKit's verifier and checks its
// claims: identity, LiveKit room, publish/subscribe grants, one hour.
func checkGrant(t *testing.T, a lkAccess, identity, room string, create bool) {
	t.Helper()
	if a.URL != lkURL || a.JWT == "" {
		t.Fatalf("access: %+v", a)
	}
	c, err := verifyLiveKit(t, lkKey, lkSecret, a.JWT)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	if c.Iss != lkKey || c.Sub != identity || c.Video.Room != room {
		t.Fatalf("claims %+v: want iss %s, sub %s, room %s", c, lkKey, identity, room)
	}
	if !c.Video.RoomJoin || !c.Video.CanPublish || !c.Video.CanSubscribe || c.Video.RoomCreate != create {
		t.Fatalf("grants %+v (roomCreate wanted %v)", c.Video, create)
	}
	if c.Exp-c.Nbf != 3600 || c.Nbf < now-120 || c.Nbf > now+5 {
		t.Fatalf("validity nbf %d exp %d (now %d)", c.Nbf, c.Exp, now)
	}
	// The verifier can refuse: another secret's signature does not pass.
	if _, err := verifyLiveKit(t, lkKey, strings.ToUpper(lkSecret), a.JWT); !errors.Is(err, errLiveKitRefused) {
		t.Fatalf("token verified with another secret: %v", err)
	}
}

func getToken(roomID, slot string, tok map[string]any, member map[string]string) map[string]any {
	return map[string]any{"room_id": roomID, "slot_id": slot, "openid_token": tok, "member": member}
}

func TestLiveKitTokenService(t *testing.T) {
	rtcEngines(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		roomID := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
		bob.Join(roomID)
		jwt := s.Anonymous(t) // the token service takes no access token
		const slot = "m.call#ROOM"
		aliceTok, bobTok, carolTok := openIDToken(t, alice), openIDToken(t, bob), openIDToken(t, carol)

		// A member gets a token for the room's slot, under the identity
		// lk-jwt-service derives from user, device and member id.
		var a lkAccess
		jwt.MustDo("POST", lkJWT+"/get_token", getToken(roomID, slot, aliceTok,
			map[string]string{"id": "m-alice-1", "claimed_user_id": alice.UserID, "claimed_device_id": alice.DeviceID}), &a)
		checkGrant(t, a, lkHash(alice.UserID, alice.DeviceID, "m-alice-1"), lkHash(roomID, slot), true)

		// The legacy endpoint: identity @user:server:DEVICE, the same
		// LiveKit room as the default slot's.
		var b lkAccess
		jwt.MustDo("POST", lkJWT+"/sfu/get", map[string]any{"room": roomID, "openid_token": bobTok, "device_id": bob.DeviceID}, &b)
		checkGrant(t, b, bob.UserID+":"+bob.DeviceID, lkHash(roomID, slot), true)

		// Another slot is another LiveKit room.
		jwt.MustDo("POST", lkJWT+"/get_token", getToken(roomID, "m.call#side", aliceTok,
			map[string]string{"id": "m-alice-2", "claimed_user_id": alice.UserID, "claimed_device_id": alice.DeviceID}), &a)
		checkGrant(t, a, lkHash(alice.UserID, alice.DeviceID, "m-alice-2"), lkHash(roomID, "m.call#side"), true)

		// An expired OpenID token, as a replay an hour later finds it.
		expired := "lxo_expired" + roomID
		sum := sha256.Sum256([]byte(expired))
		past := time.Now().Add(-time.Minute).UnixMilli()
		if err := s.Store.PutOpenIDToken(t.Context(), hex.EncodeToString(sum[:]), alice.UserID, past, past-time.Hour.Milliseconds()); err != nil {
			t.Fatal(err)
		}
		expiredTok := map[string]any{"access_token": expired, "token_type": "Bearer", "matrix_server_name": s.Config.ServerName, "expires_in": 3600}
		badTok := map[string]any{"access_token": "lxo_forged", "token_type": "Bearer", "matrix_server_name": s.Config.ServerName, "expires_in": 3600}
		aliceMember := map[string]string{"id": "m", "claimed_user_id": alice.UserID, "claimed_device_id": alice.DeviceID}

		refusals := []struct {
			name, path string
			body       any
			status     int
			code       string
		}{
			{"non-member", "/get_token", getToken(roomID, slot, carolTok, map[string]string{"id": "m", "claimed_user_id": carol.UserID, "claimed_device_id": carol.DeviceID}), 403, "M_FORBIDDEN"},
			{"non-member legacy", "/sfu/get", map[string]any{"room": roomID, "openid_token": carolTok, "device_id": carol.DeviceID}, 403, "M_FORBIDDEN"},
			{"unknown room", "/get_token", getToken("!nowhere:"+s.Config.ServerName, slot, aliceTok, aliceMember), 403, "M_FORBIDDEN"},
			{"another user's id", "/get_token", getToken(roomID, slot, aliceTok, map[string]string{"id": "m", "claimed_user_id": bob.UserID, "claimed_device_id": bob.DeviceID}), 401, "M_UNAUTHORIZED"},
			{"another user's device", "/get_token", getToken(roomID, slot, aliceTok, map[string]string{"id": "m", "claimed_user_id": alice.UserID, "claimed_device_id": bob.DeviceID}), 403, "M_FORBIDDEN"},
			{"another user's device legacy", "/sfu/get", map[string]any{"room": roomID, "openid_token": aliceTok, "device_id": bob.DeviceID}, 403, "M_FORBIDDEN"},
			{"forged openid token", "/get_token", getToken(roomID, slot, badTok, aliceMember), 401, "M_UNAUTHORIZED"},
			{"forged openid token legacy", "/sfu/get", map[string]any{"room": roomID, "openid_token": badTok, "device_id": alice.DeviceID}, 401, "M_UNAUTHORIZED"},
			{"expired openid token", "/get_token", getToken(roomID, slot, expiredTok, aliceMember), 401, "M_UNAUTHORIZED"},
			{"access token as openid token", "/get_token", getToken(roomID, slot, map[string]any{"access_token": alice.Token, "matrix_server_name": s.Config.ServerName}, aliceMember), 401, "M_UNAUTHORIZED"},
			{"server outside allowed_servers", "/get_token", getToken(roomID, slot, map[string]any{"access_token": "x", "matrix_server_name": "elsewhere.test"}, map[string]string{"id": "m", "claimed_user_id": "@eve:elsewhere.test", "claimed_device_id": "D"}), 403, "M_FORBIDDEN"},
			{"not a server name", "/get_token", getToken(roomID, slot, map[string]any{"access_token": "x", "matrix_server_name": "bad name!"}, aliceMember), 400, "M_BAD_JSON"},
			{"missing slot", "/get_token", getToken(roomID, "", aliceTok, aliceMember), 400, "M_BAD_JSON"},
			{"missing member id", "/get_token", getToken(roomID, slot, aliceTok, map[string]string{"claimed_user_id": alice.UserID, "claimed_device_id": alice.DeviceID}), 400, "M_BAD_JSON"},
			{"missing openid token", "/get_token", getToken(roomID, slot, nil, aliceMember), 400, "M_BAD_JSON"},
			{"missing device legacy", "/sfu/get", map[string]any{"room": roomID, "openid_token": aliceTok}, 400, "M_BAD_JSON"},
			{"missing room legacy", "/sfu/get", map[string]any{"openid_token": aliceTok, "device_id": alice.DeviceID}, 400, "M_BAD_JSON"},
			{"wrong types", "/get_token", map[string]any{"room_id": 7, "slot_id": slot}, 400, "M_BAD_JSON"},
			{"huge slot", "/get_token", getToken(roomID, strings.Repeat("s", 300), aliceTok, aliceMember), 400, "M_BAD_JSON"},
			{"not JSON", "/get_token", "{nope", 400, "M_NOT_JSON"},
			{"delayed leave delegation", "/get_token", func() map[string]any {
				b := getToken(roomID, slot, aliceTok, aliceMember)
				b["delay_id"], b["delay_timeout"], b["delay_cs_api_url"] = "d1", 1000, s.URL
				return b
			}(), 400, "M_BAD_JSON"},
		}
		for _, r := range refusals {
			resp := jwt.Do("POST", lkJWT+r.path, r.body)
			if resp.Status != r.status || resp.ErrCode() != r.code {
				t.Errorf("%s: %d %s, want %d %s", r.name, resp.Status, resp.Body, r.status, r.code)
			}
		}

		// Leaving the room ends the right to a token.
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/leave", map[string]any{}, nil)
		if r := jwt.Do("POST", lkJWT+"/sfu/get", map[string]any{"room": roomID, "openid_token": bobTok, "device_id": bob.DeviceID}); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("token after leaving: %d %s", r.Status, r.Body)
		}
		if r := jwt.Do("GET", lkJWT+"/get_token", nil); r.Status != 405 {
			t.Fatalf("GET get_token: %d %s", r.Status, r.Body)
		}
	}, ts.WithConfig(func(c *config.Config) { c.Federation.AllowedServers = []string{"police.test"} }))
}

// A browser (Element Call) asks the token service across origins: the
// preflight must pass and the answers carry the CORS headers.
func TestLiveKitTokenServiceCORS(t *testing.T) {
	s := ts.New(t, withLiveKit())
	for _, p := range []string{"/get_token", "/sfu/get"} {
		req, _ := http.NewRequest("OPTIONS", s.URL+lkJWT+p, nil)
		req.Header.Set("Origin", "https://call.police.test")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "content-type") {
			t.Fatalf("preflight of %s: %d %v", p, resp.StatusCode, h)
		}
	}
	r := s.Anonymous(t).Do("POST", lkJWT+"/get_token", map[string]any{})
	if r.Status != 400 || r.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("error answer without CORS: %d %v", r.Status, r.Header)
	}
}

// A user of another server gets a token for a room of ours they are
// joined to: their OpenID token is checked with their server over
// federation. They may not make the SFU open a room.
func TestLiveKitTokenServiceFederation(t *testing.T) {
	fed := newFederation(t)
	a := ts.New(t, fed.ServerNamed("police.test"), frClosed(frHosts...), withLiveKit())
	b := ts.New(t, fed.ServerNamed("gouv.test"), frClosed(frHosts...))
	c := ts.New(t, fed.ServerNamed("education.test"))
	alice, bob, dave := a.Register(t, "alice"), b.Register(t, "bob"), c.Register(t, "dave")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID)+"?server_name="+url.QueryEscape(a.Config.ServerName), map[string]any{}, nil)
	jwt := a.Anonymous(t)
	const slot = "m.call#ROOM"
	bobTok := openIDToken(t, bob)
	member := map[string]string{"id": "m-bob", "claimed_user_id": bob.UserID, "claimed_device_id": bob.DeviceID}
	var acc lkAccess
	jwt.MustDo("POST", lkJWT+"/get_token", getToken(roomID, slot, bobTok, member), &acc)
	checkGrant(t, acc, lkHash(bob.UserID, bob.DeviceID, "m-bob"), lkHash(roomID, slot), false)

	// bob's token is his server's: it cannot pass as alice's server's.
	forged := map[string]any{"access_token": bobTok["access_token"], "matrix_server_name": a.Config.ServerName}
	if r := jwt.Do("POST", lkJWT+"/get_token", getToken(roomID, slot, forged, member)); r.Status != 401 {
		t.Fatalf("remote token as a local one: %d %s", r.Status, r.Body)
	}
	// A forged token of bob's server.
	bad := map[string]any{"access_token": "lxo_forged", "matrix_server_name": b.Config.ServerName}
	if r := jwt.Do("POST", lkJWT+"/get_token", getToken(roomID, slot, bad, member)); r.Status != 401 || r.ErrCode() != "M_UNAUTHORIZED" {
		t.Fatalf("forged remote token: %d %s", r.Status, r.Body)
	}
	// bob in a room he is not joined to.
	other := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	if r := jwt.Do("POST", lkJWT+"/get_token", getToken(other, slot, bobTok, member)); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
		t.Fatalf("remote non-member: %d %s", r.Status, r.Body)
	}
	// dave's server is outside police.test's federation.allowed_servers:
	// it is never asked.
	daveTok := openIDToken(t, dave)
	if r := jwt.Do("POST", lkJWT+"/get_token", getToken(roomID, slot, daveTok,
		map[string]string{"id": "m", "claimed_user_id": dave.UserID, "claimed_device_id": dave.DeviceID})); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
		t.Fatalf("user of a server outside allowed_servers: %d %s", r.Status, r.Body)
	}
}

// A member of a room made by our createRoom posts their call membership
// (one state event per device, as Element Call does) and the others see
// it in /sync; in rooms with owned state keys (MSC3757) the key may start
// with the user id itself, and nobody writes another member's.
func TestCallMembershipState(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		put := func(c *ts.Client, roomID, typ, key string) *ts.Response {
			content := map[string]any{
				"application": "m.call", "call_id": "", "scope": "m.room", "device_id": c.DeviceID,
				"focus_active":   map[string]any{"type": "livekit", "focus_selection": "oldest_membership"},
				"foci_preferred": []any{map[string]any{"type": "livekit", "livekit_service_url": s.URL + lkJWT}},
			}
			return c.Do("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/"+typ+"/"+esc(key), content)
		}
		for _, preset := range []string{"private_chat", "public_chat"} {
			roomID := alice.CreateRoom(map[string]any{"preset": preset, "invite": []string{bob.UserID}})
			bob.Join(roomID)
			since := doSync(t, alice, "timeout=0").NextBatch
			keys := map[string]string{
				"org.matrix.msc3401.call.member": "_" + bob.UserID + "_" + bob.DeviceID + "_m.call",
				"m.rtc.member":                   "_" + bob.UserID + "_" + bob.DeviceID,
			}
			for typ, key := range keys {
				if r := put(bob, roomID, typ, key); r.Status != 200 {
					t.Fatalf("%s: member's %s: %d %s", preset, typ, r.Status, r.Body)
				}
			}
			seen := map[string]string{}
			for _, e := range doSync(t, alice, "timeout=0&since="+url.QueryEscape(since)).Rooms.Join[roomID].Timeline.Events {
				if e.StateKey != nil && e.Sender == bob.UserID {
					seen[e.Type] = *e.StateKey
				}
			}
			for typ, key := range keys {
				if seen[typ] != key {
					t.Fatalf("%s: alice's sync shows %s as %q, want %q (all: %v)", preset, typ, seen[typ], key, seen)
				}
			}
			// Without owned state keys a key that starts with another
			// user id than the sender's belongs to someone else.
			if r := put(bob, roomID, "org.matrix.msc3401.call.member", bob.UserID+"_"+bob.DeviceID); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
				t.Fatalf("%s: @-key in a room without owned state keys: %d %s", preset, r.Status, r.Body)
			}
		}
		roomID := alice.CreateRoom(map[string]any{"preset": "private_chat", "room_version": "org.matrix.msc3757.11", "invite": []string{bob.UserID}})
		bob.Join(roomID)
		if r := put(bob, roomID, "org.matrix.msc3401.call.member", bob.UserID+"_"+bob.DeviceID+"_m.call"); r.Status != 200 {
			t.Fatalf("owned state key: %d %s", r.Status, r.Body)
		}
		if r := put(bob, roomID, "org.matrix.msc3401.call.member", alice.UserID+"_"+alice.DeviceID+"_m.call"); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("another member's owned state key: %d %s", r.Status, r.Body)
		}
	})
}
