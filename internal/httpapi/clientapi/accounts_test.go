package clientapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/accounts"
	"luxchat/internal/config"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testAPI serves the account routes over HTTP on a fresh SQLite store (the
// domain tests cover PostgreSQL).
type testAPI struct {
	t   *testing.T
	url string
	cfg *config.Config
	svc *accounts.Service
	// offset is added to the real time on the service's clock (ns), so
	// that expiry is tested without sleeping.
	offset *atomic.Int64
}

func (a *testAPI) advance(d time.Duration) { a.offset.Add(int64(d)) }

func newTestAPI(t *testing.T, configure func(*config.Config)) *testAPI {
	t.Helper()
	cfg := config.Default()
	cfg.ServerName = "test.local"
	cfg.Registration.Mode = config.RegistrationOpen
	cfg.Auth.PasswordHashMemoryKiB, cfg.Auth.PasswordHashTime = 256, 1
	if configure != nil {
		configure(cfg)
	}
	st, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := accounts.New(cfg, st, quiet, accounts.Hooks{})
	offset := new(atomic.Int64)
	svc.SetClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	rt := httputil.NewRouter(NewAuthenticator(svc), cfg.Limits.MaxRequestBytes, quiet)
	api := &API{Config: cfg, Accounts: svc, Log: quiet}
	api.Register(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return &testAPI{t: t, url: srv.URL, cfg: cfg, svc: svc, offset: offset}
}

// do sends a request; body is sent verbatim when it is a string, as JSON
// otherwise. It returns the status and the decoded JSON object.
func (a *testAPI) do(method, path, token string, body any) (int, map[string]any) {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, a.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		a.t.Fatalf("%s %s: body is not a JSON object: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// want checks status and errcode ("" for none).
func (a *testAPI) want(status int, code string, method, path, token string, body any) map[string]any {
	a.t.Helper()
	got, out := a.do(method, path, token, body)
	if got != status || (code != "" && out["errcode"] != code) || (code == "" && out["errcode"] != nil) {
		a.t.Fatalf("%s %s: %d %v, want %d %s", method, path, got, out, status, code)
	}
	return out
}

// register creates a user with open registration and returns its token and
// device.
func (a *testAPI) register(user, password string) (token, device string) {
	a.t.Helper()
	out := a.want(200, "", "POST", v3+"/register", "", map[string]any{
		"username": user, "password": password, "auth": map[string]string{"type": "m.login.dummy"}})
	return out["access_token"].(string), out["device_id"].(string)
}

func passwordAuth(session, user, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "session": session, "password": password,
		"identifier": map[string]string{"type": "m.id.user", "user": user}}
}

func TestRegisterLoginWhoami(t *testing.T) {
	a := newTestAPI(t, nil)
	out := a.want(401, "", "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "password1"})
	flows, _ := json.Marshal(out["flows"])
	session, _ := out["session"].(string)
	if string(flows) != `[{"stages":["m.login.dummy"]}]` || session == "" || out["params"] == nil || out["completed"] != nil {
		t.Fatalf("401 body %v", out)
	}
	out = a.want(200, "", "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "password1",
		"initial_device_display_name": "phone", "auth": map[string]string{"type": "m.login.dummy", "session": session}})
	token := out["access_token"].(string)
	if out["user_id"] != "@alice:test.local" || out["device_id"] == "" || out["home_server"] != "test.local" {
		t.Fatalf("register %v", out)
	}
	for _, prefix := range []string{v3, "/_matrix/client/r0"} {
		out = a.want(200, "", "GET", prefix+"/account/whoami", token, nil)
		if out["user_id"] != "@alice:test.local" || out["device_id"] == nil || out["is_guest"] != false {
			t.Fatalf("whoami %v", out)
		}
	}

	out = a.want(200, "", "GET", v3+"/login", "", nil)
	if flows, _ := json.Marshal(out["flows"]); string(flows) != `[{"type":"m.login.password"}]` {
		t.Fatalf("login flows %s", flows)
	}
	out = a.want(200, "", "POST", v3+"/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": "alice"}, "password": "password1", "device_id": "MINE"})
	if out["device_id"] != "MINE" || out["user_id"] != "@alice:test.local" || out["access_token"] == "" {
		t.Fatalf("login %v", out)
	}
	a.want(200, "", "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "@alice:test.local", "password": "password1"})
	a.want(403, "M_FORBIDDEN", "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "nope"})

	a.want(400, "M_USER_IN_USE", "GET", v3+"/register/available?username=alice", "", nil)
	a.want(400, "M_INVALID_USERNAME", "GET", v3+"/register/available?username="+url.QueryEscape("a b"), "", nil)
	if out := a.want(200, "", "GET", v3+"/register/available?username=newbie", "", nil); out["available"] != true {
		t.Fatalf("available %v", out)
	}

	a.want(200, "", "POST", v3+"/logout", token, struct{}{})
	a.want(401, "M_UNKNOWN_TOKEN", "GET", v3+"/account/whoami", token, nil)
}

func TestBadInput(t *testing.T) {
	a := newTestAPI(t, nil)
	token, _ := a.register("alice", "password1")
	for _, c := range []struct {
		method, path, token string
		body                any
		status              int
		code                string
	}{
		{"POST", v3 + "/login", "", `{"type":`, 400, "M_NOT_JSON"},
		{"POST", v3 + "/login", "", "\xff\xfe", 400, "M_NOT_JSON"},
		{"POST", v3 + "/login", "", `{"type": 5}`, 400, "M_BAD_JSON"},
		{"POST", v3 + "/login", "", `[]`, 400, "M_BAD_JSON"},
		{"POST", v3 + "/login", "", `{"type":"m.login.password","identifier":"alice"}`, 400, "M_BAD_JSON"},
		{"POST", v3 + "/login", "", `{}`, 400, "M_MISSING_PARAM"},
		{"POST", v3 + "/login", "", `{"type":"m.login.token","token":"x"}`, 403, "M_FORBIDDEN"},
		{"POST", v3 + "/login", "", `{"type":"m.login.bogus"}`, 400, "M_UNKNOWN"},
		{"POST", "/_matrix/client/v1/login/get_token", token, `{}`, 404, "M_UNRECOGNIZED"},
		{"POST", v3 + "/register", "", `{"username": ["a"]}`, 400, "M_BAD_JSON"},
		{"POST", v3 + "/register", "", `{"auth": "dummy"}`, 400, "M_BAD_JSON"},
		{"POST", v3 + "/register", "", `{"auth": {"type": 1}}`, 400, "M_BAD_JSON"},
		{"POST", v3 + "/register?kind=guest", "", `{}`, 403, "M_FORBIDDEN"},
		{"POST", v3 + "/register?kind=robot", "", `{}`, 400, "M_INVALID_PARAM"},
		{"GET", v3 + "/account/whoami", "", nil, 401, "M_MISSING_TOKEN"},
		{"GET", v3 + "/account/whoami", "lxc_bogus", nil, 401, "M_UNKNOWN_TOKEN"},
		{"POST", v3 + "/refresh", "", `{}`, 400, "M_MISSING_PARAM"},
		{"POST", v3 + "/refresh", "", `{"refresh_token": "lxr_bogus"}`, 401, "M_UNKNOWN_TOKEN"},
		{"POST", v3 + "/delete_devices", token, `{}`, 400, "M_MISSING_PARAM"},
		{"POST", v3 + "/delete_devices", token, `{"devices": "X"}`, 400, "M_BAD_JSON"},
		{"PUT", v3 + "/devices/X", token, `{"display_name": 3}`, 400, "M_BAD_JSON"},
		{"POST", v3 + "/account/password", token, `{}`, 400, "M_MISSING_PARAM"},
		{"POST", v3 + "/account/password", token, `{"new_password":"password2","logout_devices":"yes"}`, 400, "M_BAD_JSON"},
		{"GET", v3 + "/register/available", "", nil, 400, "M_MISSING_PARAM"},
		{"GET", "/_matrix/client/v1/register/m.login.registration_token/validity", "", nil, 400, "M_MISSING_PARAM"},
	} {
		got, out := a.do(c.method, c.path, c.token, c.body)
		if got != c.status || out["errcode"] != c.code {
			t.Errorf("%s %s %v: %d %v, want %d %s", c.method, c.path, c.body, got, out, c.status, c.code)
		}
	}
}

func TestRefreshAndSoftLogout(t *testing.T) {
	a := newTestAPI(t, func(c *config.Config) { c.Auth.AccessTokenLifetime = config.Duration{Duration: time.Second} })
	a.register("alice", "password1")
	out := a.want(200, "", "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "password1", "refresh_token": true})
	token, refresh := out["access_token"].(string), out["refresh_token"].(string)
	if out["expires_in_ms"] != float64(1000) {
		t.Fatalf("login %v", out)
	}
	a.advance(1100 * time.Millisecond)
	out = a.want(401, "M_UNKNOWN_TOKEN", "GET", v3+"/account/whoami", token, nil)
	if out["soft_logout"] != true {
		t.Fatalf("expired token: %v", out)
	}
	out = a.want(200, "", "POST", v3+"/refresh", "", map[string]string{"refresh_token": refresh})
	if out["refresh_token"] == refresh || out["expires_in_ms"] != float64(1000) {
		t.Fatalf("refresh %v", out)
	}
	a.want(200, "", "GET", v3+"/account/whoami", out["access_token"].(string), nil)
	a.want(401, "M_UNKNOWN_TOKEN", "POST", v3+"/refresh", "", map[string]string{"refresh_token": refresh})
}

func TestDevices(t *testing.T) {
	a := newTestAPI(t, nil)
	token, device := a.register("alice", "password1")
	out := a.want(200, "", "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "password1", "device_id": "OTHER"})
	other := out["access_token"].(string)

	a.want(200, "", "PUT", v3+"/devices/OTHER", token, map[string]string{"display_name": "tablet"})
	a.want(200, "", "PUT", v3+"/devices/OTHER", token, struct{}{})
	a.want(404, "M_NOT_FOUND", "PUT", v3+"/devices/NOPE", token, map[string]string{"display_name": "x"})
	a.want(404, "M_NOT_FOUND", "GET", v3+"/devices/NOPE", token, nil)
	out = a.want(200, "", "GET", v3+"/devices/OTHER", token, nil)
	if out["device_id"] != "OTHER" || out["display_name"] != "tablet" || out["last_seen_ts"] == nil {
		t.Fatalf("device %v", out)
	}
	out = a.want(200, "", "GET", v3+"/devices", token, nil)
	if ds, _ := out["devices"].([]any); len(ds) != 2 {
		t.Fatalf("devices %v", out)
	}

	out = a.want(401, "", "DELETE", v3+"/devices/OTHER", token, nil)
	session := out["session"].(string)
	out = a.want(401, "M_FORBIDDEN", "DELETE", v3+"/devices/OTHER", token, map[string]any{"auth": passwordAuth(session, "alice", "wrong")})
	if out["session"] != session {
		t.Fatalf("session changed: %v", out)
	}
	a.want(200, "", "DELETE", v3+"/devices/OTHER", token, map[string]any{"auth": passwordAuth(session, "alice", "password1")})
	a.want(401, "M_UNKNOWN_TOKEN", "GET", v3+"/account/whoami", other, nil)

	out = a.want(401, "", "POST", v3+"/delete_devices", token, map[string]any{"devices": []string{device}})
	a.want(200, "", "POST", v3+"/delete_devices", token, map[string]any{"devices": []string{device},
		"auth": passwordAuth(out["session"].(string), "@alice:test.local", "password1")})
	a.want(401, "M_UNKNOWN_TOKEN", "GET", v3+"/devices", token, nil)
}

func TestProfile(t *testing.T) {
	a := newTestAPI(t, nil)
	token, _ := a.register("alice", "password1")
	bob, _ := a.register("bob", "password1")
	me := v3 + "/profile/@alice:test.local"

	a.want(200, "", "PUT", me+"/displayname", token, map[string]string{"displayname": "Alice"})
	a.want(200, "", "PUT", me+"/avatar_url", token, map[string]string{"avatar_url": "mxc://test.local/abc"})
	out := a.want(200, "", "GET", me, "", nil)
	if out["displayname"] != "Alice" || out["avatar_url"] != "mxc://test.local/abc" {
		t.Fatalf("profile %v", out)
	}
	if out := a.want(200, "", "GET", me+"/displayname", "", nil); out["displayname"] != "Alice" || len(out) != 1 {
		t.Fatalf("displayname %v", out)
	}
	a.want(200, "", "PUT", me+"/avatar_url", token, map[string]any{"avatar_url": nil})
	a.want(404, "M_NOT_FOUND", "GET", me+"/avatar_url", "", nil)
	a.want(200, "", "DELETE", me+"/displayname", token, nil)
	if out := a.want(200, "", "GET", me, "", nil); len(out) != 0 {
		t.Fatalf("cleared profile %v", out)
	}

	a.want(403, "M_FORBIDDEN", "PUT", me+"/displayname", bob, map[string]string{"displayname": "mallory"})
	a.want(401, "M_MISSING_TOKEN", "PUT", me+"/displayname", "", map[string]string{"displayname": "x"})
	a.want(400, "M_BAD_JSON", "PUT", me+"/displayname", token, map[string]int{"displayname": 5})
	a.want(400, "M_MISSING_PARAM", "PUT", me+"/displayname", token, map[string]string{"name": "x"})
	a.want(400, "M_INVALID_PARAM", "PUT", me+"/avatar_url", token, map[string]string{"avatar_url": "mxc://x/y\u0007"})
	a.want(404, "M_NOT_FOUND", "GET", v3+"/profile/@nobody:test.local", "", nil)
	a.want(404, "M_NOT_FOUND", "GET", v3+"/profile/@nobody:test.local/displayname", "", nil)
}

func TestPasswordDeactivateLogoutAll(t *testing.T) {
	a := newTestAPI(t, nil)
	token, _ := a.register("alice", "password1")
	out := a.want(200, "", "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "password1"})
	other := out["access_token"].(string)

	out = a.want(401, "", "POST", v3+"/account/password", token, map[string]any{"new_password": "password2"})
	a.want(200, "", "POST", v3+"/account/password", token, map[string]any{"new_password": "password2",
		"auth": passwordAuth(out["session"].(string), "alice", "password1")})
	a.want(200, "", "GET", v3+"/account/whoami", token, nil)
	a.want(401, "M_UNKNOWN_TOKEN", "GET", v3+"/account/whoami", other, nil)
	if out := a.want(200, "", "GET", v3+"/account/3pid", token, nil); out["threepids"] == nil {
		t.Fatalf("3pid %v", out)
	}

	out = a.want(200, "", "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "password2"})
	a.want(200, "", "POST", v3+"/logout/all", out["access_token"].(string), nil)
	a.want(401, "M_UNKNOWN_TOKEN", "GET", v3+"/account/whoami", token, nil)

	out = a.want(200, "", "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "password2"})
	token = out["access_token"].(string)
	out = a.want(401, "", "POST", v3+"/account/deactivate", token, struct{}{})
	out = a.want(200, "", "POST", v3+"/account/deactivate", token, map[string]any{"auth": passwordAuth(out["session"].(string), "alice", "password2")})
	if out["id_server_unbind_result"] != "success" {
		t.Fatalf("deactivate %v", out)
	}
	a.want(401, "M_UNKNOWN_TOKEN", "GET", v3+"/account/whoami", token, nil)
	a.want(403, "M_USER_DEACTIVATED", "POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "password2"})
}

func TestSharedSecret(t *testing.T) {
	a := newTestAPI(t, nil)
	a.want(404, "M_UNRECOGNIZED", "GET", "/_synapse/admin/v1/register", "", nil)
	a.want(404, "M_UNRECOGNIZED", "POST", "/_synapse/admin/v1/register", "", `{`)

	a = newTestAPI(t, func(c *config.Config) {
		c.Registration.SharedSecret = "s3cret"
		c.Registration.Mode = config.RegistrationClosed
	})
	a.want(403, "M_FORBIDDEN", "POST", v3+"/register", "", map[string]any{"username": "x", "password": "password1"})
	nonce := a.want(200, "", "GET", "/_synapse/admin/v1/register", "", nil)["nonce"].(string)
	out := a.want(200, "", "POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": nonce, "username": "root",
		"password": "password1", "admin": true, "mac": accounts.SharedSecretMAC("s3cret", nonce, "root", "password1", true, "")})
	if out["user_id"] != "@root:test.local" || out["access_token"] == nil || out["device_id"] == nil {
		t.Fatalf("register %v", out)
	}
	a.want(400, "M_UNKNOWN", "POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": nonce, "username": "root2",
		"password": "password1", "mac": accounts.SharedSecretMAC("s3cret", nonce, "root2", "password1", false, "")})
	nonce = a.want(200, "", "GET", "/_synapse/admin/v1/register", "", nil)["nonce"].(string)
	a.want(403, "M_FORBIDDEN", "POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": nonce, "username": "eve",
		"password": "password1", "mac": accounts.SharedSecretMAC("guess", nonce, "eve", "password1", false, "")})
}

func TestRegistrationTokenHTTP(t *testing.T) {
	a := newTestAPI(t, func(c *config.Config) { c.Registration.Mode = config.RegistrationToken })
	tok, err := a.svc.CreateRegistrationToken(context.Background(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	validity := "/_matrix/client/v1/register/m.login.registration_token/validity?token="
	if out := a.want(200, "", "GET", validity+tok, "", nil); out["valid"] != true {
		t.Fatalf("validity %v", out)
	}
	if out := a.want(200, "", "GET", validity+"nope", "", nil); out["valid"] != false {
		t.Fatalf("validity %v", out)
	}
	out := a.want(401, "", "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "password1"})
	if flows, _ := json.Marshal(out["flows"]); string(flows) != `[{"stages":["m.login.registration_token"]}]` {
		t.Fatalf("flows %s", flows)
	}
	out = a.want(401, "M_UNAUTHORIZED", "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "password1",
		"auth": map[string]string{"type": "m.login.registration_token", "token": "nope", "session": out["session"].(string)}})
	a.want(200, "", "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "password1",
		"auth": map[string]string{"type": "m.login.registration_token", "token": tok, "session": out["session"].(string)}})
}
