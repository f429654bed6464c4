package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/e2ee/e2eetest"
	ts "luxchat/internal/testserver"
	"luxchat/internal/testutil/oidcop"
)

// TestSSORegisterHint: legacy SSO's action=register reaches a provider
// that advertises prompt=create as prompt=create, and no other; the login
// then completes as any other.
func TestSSORegisterHint(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			withCreate, plain := oidcop.Start(t), oidcop.Start(t)
			withCreate.AdvertisePrompts("none", "login", "create")
			opts := []ts.Option{ts.WithConfig(func(c *config.Config) {
				c.OIDC.Providers = []config.OIDCProvider{
					{ID: "luxid", Name: "LuxID", Issuer: withCreate.Issuer, ClientID: "luxchat", ClientSecret: "s3cret", UserInfo: true, LocalpartTemplate: "{{ preferred_username }}"},
					{ID: "other", Name: "Other", Issuer: plain.Issuer, ClientID: "luxchat", ClientSecret: "s3cret"},
				}
				c.SSO.ClientWhitelist = []string{"https://app.example.org/"}
			})}
			if pg {
				opts = append(opts, ts.WithPostgres(t))
			}
			s := ts.New(t, opts...)
			for _, op := range []*oidcop.OP{withCreate, plain} {
				op.AddClient("luxchat", "s3cret", s.URL+config.OIDCCallbackPath)
				op.SetUser(oidcop.User{Subject: "sub-lea", Username: "lea", Password: "pw-lea", GivenName: "Léa", FamilyName: "Hoffmann", Email: "lea@example.lu"})
			}
			redirect := func(b *http.Client, idp, action string) *url.URL {
				t.Helper()
				u := s.URL + "/_matrix/client/v3/login/sso/redirect/" + idp + "?redirectUrl=" + url.QueryEscape(appRedirect)
				if action != "" {
					u += "&action=" + action
				}
				a := get(t, b, u)
				if a.status != http.StatusFound {
					t.Fatalf("%s action=%s: %d %s", idp, action, a.status, a.body)
				}
				loc, _ := url.Parse(a.location)
				return loc
			}
			for _, c := range []struct {
				idp, action, prompt string
			}{
				{"luxid", "register", "create"},
				{"luxid", "login", ""},
				{"luxid", "", ""},
				{"luxid", "nonsense", ""},
				{"other", "register", ""}, // not advertised: ignored
			} {
				if got := redirect(newBrowser(t), c.idp, c.action).Query().Get("prompt"); got != c.prompt {
					t.Errorf("%s action=%q: prompt %q, want %q", c.idp, c.action, got, c.prompt)
				}
			}
			// The whole registration: the provider's login, then a login
			// token that logs in to a new account.
			b := newBrowser(t)
			cb, err := oidcop.Login(b, redirect(b, "luxid", "register").String(), "lea", "pw-lea")
			if err != nil {
				t.Fatal(err)
			}
			a := get(t, b, cb.String())
			u, _ := url.Parse(a.location)
			if a.status != http.StatusFound || u.Query().Get("loginToken") == "" {
				t.Fatalf("callback: %d %s %s", a.status, a.location, a.body)
			}
			e := &ssoEnv{t: t, s: s}
			c, r := e.tokenLogin(u.Query().Get("loginToken"))
			if r.Status != http.StatusOK || c.UserID != "@lea:"+s.Config.ServerName {
				t.Fatalf("token login: %d %s", r.Status, r.Body)
			}
			c.Sync("")
			// The chooser keeps the hint on each provider's link.
			a = get(t, newBrowser(t), s.URL+"/_matrix/client/v3/login/sso/redirect?action=register&redirectUrl="+url.QueryEscape(appRedirect))
			body := html.UnescapeString(a.body)
			if a.status != http.StatusOK || strings.Count(body, "&action=register") != 2 {
				t.Fatalf("chooser: %d %s", a.status, a.body)
			}
		})
	}
}

// TestOAuthCrossSigningReset: a session the OAuth 2.0 API issued replaces
// its cross-signing keys through the m.oauth stage: the 401 names the
// account page, where the logged-in user approves; the client's retry
// with the session alone then succeeds. A password login's session is
// still asked for the password.
func TestOAuthCrossSigningReset(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) { testOAuthCrossSigningReset(t, pg) })
	}
}

