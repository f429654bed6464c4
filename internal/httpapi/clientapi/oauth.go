package clientapi

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"luxchat/internal/accounts"
	"luxchat/internal/e2ee"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/httpapi/pages"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/oauth"
	"luxchat/internal/sso"
)

// The Matrix OAuth 2.0 API: the JSON endpoints (metadata, registration,
// token, revocation, device authorization) answer clients; the pages
// (login, consent, device approval, account) answer browsers. Every page
// form carries the value of a SameSite=Lax, HttpOnly cookie that another
// site can neither read nor send with a cross-site post (double submit).

const (
	oauthSessionCookie = "luxchat_oauth"
	oauthCSRFCookie    = "luxchat_oauth_csrf"
	msc2965            = "/_matrix/client/unstable/org.matrix.msc2965"
)

// oauthRoutes are the OAuth 2.0 API's routes, present when oauth.enabled.
func (a *API) oauthRoutes() []route {
	return []route{
		{"GET " + v1 + "/auth_metadata", none, a.authMetadata, nil},
		{"GET " + msc2965 + "/auth_metadata", none, a.authMetadata, nil},
		{"POST " + oauth.PathRegister, none, a.oauthRegister, limited},
		{"POST " + oauth.PathToken, none, a.oauthToken, limited},
		{"POST " + oauth.PathRevoke, none, a.oauthRevoke, limited},
		{"POST " + oauth.PathDeviceAuth, none, a.oauthDeviceAuthorization, limited},
		{"GET " + oauth.PathAuthorize, none, a.oauthAuthorize, limited},
		{"GET " + oauth.PathConsent, none, a.oauthConsentPage, limited},
		{"POST " + oauth.PathConsent, none, a.oauthConsent, limited},
		{"GET " + oauth.PathLogin, none, a.oauthLoginPage, limited},
		{"POST " + oauth.PathLogin, none, a.oauthLogin, limited},
		{"GET " + oauth.PathSignup, none, a.oauthSignupPage, limited},
		{"POST " + oauth.PathSignup, none, a.oauthSignup, limited},
		{"POST " + oauth.PathUpstream, none, a.oauthUpstream, limited},
		{"GET " + oauth.PathDevice, none, a.oauthDevicePage, limited},
		{"POST " + oauth.PathDevice, none, a.oauthDeviceDecide, limited},
		{"GET " + oauth.PathAccount, none, a.oauthAccount, limited},
		{"POST " + oauth.PathAccountEnd, none, a.oauthAccountEnd, limited},
		{"POST " + oauth.PathApprove, none, a.oauthApprove, limited},
		{"POST " + oauth.PathAccountLeave, none, a.oauthLeave, limited},
	}
}

// noStore are the headers of every token-bearing answer (RFC 6749 5.1).
func noStore() http.Header {
	return http.Header{"Cache-Control": {"no-store"}, "Pragma": {"no-cache"}}
}

// oauthAnswer encodes an OAuth error as RFC 6749 has it; other errors go
// to the router (Matrix errors, or a logged 500).
func oauthAnswer(status int, body any, err error) (any, error) {
	var e *oauth.Error
	if errors.As(err, &e) {
		return &httputil.Response{Status: e.Status, Body: map[string]string{"error": e.Code, "error_description": e.Description}, Headers: noStore()}, nil
	}
	if err != nil {
		return nil, err
	}
	return &httputil.Response{Status: status, Body: body, Headers: noStore()}, nil
}

// postForm parses an application/x-www-form-urlencoded body.
func postForm(r *httputil.Request) (url.Values, error) {
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "application/x-www-form-urlencoded") {
		return nil, &oauth.Error{Status: 400, Code: "invalid_request", Description: "the body must be application/x-www-form-urlencoded"}
	}
	if err := r.Request.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errcode.TooLarge("request body too large")
		}
		return nil, &oauth.Error{Status: 400, Code: "invalid_request", Description: "the body is not a valid form"}
	}
	if !cleanForm(r.Request.PostForm) {
		return nil, &oauth.Error{Status: 400, Code: "invalid_request", Description: "the form must be UTF-8 without NUL characters"}
	}
	return r.Request.PostForm, nil
}

