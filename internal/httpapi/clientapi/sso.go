package clientapi

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"luxchat/internal/accounts"
	"luxchat/internal/appservice"
	"luxchat/internal/config"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/httpapi/pages"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/sso"
)

// Single sign-on: the browser side of logins through upstream providers.
// These routes answer browsers, so failures are pages (package pages),
// not JSON.

// ssoCookie binds a flow to the browser that began it (see sso.Complete).
const ssoCookie = "luxchat_sso"

// ssoRoutes are the single sign-on routes, present when providers are
// configured.
func (a *API) ssoRoutes() []route {
	return []route{
		{"GET " + v3 + "/login/sso/redirect", none, a.ssoRedirect, limited},
		{"GET " + v3 + "/login/sso/redirect/{idpId}", none, a.ssoRedirect, limited},
		{"GET " + config.OIDCCallbackPath, none, a.ssoCallback, limited},
		{"GET " + v3 + "/auth/m.login.sso/fallback/web", none, a.ssoFallback, limited},
		{"POST " + v3 + "/auth/m.login.sso/fallback/web", none, a.ssoFallbackStart, limited},
	}
}

// page answers with a page.
func page(r *httputil.Request, p pages.Page) httputil.Stream {
	return func(w http.ResponseWriter) { pages.Render(w, r.Request, p) }
}

// refusalPage turns an error of the flow into its page; errors that are
// not refusals are the server's own (logged, shown as such).
func (a *API) refusalPage(r *httputil.Request, err error) httputil.Stream {
	var ref *sso.Refusal
	if !errors.As(err, &ref) {
		httputil.Logger(r.Context()).Error("single sign-on failed", "err", err)
		return page(r, pages.Page{Status: http.StatusInternalServerError, Title: "title.error", Message: "reason.internal"})
	}
	if ref.Unwrap() != nil {
		httputil.Logger(r.Context()).Info("single sign-on refused", "reason", ref.Reason, "err", ref.Unwrap())
	}
	p := pages.Page{Status: ref.Status, Title: "title.error", Message: "reason." + ref.Reason}
	switch ref.Reason {
	case sso.ReasonUnavailable, sso.ReasonProviderError:
		p.MessageArgs = []any{ref.Detail}
	}
	return page(r, p)
}

// GET /_matrix/client/v3/login/sso/redirect
// GET /_matrix/client/v3/login/sso/redirect/{idpId}
func (a *API) ssoRedirect(r *httputil.Request) (any, error) {
	redirectURL := r.Query("redirectUrl")
	if err := sso.CheckRedirectURL(redirectURL); err != nil {
		return a.refusalPage(r, err), nil
	}
	// action (v1.18): register is a hint that the user wants a new
	// account, passed on to the provider where it understands one; any
	// other value is ignored.
	register := r.Query("action") == "register"
	idp := r.Var("idpId")
	if idp == "" {
		provs := a.SSO.Providers()
		if len(provs) > 1 {
			// More than one: the user chooses, as the spec allows.
			p := pages.Page{Title: "title.choose", Message: "msg.choose"}
			for _, pr := range provs {
				href := v3 + "/login/sso/redirect/" + url.PathEscape(pr.ID) + "?redirectUrl=" + url.QueryEscape(redirectURL)
				if register {
					href += "&action=register"
				}
				p.Links = append(p.Links, pages.Link{Href: href, Label: pr.Name})
			}
			return page(r, p), nil
		}
		idp = provs[0].ID
	}
	return a.ssoBegin(r, sso.Start{Provider: idp, Kind: sso.KindLogin, RedirectURL: redirectURL, Register: register})
}