type uiaChallenge struct {
	Session string `json:"session"`
	Flows   []struct {
		Stages []string `json:"stages"`
	} `json:"flows"`
	Params    map[string]map[string]string `json:"params"`
	Completed []string                     `json:"completed"`
	ErrCode   string                       `json:"errcode"`
}

func challengeOf(t *testing.T, r *ts.Response) uiaChallenge {
	t.Helper()
	var c uiaChallenge
	if r.Status != http.StatusUnauthorized || r.JSON(&c) != nil || c.Session == "" {
		t.Fatalf("want a UIA 401, got %d %s", r.Status, r.Body)
	}
	return c
}

func testOAuthCrossSigningReset(t *testing.T, pg bool) {
	const upload = "/_matrix/client/v3/keys/device_signing/upload"
	s := newOAuthServer(t, pg, nil)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	clientID := webClient(t, s)
	var meta map[string]any
	s.Anonymous(t).MustDo("GET", "/_matrix/client/v1/auth_metadata", nil, &meta)
	if !strings.Contains(string(asJSON(meta["account_management_actions_supported"])), `"org.matrix.cross_signing_reset"`) {
		t.Fatalf("actions: %v", meta["account_management_actions_supported"])
	}
	tok := oauthLogin(t, s, clientID, localpart(alice.UserID), "XSIGNDEV")
	app := tokenClient(t, s, tok["access_token"].(string))
	app.MustDo("POST", upload, e2eetest.NewCrossSigning(alice.UserID).Upload(), nil) // the first keys: no auth

	next := e2eetest.NewCrossSigning(alice.UserID)
	c := challengeOf(t, app.Do("POST", upload, next.Upload()))
	approveURL := c.Params["m.oauth"]["url"]
	if len(c.Flows) != 1 || strings.Join(c.Flows[0].Stages, ",") != "m.oauth" ||
		approveURL != s.URL+"/_luxchat/oauth2/account?action=org.matrix.cross_signing_reset&session="+c.Session {
		t.Fatalf("challenge: %+v", c)
	}
	retry := func(auth map[string]any) *ts.Response {
		body := next.Upload()
		body["auth"] = auth
		return app.Do("POST", upload, body)
	}
	// Not approved yet: neither the session alone, nor the stage named,
	// nor the password (not offered to this session) will do.
	for _, auth := range []map[string]any{
		{"session": c.Session},
		{"type": "m.oauth", "session": c.Session},
		{"type": "m.login.password", "session": c.Session, "identifier": map[string]string{"type": "m.id.user", "user": alice.UserID}, "password": oauthPassword},
	} {
		if r := retry(auth); r.Status != http.StatusUnauthorized {
			t.Fatalf("before approval, %v: %d %s", auth, r.Status, r.Body)
		}
	}

	// Bob, logged in to the pages, cannot approve Alice's reset.
	bb := newBrowser(t)
	p := browserLogin(t, s, bb, get(t, bb, approveURL), localpart(bob.UserID))
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "another user") {
		t.Fatalf("bob's page: %d %s", p.status, p.body)
	}

	// Alice opens the URL: the login page, then what she approves.
	b := newBrowser(t)
	p = browserLogin(t, s, b, get(t, b, approveURL), localpart(alice.UserID))
	if p.status != http.StatusOK || !strings.Contains(p.body, "Reset your cross-signing keys?") || !strings.Contains(p.body, alice.UserID) {
		t.Fatalf("approval page: %d %s", p.status, p.body)
	}
	f := fields(t, p.body, "/_luxchat/oauth2/account/approve")
	if f.Get("session") != c.Session {
		t.Fatalf("approval form: %v", f)
	}
	forged := url.Values{"session": {c.Session}, "csrf": {"forged"}}
	if a := postPage(t, b, s.URL+"/_luxchat/oauth2/account/approve", forged); a.status != http.StatusForbidden {
		t.Fatalf("forged approval: %d %s", a.status, a.body)
	}
	bf := url.Values{"session": {c.Session}, "csrf": {fields(t, get(t, bb, s.URL+"/_luxchat/oauth2/account").body, "/_luxchat/oauth2/logout").Get("csrf")}}
	if a := postPage(t, bb, s.URL+"/_luxchat/oauth2/account/approve", bf); a.status != http.StatusForbidden {
		t.Fatalf("bob's approval: %d %s", a.status, a.body)
	}
	if r := retry(map[string]any{"session": c.Session}); r.Status != http.StatusUnauthorized {
		t.Fatalf("after refused approvals: %d %s", r.Status, r.Body)
	}
	if a := postPage(t, b, s.URL+"/_luxchat/oauth2/account/approve", f); a.status != http.StatusOK || !strings.Contains(a.body, "Reset approved") {
		t.Fatalf("approval: %d %s", a.status, a.body)
	}
	app.MustDo("POST", upload, func() map[string]any { b := next.Upload(); b["auth"] = map[string]any{"session": c.Session}; return b }(), nil)
	var keys struct {
		MasterKeys map[string]map[string]any `json:"master_keys"`
	}
	bob.MustDo("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}}, &keys)
	if !strings.Contains(string(asJSON(keys.MasterKeys[alice.UserID])), next.Master.B64()) {
		t.Fatalf("master key after the reset: %v", keys.MasterKeys[alice.UserID])
	}
	// The approval was for that one upload.
	again := e2eetest.NewCrossSigning(alice.UserID)
	body := again.Upload()
	body["auth"] = map[string]any{"session": c.Session}
	if r := app.Do("POST", upload, body); r.Status != http.StatusBadRequest || r.ErrCode() != "M_UNKNOWN" {
		t.Fatalf("a second reset with the spent session: %d %s", r.Status, r.Body)
	}
	// The approval page of a spent or unknown session, and without one.
	if p := get(t, b, approveURL); p.status != http.StatusBadRequest || !strings.Contains(p.body, "expired") {
		t.Fatalf("spent session's page: %d %s", p.status, p.body)
	}
	if p := get(t, b, s.URL+"/_luxchat/oauth2/account?action=org.matrix.cross_signing_reset"); p.status != http.StatusOK || !strings.Contains(p.body, "starts in your application") {
		t.Fatalf("page without a session: %d %s", p.status, p.body)
	}
	// A password login's session is asked for the password, as before.
	pc := challengeOf(t, alice.Do("POST", upload, again.Upload()))
	if len(pc.Flows) != 1 || pc.Flows[0].Stages[0] != "m.login.password" || pc.Params["m.oauth"] != nil {
		t.Fatalf("password session's challenge: %+v", pc)
	}
	// And another UIA endpoint's session cannot be approved here.
	dc := challengeOf(t, alice.Do("POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{"XSIGNDEV"}}))
	if p := get(t, b, s.URL+"/_luxchat/oauth2/account?action=org.matrix.cross_signing_reset&session="+dc.Session); p.status != http.StatusBadRequest {
		t.Fatalf("another endpoint's session: %d %s", p.status, p.body)
	}
}

// TestOAuthPromptCreate: prompt=create shows the registration page where
// registration takes accounts (open, or by token), which creates the
// account and goes on to the consent; where it does not, the login page
// says so, and the metadata does not offer it.
func TestOAuthPromptCreate(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) { testOAuthPromptCreate(t, pg) })
	}
}

