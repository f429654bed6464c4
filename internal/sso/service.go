package sso

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"luxchat/internal/accounts"
	"luxchat/internal/config"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// flowTTL is how long a user has at the provider between the redirect
// and the callback.
const flowTTL = 10 * time.Minute

// Kinds of flows: what the callback does once the user is known.
const (
	KindLogin = "login" // hand a login token to redirect_url (legacy SSO)
	KindUIA   = "uia"   // complete m.login.sso of a user-interactive auth session
	// KindPages logs the user in to this server's own pages (the OAuth 2.0
	// API's authorization, device approval and account pages); its
	// RedirectURL is the page to go back to, a path under PagesPrefix.
	KindPages = "pages"
)

// PagesPrefix is where KindPages flows may return to.
const PagesPrefix = "/_luxchat/oauth2/"

// Service runs logins through the configured providers. It is safe for
// concurrent use; flows in flight live in the store (sso_flows), so any
// process may answer a callback.
type Service struct {
	cfg       *config.Config
	store     *store.Store
	accounts  *accounts.Service
	log       *slog.Logger
	providers map[string]*provider
	order     []string
	now       func() time.Time
}

// New returns the service, or nil when no provider is configured.
func New(cfg *config.Config, st *store.Store, acc *accounts.Service, log *slog.Logger) (*Service, error) {
	if len(cfg.OIDC.Providers) == 0 {
		return nil, nil
	}
	s := &Service{cfg: cfg, store: st, accounts: acc, log: log, providers: map[string]*provider{}, now: time.Now}
	for _, pc := range cfg.OIDC.Providers {
		p, err := newProvider(pc, cfg.OIDCCallbackURL())
		if err != nil {
			return nil, err
		}
		s.providers[pc.ID] = p
		s.order = append(s.order, pc.ID)
	}
	return s, nil
}

// IdentityProvider is a provider as GET /login lists it.
type IdentityProvider struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Icon  string `json:"icon,omitempty"`
	Brand string `json:"brand,omitempty"`
}

// Providers lists the providers in configuration order.
func (s *Service) Providers() []IdentityProvider {
	out := make([]IdentityProvider, 0, len(s.order))
	for _, id := range s.order {
		c := s.providers[id].cfg
		out = append(out, IdentityProvider{ID: c.ID, Name: c.Name, Icon: c.Icon, Brand: c.Brand})
	}
	return out
}

// AuthOrigins are the origins the browser is sent to when a flow begins
// (each provider's issuer and authorization endpoint), for the
// Content-Security-Policy of a page whose form starts one: browsers apply
// form-action to the redirect that follows the post.
func (s *Service) AuthOrigins(ctx context.Context) []string {
	var out []string
	add := func(raw string) {
		if u, err := url.Parse(raw); err == nil && u.Host != "" {
			o := u.Scheme + "://" + u.Host
			for _, x := range out {
				if x == o {
					return
				}
			}
			out = append(out, o)
		}
	}
	for _, id := range s.order {
		p := s.providers[id]
		add(p.cfg.Issuer)
		if op, _, _, err := p.discovered(ctx); err == nil {
			add(op.Endpoint().AuthURL)
		}
	}
	return out
}

// Refusal is why a flow stops: shown to the user as a page. Reason is one
// of the Reason* keys the pages translate; Detail, when set, is safe to
// show (a provider's error code, a claim's name).
type Refusal struct {
	Status int
	Reason string
	Detail string
	cause  error
}

func (r *Refusal) Error() string {
	if r.cause != nil {
		return r.Reason + ": " + r.cause.Error()
	}
	return r.Reason
}

func (r *Refusal) Unwrap() error { return r.cause }

// Reasons of refusals.
const (
	ReasonUnknownProvider = "unknown_provider"
	ReasonUnavailable     = "provider_unavailable"
	ReasonBadRedirect     = "bad_redirect"
	ReasonBadState        = "bad_state"
	ReasonProviderError   = "provider_error"
	ReasonNotAllowed      = "not_allowed"
	ReasonDeactivated     = "deactivated"
	ReasonWrongUser       = "wrong_user"
	ReasonBadSession      = "bad_session"
)

func refuse(status int, reason, detail string, cause error) *Refusal {
	return &Refusal{Status: status, Reason: reason, Detail: detail, cause: cause}
}

// Start is a request to begin a flow.
type Start struct {
	Provider    string
	Kind        string
	RedirectURL string // KindLogin: where the login token goes
	UIASession  string // KindUIA: the session whose stage this completes
	// Register is the client's hint that the user wants a new account
	// (legacy SSO's action=register): passed on to the provider as
	// prompt=create when its discovery document says it understands it.
	Register bool
	// BrowserKey is the browser's cookie from an earlier flow, reused
	// when well-formed so that flows in several tabs coexist.
	BrowserKey string
}