// ssoBegin starts a flow and sends the browser to the provider.
func (a *API) ssoBegin(r *httputil.Request, st sso.Start) (any, error) {
	if c, err := r.Cookie(ssoCookie); err == nil {
		st.BrowserKey = c.Value
	}
	authURL, key, err := a.SSO.Begin(r.Context(), st)
	if err != nil {
		return a.refusalPage(r, err), nil
	}
	cookie := &http.Cookie{Name: ssoCookie, Value: key, Path: "/_luxchat/oidc/", MaxAge: 1800,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(a.Config.ClientBaseURL(), "https://")}
	return httputil.Stream(func(w http.ResponseWriter) {
		http.SetCookie(w, cookie)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		status := http.StatusFound
		if r.Method == http.MethodPost {
			status = http.StatusSeeOther
		}
		http.Redirect(w, r.Request, authURL, status)
	}), nil
}

// GET /_luxchat/oidc/callback: the provider sends the browser back here.
func (a *API) ssoCallback(r *httputil.Request) (any, error) {
	cb := sso.Callback{State: r.Query("state"), Code: r.Query("code"), Error: r.Query("error"), ErrorDesc: r.Query("error_description")}
	if c, err := r.Cookie(ssoCookie); err == nil {
		cb.BrowserKey = c.Value
	}
	res, err := a.SSO.Complete(r.Context(), cb)
	if err != nil {
		return a.refusalPage(r, err), nil
	}
	if res.Kind == sso.KindUIA {
		return page(r, pages.Page{Title: "title.done", Message: "msg.done", AuthDone: true}), nil
	}
	if res.Kind == sso.KindPages {
		if a.OAuth == nil {
			return page(r, pages.Page{Status: http.StatusNotFound, Title: "title.error", Message: "reason.bad_state"}), nil
		}
		return a.startBrowserSession(r, res.UserID, res.Target)
	}
	if res.Confirm {
		// Not a client this server knows: the user says whether it may
		// have the login token, never a silent redirect.
		host := clientName(res.Target)
		return page(r, pages.Page{Title: "title.confirm", TitleArgs: []any{host}, Message: "msg.confirm", MessageArgs: []any{res.UserID, host},
			Links: []pages.Link{{Href: res.Target, Label: pages.T(pages.Language(r.Header.Get("Accept-Language")), "button.continue")}}}), nil
	}
	return httputil.Stream(func(w http.ResponseWriter) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r.Request, res.Target, http.StatusFound)
	}), nil
}

// clientName is how the confirmation page names a redirect URL: its host,
// or its scheme for a native client's custom scheme.
func clientName(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	if u.Host != "" {
		return u.Host
	}
	return u.Scheme + ":"
}

// fallbackCookie carries the fallback page's anti-forgery value (see
// ssoFallbackStart).
const fallbackCookie = "luxchat_sso_form"

// fallbackActions are the operations the fallback page names.
var fallbackActions = map[string]bool{"delete_devices": true, "deactivate": true, "password": true, "get_login_token": true, "device_signing_upload": true}

// GET /_matrix/client/v3/auth/m.login.sso/fallback/web?session=…
// A page naming the action to confirm, with a button per provider. The
// buttons post a value that must match a SameSite=Strict cookie set with
// the page, so that only a click on this page — not a link or a form on
// another site, which could have the browser silently log in at a provider
// that still holds a session — starts the confirmation.
func (a *API) ssoFallback(r *httputil.Request) (any, error) {
	session := r.Query("session")
	info, err := a.Accounts.UIASession(r.Context(), session)
	if err != nil {
		if _, ok := errcode.As(err); ok {
			return page(r, pages.Page{Status: http.StatusBadRequest, Title: "title.error", Message: "reason.bad_session"}), nil
		}
		return nil, err
	}
	action := "action.other"
	if fallbackActions[info.Action] {
		action = "action." + info.Action
	}
	csrf := randomValue()
	p := pages.Page{Title: "title.reauth", Message: "msg.reauth", MessageArgs: []any{pages.Key(action)}, FormTargets: a.SSO.AuthOrigins(r.Context())}
	for _, pr := range a.SSO.Providers() {
		p.Forms = append(p.Forms, pages.Form{Action: v3 + "/auth/m.login.sso/fallback/web?session=" + url.QueryEscape(session),
			Fields: map[string]string{"idp": pr.ID, "csrf": csrf}, Label: pr.Name})
	}
	cookie := &http.Cookie{Name: fallbackCookie, Value: csrf, Path: v3 + "/auth/m.login.sso/fallback/", MaxAge: 3600,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: strings.HasPrefix(a.Config.ClientBaseURL(), "https://")}
	return httputil.Stream(func(w http.ResponseWriter) {
		http.SetCookie(w, cookie)
		pages.Render(w, r.Request, p)
	}), nil
}