func promptCreateURL(s *ts.Server, clientID string) string {
	return authorizeURL(s, clientID, "urn:matrix:client:api:* urn:matrix:client:device:NEWDEV", "pc", "") + "&prompt=create"
}

func promptValues(t *testing.T, s *ts.Server) string {
	var m map[string]any
	s.Anonymous(t).MustDo("GET", "/_matrix/client/v1/auth_metadata", nil, &m)
	return string(asJSON(m["prompt_values_supported"]))
}

func testOAuthPromptCreate(t *testing.T, pg bool) {
	t.Run("open", func(t *testing.T) {
		s := newOAuthServer(t, pg, func(c *config.Config) { c.Registration.Mode = config.RegistrationOpen })
		alice := s.Register(t, "alice")
		clientID := webClient(t, s)
		if v := promptValues(t, s); v != `["create"]` {
			t.Fatalf("prompt_values_supported: %s", v)
		}
		b := newBrowser(t)
		a := get(t, b, promptCreateURL(s, clientID))
		if a.status != http.StatusFound || !strings.HasPrefix(a.location, "/_luxchat/oauth2/signup?next=") {
			t.Fatalf("authorize with prompt=create: %d %s", a.status, a.location)
		}
		p := get(t, b, s.URL+a.location)
		for _, want := range []string{"Create an account on " + s.Config.ServerName, `<label for="f-username">Username</label>`,
			`<label for="f-password2">Password again</label>`, `autocomplete="new-password"`} {
			if !strings.Contains(p.body, want) {
				t.Fatalf("registration page lacks %q: %s", want, p.body)
			}
		}
		if strings.Contains(p.body, `name="token"`) {
			t.Fatal("a token field without token mode")
		}
		form := fields(t, p.body, "/_luxchat/oauth2/signup")
		try := func(user, pw, pw2 string) answer {
			f := url.Values{"csrf": {form.Get("csrf")}, "next": {form.Get("next")}, "username": {user}, "password": {pw}, "password2": {pw2}}
			return postPage(t, b, s.URL+"/_luxchat/oauth2/signup", f)
		}
		for _, c := range []struct{ user, pw, pw2, want string }{
			{"newbie", oauthPassword, oauthPassword + "x", "The two passwords differ."},
			{localpart(alice.UserID), oauthPassword, oauthPassword, "This username is taken."},
			{"Not Valid!", oauthPassword, oauthPassword, "This username is not valid"},
			{"", oauthPassword, oauthPassword, "This username is not valid"},
			{"newbie", "short", "short", "use at least 8 characters"},
		} {
			r := try(c.user, c.pw, c.pw2)
			if r.status != http.StatusBadRequest || !strings.Contains(r.body, c.want) || !strings.Contains(r.body, `role="alert"`) ||
				!strings.Contains(r.body, `value="`+html.EscapeString(c.user)+`"`) {
				t.Fatalf("%+v: %d %s", c, r.status, r.body)
			}
		}
		forged := url.Values{"csrf": {"forged"}, "next": {form.Get("next")}, "username": {"newbie"}, "password": {oauthPassword}, "password2": {oauthPassword}}
		if r := postPage(t, b, s.URL+"/_luxchat/oauth2/signup", forged); r.status != http.StatusForbidden {
			t.Fatalf("forged registration: %d", r.status)
		}
		if r := postPage(t, newBrowser(t), s.URL+"/_luxchat/oauth2/signup", url.Values{"csrf": {form.Get("csrf")}, "username": {"newbie"}, "password": {oauthPassword}, "password2": {oauthPassword}}); r.status != http.StatusForbidden {
			t.Fatalf("registration from a browser without the cookie: %d", r.status)
		}
		r := try("NewBie", oauthPassword, oauthPassword)
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/_luxchat/oauth2/consent?request=") {
			t.Fatalf("registration: %d %s %s", r.status, r.location, r.body)
		}
		newbie := "@newbie:" + s.Config.ServerName
		cp := get(t, b, s.URL+r.location)
		if cp.status != http.StatusOK || !strings.Contains(cp.body, newbie) {
			t.Fatalf("consent after registration: %d %s", cp.status, cp.body)
		}
		d := postPage(t, b, s.URL+"/_luxchat/oauth2/consent", fields(t, cp.body, "/_luxchat/oauth2/consent"))
		st, tok := exchange(t, s, clientID, callbackParams(t, d.location).Get("code"), pkceVerifier)
		if st != http.StatusOK {
			t.Fatalf("exchange: %d %v", st, tok)
		}
		if w := whoami(t, s, tok["access_token"].(string)); w.Status != 200 || !strings.Contains(string(w.Body), `"user_id":"`+newbie+`"`) || !strings.Contains(string(w.Body), "NEWDEV") {
			t.Fatalf("whoami: %d %s", w.Status, w.Body)
		}
		tokenClient(t, s, tok["access_token"].(string)).Sync("")
		// The password works for a legacy login too.
		if lr := s.Anonymous(t).Do("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
			"identifier": map[string]string{"type": "m.id.user", "user": "newbie"}, "password": oauthPassword}); lr.Status != 200 {
			t.Fatalf("password login of the new account: %d %s", lr.Status, lr.Body)
		}
		// In French from the browser's language.
		req, _ := http.NewRequest("GET", s.URL+"/_luxchat/oauth2/signup", nil)
		req.Header.Set("Accept-Language", "fr-LU,fr;q=0.9")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "Créer un compte sur") || !strings.Contains(string(body), "Mot de passe (à nouveau)") {
			t.Fatalf("French registration page: %s", body)
		}
	})

	t.Run("token", func(t *testing.T) {
		s := newOAuthServer(t, pg, func(c *config.Config) { c.Registration.Mode = config.RegistrationToken })
		clientID := webClient(t, s)
		one := int64(1)
		token, err := s.Accounts.CreateRegistrationToken(t.Context(), "", &one, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v := promptValues(t, s); v != `["create"]` {
			t.Fatalf("prompt_values_supported: %s", v)
		}
		register := func(user, tok string) answer {
			b := newBrowser(t)
			a := get(t, b, promptCreateURL(s, clientID))
			p := get(t, b, s.URL+a.location)
			if !strings.Contains(p.body, `<label for="f-token">Registration token</label>`) {
				t.Fatalf("no token field: %s", p.body)
			}
			f := fields(t, p.body, "/_luxchat/oauth2/signup")
			f.Set("username", user)
			f.Set("password", oauthPassword)
			f.Set("password2", oauthPassword)
			f.Set("token", tok)
			return postPage(t, b, s.URL+"/_luxchat/oauth2/signup", f)
		}
		if r := register("tina", "wrong-token"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "unknown, used up or expired") {
			t.Fatalf("wrong token: %d %s", r.status, r.body)
		}
		if r := register("tina", token); r.status != http.StatusSeeOther {
			t.Fatalf("with the token: %d %s", r.status, r.body)
		}
		if r := register("tom", token); r.status != http.StatusBadRequest || !strings.Contains(r.body, "unknown, used up or expired") {
			t.Fatalf("used-up token: %d %s", r.status, r.body)
		}
	})

	for _, c := range []struct {
		name string
		edit func(c *config.Config)
	}{
		{"closed", func(c *config.Config) { c.Registration.Mode = config.RegistrationClosed }},
		{"password login off", func(c *config.Config) { c.Registration.Mode = config.RegistrationOpen; c.Auth.PasswordLogin = false }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "closed" {
				checkPromptCreateRefused(t, newOAuthServer(t, pg, c.edit))
				return
			}
			// Password login off: the providers' buttons only.
			e := newSSOEnv(t, pg, func(cfg *config.Config) { cfg.OAuth.Enabled = true; c.edit(cfg) })
			checkPromptCreateRefused(t, e.s)
		})
	}
}

