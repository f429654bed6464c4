package integration

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/e2ee/e2eetest"
	ts "luxchat/internal/testserver"
)

// The Matrix OAuth 2.0 API, luxchat being the authorization server,
// driven over HTTP as a client and a browser (cookie jar, the pages'
// forms) would.

const (
	oauthClientURI = "https://app.example.org/"
	oauthRedirect  = "https://app.example.org/cb"
	oauthPassword  = "correct horse battery"
	// A PKCE verifier and its S256 challenge (RFC 7636 appendix B).
	pkceVerifier  = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	pkceChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

func newOAuthServer(t *testing.T, pg bool, edit func(c *config.Config)) *ts.Server {
	opts := []ts.Option{ts.WithConfig(func(c *config.Config) {
		c.OAuth.Enabled = true
		c.Auth.AccessTokenLifetime = config.Duration{Duration: 5 * time.Minute}
		if edit != nil {
			edit(c)
		}
	})}
	if pg {
		opts = append(opts, ts.WithPostgres(t))
	}
	return ts.New(t, opts...)
}

// oauthPost posts a form (or raw body with its content type) and
// decodes the JSON answer.
func oauthPost(t testing.TB, s *ts.Server, path, contentType, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(s.URL+path, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("POST %s: %d, not JSON: %q", path, resp.StatusCode, data)
	}
	return resp.StatusCode, out
}

func oauthForm(t testing.TB, s *ts.Server, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	return oauthPost(t, s, path, "application/x-www-form-urlencoded", form.Encode())
}

func registerClient(t testing.TB, s *ts.Server, meta map[string]any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(meta)
	return oauthPost(t, s, "/_luxchat/oauth2/register", "application/json", string(b))
}

// webClient registers a web client for every grant and returns its id.
func webClient(t testing.TB, s *ts.Server) string {
	t.Helper()
	st, out := registerClient(t, s, map[string]any{"client_name": "Test App", "client_name#fr": "Appli de test", "client_uri": oauthClientURI,
		"redirect_uris": []string{oauthRedirect}, "grant_types": []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"}})
	if st != http.StatusCreated {
		t.Fatalf("register: %d %v", st, out)
	}
	return out["client_id"].(string)
}

var hiddenRe = regexp.MustCompile(`name="(csrf|request|next|user_code|decision|device_id|session|idp)" value="([^"]*)"`)

// fields reads the hidden fields of the first form of a page that posts to
// action.
func fields(t testing.TB, body, action string) url.Values {
	t.Helper()
	i := strings.Index(body, `action="`+action+`"`)
	if i < 0 {
		t.Fatalf("no form to %s in %s", action, body)
	}
	end := strings.Index(body[i:], "</form>")
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(body[i:i+end], -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

func postPage(t testing.TB, b *http.Client, u string, form url.Values) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept-Language", "en")
	resp, err := b.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(data), header: resp.Header}
}

// authorizeURL builds an authorization request.
func authorizeURL(s *ts.Server, clientID, scope, state, mode string) string {
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {oauthRedirect}, "scope": {scope}, "state": {state},
		"code_challenge": {pkceChallenge}, "code_challenge_method": {"S256"}}
	if mode != "" {
		q.Set("response_mode", mode)
	}
	return s.URL + "/_luxchat/oauth2/authorize?" + q.Encode()
}

// browserLogin logs b in through the password form of the login page
// it was shown (page), and returns the page it lands on.
func browserLogin(t testing.TB, s *ts.Server, b *http.Client, page answer, user string) answer {
	t.Helper()
	f := fields(t, page.body, "/_luxchat/oauth2/login")
	f.Set("username", user)
	f.Set("password", oauthPassword)
	a := postPage(t, b, s.URL+"/_luxchat/oauth2/login", f)
	if a.status != http.StatusSeeOther {
		t.Fatalf("login: %d %s", a.status, a.body)
	}
	return get(t, b, s.URL+a.location)
}

// consent runs an authorization request in browser b (logging in as user
// when asked) and answers it; it returns where the browser is sent.
func consent(t testing.TB, s *ts.Server, b *http.Client, authURL, user string, allow bool) string {
	t.Helper()
	a := get(t, b, authURL)
	if a.status != http.StatusFound || !strings.HasPrefix(a.location, "/_luxchat/oauth2/consent?request=") {
		t.Fatalf("authorize: %d %s %s", a.status, a.location, a.body)
	}
	p := get(t, b, s.URL+a.location)
	if strings.Contains(p.body, `action="/_luxchat/oauth2/login"`) {
		p = browserLogin(t, s, b, p, user)
	}
	if p.status != http.StatusOK || !strings.Contains(p.body, "Allow Test App to use your account?") {
		t.Fatalf("consent page: %d %s", p.status, p.body)
	}
	f := fields(t, p.body, "/_luxchat/oauth2/consent")
	if !allow {
		f.Set("decision", "deny")
	}
	d := postPage(t, b, s.URL+"/_luxchat/oauth2/consent", f)
	if d.status != http.StatusSeeOther {
		t.Fatalf("consent: %d %s", d.status, d.body)
	}
	return d.location
}

// callbackParams reads the answer's parameters from a redirect (query or
// fragment).
func callbackParams(t testing.TB, loc string) url.Values {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if u.Fragment != "" {
		v, _ := url.ParseQuery(u.EscapedFragment())
		return v
	}
	return u.Query()
}

func exchange(t testing.TB, s *ts.Server, clientID, code, verifier string) (int, map[string]any) {
	t.Helper()
	return oauthForm(t, s, "/_luxchat/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {clientID}, "code": {code},
		"redirect_uri": {oauthRedirect}, "code_verifier": {verifier}})
}

func refreshGrant(t testing.TB, s *ts.Server, clientID, rt string) (int, map[string]any) {
	t.Helper()
	return oauthForm(t, s, "/_luxchat/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "refresh_token": {rt}})
}

// tokenClient is a client API client with an access token.
func tokenClient(t testing.TB, s *ts.Server, token string) *ts.Client {
	c := s.Anonymous(t)
	c.Token = token
	return c
}

func whoami(t testing.TB, s *ts.Server, token string) *ts.Response {
	t.Helper()
	return tokenClient(t, s, token).Do("GET", "/_matrix/client/v3/account/whoami", nil)
}

// login runs the authorization code flow for user and returns the token
// answer.
func oauthLogin(t testing.TB, s *ts.Server, clientID, user, device string) map[string]any {
	t.Helper()
	scope := "urn:matrix:client:api:* urn:matrix:client:device:" + device
	loc := consent(t, s, newBrowser(t), authorizeURL(s, clientID, scope, "st", "fragment"), user, true)
	st, tok := exchange(t, s, clientID, callbackParams(t, loc).Get("code"), pkceVerifier)
	if st != http.StatusOK {
		t.Fatalf("exchange: %d %v", st, tok)
	}
	return tok
}

func TestOAuth(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) { testOAuth(t, pg) })
	}
}