// cleanForm reports whether every key and value is UTF-8 without NUL
// (PostgreSQL refuses NUL in text; such input is never valid here).
func cleanForm(f url.Values) bool {
	for k, vs := range f {
		if !utf8.ValidString(k) || strings.ContainsRune(k, 0) {
			return false
		}
		for _, v := range vs {
			if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				return false
			}
		}
	}
	return true
}

// GET /_matrix/client/v1/auth_metadata (and MSC2965's unstable path)
func (a *API) authMetadata(r *httputil.Request) (any, error) {
	return a.OAuth.Metadata(), nil
}

// POST /_luxchat/oauth2/register (RFC 7591)
func (a *API) oauthRegister(r *httputil.Request) (any, error) {
	body, err := r.Body()
	if err != nil {
		return nil, err
	}
	out, err := a.OAuth.Register(r.Context(), body)
	return oauthAnswer(http.StatusCreated, out, err)
}

// POST /_luxchat/oauth2/token
func (a *API) oauthToken(r *httputil.Request) (any, error) {
	form, err := postForm(r)
	if err != nil {
		return oauthAnswer(0, nil, err)
	}
	out, err := a.OAuth.Token(r.Context(), form)
	return oauthAnswer(http.StatusOK, out, err)
}

// POST /_luxchat/oauth2/revoke (RFC 7009)
func (a *API) oauthRevoke(r *httputil.Request) (any, error) {
	form, err := postForm(r)
	if err != nil {
		return oauthAnswer(0, nil, err)
	}
	return oauthAnswer(http.StatusOK, map[string]any{}, a.OAuth.Revoke(r.Context(), form))
}

// POST /_luxchat/oauth2/device_authorization (RFC 8628 3.1)
func (a *API) oauthDeviceAuthorization(r *httputil.Request) (any, error) {
	form, err := postForm(r)
	if err != nil {
		return oauthAnswer(0, nil, err)
	}
	out, err := a.OAuth.DeviceAuthorization(r.Context(), form)
	return oauthAnswer(http.StatusOK, out, err)
}

// --- pages ---

func (a *API) secureCookies() bool { return strings.HasPrefix(a.Config.ClientBaseURL(), "https://") }

func (a *API) oauthCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: oauth.Prefix, MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: a.secureCookies()}
}

// csrf returns the browser's anti-forgery value, and the cookie to set
// when it has none yet.
func (a *API) csrf(r *httputil.Request) (string, *http.Cookie) {
	if c, err := r.Cookie(oauthCSRFCookie); err == nil && len(c.Value) == 43 {
		return c.Value, nil
	}
	v := randomValue()
	return v, a.oauthCookie(oauthCSRFCookie, v, int(oauth.BrowserTTL.Seconds()))
}

// csrfOK checks a posted form's value against the cookie.
func csrfOK(r *httputil.Request) bool {
	c, err := r.Cookie(oauthCSRFCookie)
	form := r.Request.PostForm.Get("csrf")
	return err == nil && form != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) == 1
}

// parsePageForm parses a page's post and checks its anti-forgery value;
// ok false: the refusal page is returned.
func (a *API) parsePageForm(r *httputil.Request) (httputil.Stream, bool) {
	if err := r.Request.ParseForm(); err != nil || !cleanForm(r.Request.PostForm) {
		return page(r, pages.Page{Status: http.StatusBadRequest, Title: "title.error", Message: "reason.bad_form"}), false
	}
	if !csrfOK(r) {
		return page(r, pages.Page{Status: http.StatusForbidden, Title: "title.error", Message: "reason.bad_form"}), false
	}
	return nil, true
}