// checkPromptCreateRefused: a server that takes no accounts on its pages
// does not offer prompt=create and answers it with the login page and a
// note.
func checkPromptCreateRefused(t *testing.T, s *ts.Server) {
	t.Helper()
	clientID := webClient(t, s)
	if v := promptValues(t, s); v != "null" {
		t.Fatalf("prompt_values_supported: %s", v)
	}
	b := newBrowser(t)
	p := get(t, b, promptCreateURL(s, clientID))
	if p.status != http.StatusOK || !strings.Contains(p.body, "New accounts cannot be created on this page.") || !strings.Contains(p.body, "Log in to "+s.Config.ServerName) {
		t.Fatalf("prompt=create: %d %s", p.status, p.body)
	}
	if strings.Contains(p.body, `action="/_luxchat/oauth2/signup"`) {
		t.Fatalf("a registration form: %s", p.body)
	}
	sp := get(t, b, s.URL+"/_luxchat/oauth2/signup")
	if sp.status != http.StatusOK || !strings.Contains(sp.body, "New accounts cannot be created") {
		t.Fatalf("registration page: %d %s", sp.status, sp.body)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(sp.body)
	if csrf == nil {
		t.Fatalf("no form: %s", sp.body)
	}
	r := postPage(t, b, s.URL+"/_luxchat/oauth2/signup", url.Values{"csrf": {csrf[1]}, "username": {"sneaky"}, "password": {oauthPassword}, "password2": {oauthPassword}})
	if r.status != http.StatusForbidden {
		t.Fatalf("registration post: %d %s", r.status, r.body)
	}
	if exists, _, err := s.Accounts.UserStatus(t.Context(), "@sneaky:"+s.Config.ServerName); err != nil || exists {
		t.Fatalf("account created while closed: %v %v", exists, err)
	}
}

// TestOAuthUpstreamLogin: the OAuth 2.0 API's login page has a button per
// upstream provider; through it (zitadel's provider, its login form) the
// authorization code flow ends with a token that syncs, and the same
// account as legacy SSO's. A user the claim conditions refuse gets the
// clear page, and no consent.
func TestOAuthUpstreamLogin(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			e := newSSOEnv(t, pg, func(c *config.Config) {
				c.OAuth.Enabled = true
				c.Auth.PasswordLogin = false // LuxID only: the buttons are the page
			})
			s := e.s
			clientID := webClient(t, s)
			// upstream follows the authorization request to the login
			// page and its first button (luxid), and logs in at the
			// provider; it returns the browser and where the callback
			// sends it.
			upstream := func(user, password string) (*http.Client, answer) {
				b := newBrowser(t)
				a := get(t, b, authorizeURL(s, clientID, "urn:matrix:client:api:* urn:matrix:client:device:LUXIDDEV", "up", ""))
				p := get(t, b, s.URL+a.location)
				if p.status != http.StatusOK || !strings.Contains(p.body, ">LuxID</button>") || !strings.Contains(p.body, ">LuxID without PKCE</button>") ||
					strings.Contains(p.body, `name="password"`) || !strings.Contains(p.header.Get("Content-Security-Policy"), "form-action 'self' "+strings.TrimSuffix(e.op.Issuer, "/")) {
					t.Fatalf("login page: %d %s %v", p.status, p.body, p.header)
				}
				f := fields(t, p.body, "/_luxchat/oauth2/upstream")
				if f.Get("idp") != "luxid" || !strings.HasPrefix(f.Get("next"), "/_luxchat/oauth2/consent?request=") {
					t.Fatalf("button: %v", f)
				}
				st := postPage(t, b, s.URL+"/_luxchat/oauth2/upstream", f)
				if st.status != http.StatusSeeOther || !strings.HasPrefix(st.location, e.op.Issuer) {
					t.Fatalf("button post: %d %s %s", st.status, st.location, st.body)
				}
				return b, get(t, b, e.atProvider(b, st.location, user, password))
			}

			b, cb := upstream("anne.weber", "pw-anne")
			if cb.status != http.StatusSeeOther || !strings.HasPrefix(cb.location, "/_luxchat/oauth2/consent?request=") {
				t.Fatalf("callback: %d %s %s", cb.status, cb.location, cb.body)
			}
			cp := get(t, b, s.URL+cb.location)
			anne := "@anne.weber:" + s.Config.ServerName
			if cp.status != http.StatusOK || !strings.Contains(cp.body, "Allow Test App to use your account?") || !strings.Contains(cp.body, anne) {
				t.Fatalf("consent: %d %s", cp.status, cp.body)
			}
			d := postPage(t, b, s.URL+"/_luxchat/oauth2/consent", fields(t, cp.body, "/_luxchat/oauth2/consent"))
			st, tok := exchange(t, s, clientID, callbackParams(t, d.location).Get("code"), pkceVerifier)
			if st != http.StatusOK {
				t.Fatalf("exchange: %d %v", st, tok)
			}
			app := tokenClient(t, s, tok["access_token"].(string))
			if w := whoami(t, s, tok["access_token"].(string)); w.Status != 200 || !strings.Contains(string(w.Body), `"user_id":"`+anne+`"`) {
				t.Fatalf("whoami: %d %s", w.Status, w.Body)
			}
			app.Sync("")
			var prof map[string]any
			app.MustDo("GET", "/_matrix/client/v3/profile/"+esc(anne), nil, &prof)
			if prof["displayname"] != "Anne Weber" {
				t.Fatalf("profile: %v", prof)
			}
			// Legacy SSO finds the same account.
			if c := e.with(t).login("luxid", "anne.weber", "pw-anne"); c.UserID != anne {
				t.Fatalf("legacy SSO: %s", c.UserID)
			}

			// Marc's email is not @police.etat.lu: refused with the page,
			// his browser not logged in to the pages.
			mb, refused := upstream("marc", "pw-marc")
			if refused.status != http.StatusForbidden || !strings.Contains(refused.body, "not allowed to use this server") || refused.location != "" {
				t.Fatalf("refused user: %d %s %s", refused.status, refused.location, refused.body)
			}
			if p := get(t, mb, s.URL+"/_luxchat/oauth2/account"); !strings.Contains(p.body, `action="/_luxchat/oauth2/upstream"`) {
				t.Fatalf("refused user's browser reached the account page: %s", p.body)
			}
			if exists, _, _ := s.Accounts.UserStatus(t.Context(), "@marc:"+s.Config.ServerName); exists {
				t.Fatal("an account for the refused user")
			}
		})
	}
}

