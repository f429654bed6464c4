package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
	"luxchat/internal/testutil/oidcop"
)

// Single sign-on through a real OpenID provider (zitadel's example OP on
// loopback), driven as a browser would: a cookie jar, the provider's login
// form, the redirects.

const appRedirect = "https://app.example.org/after-login"

type ssoEnv struct {
	t  testing.TB
	op *oidcop.OP
	s  *ts.Server
}

// newSSOEnv starts a provider and a server that logs in through it as
// "luxid" (PKCE, userinfo, only @police.etat.lu emails) and "nopkce" (the
// same provider without PKCE).
func newSSOEnv(t testing.TB, pg bool, edit func(c *config.Config)) *ssoEnv {
	op := oidcop.Start(t)
	opts := []ts.Option{ts.WithConfig(func(c *config.Config) {
		off := false
		c.OIDC.Providers = []config.OIDCProvider{
			{ID: "luxid", Name: "LuxID", Icon: "mxc://example.org/luxid", Issuer: op.Issuer, ClientID: "luxchat", ClientSecret: "s3cret",
				UserInfo: true, LocalpartTemplate: "{{ preferred_username }}", DisplayNameTemplate: "{{ given_name }} {{ family_name }}",
				Conditions: []config.ClaimCondition{{Claim: "email", Suffix: "@police.etat.lu"}}},
			{ID: "nopkce", Name: "LuxID without PKCE", Issuer: op.Issuer, ClientID: "luxchat2", ClientSecret: "s3cret2", PKCE: &off, UserInfo: true},
		}
		c.SSO.ClientWhitelist = []string{"https://app.example.org/"}
		c.Auth.GetLoginToken = true
		if edit != nil {
			edit(c)
		}
	})}
	if pg {
		opts = append(opts, ts.WithPostgres(t))
	}
	s := ts.New(t, opts...)
	op.AddClient("luxchat", "s3cret", s.URL+config.OIDCCallbackPath)
	op.AddClient("luxchat2", "s3cret2", s.URL+config.OIDCCallbackPath)
	op.SetUser(oidcop.User{Subject: "sub-anne", Username: "anne.weber", Password: "pw-anne", GivenName: "Anne", FamilyName: "Weber", Email: "anne.weber@police.etat.lu"})
	op.SetUser(oidcop.User{Subject: "sub-marc", Username: "marc", Password: "pw-marc", GivenName: "Marc", FamilyName: "Schmit", Email: "marc@example.com"})
	return &ssoEnv{t: t, op: op, s: s}
}

// with is e for a subtest: its failures are the subtest's.
func (e *ssoEnv) with(t *testing.T) *ssoEnv { c := *e; c.t = t; return &c }

// browser is a client that keeps cookies and does not follow redirects.
func newBrowser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	status   int
	location string
	body     string
	header   http.Header
}

func get(t testing.TB, b *http.Client, u string) answer {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Accept-Language", "en")
	resp, err := b.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(data), header: resp.Header}
}

// begin starts a login at provider idp and returns the provider's
// authorization URL.
func (e *ssoEnv) begin(b *http.Client, idp, redirectURL string) string {
	e.t.Helper()
	a := get(e.t, b, e.s.URL+"/_matrix/client/v3/login/sso/redirect/"+idp+"?redirectUrl="+url.QueryEscape(redirectURL))
	if a.status != http.StatusFound || !strings.HasPrefix(a.location, e.op.Issuer) {
		e.t.Fatalf("sso redirect: %d %s %s", a.status, a.location, a.body)
	}
	return a.location
}

// atProvider logs in at the provider and returns the callback URL it
// sends the browser back to.
func (e *ssoEnv) atProvider(b *http.Client, authURL, user, password string) string {
	e.t.Helper()
	cb, err := oidcop.Login(b, authURL, user, password)
	if err != nil {
		e.t.Fatal(err)
	}
	if !strings.HasPrefix(cb.String(), e.s.URL+config.OIDCCallbackPath) {
		e.t.Fatalf("provider sent the browser to %s", cb)
	}
	return cb.String()
}

