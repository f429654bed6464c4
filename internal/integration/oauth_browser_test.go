package integration

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// TestOAuthBrowser logs in through the OAuth 2.0 API with matrix-js-sdk's
// OAuth helpers (auth_metadata discovery, registerClient,
// generateAuthorizationCodeGrantUrl, completeAuthorizationCodeGrant, its
// TokenRefresher on an expired token, logout by revocation), the user's
// part in headless Chromium: the login and consent pages in German under
// the strict CSP.
func TestOAuthBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser: not under -short")
	}
	dir, node, chromium := browserTools(t, "OAuth 2.0 API NOT tested with matrix-js-sdk")
	forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
		client := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<!DOCTYPE html><title>client</title><p>client"))
		}))
		defer client.Close()
		anne := s.Register(t, "anne")
		local := strings.TrimPrefix(strings.Split(anne.UserID, ":")[0], "@")
		cmd := exec.Command(node, filepath.Join(dir, "lib", "oauth-browser.js"))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LUXCHAT_URL="+s.URL, "OAUTH_CALLBACK="+client.URL+"/callback", "OAUTH_USER="+local,
			"OAUTH_PASSWORD="+oauthPassword, "CHROMIUM="+chromium)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("matrix-js-sdk: %v\n%s\n%s", err, stderr.String(), out.String())
		}
		var res struct {
			UserID, DeviceID, AccessToken, RefreshedAccessToken, LoginTitle, ConsentTitle string
			Synced, LoggedOut                                                             bool
			CSPViolations                                                                 []string
		}
		lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
		if err := json.Unmarshal(lines[len(lines)-1], &res); err != nil {
			t.Fatalf("output %q: %v", out.String(), err)
		}
		if res.UserID != anne.UserID || !res.Synced || !res.LoggedOut || len(res.CSPViolations) > 0 ||
			res.LoginTitle != "Bei "+s.Config.ServerName+" anmelden" || res.ConsentTitle != "luxchat E2E-Test erlauben, Ihr Konto zu verwenden?" {
			t.Fatalf("matrix-js-sdk: %+v", res)
		}
		for _, tok := range []string{res.AccessToken, res.RefreshedAccessToken} {
			if tok == "" {
				t.Fatalf("tokens: %+v", res)
			}
			if r := whoami(t, s, tok); r.Status != http.StatusUnauthorized {
				t.Fatalf("token after refresh and logout: %d %s", r.Status, r.Body)
			}
		}
	}, ts.WithConfig(func(c *config.Config) {
		c.OAuth.Enabled = true
		c.Auth.AccessTokenLifetime = config.Duration{Duration: 2 * time.Second}
	}))
}