// Begin starts a flow: it stores state, nonce and PKCE verifier, and
// returns the provider's authorization URL and the browser key that the
// edge sets as a cookie (the callback must come with it).
func (s *Service) Begin(ctx context.Context, st Start) (authURL, browserKey string, err error) {
	p := s.providers[st.Provider]
	if p == nil {
		return "", "", refuse(404, ReasonUnknownProvider, "", nil)
	}
	switch st.Kind {
	case KindLogin:
		if err := CheckRedirectURL(st.RedirectURL); err != nil {
			return "", "", err
		}
	case KindPages:
		if !LocalPage(st.RedirectURL) {
			return "", "", refuse(400, ReasonBadRedirect, "", nil)
		}
	}
	_, _, oc, err := p.discovered(ctx)
	if err != nil {
		return "", "", refuse(502, ReasonUnavailable, p.cfg.Name, err)
	}
	browserKey = st.BrowserKey
	if !wellFormedKey(browserKey) {
		browserKey = randomKey()
	}
	state, nonce := randomKey(), randomKey()
	f := store.SSOFlow{StateHash: hashKey(state), ProviderID: p.cfg.ID, BrowserHash: hashKey(browserKey), Nonce: nonce,
		Kind: st.Kind, RedirectURL: st.RedirectURL, UIASession: st.UIASession, ExpiresTS: s.now().Add(flowTTL).UnixMilli()}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce)}
	if st.Kind == KindUIA {
		// Confirming a sensitive action: a fresh login at the provider,
		// not a session it still holds.
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
	}
	if st.Register && st.Kind == KindLogin && p.supportsPromptCreate() {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "create"))
	}
	if p.cfg.PKCEOn() {
		f.CodeVerifier = oauth2.GenerateVerifier()
		opts = append(opts, oauth2.S256ChallengeOption(f.CodeVerifier))
	}
	if err := s.store.PutSSOFlow(ctx, f, s.now().UnixMilli()); err != nil {
		return "", "", fmt.Errorf("store sso flow: %w", err)
	}
	return oc.AuthCodeURL(state, opts...), browserKey, nil
}

// Callback is what the provider sent the browser back with.
type Callback struct {
	State, Code      string
	Error, ErrorDesc string
	BrowserKey       string // the cookie
}

// Result is a finished flow.
type Result struct {
	Kind       string
	ProviderID string
	UserID     string
	// KindLogin: the login token, and where to send it: Target is
	// redirect_url with loginToken added; Confirm when redirect_url is not
	// on sso.client_whitelist, so the user must confirm first.
	LoginToken string
	Target     string
	Confirm    bool
}

// Complete finishes a flow: the state is spent (whatever happens next),
// the code exchanged, the ID token verified, the user found or created.
func (s *Service) Complete(ctx context.Context, cb Callback) (*Result, error) {
	if cb.State == "" {
		return nil, refuse(400, ReasonBadState, "", nil)
	}
	f, err := s.store.TakeSSOFlow(ctx, hashKey(cb.State), s.now().UnixMilli())
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(400, ReasonBadState, "", nil)
	}
	if err != nil {
		return nil, fmt.Errorf("take sso flow: %w", err)
	}
	// The flow must come back to the browser that began it: a login
	// started by someone else must not end in this browser (login CSRF).
	if subtle.ConstantTimeCompare([]byte(hashKey(cb.BrowserKey)), []byte(f.BrowserHash)) != 1 {
		return nil, refuse(400, ReasonBadState, "", errors.New("browser cookie does not match the flow"))
	}
	p := s.providers[f.ProviderID]
	if p == nil {
		return nil, refuse(400, ReasonUnknownProvider, "", nil)
	}
	if cb.Error != "" {
		return nil, refuse(403, ReasonProviderError, safeCode(cb.Error), errors.New(cb.Error+": "+cb.ErrorDesc))
	}
	if cb.Code == "" {
		return nil, refuse(400, ReasonBadState, "", errors.New("no code"))
	}
	sub, claims, err := s.exchange(ctx, p, f, cb.Code)
	if err != nil {
		return nil, err
	}
	if ok, claim := p.mapping.allowed(claims); !ok {
		return nil, refuse(403, ReasonNotAllowed, claim, nil)
	}
	res := &Result{Kind: f.Kind, ProviderID: p.cfg.ID}
	switch f.Kind {
	case KindUIA:
		// Re-authentication: only a user already linked to this subject.
		userID, err := s.store.SSOLinkUser(ctx, p.cfg.ID, sub)
		if errors.Is(err, store.ErrNotFound) {
			return nil, refuse(403, ReasonWrongUser, "", nil)
		}
		if err != nil {
			return nil, fmt.Errorf("look up sso link: %w", err)
		}
		if err := s.checkActive(ctx, userID); err != nil {
			return nil, err
		}
		if err := s.accounts.CompleteSSOStage(ctx, f.UIASession, userID); err != nil {
			return nil, refuse(403, ReasonBadSession, "", err)
		}
		res.UserID = userID
		return res, nil
	case KindPages:
		userID, err := s.userFor(ctx, p, sub, claims)
		if err != nil {
			return nil, err
		}
		if err := s.checkActive(ctx, userID); err != nil {
			return nil, err
		}
		res.UserID, res.Target = userID, f.RedirectURL
		return res, nil
	case KindLogin:
		userID, err := s.userFor(ctx, p, sub, claims)
		if err != nil {
			return nil, err
		}
		if err := s.checkActive(ctx, userID); err != nil {
			return nil, err
		}
		token, _, err := s.accounts.NewLoginToken(ctx, userID)
		if err != nil {
			return nil, err
		}
		res.UserID, res.LoginToken = userID, token
		res.Target = withLoginToken(f.RedirectURL, token)
		res.Confirm = !s.whitelisted(f.RedirectURL)
		return res, nil
	}
	return nil, refuse(400, ReasonBadState, "", fmt.Errorf("unknown flow kind %q", f.Kind))
}