// browserUser is the user logged in to the pages, "" when none.
func (a *API) browserUser(r *httputil.Request) (string, error) {
	c, err := r.Cookie(oauthSessionCookie)
	if err != nil {
		return "", nil
	}
	return a.OAuth.BrowserUser(r.Context(), c.Value)
}

// render writes a page, setting cookies first.
func render(r *httputil.Request, p pages.Page, cookies ...*http.Cookie) httputil.Stream {
	return func(w http.ResponseWriter) {
		for _, c := range cookies {
			if c != nil {
				http.SetCookie(w, c)
			}
		}
		pages.Render(w, r.Request, p)
	}
}

// seeOther redirects the browser, setting cookies first.
func seeOther(r *httputil.Request, target string, status int, cookies ...*http.Cookie) httputil.Stream {
	return func(w http.ResponseWriter) {
		for _, c := range cookies {
			if c != nil {
				http.SetCookie(w, c)
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r.Request, target, status)
	}
}

func lang(r *httputil.Request) string { return pages.Language(r.Header.Get("Accept-Language")) }

// loginPage shows how to log in: the password form where password login
// is on, a button per upstream provider. next is the page to return to.
func (a *API) loginPage(r *httputil.Request, next, alert string, status int) httputil.Stream {
	return a.loginPageNote(r, next, alert, "", status)
}

// loginPageNote is the login page with a note (a key) after its message.
func (a *API) loginPageNote(r *httputil.Request, next, alert, note string, status int) httputil.Stream {
	l := lang(r)
	csrf, cookie := a.csrf(r)
	p := pages.Page{Status: status, Title: "title.login", TitleArgs: []any{a.Config.ServerName}, Message: "msg.login", Alert: alert}
	if note != "" {
		p.Notes = []string{pages.T(l, note)}
	}
	if a.Accounts.PasswordLoginEnabled() {
		p.Forms = append(p.Forms, pages.Form{Action: oauth.PathLogin, Fields: map[string]string{"csrf": csrf, "next": next}, Label: pages.T(l, "button.login"),
			Inputs: []pages.Input{
				{Name: "username", Label: pages.T(l, "label.username"), Type: "text", Autocomplete: "username"},
				{Name: "password", Label: pages.T(l, "label.password"), Type: "password", Autocomplete: "current-password"},
			}})
	}
	if a.SSO != nil {
		var items []pages.Form
		for _, pr := range a.SSO.Providers() {
			items = append(items, pages.Form{Action: oauth.PathUpstream, Fields: map[string]string{"csrf": csrf, "next": next, "idp": pr.ID}, Label: pr.Name})
		}
		if len(p.Forms) > 0 {
			p.Items = []pages.Item{{Heading: pages.T(l, "msg.providers"), Forms: items}}
		} else {
			p.Forms = items
		}
		p.FormTargets = a.SSO.AuthOrigins(r.Context())
	}
	if len(p.Forms) == 0 {
		return page(r, pages.Page{Status: http.StatusForbidden, Title: "title.error", Message: "reason.no_login"})
	}
	return render(r, p, cookie)
}

// requireLogin returns the page's user, or the login page that comes back
// here.
func (a *API) requireLogin(r *httputil.Request) (string, httputil.Stream, error) {
	u, err := a.browserUser(r)
	if err != nil || u != "" {
		return u, nil, err
	}
	next := r.URL.Path
	if r.URL.RawQuery != "" {
		next += "?" + r.URL.RawQuery
	}
	if r.Method != http.MethodGet || !sso.LocalPage(next) {
		next = oauth.PathAccount
	}
	return "", a.loginPage(r, next, "", http.StatusOK), nil
}

// GET /_luxchat/oauth2/login?next=…
func (a *API) oauthLoginPage(r *httputil.Request) (any, error) {
	next := r.Query("next")
	if !sso.LocalPage(next) {
		next = oauth.PathAccount
	}
	return a.loginPage(r, next, "", http.StatusOK), nil
}

// POST /_luxchat/oauth2/login: the password form.
func (a *API) oauthLogin(r *httputil.Request) (any, error) {
	if refusal, ok := a.parsePageForm(r); !ok {
		return refusal, nil
	}
	f := r.Request.PostForm
	next := f.Get("next")
	if !sso.LocalPage(next) {
		next = oauth.PathAccount
	}
	userID, err := a.Accounts.PasswordLogin(r.Context(), f.Get("username"), f.Get("password"), r.ClientIP())
	if err != nil {
		e, ok := errcode.As(err)
		if !ok || e.Status >= 500 {
			return nil, err
		}
		switch e.Code {
		case "M_LIMIT_EXCEEDED":
			return a.loginPage(r, next, "reason.too_many", http.StatusTooManyRequests), nil
		case "M_USER_DEACTIVATED":
			return a.loginPage(r, next, "reason.deactivated", http.StatusForbidden), nil
		}
		return a.loginPage(r, next, "reason.bad_login", http.StatusForbidden), nil
	}
	return a.startBrowserSession(r, userID, next)
}

// startBrowserSession logs the browser in to the pages and sends it on.
func (a *API) startBrowserSession(r *httputil.Request, userID, next string) (any, error) {
	key, err := a.OAuth.NewBrowserSession(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	return seeOther(r, next, http.StatusSeeOther, a.oauthCookie(oauthSessionCookie, key, int(oauth.BrowserTTL.Seconds()))), nil
}

// POST /_luxchat/oauth2/upstream: a provider's button; the provider's
// callback logs the browser in (see ssoCallback).
func (a *API) oauthUpstream(r *httputil.Request) (any, error) {
	if refusal, ok := a.parsePageForm(r); !ok {
		return refusal, nil
	}
	if a.SSO == nil {
		return page(r, pages.Page{Status: http.StatusNotFound, Title: "title.error", Message: "reason.unknown_provider"}), nil
	}
	next := r.Request.PostForm.Get("next")
	if !sso.LocalPage(next) {
		next = oauth.PathAccount
	}
	return a.ssoBegin(r, sso.Start{Provider: r.Request.PostForm.Get("idp"), Kind: sso.KindPages, RedirectURL: next})
}

// GET /_luxchat/oauth2/authorize: the authorization request.
func (a *API) oauthAuthorize(r *httputil.Request) (any, error) {
	key, back, err := a.OAuth.Authorize(r.Context(), r.URL.Query())
	var pe *oauth.PageError
	if errors.As(err, &pe) {
		return page(r, pages.Page{Status: pe.Status, Title: "title.error", Message: "reason." + pe.Reason}), nil
	}
	if err != nil {
		return nil, err
	}
	if back != "" {
		return seeOther(r, back, http.StatusFound), nil
	}
	next := oauth.PathConsent + "?request=" + url.QueryEscape(key)
	if oauth.WantsRegistration(r.URL.Query()) {
		// prompt=create: the registration page first, then the consent;
		// where it takes no accounts, the login page says so.
		if !a.Accounts.RegistrationFormOpen() {
			return a.loginPageNote(r, next, "", "reason.registration_closed", http.StatusOK), nil
		}
		return seeOther(r, oauth.PathSignup+"?next="+url.QueryEscape(next), http.StatusFound), nil
	}
	return seeOther(r, next, http.StatusFound), nil
}

// signupPage is the registration form (username, the password twice, the
// registration token where one is required); after a refusal the
// username is kept and alert says why.
func (a *API) signupPage(r *httputil.Request, next, username, alert string, alertArgs []any, status int) httputil.Stream {
	l := lang(r)
	csrf, cookie := a.csrf(r)
	inputs := []pages.Input{
		{Name: "username", Label: pages.T(l, "label.username"), Type: "text", Autocomplete: "username", Value: username},
		{Name: "password", Label: pages.T(l, "label.password"), Type: "password", Autocomplete: "new-password"},
		{Name: "password2", Label: pages.T(l, "label.password_again"), Type: "password", Autocomplete: "new-password"},
	}
	if a.Accounts.RegistrationNeedsToken() {
		inputs = append(inputs, pages.Input{Name: "token", Label: pages.T(l, "label.registration_token"), Type: "text", Autocomplete: "off"})
	}
	return render(r, pages.Page{Status: status, Title: "title.register", TitleArgs: []any{a.Config.ServerName}, Message: "msg.register",
		Alert: alert, AlertArgs: alertArgs,
		Forms: []pages.Form{{Action: oauth.PathSignup, Fields: map[string]string{"csrf": csrf, "next": next}, Label: pages.T(l, "button.register"), Inputs: inputs}}}, cookie)
}

// GET /_luxchat/oauth2/signup?next=…: the registration page.
func (a *API) oauthSignupPage(r *httputil.Request) (any, error) {
	next := r.Query("next")
	if !sso.LocalPage(next) {
		next = oauth.PathAccount
	}
	if !a.Accounts.RegistrationFormOpen() {
		return a.loginPageNote(r, next, "", "reason.registration_closed", http.StatusOK), nil
	}
	return a.signupPage(r, next, "", "", nil, http.StatusOK), nil
}

// POST /_luxchat/oauth2/signup: create the account under the rules of
// POST /register, log the browser in, go on to next.
func (a *API) oauthSignup(r *httputil.Request) (any, error) {
	if refusal, ok := a.parsePageForm(r); !ok {
		return refusal, nil
	}
	f := r.Request.PostForm
	next := f.Get("next")
	if !sso.LocalPage(next) {
		next = oauth.PathAccount
	}
	if !a.Accounts.RegistrationFormOpen() {
		return a.loginPageNote(r, next, "", "reason.registration_closed", http.StatusForbidden), nil
	}
	username := f.Get("username")
	refuse := func(reason string, args ...any) (any, error) {
		return a.signupPage(r, next, username, reason, args, http.StatusBadRequest), nil
	}
	if f.Get("password") != f.Get("password2") {
		return refuse("reason.password_mismatch")
	}
	if len(username) > 255 {
		return refuse("reason.bad_username")
	}
	if err := a.AppServices.CheckUserClaim("", "@"+strings.ToLower(username)+":"+a.Config.ServerName); err != nil {
		return refuse("reason.username_taken")
	}
	userID, err := a.Accounts.RegisterWithPassword(r.Context(), username, f.Get("password"), f.Get("token"))
	if err != nil {
		e, ok := errcode.As(err)
		if !ok || e.Status >= 500 {
			return nil, err
		}
		switch {
		case errors.Is(err, accounts.ErrBadRegistrationToken):
			return refuse("reason.bad_registration_token")
		case e.Code == "M_INVALID_USERNAME":
			return refuse("reason.bad_username")
		case e.Code == "M_USER_IN_USE" || e.Code == "M_EXCLUSIVE":
			return refuse("reason.username_taken")
		case e.Code == "M_WEAK_PASSWORD":
			return refuse("reason.weak_password", strconv.Itoa(a.Config.Auth.PasswordMinLength))
		case e.Code == "M_INVALID_PARAM":
			return refuse("reason.bad_password")
		}
		return a.loginPageNote(r, next, "", "reason.registration_closed", http.StatusForbidden), nil
	}
	return a.startBrowserSession(r, userID, next)
}

// requestPage is the refusal page of an unknown, expired or answered
// request.
func requestPage(r *httputil.Request, err error) (any, error) {
	var pe *oauth.PageError
	if errors.As(err, &pe) {
		return page(r, pages.Page{Status: pe.Status, Title: "title.error", Message: "reason." + pe.Reason}), nil
	}
	return nil, err
}

// GET /_luxchat/oauth2/consent?request=…
func (a *API) oauthConsentPage(r *httputil.Request) (any, error) {
	user, login, err := a.requireLogin(r)
	if err != nil || login != nil {
		return login, err
	}
	key := r.Query("request")
	req, err := a.OAuth.PendingRequest(r.Context(), key)
	if err != nil {
		return requestPage(r, err)
	}
	l := lang(r)
	csrf, cookie := a.csrf(r)
	name := req.Client.Name(l)
	target, origin := req.RedirectTarget()
	clientHost := req.Client.ClientURI
	if u, err := url.Parse(clientHost); err == nil {
		clientHost = u.Host
	}
	fields := func(decision string) map[string]string {
		return map[string]string{"csrf": csrf, "request": key, "decision": decision}
	}
	p := pages.Page{Title: "title.consent", TitleArgs: []any{name}, Message: "msg.consent", MessageArgs: []any{name, clientHost, user, req.DeviceID, target},
		Forms: []pages.Form{
			{Action: oauth.PathConsent, Fields: fields("allow"), Label: pages.T(l, "button.allow")},
			{Action: oauth.PathConsent, Fields: fields("deny"), Label: pages.T(l, "button.deny"), Secondary: true},
		},
		// Browsers apply form-action to the redirect that follows the post.
		FormTargets: []string{origin}}
	return render(r, p, cookie), nil
}

// POST /_luxchat/oauth2/consent: Allow or Deny.
func (a *API) oauthConsent(r *httputil.Request) (any, error) {
	if refusal, ok := a.parsePageForm(r); !ok {
		return refusal, nil
	}
	user, err := a.browserUser(r)
	if err != nil {
		return nil, err
	}
	f := r.Request.PostForm
	if user == "" {
		return a.loginPage(r, oauth.PathConsent+"?request="+url.QueryEscape(f.Get("request")), "", http.StatusOK), nil
	}
	target, err := a.OAuth.Decide(r.Context(), f.Get("request"), user, f.Get("decision") == "allow")
	if err != nil {
		return requestPage(r, err)
	}
	return seeOther(r, target, http.StatusSeeOther), nil
}

// devicePage asks for the code the device shows.
func (a *API) deviceCodePage(r *httputil.Request, alert string, status int) httputil.Stream {
	l := lang(r)
	return render(r, pages.Page{Status: status, Title: "title.device", Message: "msg.device_code", Alert: alert,
		Forms: []pages.Form{{Action: oauth.PathDevice, Get: true, Label: pages.T(l, "button.next"),
			Inputs: []pages.Input{{Name: "user_code", Label: pages.T(l, "label.user_code"), Type: "text", Autocomplete: "one-time-code"}}}}})
}

// GET /_luxchat/oauth2/device[?user_code=…]: the device grant's
// verification page.
func (a *API) oauthDevicePage(r *httputil.Request) (any, error) {
	user, login, err := a.requireLogin(r)
	if err != nil || login != nil {
		return login, err
	}
	code := r.Query("user_code")
	if code == "" {
		return a.deviceCodePage(r, "", http.StatusOK), nil
	}
	req, err := a.OAuth.PendingDevice(r.Context(), code)
	if oauth.ErrNoRequest(err) {
		return a.deviceCodePage(r, "reason.bad_code", http.StatusBadRequest), nil
	}
	if err != nil {
		return nil, err
	}
	l := lang(r)
	csrf, cookie := a.csrf(r)
	name := req.Client.Name(l)
	fields := func(decision string) map[string]string {
		return map[string]string{"csrf": csrf, "user_code": req.UserCode, "decision": decision}
	}
	return render(r, pages.Page{Title: "title.consent", TitleArgs: []any{name}, Message: "msg.device_consent", MessageArgs: []any{name, user, req.DeviceID, req.UserCode},
		Forms: []pages.Form{
			{Action: oauth.PathDevice, Fields: fields("allow"), Label: pages.T(l, "button.allow")},
			{Action: oauth.PathDevice, Fields: fields("deny"), Label: pages.T(l, "button.deny"), Secondary: true},
		}}, cookie), nil
}

// POST /_luxchat/oauth2/device: Allow or Deny a device.
func (a *API) oauthDeviceDecide(r *httputil.Request) (any, error) {
	if refusal, ok := a.parsePageForm(r); !ok {
		return refusal, nil
	}
	user, err := a.browserUser(r)
	if err != nil {
		return nil, err
	}
	f := r.Request.PostForm
	if user == "" {
		return a.loginPage(r, oauth.PathDevice+"?user_code="+url.QueryEscape(f.Get("user_code")), "", http.StatusOK), nil
	}
	allow := f.Get("decision") == "allow"
	err = a.OAuth.DecideDevice(r.Context(), f.Get("user_code"), user, allow)
	if oauth.ErrNoRequest(err) {
		return a.deviceCodePage(r, "reason.bad_code", http.StatusBadRequest), nil
	}
	if err != nil {
		return nil, err
	}
	if allow {
		return page(r, pages.Page{Title: "title.device_done", Message: "msg.device_done"}), nil
	}
	return page(r, pages.Page{Title: "title.device_denied", Message: "msg.device_denied"}), nil
}

// GET /_luxchat/oauth2/account[?action=…&device_id=…]: the account
// management page (account_management_uri): the user's sessions, each
// with a button that signs it out.
func (a *API) oauthAccount(r *httputil.Request) (any, error) {
	user, login, err := a.requireLogin(r)
	if err != nil || login != nil {
		return login, err
	}
	sessions, err := a.OAuth.Sessions(r.Context(), user)
	if err != nil {
		return nil, err
	}
	if r.Query("action") == oauth.ActionCrossSigningReset {
		return a.crossSigningResetPage(r, user), nil
	}
	l := lang(r)
	csrf, cookie := a.csrf(r)
	p := pages.Page{Title: "title.account", Message: "msg.account", MessageArgs: []any{user},
		Forms: []pages.Form{{Action: oauth.PathAccountLeave, Fields: map[string]string{"csrf": csrf}, Label: pages.T(l, "button.logout_page"), Secondary: true}}}
	switch r.Query("action") {
	case "org.matrix.device_view", "org.matrix.session_view", "org.matrix.device_delete", "org.matrix.session_end":
		want := r.Query("device_id")
		var one []oauth.Session
		for _, s := range sessions {
			if s.DeviceID == want {
				one = append(one, s)
			}
		}
		if len(one) == 0 {
			p.Alert = "reason.unknown_device"
		} else {
			sessions = one
		}
	}
	for _, s := range sessions {
		it := pages.Item{Heading: s.DisplayName, Lines: []string{pages.T(l, "line.device_id", s.DeviceID)}}
		if it.Heading == "" {
			it.Heading = s.DeviceID
		}
		if s.Client != nil {
			it.Lines = append(it.Lines, pages.T(l, "line.client", s.Client.Name(l)))
		}
		if s.LastSeenTS > 0 {
			it.Lines = append(it.Lines, pages.T(l, "line.last_seen", time.UnixMilli(s.LastSeenTS).UTC().Format("2006-01-02 15:04 UTC")))
		}
		it.Forms = []pages.Form{{Action: oauth.PathAccountEnd, Fields: map[string]string{"csrf": csrf, "device_id": s.DeviceID}, Label: pages.T(l, "button.end_session")}}
		p.Items = append(p.Items, it)
	}
	if len(sessions) == 0 {
		p.Notes = []string{pages.T(l, "msg.no_sessions")}
	}
	return render(r, p, cookie), nil
}

// POST /_luxchat/oauth2/account/end: sign a session out.
func (a *API) oauthAccountEnd(r *httputil.Request) (any, error) {
	if refusal, ok := a.parsePageForm(r); !ok {
		return refusal, nil
	}
	user, err := a.browserUser(r)
	if err != nil {
		return nil, err
	}
	if user == "" {
		return a.loginPage(r, oauth.PathAccount, "", http.StatusOK), nil
	}
	err = a.OAuth.EndSession(r.Context(), user, r.Request.PostForm.Get("device_id"))
	if e, ok := errcode.As(err); ok && e.Status == http.StatusNotFound {
		return page(r, pages.Page{Status: http.StatusNotFound, Title: "title.error", Message: "reason.unknown_device"}), nil
	}
	if err != nil {
		return nil, err
	}
	return seeOther(r, oauth.PathAccount, http.StatusSeeOther), nil
}

// POST /_luxchat/oauth2/logout: log the browser out of the pages.
func (a *API) oauthLeave(r *httputil.Request) (any, error) {
	if refusal, ok := a.parsePageForm(r); !ok {
		return refusal, nil
	}
	if c, err := r.Cookie(oauthSessionCookie); err == nil {
		if err := a.OAuth.EndBrowserSession(r.Context(), c.Value); err != nil {
			return nil, err
		}
	}
	return seeOther(r, oauth.PathLogin, http.StatusSeeOther, a.oauthCookie(oauthSessionCookie, "", -1)), nil
}

// approvalRefusal is the page of an m.oauth approval that cannot be
// given: the session is unknown, expired, not a cross-signing reset's, or
// another user's.
func approvalRefusal(r *httputil.Request, err error) (httputil.Stream, error) {
	e, ok := errcode.As(err)
	switch {
	case ok && e.Status == http.StatusNotFound:
		return page(r, pages.Page{Status: http.StatusBadRequest, Title: "title.error", Message: "reason.bad_session"}), nil
	case ok && e.Status == http.StatusForbidden:
		return page(r, pages.Page{Status: http.StatusForbidden, Title: "title.error", Message: "reason.wrong_user"}), nil
	}
	return nil, err
}

// crossSigningResetPage is the account page's cross-signing reset action
// (the m.oauth stage's url): what the user approves, for whom, and the
// button. Without a session it says where a reset starts.
func (a *API) crossSigningResetPage(r *httputil.Request, user string) httputil.Stream {
	session := r.Query("session")
	if session == "" {
		return page(r, pages.Page{Title: "title.cross_signing_reset", Message: "msg.cross_signing_reset_start"})
	}
	info, err := a.Accounts.UIASession(r.Context(), session)
	if err == nil && info.Action != e2ee.UIAActionSigningKeys {
		err = errcode.NotFound("not a cross-signing reset")
	}
	if err == nil && info.UserID != user {
		err = errcode.Forbidden("another user's session")
	}
	if err != nil {
		refusal, err := approvalRefusal(r, err)
		if err != nil {
			httputil.Logger(r.Context()).Error("cross-signing reset page", "err", err)
			return page(r, pages.Page{Status: http.StatusInternalServerError, Title: "title.error", Message: "reason.internal"})
		}
		return refusal
	}
	l := lang(r)
	csrf, cookie := a.csrf(r)
	return render(r, pages.Page{Title: "title.cross_signing_reset", Message: "msg.cross_signing_reset", MessageArgs: []any{user},
		Forms: []pages.Form{{Action: oauth.PathApprove, Fields: map[string]string{"csrf": csrf, "session": session}, Label: pages.T(l, "button.approve_reset")}}}, cookie)
}

// POST /_luxchat/oauth2/account/approve: the user approves the
// cross-signing reset of a user-interactive auth session (its m.oauth
// stage); the client's retry with the session then succeeds.
func (a *API) oauthApprove(r *httputil.Request) (any, error) {
	if refusal, ok := a.parsePageForm(r); !ok {
		return refusal, nil
	}
	session := r.Request.PostForm.Get("session")
	user, err := a.browserUser(r)
	if err != nil {
		return nil, err
	}
	if user == "" {
		next := oauth.PathAccount + "?" + url.Values{"action": {oauth.ActionCrossSigningReset}, "session": {session}}.Encode()
		return a.loginPage(r, next, "", http.StatusOK), nil
	}
	if err := a.Accounts.CompleteOAuthStage(r.Context(), session, user, e2ee.UIAActionSigningKeys); err != nil {
		return approvalRefusal(r, err)
	}
	return page(r, pages.Page{Title: "title.done", Message: "msg.reset_approved"}), nil
}