// loginToken runs a whole login to a whitelisted redirect URL and returns
// the login token the redirect carries.
func (e *ssoEnv) loginToken(b *http.Client, idp, user, password string) string {
	e.t.Helper()
	cb := e.atProvider(b, e.begin(b, idp, appRedirect), user, password)
	a := get(e.t, b, cb)
	if a.status != http.StatusFound || !strings.HasPrefix(a.location, appRedirect+"?") {
		e.t.Fatalf("callback: %d %s %s", a.status, a.location, a.body)
	}
	u, _ := url.Parse(a.location)
	tok := u.Query().Get("loginToken")
	if tok == "" {
		e.t.Fatalf("no loginToken in %s", a.location)
	}
	return tok
}

// tokenLogin is POST /login with m.login.token.
func (e *ssoEnv) tokenLogin(token string) (*ts.Client, *ts.Response) {
	c := e.s.Anonymous(e.t)
	r := c.Do("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.token", "token": token})
	if r.Status == http.StatusOK {
		var res struct{ UserID, AccessToken, DeviceID string }
		var raw map[string]any
		_ = json.Unmarshal(r.Body, &raw)
		res.UserID, _ = raw["user_id"].(string)
		res.AccessToken, _ = raw["access_token"].(string)
		res.DeviceID, _ = raw["device_id"].(string)
		c.UserID, c.Token, c.DeviceID = res.UserID, res.AccessToken, res.DeviceID
	}
	return c, r
}

func (e *ssoEnv) login(idp, user, password string) *ts.Client {
	e.t.Helper()
	c, r := e.tokenLogin(e.loginToken(newBrowser(e.t), idp, user, password))
	if r.Status != http.StatusOK {
		e.t.Fatalf("token login: %d %s", r.Status, r.Body)
	}
	return c
}

// reauth completes the m.login.sso stage of a UIA session through the
// fallback page, as the user would in a browser.
func (e *ssoEnv) reauth(session, user, password string) answer {
	e.t.Helper()
	b := newBrowser(e.t)
	fb := e.s.URL + "/_matrix/client/v3/auth/m.login.sso/fallback/web?session=" + url.QueryEscape(session)
	a := get(e.t, b, fb)
	if a.status != http.StatusOK || !strings.Contains(a.body, "LuxID") || !strings.Contains(a.body, "Action to confirm: ") {
		e.t.Fatalf("fallback page: %d %s", a.status, a.body)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(a.body)
	if m == nil {
		e.t.Fatalf("no form on the fallback page: %s", a.body)
	}
	a = post(e.t, b, fb, url.Values{"idp": {"luxid"}, "csrf": {m[1]}})
	if a.status != http.StatusSeeOther {
		e.t.Fatalf("fallback start: %d %s", a.status, a.body)
	}
	auth, _ := url.Parse(a.location)
	if auth.Query().Get("prompt") != "login" {
		e.t.Fatalf("confirmation without prompt=login: %s", a.location)
	}
	return get(e.t, b, e.atProvider(b, a.location, user, password))
}

func post(t testing.TB, b *http.Client, u string, form url.Values) answer {
	t.Helper()
	resp, err := b.PostForm(u, form)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(data), header: resp.Header}
}

func uiaSession(t *testing.T, r *ts.Response, wantStage string) string {
	t.Helper()
	var body struct {
		Session string `json:"session"`
		Flows   []struct {
			Stages []string `json:"stages"`
		} `json:"flows"`
	}
	if r.Status != http.StatusUnauthorized || r.JSON(&body) != nil {
		t.Fatalf("want a UIA 401, got %d %s", r.Status, r.Body)
	}
	for _, f := range body.Flows {
		if len(f.Stages) == 1 && f.Stages[0] == wantStage {
			return body.Session
		}
	}
	t.Fatalf("no %s flow in %s", wantStage, r.Body)
	return ""
}

func TestSSOLogin(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) { testSSOLogin(t, pg) })
	}
}