func (s *Service) checkActive(ctx context.Context, userID string) error {
	exists, deactivated, err := s.accounts.UserStatus(ctx, userID)
	if err != nil {
		return err
	}
	if !exists || deactivated {
		return refuse(403, ReasonDeactivated, "", nil)
	}
	return nil
}

// exchange trades the code for tokens (with the PKCE verifier), verifies
// the ID token (signature from the provider's keys, issuer, audience,
// expiry) and its nonce, and returns the subject and the claims, the
// userinfo endpoint's under the ID token's when asked for.
func (s *Service) exchange(ctx context.Context, p *provider, f *store.SSOFlow, code string) (string, Claims, error) {
	op, verifier, oc, err := p.discovered(ctx)
	if err != nil {
		return "", nil, refuse(502, ReasonUnavailable, p.cfg.Name, err)
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, p.client), p.cfg.RequestTimeout())
	defer cancel()
	var opts []oauth2.AuthCodeOption
	if f.CodeVerifier != "" {
		opts = append(opts, oauth2.VerifierOption(f.CodeVerifier))
	}
	tok, err := oc.Exchange(ctx, code, opts...)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return "", nil, refuse(403, ReasonProviderError, safeCode(re.ErrorCode), err)
		}
		return "", nil, refuse(502, ReasonUnavailable, p.cfg.Name, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", nil, refuse(403, ReasonProviderError, "no_id_token", nil)
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		return "", nil, refuse(403, ReasonProviderError, "invalid_id_token", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return "", nil, refuse(403, ReasonProviderError, "invalid_id_token", errors.New("nonce mismatch"))
	}
	if idt.Subject == "" {
		return "", nil, refuse(403, ReasonProviderError, "invalid_id_token", errors.New("no sub"))
	}
	claims := Claims{}
	if p.cfg.UserInfo {
		ui, err := op.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return "", nil, refuse(502, ReasonUnavailable, p.cfg.Name, err)
		}
		if ui.Subject != idt.Subject {
			return "", nil, refuse(403, ReasonProviderError, "invalid_userinfo", errors.New("userinfo sub differs from the ID token's"))
		}
		if err := ui.Claims(&claims); err != nil {
			return "", nil, refuse(403, ReasonProviderError, "invalid_userinfo", err)
		}
	}
	var idClaims Claims
	if err := idt.Claims(&idClaims); err != nil {
		return "", nil, refuse(403, ReasonProviderError, "invalid_id_token", err)
	}
	// A token for several audiences must name us as the party it was
	// issued to (OpenID Connect Core 3.1.3.7).
	if azp, _ := idClaims["azp"].(string); len(idt.Audience) > 1 && azp != p.cfg.ClientID {
		return "", nil, refuse(403, ReasonProviderError, "invalid_id_token", errors.New("azp is not our client id"))
	}
	for k, v := range idClaims {
		claims[k] = v
	}
	return idt.Subject, claims, nil
}

// errSubjectLinked: the subject was linked by a concurrent login while
// this one created an account.
var errSubjectLinked = errors.New("subject linked meanwhile")

// maxNumberedLocalparts bounds the numbered localparts tried when the
// mapped one is taken.
const maxNumberedLocalparts = 20

