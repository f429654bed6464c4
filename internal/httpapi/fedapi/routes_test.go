package fedapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"luxchat/internal/config"
	"luxchat/internal/directory"
	"luxchat/internal/e2ee"
	"luxchat/internal/federation"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/signing"
	"luxchat/internal/rooms"
)

// watchedBody records whether anything read it.
type watchedBody struct {
	io.Reader
	read bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.read = true
	return b.Reader.Read(p)
}

// TestServerRoutesRefuseUnsigned sends every server-signed route of the
// table a request without a signature, and one signed by a server we do
// not federate with: the router refuses both before the handler runs (the
// services here are empty and would fail it) and before reading the body.
func TestServerRoutesRefuseUnsigned(t *testing.T) {
	cfg := config.Default()
	cfg.ServerName = "self.test"
	policy, err := federation.NewPolicy(cfg.ServerName, []string{"friend.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Non-nil services, so that every optional group is in the table.
	a := &API{Config: cfg, Policy: policy, Rooms: &rooms.Service{}, Directory: &directory.Service{}, E2EE: &e2ee.Service{}}
	rt := httputil.NewRouter(nil, cfg.Limits.MaxRequestBytes, slog.New(slog.DiscardHandler))
	rt.Servers = a
	Register(rt, a)

	key, err := signing.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	vars := regexp.MustCompile(`\{[^}]*\}`)
	var open []string
	signed := 0
	for _, r := range a.routes() {
		if r.auth != server {
			open = append(open, r.pattern)
			continue
		}
		signed++
		method, path, _ := strings.Cut(r.pattern, " ")
		path = vars.ReplaceAllString(path, "x")
		stranger, err := signing.SignRequest(key, "stranger.test", cfg.ServerName, method, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			auth, errcode string
			status        int
		}{
			{"", "M_UNAUTHORIZED", http.StatusUnauthorized},
			{"Bearer some-access-token", "M_UNAUTHORIZED", http.StatusUnauthorized},
			{stranger.String(), "M_FORBIDDEN", http.StatusForbidden},
		} {
			body := &watchedBody{Reader: strings.NewReader(`{}`)}
			req := httptest.NewRequest(method, path, body)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			rt.ServeHTTP(w, req)
			var got map[string]any
			_ = json.Unmarshal(w.Body.Bytes(), &got)
			if w.Code != tc.status || got["errcode"] != tc.errcode {
				t.Errorf("%s with %.20q: %d %s, want %d %s", r.pattern, tc.auth, w.Code, w.Body, tc.status, tc.errcode)
			}
			if body.read {
				t.Errorf("%s with %.20q: the body was read", r.pattern, tc.auth)
			}
		}
	}
	if signed < 20 {
		t.Errorf("only %d server-signed routes in the table", signed)
	}
	// The few open routes are those the spec leaves unauthenticated.
	want := []string{
		"GET " + fed + "/v1/version",
		"GET /_matrix/key/v2/server",
		"POST /_matrix/key/v2/query",
		"GET /_matrix/key/v2/query/{serverName}",
		"GET " + fed + "/v1/openid/userinfo",
	}
	slices.Sort(open)
	slices.Sort(want)
	if !slices.Equal(open, want) {
		t.Errorf("routes without a server signature: %q, want %q", open, want)
	}
}