func testSSOLogin(t *testing.T, pg bool) {
	e := newSSOEnv(t, pg, nil)
	server := e.s.Config.ServerName

	t.Run("login flows", func(t *testing.T) {
		e := e.with(t)
		var flows struct {
			Flows []struct {
				Type              string           `json:"type"`
				IdentityProviders []map[string]any `json:"identity_providers"`
				GetLoginToken     bool             `json:"get_login_token"`
			} `json:"flows"`
		}
		e.s.Anonymous(t).MustDo("GET", "/_matrix/client/v3/login", nil, &flows)
		var types []string
		for _, f := range flows.Flows {
			types = append(types, f.Type)
			if f.Type == "m.login.sso" && (len(f.IdentityProviders) != 2 || f.IdentityProviders[0]["id"] != "luxid" || f.IdentityProviders[0]["icon"] != "mxc://example.org/luxid") {
				t.Fatalf("identity providers: %v", f.IdentityProviders)
			}
			if f.Type == "m.login.token" && !f.GetLoginToken {
				t.Fatal("m.login.token without get_login_token")
			}
		}
		if strings.Join(types, ",") != "m.login.password,m.login.sso,m.login.token" {
			t.Fatalf("flows %v", types)
		}
	})

	var anne *ts.Client
	t.Run("full login syncs", func(t *testing.T) {
		e := e.with(t)
		anne = e.login("luxid", "anne.weber", "pw-anne")
		if anne.UserID != "@anne.weber:"+server {
			t.Fatalf("user %s", anne.UserID)
		}
		anne.Sync("")
		var prof map[string]any
		anne.MustDo("GET", "/_matrix/client/v3/profile/"+esc(anne.UserID), nil, &prof)
		if prof["displayname"] != "Anne Weber" {
			t.Fatalf("profile %v", prof)
		}
		var pids struct {
			Threepids []map[string]any `json:"threepids"`
		}
		anne.MustDo("GET", "/_matrix/client/v3/account/3pid", nil, &pids)
		if len(pids.Threepids) != 1 || pids.Threepids[0]["address"] != "anne.weber@police.etat.lu" {
			t.Fatalf("3pids %v", pids.Threepids)
		}
	})

	t.Run("second login and changed claims reach the same account", func(t *testing.T) {
		e := e.with(t)
		if again := e.login("luxid", "anne.weber", "pw-anne"); again.UserID != anne.UserID || again.DeviceID == anne.DeviceID {
			t.Fatalf("second login: %s %s", again.UserID, again.DeviceID)
		}
		e.op.SetUser(oidcop.User{Subject: "sub-anne", Username: "anne.muller", Password: "pw-anne", GivenName: "Anne", FamilyName: "Muller", Email: "anne.muller@police.etat.lu"})
		if c := e.login("luxid", "anne.muller", "pw-anne"); c.UserID != anne.UserID {
			t.Fatalf("changed email and name made %s", c.UserID)
		}
	})

	t.Run("a rotated provider key is fetched", func(t *testing.T) {
		e := e.with(t)
		e.op.RotateKey()
		if c := e.login("luxid", "anne.muller", "pw-anne"); c.UserID != anne.UserID {
			t.Fatalf("after rotation: %s", c.UserID)
		}
	})

	t.Run("claim conditions refuse others", func(t *testing.T) {
		e := e.with(t)
		b := newBrowser(t)
		a := get(t, b, e.atProvider(b, e.begin(b, "luxid", appRedirect), "marc", "pw-marc"))
		if a.status != http.StatusForbidden || !strings.Contains(a.body, "not allowed to use this server") || a.location != "" {
			t.Fatalf("refused user: %d %s", a.status, a.body)
		}
		var avail map[string]any
		e.s.Anonymous(t).MustDo("GET", "/_matrix/client/v3/register/available?username=marc", nil, &avail)
		// The same person through the provider without conditions is let in.
		if c := e.login("nopkce", "marc", "pw-marc"); c.UserID != "@marc:"+server {
			t.Fatalf("unconditioned provider: %s", c.UserID)
		}
	})

	t.Run("a new subject never takes over an account", func(t *testing.T) {
		e := e.with(t)
		// Another person at the provider with anne's former name and email.
		e.op.SetUser(oidcop.User{Subject: "sub-impostor", Username: "anne.weber", Password: "pw-imp", GivenName: "Anne", FamilyName: "Weber", Email: "anne.weber@police.etat.lu"})
		c := e.login("luxid", "anne.weber", "pw-imp")
		if c.UserID == anne.UserID || c.UserID != "@anne.weber2:"+server {
			t.Fatalf("impostor got %s (anne is %s)", c.UserID, anne.UserID)
		}
	})

	t.Run("login tokens are single use", func(t *testing.T) {
		e := e.with(t)
		tok := e.loginToken(newBrowser(t), "luxid", "anne.muller", "pw-anne")
		if _, r := e.tokenLogin(tok); r.Status != http.StatusOK {
			t.Fatalf("first use: %d %s", r.Status, r.Body)
		}
		if _, r := e.tokenLogin(tok); r.Status != http.StatusForbidden || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("replay: %d %s", r.Status, r.Body)
		}
		if _, r := e.tokenLogin("lxl_forged"); r.Status != http.StatusForbidden {
			t.Fatalf("forged: %d %s", r.Status, r.Body)
		}
	})

	t.Run("state is single use, bound to the browser, and checked", func(t *testing.T) {
		e := e.with(t)
		b := newBrowser(t)
		cb := e.atProvider(b, e.begin(b, "luxid", appRedirect), "anne.muller", "pw-anne")
		// Another browser (an attacker's link) is refused: no cookie.
		if a := get(t, newBrowser(t), cb); a.status != http.StatusBadRequest || a.location != "" || !strings.Contains(a.body, "another browser") {
			t.Fatalf("other browser: %d %s", a.status, a.body)
		}
		// That spent the state: the right browser cannot use it either.
		if a := get(t, b, cb); a.status != http.StatusBadRequest {
			t.Fatalf("after a refused use: %d %s", a.status, a.body)
		}
		cb = e.atProvider(b, e.begin(b, "luxid", appRedirect), "anne.muller", "pw-anne")
		u, _ := url.Parse(cb)
		q := u.Query()
		q.Set("state", "not-the-state")
		u.RawQuery = q.Encode()
		if a := get(t, b, u.String()); a.status != http.StatusBadRequest {
			t.Fatalf("wrong state: %d %s", a.status, a.body)
		}
		if a := get(t, b, cb); a.status != http.StatusFound {
			t.Fatalf("right state: %d %s", a.status, a.body)
		}
		if a := get(t, b, cb); a.status != http.StatusBadRequest {
			t.Fatalf("replayed callback: %d %s", a.status, a.body)
		}
	})

	// A code of one flow delivered with the state of another (code
	// injection): the provider refuses the PKCE verifier; without PKCE, the
	// ID token's nonce is not the flow's.
	swapCode := func(t *testing.T, idp, want string) {
		e := e.with(t)
		b := newBrowser(t)
		cbA := e.atProvider(b, e.begin(b, idp, appRedirect), "anne.muller", "pw-anne")
		cbB := e.atProvider(b, e.begin(b, idp, appRedirect), "anne.muller", "pw-anne")
		ua, _ := url.Parse(cbA)
		ub, _ := url.Parse(cbB)
		q := ub.Query()
		q.Set("code", ua.Query().Get("code"))
		ub.RawQuery = q.Encode()
		a := get(t, b, ub.String())
		if a.status != http.StatusForbidden || a.location != "" || !strings.Contains(a.body, want) {
			t.Fatalf("swapped code: %d %s", a.status, a.body)
		}
	}
	t.Run("PKCE mismatch", func(t *testing.T) { swapCode(t, "luxid", "invalid_grant") })
	t.Run("nonce mismatch", func(t *testing.T) { swapCode(t, "nopkce", "invalid_id_token") })

	t.Run("provider error", func(t *testing.T) {
		e := e.with(t)
		b := newBrowser(t)
		auth, _ := url.Parse(e.begin(b, "luxid", appRedirect))
		cb := e.s.URL + config.OIDCCallbackPath + "?state=" + url.QueryEscape(auth.Query().Get("state")) + "&error=access_denied&error_description=%3Cscript%3E"
		a := get(t, b, cb)
		if a.status != http.StatusForbidden || !strings.Contains(a.body, "(access_denied)") || strings.Contains(a.body, "<script>") {
			t.Fatalf("provider error: %d %s", a.status, a.body)
		}
	})

	t.Run("redirect URLs", func(t *testing.T) {
		e := e.with(t)
		b := newBrowser(t)
		// Not on the whitelist: a page asks, never a silent redirect.
		cb := e.atProvider(b, e.begin(b, "luxid", "https://evil.example/steal"), "anne.muller", "pw-anne")
		a := get(t, b, cb)
		if a.status != http.StatusOK || a.location != "" || !strings.Contains(a.body, "Continue to evil.example?") ||
			!strings.Contains(a.body, `href="https://evil.example/steal?loginToken=lxl_`) {
			t.Fatalf("confirmation page: %d %s %s", a.status, a.location, a.body)
		}
		if csp := a.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Fatalf("CSP %q", csp)
		}
		for _, bad := range []string{"", "javascript:alert(1)", "data:text/html,hi", "/relative", "https:///nohost"} {
			a := get(t, b, e.s.URL+"/_matrix/client/v3/login/sso/redirect/luxid?redirectUrl="+url.QueryEscape(bad))
			if a.status != http.StatusBadRequest || a.location != "" {
				t.Fatalf("redirectUrl %q: %d %s", bad, a.status, a.location)
			}
		}
		if a := get(t, b, e.s.URL+"/_matrix/client/v3/login/sso/redirect/nosuch?redirectUrl="+url.QueryEscape(appRedirect)); a.status != http.StatusNotFound {
			t.Fatalf("unknown idp: %d", a.status)
		}
		// Without an idp, two providers: a page to choose, in French here.
		req, _ := http.NewRequest("GET", e.s.URL+"/_matrix/client/r0/login/sso/redirect?redirectUrl="+url.QueryEscape(appRedirect), nil)
		req.Header.Set("Accept-Language", "fr-LU,fr;q=0.9,en;q=0.5")
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Choisissez comment vous connecter") || !strings.Contains(string(body), "/login/sso/redirect/nopkce?redirectUrl=") {
			t.Fatalf("chooser: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("get_token behind UIA through the fallback page", func(t *testing.T) {
		e := e.with(t)
		c := e.login("luxid", "anne.muller", "pw-anne")
		r := c.Do("POST", "/_matrix/client/v1/login/get_token", map[string]any{})
		session := uiaSession(t, r, "m.login.sso")
		// Someone else's login does not complete anne's session.
		e.op.SetUser(oidcop.User{Subject: "sub-marc", Username: "marc", Password: "pw-marc", GivenName: "Marc", FamilyName: "Schmit", Email: "marc@police.etat.lu"})
		if a := e.reauth(session, "marc", "pw-marc"); a.status != http.StatusForbidden {
			t.Fatalf("other user's reauth: %d %s", a.status, a.body)
		}
		if r := c.Do("POST", "/_matrix/client/v1/login/get_token", map[string]any{"auth": map[string]any{"session": session}}); r.Status != http.StatusUnauthorized {
			t.Fatalf("uncompleted session: %d %s", r.Status, r.Body)
		}
		// Only a click on the fallback page starts the confirmation: a
		// link or a form from another site (no cookie, or no matching
		// value) does not.
		fb := e.s.URL + "/_matrix/client/v3/auth/m.login.sso/fallback/web?session=" + url.QueryEscape(session)
		if a := get(t, newBrowser(t), fb+"&idp=luxid"); a.status != http.StatusOK || a.location != "" {
			t.Fatalf("GET with idp: %d %s", a.status, a.location)
		}
		if a := post(t, newBrowser(t), fb, url.Values{"idp": {"luxid"}, "csrf": {"guess"}}); a.status != http.StatusForbidden || a.location != "" {
			t.Fatalf("forged form: %d %s", a.status, a.location)
		}
		b := newBrowser(t)
		get(t, b, fb)
		if a := post(t, b, fb, url.Values{"idp": {"luxid"}, "csrf": {"guess"}}); a.status != http.StatusForbidden {
			t.Fatalf("wrong value with the cookie: %d %s", a.status, a.location)
		}
		if a := e.reauth(session, "anne.muller", "pw-anne"); a.status != http.StatusOK || !strings.Contains(a.body, "authDone") {
			t.Fatalf("reauth: %d %s", a.status, a.body)
		}
		var res struct {
			LoginToken  string `json:"login_token"`
			ExpiresInMS int64  `json:"expires_in_ms"`
		}
		c.MustDo("POST", "/_matrix/client/v1/login/get_token", map[string]any{"auth": map[string]any{"session": session}}, &res)
		if res.ExpiresInMS <= 0 || res.ExpiresInMS > 120000 {
			t.Fatalf("expires_in_ms %d", res.ExpiresInMS)
		}
		if other, r := e.tokenLogin(res.LoginToken); r.Status != http.StatusOK || other.UserID != anne.UserID {
			t.Fatalf("token login: %d %s", r.Status, r.Body)
		}
		var caps struct {
			Capabilities map[string]map[string]any `json:"capabilities"`
		}
		c.MustDo("GET", "/_matrix/client/v3/capabilities", nil, &caps)
		if caps.Capabilities["m.get_login_token"]["enabled"] != true {
			t.Fatalf("capabilities %v", caps.Capabilities)
		}
	})

	t.Run("deactivated users are refused", func(t *testing.T) {
		e := e.with(t)
		c := e.login("luxid", "anne.muller", "pw-anne")
		tok := e.loginToken(newBrowser(t), "luxid", "anne.muller", "pw-anne")
		r := c.Do("POST", "/_matrix/client/v3/account/deactivate", map[string]any{})
		session := uiaSession(t, r, "m.login.sso")
		if a := e.reauth(session, "anne.muller", "pw-anne"); a.status != http.StatusOK {
			t.Fatalf("reauth: %d %s", a.status, a.body)
		}
		c.MustDo("POST", "/_matrix/client/v3/account/deactivate", map[string]any{"auth": map[string]any{"session": session}}, nil)
		if _, r := e.tokenLogin(tok); r.Status != http.StatusForbidden || r.ErrCode() != "M_USER_DEACTIVATED" {
			t.Fatalf("token of a deactivated user: %d %s", r.Status, r.Body)
		}
		b := newBrowser(t)
		a := get(t, b, e.atProvider(b, e.begin(b, "luxid", appRedirect), "anne.muller", "pw-anne"))
		if a.status != http.StatusForbidden || !strings.Contains(a.body, "deactivated") {
			t.Fatalf("login of a deactivated user: %d %s", a.status, a.body)
		}
	})
}

