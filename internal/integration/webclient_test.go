package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
	"luxchat/internal/webclient"
)

// fetch GETs path from the server without following redirects.
func fetch(t *testing.T, s *ts.Server, method, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func isUnrecognized(body string) bool {
	var e struct{ Errcode string }
	return json.Unmarshal([]byte(body), &e) == nil && e.Errcode == "M_UNRECOGNIZED"
}

// TestWebClientServed checks what a browser gets from luxchat serve: the
// embedded client at /, its client routes, its assets with their cache
// lifetimes, under a strict CSP; and that the APIs keep their paths
// (unknown API paths stay JSON errors, /health and /.well-known work).
func TestWebClientServed(t *testing.T) {
	s := ts.New(t)
	res, body := fetch(t, s, "GET", "/")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, `<div id="app">`) {
		t.Fatalf("GET /: %d %s\n%s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	if res.Header.Get("Content-Security-Policy") != webclient.CSP || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("GET /: headers %v", res.Header)
	}
	// Every asset index.html names is served, immutable.
	for _, part := range strings.Split(body, `="./assets/`)[1:] {
		name := part[:strings.IndexByte(part, '"')]
		res, _ := fetch(t, s, "GET", "/assets/"+name)
		if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("GET /assets/%s: %d, Cache-Control %q", name, res.StatusCode, res.Header.Get("Cache-Control"))
		}
	}
	// A client route is the app.
	if res, b := fetch(t, s, "GET", "/room/!abc:localhost"); res.StatusCode != 200 || b != body {
		t.Errorf("GET /room/...: %d, not index.html", res.StatusCode)
	}
	// The APIs keep theirs.
	for _, p := range []string{"/_matrix/client/v3/nope", "/_matrix/nope", "/_synapse/nope", "/_luxchat/nope", "/.well-known/matrix/nope", "/_matrix", "/assets/gone-1.js"} {
		res, b := fetch(t, s, "GET", p)
		if res.StatusCode != 404 || !isUnrecognized(b) {
			t.Errorf("GET %s: %d %.100s, want 404 M_UNRECOGNIZED", p, res.StatusCode, b)
		}
	}
	if res, b := fetch(t, s, "POST", "/room/x"); res.StatusCode != 404 || !isUnrecognized(b) {
		t.Errorf("POST /room/x: %d %.100s, want 404 M_UNRECOGNIZED", res.StatusCode, b)
	}
	for _, p := range []string{"/health", "/.well-known/matrix/client", "/_matrix/client/versions"} {
		if res, b := fetch(t, s, "GET", p); res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET %s: %d %s %.100s", p, res.StatusCode, res.Header.Get("Content-Type"), b)
		}
	}
}

// TestWebClientConfig: web.enabled false leaves the APIs alone at /;
// web.path moves the client.
func TestWebClientConfig(t *testing.T) {
	off := ts.New(t, ts.WithConfig(func(c *config.Config) { c.Web.Enabled = false }))
	if res, b := fetch(t, off, "GET", "/"); res.StatusCode != 404 || !isUnrecognized(b) {
		t.Errorf("web.enabled false: GET / %d %.100s", res.StatusCode, b)
	}
	moved := ts.New(t, ts.WithConfig(func(c *config.Config) { c.Web.Path = "/chat/" }))
	if res, b := fetch(t, moved, "GET", "/chat/room/x"); res.StatusCode != 200 || !strings.Contains(b, `<base href="/chat/" />`) {
		t.Errorf("web.path /chat/: GET /chat/room/x %d", res.StatusCode)
	}
	if res, _ := fetch(t, moved, "GET", "/chat"); res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/chat/" {
		t.Errorf("web.path /chat/: GET /chat %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if res, b := fetch(t, moved, "GET", "/"); res.StatusCode != 404 || !isUnrecognized(b) {
		t.Errorf("web.path /chat/: GET / %d %.100s", res.StatusCode, b)
	}
	if _, err := config.Parse([]byte("web:\n  path: /_matrix/client/\n")); err == nil {
		t.Error("web.path under /_matrix/ accepted")
	}
}

// TestWebClientSSOBrowser logs in to the embedded web client with single
// sign-on in headless Chromium (Debian's chromium, playwright-core from
// e2e/js): the login page shows a button per identity provider of GET
// /login, the legacy SSO redirect flow brings a login token back to the
// client, which logs in and shows the room list, without the
// confirmation page other clients get (the server trusts its own client).
func TestWebClientSSOBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser: not under -short")
	}
	dir, node, chromium := browserTools(t, "the web client's single sign-on NOT tested")
	for _, pg := range []bool{false, true} {
		name := map[bool]string{false: "sqlite", true: "postgres"}[pg]
		t.Run(name, func(t *testing.T) {
			e := newSSOEnv(t, pg, nil)
			cmd := exec.Command(node, filepath.Join(dir, "lib", "webclient-sso.js"))
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "LUXCHAT_URL="+e.s.URL, "SSO_IDP_NAME=LuxID", "SSO_USER=anne.weber", "SSO_PASSWORD=pw-anne", "CHROMIUM="+chromium)
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("browser: %v\n%s\n%s", err, stderr.String(), out.String())
			}
			var res struct {
				UserID      string   `json:"userId"`
				ConfirmPage bool     `json:"confirmPage"`
				Buttons     []string `json:"buttons"`
				Problems    []string `json:"problems"`
			}
			lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
			if err := json.Unmarshal(lines[len(lines)-1], &res); err != nil {
				t.Fatalf("browser output %q: %v", out.String(), err)
			}
			if want := []string{"Weiter mit LuxID", "Weiter mit LuxID without PKCE"}; !slices.Equal(res.Buttons, want) {
				t.Errorf("SSO buttons %q, want %q", res.Buttons, want)
			}
			if res.ConfirmPage || res.UserID != "@anne.weber:localhost" || len(res.Problems) > 0 {
				t.Fatalf("browser: %+v", res)
			}
		})
	}
}
