package integration

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"luxchat/internal/config"
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