func TestSSOPasswordLoginOff(t *testing.T) {
	e := newSSOEnv(t, false, func(c *config.Config) { c.Auth.PasswordLogin = false })
	var flows struct {
		Flows []struct {
			Type string `json:"type"`
		} `json:"flows"`
	}
	e.s.Anonymous(t).MustDo("GET", "/_matrix/client/v3/login", nil, &flows)
	for _, f := range flows.Flows {
		if f.Type == "m.login.password" {
			t.Fatal("m.login.password listed with password login off")
		}
	}
	// An account with a password exists (from before); the password no
	// longer logs it in.
	if _, err := e.s.Accounts.CreateUser(t.Context(), "legacy", "a good password", false); err != nil {
		t.Fatal(err)
	}
	r := e.s.Anonymous(t).Do("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "legacy"}, "password": "a good password"})
	if r.Status == http.StatusOK {
		t.Fatalf("password login: %d %s", r.Status, r.Body)
	}
	// Without an access token, single sign-on cannot confirm anything (a
	// victim's browser could complete a stranger's session).
	anon := e.s.Anonymous(t).Do("POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "another good one"})
	if strings.Contains(string(anon.Body), "m.login.sso") {
		t.Fatalf("anonymous session offered m.login.sso: %s", anon.Body)
	}
	// UIA offers only single sign-on: deleting a device goes through it.
	c := e.login("luxid", "anne.weber", "pw-anne")
	other := e.login("luxid", "anne.weber", "pw-anne")
	r = c.Do("POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{other.DeviceID}})
	session := uiaSession(t, r, "m.login.sso")
	if strings.Contains(string(r.Body), "m.login.password") {
		t.Fatalf("password stage offered: %s", r.Body)
	}
	pw := c.Do("POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{other.DeviceID},
		"auth": map[string]any{"session": session, "type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": c.UserID}, "password": "x"}})
	if pw.Status == http.StatusOK {
		t.Fatalf("password stage accepted: %s", pw.Body)
	}
	if a := e.reauth(session, "anne.weber", "pw-anne"); a.status != http.StatusOK {
		t.Fatalf("reauth: %d %s", a.status, a.body)
	}
	c.MustDo("POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{other.DeviceID}, "auth": map[string]any{"session": session, "type": "m.login.sso"}}, nil)
	if r := other.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("deleted device still works: %d", r.Status)
	}
}

func TestSSOExpiredLoginToken(t *testing.T) {
	e := newSSOEnv(t, false, func(c *config.Config) { c.Auth.LoginTokenLifetime = config.Duration{Duration: time.Nanosecond} })
	tok := e.loginToken(newBrowser(t), "luxid", "anne.weber", "pw-anne")
	time.Sleep(2 * time.Millisecond) // past a millisecond-resolution expiry
	if _, r := e.tokenLogin(tok); r.Status != http.StatusForbidden || r.ErrCode() != "M_FORBIDDEN" {
		t.Fatalf("expired token: %d %s", r.Status, r.Body)
	}
}

func TestSSOProviderDown(t *testing.T) {
	ln := silentListener(t, "127.0.0.1:0") // a provider that accepts connections and never answers
	s := ts.New(t, ts.WithConfig(func(c *config.Config) {
		c.OIDC.Providers = []config.OIDCProvider{{ID: "slow", Name: "Slow ID", Issuer: "http://" + ln.Addr().String() + "/", ClientID: "x", ClientSecret: "y",
			Timeout: config.Duration{Duration: 300 * time.Millisecond}}}
	}))
	b := newBrowser(t) // its 30 s timeout fails the test if the server hangs
	a := get(t, b, s.URL+"/_matrix/client/v3/login/sso/redirect?redirectUrl="+url.QueryEscape(appRedirect))
	if a.status != http.StatusBadGateway || !strings.Contains(a.body, "Slow ID cannot be reached") || a.location != "" {
		t.Fatalf("provider down: %d %s", a.status, a.body)
	}
	// A second try while the provider is still down fails at once (the
	// failure is remembered a few seconds), with the same page.
	if a := get(t, b, s.URL+"/_matrix/client/v3/login/sso/redirect?redirectUrl="+url.QueryEscape(appRedirect)); a.status != http.StatusBadGateway {
		t.Fatalf("second try: %d %s", a.status, a.body)
	}
	// The server itself keeps answering.
	s.Anonymous(t).MustDo("GET", "/_matrix/client/v3/login", nil, nil)
}

// With allow_existing_users, a first login links the account whose
// localpart the template gives, once: a second subject with the same name
// gets an account of its own, and a deactivated account is never linked.
func TestSSOAllowExistingUsers(t *testing.T) {
	e := newSSOEnv(t, false, func(c *config.Config) {
		for i := range c.OIDC.Providers {
			c.OIDC.Providers[i].AllowExistingUsers = true
		}
	})
	server := e.s.Config.ServerName
	ctx := t.Context()
	anne, err := e.s.Accounts.CreateUser(ctx, "anne.weber", "a good password", false)
	if err != nil {
		t.Fatal(err)
	}
	if c := e.login("luxid", "anne.weber", "pw-anne"); c.UserID != anne {
		t.Fatalf("existing account not linked: %s", c.UserID)
	}
	// (The provider's login names must stay unique: anne has a new one.)
	e.op.SetUser(oidcop.User{Subject: "sub-anne", Username: "anne.renamed", Password: "pw-anne", Email: "anne.weber@police.etat.lu"})
	e.op.SetUser(oidcop.User{Subject: "sub-other-anne", Username: "anne.weber", Password: "pw-2", Email: "anne.weber@police.etat.lu"})
	if c := e.login("luxid", "anne.weber", "pw-2"); c.UserID != "@anne.weber2:"+server {
		t.Fatalf("second subject got %s", c.UserID)
	}
	marc, err := e.s.Accounts.CreateUser(ctx, "marc", "a good password", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.Accounts.DeactivateUser(ctx, marc); err != nil {
		t.Fatal(err)
	}
	if c := e.login("nopkce", "marc", "pw-marc"); c.UserID != "@marc2:"+server {
		t.Fatalf("deactivated account's name gave %s", c.UserID)
	}
}
