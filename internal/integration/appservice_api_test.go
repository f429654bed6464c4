package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// fakeService is an application service written here, to see exactly
// what the server sends and to answer as a test needs.
type fakeService struct {
	mu        sync.Mutex
	auth      []string // Authorization headers of the calls
	s         *ts.Server
	t         testing.TB
	pingFails bool
}

func (f *fakeService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	pingFails := f.pingFails
	f.mu.Unlock()
	path := r.URL.Path
	switch {
	case path == "/_matrix/app/v1/ping":
		if pingFails {
			w.WriteHeader(403)
			w.Write([]byte(`{"errcode":"M_FORBIDDEN"}`))
			return
		}
		w.Write([]byte(`{}`))
	case strings.HasPrefix(path, "/_matrix/app/v1/users/"):
		// The service creates the user it is asked about.
		user := strings.TrimPrefix(path, "/_matrix/app/v1/users/")
		local := strings.TrimPrefix(strings.Split(user, ":")[0], "@")
		c := f.s.Anonymous(f.t)
		c.Token = "as-api"
		if r := c.Do("POST", "/_matrix/client/v3/register", map[string]any{"type": "m.login.application_service", "username": local, "inhibit_login": true}); r.Status != 200 {
			w.WriteHeader(500)
			return
		}
		w.Write([]byte(`{}`))
	case strings.HasPrefix(path, "/_matrix/app/v1/rooms/"):
		// The service makes the rooms of the aliases it knows: #_api_made.
		alias := strings.TrimPrefix(path, "/_matrix/app/v1/rooms/")
		if !strings.HasPrefix(alias, "#_api_made:") {
			w.WriteHeader(404)
			w.Write([]byte(`{"errcode":"M_NOT_FOUND"}`))
			return
		}
		c := f.s.Anonymous(f.t)
		c.Token = "as-api"
		if r := c.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat", "room_alias_name": "_api_made"}); r.Status != 200 {
			w.WriteHeader(500)
			return
		}
		w.Write([]byte(`{}`))
	case path == "/_matrix/app/v1/thirdparty/protocol/gitter":
		w.Write([]byte(`{"user_fields":["username"],"location_fields":["room"],"icon":"mxc://x/y","field_types":{},"instances":[{"desc":"Gitter","network_id":"gitter","fields":{}}]}`))
	case path == "/_matrix/app/v1/thirdparty/location/gitter":
		fmt.Fprintf(w, `[{"alias":"#_api_gitter_%s:x","protocol":"gitter","fields":{}}]`, r.URL.Query().Get("room"))
	case strings.HasPrefix(path, "/_matrix/app/v1/transactions/"):
		w.Write([]byte(`{}`))
	default:
		w.WriteHeader(404)
		w.Write([]byte(`{"errcode":"M_UNRECOGNIZED"}`))
	}
}

