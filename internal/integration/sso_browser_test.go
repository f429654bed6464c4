package integration

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"luxchat/internal/config"
)

// TestSSOBrowser logs in through single sign-on in headless Chromium
// (Debian's chromium, driven by playwright-core from e2e/js): the
// provider chooser in French under the strict CSP, a whitelisted client,
// the confirmation page of another client, and the m.login.sso fallback
// in a popup whose script tells its opener. matrix-js-sdk makes the SSO
// URLs and logs in with the first token (its access token syncs here);
// the second logs in here.
func TestSSOBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser: not under -short")
	}
	dir, node, chromium := browserTools(t, "single sign-on NOT tested in a browser")
	// The client's own pages, where the browser is sent with its token.
	client := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<!DOCTYPE html><title>client</title><p>client"))
	}))
	defer client.Close()
	app, other := client.URL+"/whitelisted/cb", client.URL+"/other/cb"
	e := newSSOEnv(t, false, func(c *config.Config) {
		c.SSO.ClientWhitelist = append(c.SSO.ClientWhitelist, client.URL+"/whitelisted/")
	})

	anne := e.login("luxid", "anne.weber", "pw-anne")
	second := e.login("luxid", "anne.weber", "pw-anne")
	r := anne.Do("POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{second.DeviceID}})
	session := uiaSession(t, r, "m.login.sso")

	cmd := exec.Command(node, filepath.Join(dir, "lib", "sso-browser.js"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LUXCHAT_URL="+e.s.URL, "SSO_APP_REDIRECT="+app, "SSO_OTHER_REDIRECT="+other, "SSO_OPENER="+client.URL+"/opener",
		"SSO_USER=anne.weber", "SSO_PASSWORD=pw-anne", "SSO_UIA_SESSION="+session, "CHROMIUM="+chromium)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser: %v\n%s\n%s", err, stderr.String(), out.String())
	}
	var res struct {
		UserID        string   `json:"userId"`
		AccessToken   string   `json:"accessToken"`
		Confirmed     string   `json:"confirmed"`
		ChooserStyled bool     `json:"chooserStyled"`
		AuthDone      bool     `json:"authDone"`
		CSPViolations []string `json:"cspViolations"`
	}
	// The last line: matrix-js-sdk logs its requests before it.
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	if err := json.Unmarshal(lines[len(lines)-1], &res); err != nil {
		t.Fatalf("browser output %q: %v", out.String(), err)
	}
	if !res.ChooserStyled || !res.AuthDone || len(res.CSPViolations) > 0 {
		t.Fatalf("browser: %+v", res)
	}
	if res.UserID != anne.UserID {
		t.Fatalf("matrix-js-sdk logged in as %q", res.UserID)
	}
	js := e.s.Anonymous(t)
	js.Token = res.AccessToken
	js.Sync("")
	if c, r := e.tokenLogin(res.Confirmed); r.Status != http.StatusOK || c.UserID != anne.UserID {
		t.Fatalf("token from the confirmation page: %d %s", r.Status, r.Body)
	}
	anne.MustDo("POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{second.DeviceID}, "auth": map[string]any{"session": session}}, nil)
}