func testOAuth(t *testing.T, pg bool) {
	s := newOAuthServer(t, pg, nil)
	alice := s.Register(t, "alice")
	local := strings.TrimPrefix(strings.Split(alice.UserID, ":")[0], "@")
	clientID := webClient(t, s)

	t.Run("metadata", func(t *testing.T) {
		for _, p := range []string{"/_matrix/client/v1/auth_metadata", "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"} {
			var m map[string]any
			s.Anonymous(t).MustDo("GET", p, nil, &m)
			if m["token_endpoint"] != s.URL+"/_luxchat/oauth2/token" || m["account_management_uri"] != s.URL+"/_luxchat/oauth2/account" ||
				!strings.Contains(string(asJSON(m["code_challenge_methods_supported"])), `"S256"`) ||
				!strings.Contains(string(asJSON(m["grant_types_supported"])), "device_code") ||
				!strings.Contains(string(asJSON(m["response_modes_supported"])), "fragment") ||
				!strings.Contains(string(asJSON(m["account_management_actions_supported"])), "org.matrix.device_delete") {
				t.Fatalf("%s: %v", p, m)
			}
		}
	})

	t.Run("registration rules", func(t *testing.T) {
		cases := []struct {
			name string
			meta map[string]any
			want string // error code; "" accepted
		}{
			{"web", map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{oauthRedirect, "https://sub.app.example.org:5173/?q=1"}}, ""},
			{"no client_uri", map[string]any{"redirect_uris": []string{oauthRedirect}}, "invalid_client_metadata"},
			{"http client_uri", map[string]any{"client_uri": "http://app.example.org/", "redirect_uris": []string{"http://app.example.org/cb"}}, "invalid_client_metadata"},
			{"user in client_uri", map[string]any{"client_uri": "https://u:p@app.example.org/", "redirect_uris": []string{oauthRedirect}}, "invalid_client_metadata"},
			{"web http redirect", map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{"http://app.example.org/cb"}}, "invalid_redirect_uri"},
			{"web localhost", map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{"http://localhost/"}}, "invalid_redirect_uri"},
			{"fragment", map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{oauthRedirect + "#x"}}, "invalid_redirect_uri"},
			{"other host", map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{"https://evil.example/cb"}}, "invalid_redirect_uri"},
			{"look-alike host", map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{"https://evilapp.example.org/cb"}}, "invalid_redirect_uri"},
			{"no redirect", map[string]any{"client_uri": oauthClientURI}, "invalid_redirect_uri"},
			{"native scheme", map[string]any{"client_uri": oauthClientURI, "application_type": "native", "redirect_uris": []string{"org.example.app:/cb", "org.example.app.x:cb"}}, ""},
			{"native loopback", map[string]any{"client_uri": oauthClientURI, "application_type": "native", "redirect_uris": []string{"http://127.0.0.1/cb", "http://[::1]/cb", "http://localhost/cb"}}, ""},
			{"native loopback port", map[string]any{"client_uri": oauthClientURI, "application_type": "native", "redirect_uris": []string{"http://localhost:1234/cb"}}, "invalid_redirect_uri"},
			{"native https localhost", map[string]any{"client_uri": oauthClientURI, "application_type": "native", "redirect_uris": []string{"https://localhost/cb"}}, "invalid_redirect_uri"},
			{"native bad scheme", map[string]any{"client_uri": oauthClientURI, "application_type": "native", "redirect_uris": []string{"example:/cb"}}, "invalid_redirect_uri"},
			{"native authority", map[string]any{"client_uri": oauthClientURI, "application_type": "native", "redirect_uris": []string{"org.example.app://cb"}}, "invalid_redirect_uri"},
			{"native other http", map[string]any{"client_uri": oauthClientURI, "application_type": "native", "redirect_uris": []string{"http://app.example.org/cb"}}, "invalid_redirect_uri"},
			{"logo elsewhere", map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{oauthRedirect}, "logo_uri": "https://cdn.example.net/l.png"}, "invalid_client_metadata"},
			{"secret client", map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{oauthRedirect}, "token_endpoint_auth_method": "client_secret_basic"}, "invalid_client_metadata"},
			{"bad type", map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{oauthRedirect}, "application_type": "desktop"}, "invalid_client_metadata"},
			{"wrong types", map[string]any{"client_uri": 5, "redirect_uris": "x"}, "invalid_client_metadata"},
			{"device only", map[string]any{"client_uri": oauthClientURI, "grant_types": []string{"urn:ietf:params:oauth:grant-type:device_code"}}, ""},
			{"unknown grants only", map[string]any{"client_uri": oauthClientURI, "grant_types": []string{"password"}}, "invalid_client_metadata"},
		}
		for _, c := range cases {
			st, out := registerClient(t, s, c.meta)
			if c.want == "" && st != http.StatusCreated || c.want != "" && (st != http.StatusBadRequest || out["error"] != c.want) {
				t.Errorf("%s: %d %v", c.name, st, out)
			}
		}
		// Unknown grant types are dropped; localized names kept; the same
		// metadata gets the same client id.
		meta := map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{oauthRedirect}, "client_name": "Mon", "client_name#de": "Meine",
			"tos_uri#fr": "https://app.example.org/fr/tos", "grant_types": []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"}}
		_, a := registerClient(t, s, meta)
		_, b := registerClient(t, s, meta)
		if a["client_id"] == nil || a["client_id"] != b["client_id"] || a["client_name#de"] != "Meine" || a["tos_uri#fr"] != nil ||
			string(asJSON(a["grant_types"])) != `["authorization_code","refresh_token"]` || a["token_endpoint_auth_method"] != "none" || a["application_type"] != "web" {
			t.Fatalf("registration answers: %v %v", a, b)
		}
		for _, body := range []string{"", "null", "[]", "{", `"x"`, `{"client_uri": {"a": 1}}`} {
			if st, out := oauthPost(t, s, "/_luxchat/oauth2/register", "application/json", body); st != http.StatusBadRequest || out["error"] != "invalid_client_metadata" {
				t.Errorf("body %q: %d %v", body, st, out)
			}
		}
	})

	t.Run("authorization code grant", func(t *testing.T) {
		b := newBrowser(t)
		state := `st&x=<y> "z"`
		loc := consent(t, s, b, authorizeURL(s, clientID, "urn:matrix:client:api:* urn:matrix:client:device:OAUTHDEV1", state, "fragment"), local, true)
		if !strings.HasPrefix(loc, oauthRedirect+"#") {
			t.Fatalf("fragment mode: %s", loc)
		}
		p := callbackParams(t, loc)
		if p.Get("state") != state || p.Get("code") == "" {
			t.Fatalf("callback: %s", loc)
		}
		code := p.Get("code")
		if st, out := exchange(t, s, clientID, code, strings.Repeat("a", 43)); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("PKCE mismatch: %d %v", st, out)
		}
		if st, out := oauthForm(t, s, "/_luxchat/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {clientID}, "code": {code},
			"redirect_uri": {oauthRedirect + "/other"}, "code_verifier": {pkceVerifier}}); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("other redirect_uri: %d %v", st, out)
		}
		other := webClient(t, s) // same metadata: same id; register another
		_, o := registerClient(t, s, map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{oauthRedirect}, "client_name": "Other"})
		if st, out := exchange(t, s, o["client_id"].(string), code, pkceVerifier); st != 400 || out["error"] != "invalid_grant" || other != clientID {
			t.Fatalf("another client's code: %d %v", st, out)
		}
		if st, out := exchange(t, s, clientID, "nonsense", pkceVerifier); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("wrong code: %d %v", st, out)
		}
		st, tok := exchange(t, s, clientID, code, pkceVerifier)
		if st != 200 || tok["token_type"] != "Bearer" || tok["refresh_token"] == "" || tok["expires_in"] != float64(300) ||
			tok["scope"] != "urn:matrix:client:api:* urn:matrix:client:device:OAUTHDEV1" {
			t.Fatalf("exchange: %d %v", st, tok)
		}
		access := tok["access_token"].(string)
		var who struct {
			UserID   string `json:"user_id"`
			DeviceID string `json:"device_id"`
		}
		if r := whoami(t, s, access); r.Status != 200 || r.JSON(&who) != nil || who.UserID != alice.UserID || who.DeviceID != "OAUTHDEV1" {
			t.Fatalf("whoami: %d %s", r.Status, r.Body)
		}
		tokenClient(t, s, access).Sync("")
		// A replayed code is refused and ends the session it started.
		if st, out := exchange(t, s, clientID, code, pkceVerifier); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("replayed code: %d %v", st, out)
		}
		if r := whoami(t, s, access); r.Status != http.StatusUnauthorized {
			t.Fatalf("token of a replayed code: %d %s", r.Status, r.Body)
		}
	})

	t.Run("query mode, unstable scope, server-picked device", func(t *testing.T) {
		loc := consent(t, s, newBrowser(t), authorizeURL(s, clientID, "openid urn:matrix:org.matrix.msc2967.client:api:*", "q1", "query"), local, true)
		u, _ := url.Parse(loc)
		if u.Fragment != "" || u.Query().Get("state") != "q1" || !strings.HasPrefix(loc, oauthRedirect+"?") {
			t.Fatalf("query mode: %s", loc)
		}
		st, tok := exchange(t, s, clientID, u.Query().Get("code"), pkceVerifier)
		scope, _ := tok["scope"].(string)
		if st != 200 || !strings.HasPrefix(scope, "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:") {
			t.Fatalf("exchange: %d %v", st, tok)
		}
		device := strings.TrimPrefix(scope, "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:")
		if r := whoami(t, s, tok["access_token"].(string)); r.Status != 200 || !strings.Contains(string(r.Body), `"device_id":"`+device+`"`) {
			t.Fatalf("whoami: %s", r.Body)
		}
	})

	t.Run("denied", func(t *testing.T) {
		loc := consent(t, s, newBrowser(t), authorizeURL(s, clientID, "urn:matrix:client:api:*", "d1", ""), local, false)
		if p := callbackParams(t, loc); p.Get("error") != "access_denied" || p.Get("state") != "d1" || p.Get("code") != "" {
			t.Fatalf("denied: %s", loc)
		}
	})

	t.Run("bad authorization requests", func(t *testing.T) {
		b := newBrowser(t)
		base := authorizeURL(s, clientID, "urn:matrix:client:api:*", "s9", "")
		edit := func(k, v string) string {
			u, _ := url.Parse(base)
			q := u.Query()
			if v == "" {
				q.Del(k)
			} else {
				q.Set(k, v)
			}
			u.RawQuery = q.Encode()
			return u.String()
		}
		// Never sent back to an unregistered redirect URI, nor for an
		// unknown client: a page.
		for _, u := range []string{edit("redirect_uri", "https://evil.example/cb"), edit("redirect_uri", oauthRedirect+"x"), edit("client_id", "nope"), edit("client_id", "")} {
			if a := get(t, b, u); a.status != 400 || a.location != "" || !strings.Contains(a.header.Get("Content-Type"), "text/html") {
				t.Errorf("%s: %d %s", u, a.status, a.location)
			}
		}
		for _, c := range []struct{ k, v, want string }{
			{"code_challenge_method", "plain", "invalid_request"},
			{"code_challenge", "", "invalid_request"},
			{"response_type", "token", "unsupported_response_type"},
			{"scope", "urn:matrix:client:device:ABC", "invalid_scope"},
			{"scope", "urn:matrix:client:api:* urn:matrix:client:device:A urn:matrix:client:device:B", "invalid_scope"},
			{"scope", "urn:matrix:client:api:* urn:matrix:client:device:a/b", "invalid_scope"},
			{"scope", "urn:matrix:client:api:* admin", "invalid_scope"},
			{"response_mode", "form_post", "invalid_request"},
		} {
			a := get(t, b, edit(c.k, c.v))
			if p := callbackParams(t, a.location); a.status != http.StatusFound || !strings.HasPrefix(a.location, oauthRedirect) || p.Get("error") != c.want || p.Get("state") != "s9" {
				t.Errorf("%s=%s: %d %s", c.k, c.v, a.status, a.location)
			}
		}
	})

	t.Run("expired code", func(t *testing.T) {
		loc := consent(t, s, newBrowser(t), authorizeURL(s, clientID, "urn:matrix:client:api:*", "e", ""), local, true)
		s.OAuth.SetClock(func() time.Time { return time.Now().Add(3 * time.Minute) })
		defer s.OAuth.SetClock(time.Now)
		if st, out := exchange(t, s, clientID, callbackParams(t, loc).Get("code"), pkceVerifier); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("expired code: %d %v", st, out)
		}
	})

	t.Run("refresh rotation and reuse", func(t *testing.T) {
		tok := oauthLogin(t, s, clientID, local, "REFRESHDEV")
		a1, r1 := tok["access_token"].(string), tok["refresh_token"].(string)
		st, t2 := refreshGrant(t, s, clientID, r1)
		if st != 200 || t2["access_token"] == a1 || t2["refresh_token"] == r1 || t2["scope"] != "urn:matrix:client:api:* urn:matrix:client:device:REFRESHDEV" {
			t.Fatalf("refresh: %d %v", st, t2)
		}
		if r := whoami(t, s, a1); r.Status != 401 {
			t.Fatalf("access token before the refresh: %d", r.Status)
		}
		// The answer was lost: the old refresh token may be retried until
		// the new pair is used.
		st, t3 := refreshGrant(t, s, clientID, r1)
		if st != 200 {
			t.Fatalf("retry: %d %v", st, t3)
		}
		if st, out := refreshGrant(t, s, clientID, t2["refresh_token"].(string)); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("the pair the retry replaced: %d %v", st, out)
		}
		a3 := t3["access_token"].(string)
		if r := whoami(t, s, a3); r.Status != 200 {
			t.Fatalf("new access token: %d %s", r.Status, r.Body)
		}
		// Another client may not use it; the legacy /refresh neither.
		_, o := registerClient(t, s, map[string]any{"client_uri": oauthClientURI, "redirect_uris": []string{oauthRedirect}, "client_name": "Other2"})
		if st, out := refreshGrant(t, s, o["client_id"].(string), t3["refresh_token"].(string)); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("another client: %d %v", st, out)
		}
		if r := s.Anonymous(t).Do("POST", "/_matrix/client/v3/refresh", map[string]string{"refresh_token": t3["refresh_token"].(string)}); r.Status == 200 {
			t.Fatalf("legacy refresh took an OAuth token: %s", r.Body)
		}
		// Now that the new pair is in use, the old refresh token is spent:
		// presenting it again means it leaked, and the session ends.
		if st, out := refreshGrant(t, s, clientID, r1); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("reuse: %d %v", st, out)
		}
		if r := whoami(t, s, a3); r.Status != 401 {
			t.Fatalf("session after a reused refresh token: %d", r.Status)
		}
		if st, _ := refreshGrant(t, s, clientID, t3["refresh_token"].(string)); st != 400 {
			t.Fatalf("refresh token of the ended session: %d", st)
		}
	})

	t.Run("revocation", func(t *testing.T) {
		for _, which := range []string{"access_token", "refresh_token"} {
			tok := oauthLogin(t, s, clientID, local, "REVOKE"+strings.ToUpper(which[:1]))
			st, out := oauthForm(t, s, "/_luxchat/oauth2/revoke", url.Values{"token": {tok[which].(string)}, "token_type_hint": {which}, "client_id": {"whatever"}})
			if st != 200 {
				t.Fatalf("revoke %s: %d %v", which, st, out)
			}
			if r := whoami(t, s, tok["access_token"].(string)); r.Status != 401 {
				t.Fatalf("after revoking the %s: %d", which, r.Status)
			}
			if st, _ := refreshGrant(t, s, clientID, tok["refresh_token"].(string)); st != 400 {
				t.Fatalf("refresh after revoking the %s: %d", which, st)
			}
			var devs struct {
				Devices []struct {
					DeviceID string `json:"device_id"`
				} `json:"devices"`
			}
			alice.MustDo("GET", "/_matrix/client/v3/devices", nil, &devs)
			if strings.Contains(string(asJSON(devs)), "REVOKE"+strings.ToUpper(which[:1])) {
				t.Fatalf("device left after revocation: %v", devs)
			}
		}
		if st, _ := oauthForm(t, s, "/_luxchat/oauth2/revoke", url.Values{"token": {"lxc_unknown"}}); st != 200 {
			t.Fatalf("unknown token: %d", st)
		}
		if st, out := oauthForm(t, s, "/_luxchat/oauth2/revoke", url.Values{}); st != 400 || out["error"] != "invalid_request" {
			t.Fatalf("no token: %d %v", st, out)
		}
	})

	t.Run("device authorization grant", func(t *testing.T) {
		start := func() map[string]any {
			st, d := oauthForm(t, s, "/_luxchat/oauth2/device_authorization", url.Values{"client_id": {clientID}, "scope": {"urn:matrix:client:api:* urn:matrix:client:device:TVDEVICE"}})
			if st != 200 || d["device_code"] == nil || d["interval"] != float64(5) || !strings.HasPrefix(d["verification_uri_complete"].(string), s.URL+"/_luxchat/oauth2/device?user_code=") {
				t.Fatalf("device authorization: %d %v", st, d)
			}
			return d
		}
		poll := func(d map[string]any) (int, map[string]any) {
			return oauthForm(t, s, "/_luxchat/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "client_id": {clientID},
				"device_code": {d["device_code"].(string)}})
		}
		later := time.Duration(0)
		tick := func(d time.Duration) {
			later += d
			s.OAuth.SetClock(func() time.Time { return time.Now().Add(later) })
		}
		defer s.OAuth.SetClock(time.Now)
		// The user approves on a browser.
		approve := func(d map[string]any, allow bool) {
			b := newBrowser(t)
			p := get(t, b, d["verification_uri_complete"].(string))
			p = browserLogin(t, s, b, p, local)
			if !strings.Contains(p.body, d["user_code"].(string)) {
				t.Fatalf("device page: %s", p.body)
			}
			f := fields(t, p.body, "/_luxchat/oauth2/device")
			if !allow {
				f.Set("decision", "deny")
			}
			if a := postPage(t, b, s.URL+"/_luxchat/oauth2/device", f); a.status != 200 {
				t.Fatalf("approve: %d %s", a.status, a.body)
			}
		}
		d := start()
		if st, out := poll(d); st != 400 || out["error"] != "authorization_pending" {
			t.Fatalf("first poll: %d %v", st, out)
		}
		if st, out := poll(d); st != 400 || out["error"] != "slow_down" {
			t.Fatalf("quick poll: %d %v", st, out)
		}
		approve(d, true)
		tick(6 * time.Second)
		st, tok := poll(d)
		if st != 200 || tok["scope"] != "urn:matrix:client:api:* urn:matrix:client:device:TVDEVICE" {
			t.Fatalf("approved poll: %d %v", st, tok)
		}
		if r := whoami(t, s, tok["access_token"].(string)); r.Status != 200 || !strings.Contains(string(r.Body), "TVDEVICE") {
			t.Fatalf("whoami: %s", r.Body)
		}
		if st, out := poll(d); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("poll after the tokens: %d %v", st, out)
		}
		d = start()
		approve(d, false)
		tick(6 * time.Second)
		if st, out := poll(d); st != 400 || out["error"] != "access_denied" {
			t.Fatalf("denied poll: %d %v", st, out)
		}
		d = start()
		tick(11 * time.Minute)
		if st, out := poll(d); st != 400 || out["error"] != "expired_token" {
			t.Fatalf("expired poll: %d %v", st, out)
		}
		// An unknown code on the page.
		b := newBrowser(t)
		p := browserLogin(t, s, b, get(t, b, s.URL+"/_luxchat/oauth2/device?user_code=BCDF-GHJK"), local)
		if p.status != 400 || !strings.Contains(p.body, "unknown or has expired") {
			t.Fatalf("unknown user code: %d %s", p.status, p.body)
		}
	})

	t.Run("CSRF", func(t *testing.T) {
		b := newBrowser(t)
		a := get(t, b, s.URL+"/_luxchat/oauth2/account")
		f := fields(t, a.body, "/_luxchat/oauth2/login")
		f.Set("username", local)
		f.Set("password", oauthPassword)
		for _, bad := range []string{"", "forged-value-forged-value-forged-value-xxx"} {
			g := url.Values{}
			for k, v := range f {
				g[k] = v
			}
			g.Set("csrf", bad)
			if r := postPage(t, b, s.URL+"/_luxchat/oauth2/login", g); r.status != http.StatusForbidden || r.location != "" {
				t.Fatalf("login with csrf %q: %d", bad, r.status)
			}
		}
		// A browser without the cookie (another site's form).
		if r := postPage(t, newBrowser(t), s.URL+"/_luxchat/oauth2/login", f); r.status != http.StatusForbidden {
			t.Fatalf("login without the cookie: %d", r.status)
		}
		p := browserLogin(t, s, b, a, local)
		end := fields(t, p.body, "/_luxchat/oauth2/account/end")
		end.Set("csrf", "nope")
		if r := postPage(t, b, s.URL+"/_luxchat/oauth2/account/end", end); r.status != http.StatusForbidden {
			t.Fatalf("end session with a bad csrf: %d", r.status)
		}
		loc := authorizeURL(s, clientID, "urn:matrix:client:api:*", "c", "")
		ag := get(t, b, loc)
		cp := get(t, b, s.URL+ag.location)
		cf := fields(t, cp.body, "/_luxchat/oauth2/consent")
		cf.Set("csrf", "")
		if r := postPage(t, b, s.URL+"/_luxchat/oauth2/consent", cf); r.status != http.StatusForbidden || r.location != "" {
			t.Fatalf("consent without csrf: %d %s", r.status, r.location)
		}
	})

	t.Run("account page", func(t *testing.T) {
		oauthLogin(t, s, clientID, local, "ACCOUNTDEV")
		b := newBrowser(t)
		p := browserLogin(t, s, b, get(t, b, s.URL+"/_luxchat/oauth2/account?action=org.matrix.device_view&device_id=ACCOUNTDEV"), local)
		if p.status != 200 || !strings.Contains(p.body, "ACCOUNTDEV") || !strings.Contains(p.body, "Application: Test App") || strings.Contains(p.body, alice.DeviceID) {
			t.Fatalf("device view: %d %s", p.status, p.body)
		}
		p = get(t, b, s.URL+"/_luxchat/oauth2/account")
		if !strings.Contains(p.body, alice.DeviceID) {
			t.Fatalf("sessions list: %s", p.body)
		}
		f := fields(t, p.body, "/_luxchat/oauth2/account/end") // the first session's button
		if a := postPage(t, b, s.URL+"/_luxchat/oauth2/account/end", f); a.status != http.StatusSeeOther {
			t.Fatalf("end session: %d %s", a.status, a.body)
		}
		if p := get(t, b, s.URL+"/_luxchat/oauth2/account"); strings.Contains(p.body, "Session ID: "+f.Get("device_id")) {
			t.Fatalf("session %s still listed", f.Get("device_id"))
		}
		// In French, from the browser's language.
		req, _ := http.NewRequest("GET", s.URL+"/_luxchat/oauth2/account", nil)
		req.Header.Set("Accept-Language", "fr-LU,fr;q=0.9,en;q=0.5")
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "Vos sessions") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Fatalf("French account page: %s", body)
		}
	})

	t.Run("deactivated user", func(t *testing.T) {
		bob := s.Register(t, "bob")
		bobLocal := strings.TrimPrefix(strings.Split(bob.UserID, ":")[0], "@")
		tok := oauthLogin(t, s, clientID, bobLocal, "BOBDEV")
		loc := consent(t, s, newBrowser(t), authorizeURL(s, clientID, "urn:matrix:client:api:*", "b", ""), bobLocal, true)
		if err := s.Accounts.DeactivateUser(t.Context(), bob.UserID); err != nil {
			t.Fatal(err)
		}
		if st, out := exchange(t, s, clientID, callbackParams(t, loc).Get("code"), pkceVerifier); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("code of a deactivated user: %d %v", st, out)
		}
		if st, out := refreshGrant(t, s, clientID, tok["refresh_token"].(string)); st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("refresh of a deactivated user: %d %v", st, out)
		}
		if r := whoami(t, s, tok["access_token"].(string)); r.Status != 401 {
			t.Fatalf("access token of a deactivated user: %d", r.Status)
		}
		b := newBrowser(t)
		a := get(t, b, s.URL+"/_luxchat/oauth2/account")
		f := fields(t, a.body, "/_luxchat/oauth2/login")
		f.Set("username", bobLocal)
		f.Set("password", oauthPassword)
		if r := postPage(t, b, s.URL+"/_luxchat/oauth2/login", f); r.status != http.StatusForbidden || !strings.Contains(r.body, "deactivated") {
			t.Fatalf("deactivated login: %d %s", r.status, r.body)
		}
	})

	t.Run("garbage never 500", func(t *testing.T) {
		for _, c := range []struct{ path, ct, body string }{
			{"/_luxchat/oauth2/token", "application/json", `{"grant_type":"authorization_code"}`},
			{"/_luxchat/oauth2/token", "application/x-www-form-urlencoded", "%%%"},
			{"/_luxchat/oauth2/token", "application/x-www-form-urlencoded", ""},
			{"/_luxchat/oauth2/token", "application/x-www-form-urlencoded", "grant_type=password&client_id=" + clientID},
			{"/_luxchat/oauth2/token", "application/x-www-form-urlencoded", "grant_type=refresh_token&client_id=" + clientID},
			{"/_luxchat/oauth2/token", "application/x-www-form-urlencoded", "grant_type=authorization_code&grant_type=refresh_token&client_id=" + clientID},
			{"/_luxchat/oauth2/token", "application/x-www-form-urlencoded", "grant_type=urn:ietf:params:oauth:grant-type:device_code&client_id=" + clientID + "&device_code=x"},
			{"/_luxchat/oauth2/token", "application/x-www-form-urlencoded", "grant_type=authorization_code&client_id=nope&code=x"},
			{"/_luxchat/oauth2/device_authorization", "application/x-www-form-urlencoded", "client_id=" + clientID + "&scope=nope"},
			{"/_luxchat/oauth2/device_authorization", "application/x-www-form-urlencoded", "client_id=\x00"},
			{"/_luxchat/oauth2/revoke", "text/plain", "token=x"},
			{"/_luxchat/oauth2/register", "application/json", strings.Repeat("[", 10000)},
		} {
			resp, err := http.Post(s.URL+c.path, c.ct, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 || resp.StatusCode < 400 {
				t.Errorf("%s %q: %d %s", c.path, c.body, resp.StatusCode, data)
			}
		}
	})

	t.Run("restart keeps clients and sessions", func(t *testing.T) {
		tok := oauthLogin(t, s, clientID, local, "RESTARTDEV")
		s2 := s.Restart(t)
		if st, out := refreshGrant(t, s2, clientID, tok["refresh_token"].(string)); st != 200 {
			t.Fatalf("refresh after restart: %d %v", st, out)
		}
		s = s2
	})
}