func TestAppServiceAPI(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			f := &fakeService{}
			hs := httptest.NewServer(f)
			defer hs.Close()
			dir := t.TempDir()
			writeReg := func(id, url, as, hs, sender, users string, extra string) string {
				p := filepath.Join(dir, id+".yaml")
				text := fmt.Sprintf("id: %s\nurl: %s\nas_token: %s\nhs_token: %s\nsender_localpart: %s\nrate_limited: false\n%snamespaces:\n  users: [{exclusive: true, regex: %q}]\n  aliases: [{exclusive: true, regex: \"#_%s_.*\"}]\n",
					id, url, as, hs, sender, extra, users, id)
				if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			// A service of the old kind: only /transactions/{txnId}, token in the query.
			var legacyTxns atomic.Int64
			legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/transactions/") && r.Method == "PUT" && r.URL.Query().Get("access_token") == "hs-legacy" {
					legacyTxns.Add(1)
					w.Write([]byte(`{}`))
					return
				}
				w.WriteHeader(404)
				w.Write([]byte(`{"errcode":"M_UNRECOGNIZED"}`))
			}))
			defer legacy.Close()
			files := []string{
				writeReg("legacy", legacy.URL, "as-legacy", "hs-legacy", "_legacy_bot", "@_legacy_.*", ""),
				writeReg("api", hs.URL, "as-api", "hs-api", "_api_bot", "@_api_.*", "protocols: [gitter]\n"),
				writeReg("nourl", "null", "as-nourl", "hs-nourl", "_nourl_bot", "@_nourl_.*", ""),
				writeReg("down", "http://127.0.0.1:1", "as-down", "hs-down", "_down_bot", "@_down_.*", ""),
			}
			opts := []ts.Option{ts.WithConfig(func(c *config.Config) {
				c.AppServices.ConfigFiles = files
				c.RateLimits.Enabled, c.RateLimits.PerSecond, c.RateLimits.Burst = true, 1, 20
			})}
			if engine == "postgres" {
				opts = append(opts, ts.WithPostgres(t))
			}
			s := ts.New(t, opts...)
			f.s, f.t = s, t
			server := s.Config.ServerName
			as := s.Anonymous(t)
			as.Token = "as-api"

			// Ping: success, a bad status, no URL, an unreachable service.
			var pong struct {
				DurationMS *int64 `json:"duration_ms"`
			}
			as.MustDo("POST", "/_matrix/client/v1/appservice/api/ping", map[string]string{"transaction_id": "t1"}, &pong)
			if pong.DurationMS == nil {
				t.Fatal("ping: no duration_ms")
			}
			f.mu.Lock()
			f.pingFails = true
			f.mu.Unlock()
			if r := as.Do("POST", "/_matrix/client/v1/appservice/api/ping", map[string]string{}); r.Status != 502 || r.ErrCode() != "M_BAD_STATUS" || !strings.Contains(string(r.Body), `"status":403`) {
				t.Fatalf("ping with a bad status: %d %s", r.Status, r.Body)
			}
			if r := as.Do("POST", "/_matrix/client/v1/appservice/nourl/ping", map[string]string{}); r.Status != 403 {
				t.Fatalf("ping of another service: %d %s", r.Status, r.Body)
			}
			nourl := s.Anonymous(t)
			nourl.Token = "as-nourl"
			if r := nourl.Do("POST", "/_matrix/client/v1/appservice/nourl/ping", map[string]string{}); r.Status != 400 || r.ErrCode() != "M_URL_NOT_SET" {
				t.Fatalf("ping without url: %d %s", r.Status, r.Body)
			}
			down := s.Anonymous(t)
			down.Token = "as-down"
			if r := down.Do("POST", "/_matrix/client/v1/appservice/down/ping", map[string]string{}); r.Status != 502 || r.ErrCode() != "M_CONNECTION_FAILED" {
				t.Fatalf("ping of a service that is down: %d %s", r.Status, r.Body)
			}
			f.mu.Lock()
			for _, a := range f.auth {
				if a != "Bearer hs-api" {
					t.Fatalf("a call to the service carried %q", a)
				}
			}
			f.mu.Unlock()

			// Registration and login as the service.
			anon := s.Anonymous(t)
			if r := anon.Do("POST", "/_matrix/client/v3/register", map[string]any{"type": "m.login.application_service", "username": "_api_x"}); r.Status != 401 || r.ErrCode() != "M_MISSING_TOKEN" {
				t.Fatalf("appservice registration without a token: %d %s", r.Status, r.Body)
			}
			var reg struct {
				UserID      string `json:"user_id"`
				AccessToken string `json:"access_token"`
			}
			as.MustDo("POST", "/_matrix/client/v3/register", map[string]any{"type": "m.login.application_service", "username": "_api_carol"}, &reg)
			if reg.UserID != "@_api_carol:"+server || reg.AccessToken == "" {
				t.Fatalf("registered %+v", reg)
			}
			as.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.application_service",
				"identifier": map[string]string{"type": "m.id.user", "user": "_api_carol"}}, &reg)
			if reg.AccessToken == "" {
				t.Fatal("login: no token")
			}
			if r := as.Do("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.application_service",
				"identifier": map[string]string{"type": "m.id.user", "user": "_nourl_bot"}}); r.ErrCode() != "M_EXCLUSIVE" {
				t.Fatalf("login outside the namespace: %d %s", r.Status, r.Body)
			}
			if r := anon.Do("GET", "/_matrix/client/v3/register/available?username=_api_dave", nil); r.ErrCode() != "M_EXCLUSIVE" {
				t.Fatalf("available in an exclusive namespace: %d %s", r.Status, r.Body)
			}

			// Queries: the profile of an unknown user in the namespace asks
			// the service, which creates it.
			alice := s.Register(t, "alice")
			if r := alice.Do("GET", "/_matrix/client/v3/profile/"+esc("@_api_eve:"+server), nil); r.Status != 200 {
				t.Fatalf("profile of a user the service creates: %d %s", r.Status, r.Body)
			}
			if r := alice.Do("GET", "/_matrix/client/v3/directory/room/"+esc("#_api_nope:"+server), nil); r.Status != 404 {
				t.Fatalf("alias the service does not know: %d %s", r.Status, r.Body)
			}
			if r := alice.Do("POST", "/_matrix/client/v3/join/"+esc("#_api_made:"+server), map[string]any{}); r.Status != 200 {
				t.Fatalf("join by an alias the service makes: %d %s", r.Status, r.Body)
			}
			if r := alice.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{"room_alias_name": "_api_mine"}); r.ErrCode() != "M_EXCLUSIVE" {
				t.Fatalf("a user's room alias in an exclusive namespace: %d %s", r.Status, r.Body)
			}

			// Third-party networks and the network's room directory.
			var protocols map[string]struct {
				Instances []struct {
					InstanceID string `json:"instance_id"`
				} `json:"instances"`
			}
			alice.MustDo("GET", "/_matrix/client/v3/thirdparty/protocols", nil, &protocols)
			if p := protocols["gitter"]; len(p.Instances) != 1 || p.Instances[0].InstanceID != "api|gitter" {
				t.Fatalf("protocols %+v", protocols)
			}
			var locations []map[string]any
			alice.MustDo("GET", "/_matrix/client/v3/thirdparty/location/gitter?room=matrix", nil, &locations)
			if len(locations) != 1 || locations[0]["alias"] != "#_api_gitter_matrix:x" {
				t.Fatalf("locations %v", locations)
			}
			if r := alice.Do("GET", "/_matrix/client/v3/thirdparty/location/irc", nil); r.Status != 404 {
				t.Fatalf("unknown protocol: %d %s", r.Status, r.Body)
			}
			room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
			if r := alice.Do("PUT", "/_matrix/client/v3/directory/list/appservice/gitter/"+esc(room), map[string]string{"visibility": "public"}); r.Status != 403 {
				t.Fatalf("a user listing in a network: %d %s", r.Status, r.Body)
			}
			as.MustDo("PUT", "/_matrix/client/v3/directory/list/appservice/gitter/"+esc(room), map[string]string{"visibility": "public"}, nil)
			var pub publicRoomsResp
			alice.MustDo("GET", "/_matrix/client/v3/publicRooms?third_party_instance_id="+esc("api|gitter"), nil, &pub)
			if ids := pub.ids(); len(ids) != 1 || ids[0] != room {
				t.Fatalf("network directory %v", ids)
			}
			alice.MustDo("GET", "/_matrix/client/v3/publicRooms", nil, &pub)
			if len(pub.ids()) != 0 {
				t.Fatalf("main directory %v", pub.ids())
			}
			alice.MustDo("GET", "/_matrix/client/v3/publicRooms?include_all_networks=true", nil, &pub)
			if len(pub.ids()) != 1 {
				t.Fatalf("all networks %v", pub.ids())
			}

			// The old kind of service gets its transactions at the legacy path.
			legacyBot := s.Anonymous(t)
			legacyBot.Token = "as-legacy"
			legacyBot.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{}, nil)
			for i := 0; legacyTxns.Load() == 0; i++ {
				if i == 1000 {
					t.Fatal("the legacy service never got a transaction")
				}
				time.Sleep(10 * time.Millisecond)
			}

			// Timestamp massaging: only for services.
			as.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{}, nil)
			var sent struct {
				EventID string `json:"event_id"`
			}
			as.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/ts1?ts=1234567890123", map[string]string{"msgtype": "m.text", "body": "old"}, &sent)
			var ev struct {
				OriginServerTS int64 `json:"origin_server_ts"`
			}
			alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(sent.EventID), nil, &ev)
			if ev.OriginServerTS != 1234567890123 {
				t.Fatalf("massaged ts: %d", ev.OriginServerTS)
			}
			if r := as.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/ts2?ts=soon", map[string]string{"body": "x"}); r.Status != 400 {
				t.Fatalf("bad ts: %d %s", r.Status, r.Body)
			}

			// rate_limited: false: the service is never rate-limited (the
			// server allows a burst of 20, then 1 request a second).
			for i := range 40 {
				if r := as.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/rl%d", esc(room), i), map[string]string{"msgtype": "m.text", "body": "fast"}); r.Status != 200 {
					t.Fatalf("service request %d: %d %s", i, r.Status, r.Body)
				}
			}
			limitedSeen := false
			for i := range 40 {
				if r := alice.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/al%d", esc(room), i), map[string]string{"msgtype": "m.text", "body": "fast"}); r.Status == 429 {
					limitedSeen = true
					break
				}
			}
			if !limitedSeen {
				t.Fatal("an ordinary user was never rate-limited: the test shows nothing")
			}

			// Bad input: clear errors, never a 500.
			for _, c := range []struct {
				method, path string
				body         any
				status       int
				code         string
			}{
				{"POST", "/_matrix/client/v1/appservice/api/ping", "{", 400, "M_NOT_JSON"},
				{"POST", "/_matrix/client/v3/register", map[string]any{"type": "m.login.application_service", "username": "_api_BAD name"}, 400, "M_INVALID_USERNAME"},
				{"POST", "/_matrix/client/v3/register", map[string]any{"type": "m.login.application_service"}, 400, "M_MISSING_PARAM"},
				{"GET", "/_matrix/client/v3/account/whoami?user_id=" + esc("@_api_x:elsewhere.example"), nil, 403, "M_FORBIDDEN"},
				{"GET", "/_matrix/client/v3/account/whoami?user_id=" + esc("@_api_nobody:"+server), nil, 403, "M_FORBIDDEN"},
				{"GET", "/_matrix/client/v3/account/whoami?user_id=not-a-user", nil, 403, "M_FORBIDDEN"},
				{"GET", "/_matrix/client/v3/thirdparty/location", nil, 400, "M_MISSING_PARAM"},
				{"PUT", "/_matrix/client/v3/directory/list/appservice/gitter/" + esc(room), map[string]string{"visibility": "sideways"}, 400, "M_INVALID_PARAM"},
				{"PUT", "/_matrix/client/v3/directory/list/appservice/gitter/" + esc("!nope:"+server), map[string]string{"visibility": "public"}, 404, "M_NOT_FOUND"},
			} {
				r := as.Do(c.method, c.path, c.body)
				if r.Status != c.status || r.ErrCode() != c.code {
					t.Fatalf("%s %s: %d %s, want %d %s", c.method, c.path, r.Status, r.Body, c.status, c.code)
				}
			}
		})
	}
}