// TestOAuthCrossSigningResetSDK: matrix-js-sdk (Rust crypto), logged in
// through the OAuth 2.0 API, resets its cross-signing keys; its UIA
// callback gets the m.oauth stage's URL, the user approves there (this
// test's browser), and the SDK's retry with the session publishes the new
// master key.
func TestOAuthCrossSigningResetSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("node: not under -short")
	}
	dir, err := filepath.Abs("../../e2e/js")
	if err != nil {
		t.Fatal(err)
	}
	node, nerr := exec.LookPath("node")
	_, merr := os.Stat(filepath.Join(dir, "node_modules", "matrix-js-sdk"))
	if nerr != nil || merr != nil {
		msg := "!!! node or e2e/js/node_modules missing (make tools): m.oauth NOT tested with matrix-js-sdk !!!"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			s := newOAuthServer(t, pg, nil)
			alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
			tok := oauthLogin(t, s, webClient(t, s), localpart(alice.UserID), "SDKDEV")
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "lib", "oauth-xsign.js"))
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "LUXCHAT_URL="+s.URL, "ACCESS_TOKEN="+tok["access_token"].(string), "USER_ID="+alice.UserID, "DEVICE_ID=SDKDEV")
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var master string
			approvals := 0
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var msg struct {
					Approve string     `json:"approve"`
					Stages  [][]string `json:"stages"`
					Done    bool       `json:"done"`
					Master  string     `json:"master"`
				}
				if json.Unmarshal(sc.Bytes(), &msg) != nil {
					continue // the SDK's own logging
				}
				switch {
				case msg.Approve != "":
					if len(msg.Stages) != 1 || strings.Join(msg.Stages[0], ",") != "m.oauth" {
						t.Errorf("stages: %v", msg.Stages)
					}
					b := newBrowser(t)
					p := browserLogin(t, s, b, get(t, b, msg.Approve), localpart(alice.UserID))
					if a := postPage(t, b, s.URL+"/_luxchat/oauth2/account/approve", fields(t, p.body, "/_luxchat/oauth2/account/approve")); a.status != http.StatusOK {
						t.Errorf("approval: %d %s", a.status, a.body)
					}
					approvals++
					_, _ = io.WriteString(stdin, "approved\n")
				case msg.Done:
					master = msg.Master
				}
			}
			if err := cmd.Wait(); err != nil || approvals != 1 || master == "" {
				t.Fatalf("matrix-js-sdk: %v, %d approvals, master %q\n%s", err, approvals, master, stderr.String())
			}
			var keys struct {
				MasterKeys map[string]map[string]any `json:"master_keys"`
			}
			bob.MustDo("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}}, &keys)
			if !strings.Contains(string(asJSON(keys.MasterKeys[alice.UserID])), master) {
				t.Fatalf("published master key %v, the SDK's %s", keys.MasterKeys[alice.UserID], master)
			}
		})
	}
}