// POST /_matrix/client/v3/auth/m.login.sso/fallback/web?session=…
// The fallback page's button: starts the flow that completes the
// session's m.login.sso stage.
func (a *API) ssoFallbackStart(r *httputil.Request) (any, error) {
	session := r.Query("session")
	if _, err := a.Accounts.UIASession(r.Context(), session); err != nil {
		if _, ok := errcode.As(err); ok {
			return page(r, pages.Page{Status: http.StatusBadRequest, Title: "title.error", Message: "reason.bad_session"}), nil
		}
		return nil, err
	}
	if err := r.Request.ParseForm(); err != nil {
		return page(r, pages.Page{Status: http.StatusBadRequest, Title: "title.error", Message: "reason.bad_form"}), nil
	}
	c, err := r.Cookie(fallbackCookie)
	form := r.Request.PostForm.Get("csrf")
	if err != nil || form == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) != 1 {
		return page(r, pages.Page{Status: http.StatusForbidden, Title: "title.error", Message: "reason.bad_form"}), nil
	}
	return a.ssoBegin(r, sso.Start{Provider: r.Request.PostForm.Get("idp"), Kind: sso.KindUIA, UIASession: session})
}

// randomValue is 256 random bits, unpadded base64url.
func randomValue() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// GET /_matrix/client/v3/login
func (a *API) loginFlows(r *httputil.Request) (any, error) {
	flows := []map[string]any{}
	if a.Accounts.PasswordLoginEnabled() {
		flows = append(flows, map[string]any{"type": accounts.LoginPassword})
	}
	if a.SSO != nil {
		flows = append(flows, map[string]any{"type": accounts.AuthSSO, "identity_providers": a.SSO.Providers()})
	}
	if a.SSO != nil || a.Config.Auth.GetLoginToken {
		tok := map[string]any{"type": accounts.LoginToken}
		if a.Config.Auth.GetLoginToken {
			tok["get_login_token"] = true
		}
		flows = append(flows, tok)
	}
	if len(a.AppServices.Registrations()) > 0 {
		flows = append(flows, map[string]any{"type": appservice.LoginType})
	}
	return map[string]any{"flows": flows}, nil
}

// POST /_matrix/client/v1/login/get_token
func (a *API) getLoginToken(r *httputil.Request) (any, error) {
	var body struct {
		Auth json.RawMessage `json:"auth"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	token, life, err := a.Accounts.GetLoginToken(r.Context(), caller(r), body.Auth)
	if err != nil {
		return withUIA(nil, err)
	}
	return map[string]any{"login_token": token, "expires_in_ms": life.Milliseconds()}, nil
}

// GET /_matrix/client/v3/account/3pid
func (a *API) threePIDs(r *httputil.Request) (any, error) {
	list, err := a.Accounts.ThreePIDs(r.Context(), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	type threePID struct {
		Medium      string `json:"medium"`
		Address     string `json:"address"`
		ValidatedAt int64  `json:"validated_at"`
		AddedAt     int64  `json:"added_at"`
	}
	out := make([]threePID, 0, len(list))
	for _, p := range list {
		out = append(out, threePID{p.Medium, p.Address, p.ValidatedTS, p.AddedTS})
	}
	return map[string]any{"threepids": out}, nil
}