// userFor returns the local user of a provider's subject. What links:
//   - the stored link (provider, sub), whatever the claims say now;
//   - else, with allow_existing_users, the existing account whose
//     localpart the template gives, when no subject of this provider is
//     linked to it yet (an email is never matched);
//   - else a new account: the mapped localpart, or when taken the same
//     with 2, 3, … appended, linked in the account's own transaction.
func (s *Service) userFor(ctx context.Context, p *provider, sub string, c Claims) (string, error) {
	id := p.cfg.ID
	userID, err := s.store.SSOLinkUser(ctx, id, sub)
	if err == nil {
		return userID, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("look up sso link: %w", err)
	}
	lp := p.mapping.localpartFor(id, sub, c)
	link := func(ctx context.Context, tx *store.Tx, userID string) error {
		err := tx.AddSSOLink(ctx, id, sub, userID, s.now().UnixMilli())
		if errors.Is(err, store.ErrExists) {
			return errSubjectLinked
		}
		return err
	}
	if p.cfg.AllowExistingUsers {
		existing := "@" + lp + ":" + s.cfg.ServerName
		exists, deactivated, err := s.accounts.UserStatus(ctx, existing)
		if err != nil {
			return "", err
		}
		if exists && !deactivated {
			linked, err := s.store.UserHasSSOLink(ctx, id, existing)
			if err != nil {
				return "", fmt.Errorf("look up sso link: %w", err)
			}
			if !linked {
				err := s.store.InTx(ctx, func(tx *store.Tx) error { return link(ctx, tx, existing) })
				if errors.Is(err, errSubjectLinked) {
					return s.store.SSOLinkUser(ctx, id, sub)
				}
				if err != nil {
					return "", fmt.Errorf("link existing user: %w", err)
				}
				s.log.Info("sso: linked an existing account", "provider", id, "user", existing)
				return existing, nil
			}
		}
	}
	display, email := p.mapping.displayNameFor(c), p.mapping.emailFor(c)
	for i := 1; i <= maxNumberedLocalparts; i++ {
		candidate := lp
		if i > 1 {
			candidate = fmt.Sprintf("%s%d", lp, i)
		}
		userID, err := s.accounts.CreateExternalUser(ctx, accounts.ExternalAccount{Localpart: candidate, DisplayName: display, Email: email, Link: link})
		if errors.Is(err, errSubjectLinked) {
			return s.store.SSOLinkUser(ctx, id, sub)
		}
		if e, ok := errcode.As(err); ok && e.Code == "M_USER_IN_USE" {
			continue
		}
		if err != nil {
			return "", err
		}
		s.log.Info("sso: created an account", "provider", id, "user", userID)
		return userID, nil
	}
	return "", refuse(409, ReasonNotAllowed, "localpart", fmt.Errorf("no free localpart for %q", lp))
}

// CheckRedirectURL refuses redirect URLs that must never receive a login
// token: not absolute, or of a scheme that runs code in the browser.
func CheckRedirectURL(raw string) error {
	if raw == "" || len(raw) > 2048 {
		return refuse(400, ReasonBadRedirect, "", nil)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return refuse(400, ReasonBadRedirect, "", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "javascript", "data", "vbscript", "file", "blob", "about":
		return refuse(400, ReasonBadRedirect, "", nil)
	case "http", "https":
		if u.Host == "" {
			return refuse(400, ReasonBadRedirect, "", nil)
		}
	}
	return nil
}

// LocalPage reports whether next is a path of this server's own pages
// (under PagesPrefix) that a login may return to: no scheme, host or
// backslash, so that it cannot name another site.
func LocalPage(next string) bool {
	if !strings.HasPrefix(next, PagesPrefix) || len(next) > 2048 || strings.ContainsAny(next, "\\\r\n") {
		return false
	}
	u, err := url.Parse(next)
	return err == nil && u.Scheme == "" && u.Host == "" && !strings.Contains(u.Path, "..")
}

// whitelisted reports whether a redirect URL starts with one of
// sso.client_whitelist.
func (s *Service) whitelisted(raw string) bool {
	for _, w := range s.cfg.SSO.ClientWhitelist {
		if w != "" && strings.HasPrefix(raw, w) {
			return true
		}
	}
	return false
}

// withLoginToken adds loginToken to a redirect URL's query.
func withLoginToken(raw, token string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set("loginToken", token)
	u.RawQuery = q.Encode()
	return u.String()
}

// safeCode keeps an OAuth error code shown on a page to its ASCII form.
func safeCode(code string) string {
	var b strings.Builder
	for _, r := range code {
		if b.Len() >= 64 {
			break
		}
		if r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func wellFormedKey(k string) bool {
	if len(k) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(k)
	return err == nil
}

func hashKey(k string) string {
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:])
}