// TestOAuthOff: oauth.enabled is off by default (docs/operations.md says
// why), and without it the API is not there: no metadata, no pages, and a
// cross-signing reset asks for the password, never m.oauth.
func TestOAuthOff(t *testing.T) {
	if config.Default().OAuth.Enabled {
		t.Fatal("oauth.enabled is on by default")
	}
	s := ts.New(t)
	if r := s.Anonymous(t).Do("GET", "/_matrix/client/v1/auth_metadata", nil); r.Status != 404 || r.ErrCode() != "M_UNRECOGNIZED" {
		t.Fatalf("auth_metadata: %d %s", r.Status, r.Body)
	}
	for _, p := range []string{"/_luxchat/oauth2/signup", "/_luxchat/oauth2/account?action=org.matrix.cross_signing_reset&session=x"} {
		if a := get(t, newBrowser(t), s.URL+p); a.status != 404 {
			t.Fatalf("%s: %d", p, a.status)
		}
	}
	alice := s.Register(t, "alice")
	const upload = "/_matrix/client/v3/keys/device_signing/upload"
	alice.MustDo("POST", upload, e2eetest.NewCrossSigning(alice.UserID).Upload(), nil)
	r := alice.Do("POST", upload, e2eetest.NewCrossSigning(alice.UserID).Upload())
	if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), `"m.login.password"`) || strings.Contains(string(r.Body), "m.oauth") {
		t.Fatalf("cross-signing reset: %d %s", r.Status, r.Body)
	}
}

func asJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
