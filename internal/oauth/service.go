package oauth

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
	"slices"
	"strings"
	"time"

	"luxchat/internal/accounts"
	"luxchat/internal/config"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Paths of the API under the client listener. The JSON endpoints and the
// pages share PagesPrefix (sso.PagesPrefix: an upstream login returns
// there).
const (
	Prefix           = "/_luxchat/oauth2/"
	PathRegister     = Prefix + "register"
	PathAuthorize    = Prefix + "authorize"
	PathToken        = Prefix + "token"
	PathRevoke       = Prefix + "revoke"
	PathDeviceAuth   = Prefix + "device_authorization"
	PathDevice       = Prefix + "device"
	PathConsent      = Prefix + "consent"
	PathLogin        = Prefix + "login"
	PathSignup       = Prefix + "signup"
	PathUpstream     = Prefix + "upstream"
	PathAccount      = Prefix + "account"
	PathAccountEnd   = Prefix + "account/end"
	PathApprove      = Prefix + "account/approve"
	PathAccountLeave = Prefix + "logout"
)

// Lifetimes.
const (
	requestTTL   = 30 * time.Minute // an authorization request, until the user answers
	codeTTL      = 2 * time.Minute  // an authorization code, until the client exchanges it
	usedKept     = time.Hour        // a used code or device grant is remembered, to recognise a replay
	deviceTTL    = 10 * time.Minute // a device code and its user code
	pollInterval = 5 * time.Second  // the device grant's polling interval
	// BrowserTTL is how long a login to the pages lasts.
	BrowserTTL = 12 * time.Hour
)

// Account management actions (the spec's, and MSC4191's names that
// clients sent before v1.18).
var accountActions = []string{"org.matrix.devices_list", "org.matrix.device_view", "org.matrix.device_delete",
	"org.matrix.sessions_list", "org.matrix.session_view", "org.matrix.session_end", ActionCrossSigningReset}

// ActionCrossSigningReset is the account page's action where the user
// approves replacing their cross-signing keys: the m.oauth stage's URL
// names it with the user-interactive auth session.
const ActionCrossSigningReset = "org.matrix.cross_signing_reset"

// ApprovalURL is the m.oauth stage's url for a user-interactive auth
// session: the account page's cross-signing reset action.
func (s *Service) ApprovalURL(session string) string {
	return s.base() + PathAccount + "?" + url.Values{"action": {ActionCrossSigningReset}, "session": {session}}.Encode()
}

// Error is an OAuth 2.0 error answer (RFC 6749 5.2, RFC 7591 3.2.2, RFC
// 8628 3.5): {"error", "error_description"} with its status.
type Error struct {
	Status      int
	Code        string
	Description string
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func invalidRequest(desc string) *Error {
	return &Error{Status: 400, Code: "invalid_request", Description: desc}
}

func invalidGrant(desc string) *Error {
	return &Error{Status: 400, Code: "invalid_grant", Description: desc}
}

// Service is the authorization server. It is safe for concurrent use;
// everything in flight lives in the store, so any process may answer any
// step.
type Service struct {
	cfg      *config.Config
	store    *store.Store
	accounts *accounts.Service
	log      *slog.Logger
	now      func() time.Time
}

// New returns the service, or nil when oauth.enabled is off.
func New(cfg *config.Config, st *store.Store, acc *accounts.Service, log *slog.Logger) *Service {
	if !cfg.OAuth.Enabled {
		return nil
	}
	return &Service{cfg: cfg, store: st, accounts: acc, log: log, now: time.Now}
}

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

func (s *Service) base() string { return s.cfg.ClientBaseURL() }

// Metadata is the authorization server metadata (GET
// /_matrix/client/v1/auth_metadata).
func (s *Service) Metadata() map[string]any {
	b := s.base()
	m := map[string]any{
		"issuer":                                     b + "/",
		"authorization_endpoint":                     b + PathAuthorize,
		"token_endpoint":                             b + PathToken,
		"registration_endpoint":                      b + PathRegister,
		"revocation_endpoint":                        b + PathRevoke,
		"device_authorization_endpoint":              b + PathDeviceAuth,
		"account_management_uri":                     b + PathAccount,
		"account_management_actions_supported":       accountActions,
		"response_types_supported":                   []string{ResponseTypeCode},
		"response_modes_supported":                   []string{"query", "fragment"},
		"grant_types_supported":                      []string{GrantAuthorizationCode, GrantRefreshToken, GrantDeviceCode},
		"code_challenge_methods_supported":           []string{"S256"},
		"token_endpoint_auth_methods_supported":      []string{"none"},
		"revocation_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                           []string{ScopeAPI, ScopeAPIMSC2967},
	}
	if s.accounts.RegistrationFormOpen() {
		// prompt=create shows the registration page (v1.15 "User
		// registration"); only said where that page takes accounts.
		m["prompt_values_supported"] = []string{PromptCreate}
	}
	return m
}

// PromptCreate is the prompt value of a request to register (Initiating
// User Registration via OpenID Connect 1.0).
const PromptCreate = "create"

// WantsRegistration reports whether an authorization request's prompt
// asks for a new account.
func WantsRegistration(q url.Values) bool {
	return slices.Contains(strings.Fields(q.Get("prompt")), PromptCreate)
}

// Register is dynamic client registration: the registered metadata with
// its client_id. Clients with the same metadata share a client_id, so
// that registrations, one per authorization flow, do not pile up.
func (s *Service) Register(ctx context.Context, body []byte) (map[string]any, error) {
	m, err := ParseRegistration(body)
	if err != nil {
		return nil, err
	}
	stored := m.stored()
	id, err := s.store.PutOAuthClient(ctx, randomID(), hashOf(stored), stored, s.now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("register oauth client: %w", err)
	}
	return m.response(id), nil
}

// Client returns a registered client, or nil when unknown.
func (s *Service) client(ctx context.Context, clientID string) (*ClientMetadata, error) {
	if clientID == "" || len(clientID) > 64 {
		return nil, nil
	}
	raw, err := s.store.OAuthClient(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up oauth client: %w", err)
	}
	return loadClient(raw)
}

// PageError is an authorization request that cannot be sent back to the
// client (unknown client, redirect URI not registered): the user is shown
// a page with Reason (a key of the pages' strings).
type PageError struct {
	Status int
	Reason string
}

func (e *PageError) Error() string { return e.Reason }

// Authorize checks an authorization request (RFC 6749 4.1.1, PKCE S256
// required). It returns the key of the stored request, for the consent
// page, or the URL to send the browser back to with an error, or a
// *PageError when the client cannot be trusted with a redirect.
func (s *Service) Authorize(ctx context.Context, q url.Values) (key, errorRedirect string, err error) {
	c, err := s.client(ctx, q.Get("client_id"))
	if err != nil {
		return "", "", err
	}
	if c == nil {
		return "", "", &PageError{Status: 400, Reason: "unknown_client"}
	}
	redirectURI := q.Get("redirect_uri")
	if !c.matchRedirectURI(redirectURI) {
		return "", "", &PageError{Status: 400, Reason: "bad_redirect"}
	}
	state := q.Get("state")
	mode := q.Get("response_mode")
	back := func(e *Error) (string, string, error) {
		if mode != "fragment" {
			mode = "query"
		}
		return "", callbackURL(redirectURI, mode, url.Values{"error": {e.Code}, "error_description": {e.Description}, "state": {state}}), nil
	}
	switch mode {
	case "":
		mode = "query"
	case "query", "fragment":
	default:
		return back(invalidRequest("response_mode must be query or fragment"))
	}
	if q.Get("response_type") != ResponseTypeCode || !slices.Contains(c.ResponseTypes, ResponseTypeCode) || !slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
		return back(&Error{Status: 400, Code: "unsupported_response_type", Description: "only the code response type is supported"})
	}
	if q.Get("code_challenge_method") != "S256" {
		return back(invalidRequest("PKCE with code_challenge_method S256 is required"))
	}
	challenge := q.Get("code_challenge")
	if len(challenge) != 43 {
		return back(invalidRequest("code_challenge must be the unpadded base64url SHA-256 of the verifier"))
	}
	if _, err := base64.RawURLEncoding.DecodeString(challenge); err != nil {
		return back(invalidRequest("code_challenge must be the unpadded base64url SHA-256 of the verifier"))
	}
	if len(state) > 1024 {
		return back(invalidRequest("state too long"))
	}
	sc, err := ParseScope(q.Get("scope"))
	if err != nil {
		var e *Error
		errors.As(err, &e)
		return back(e)
	}
	if sc.DeviceID == "" {
		sc.DeviceID = randomDeviceID()
	}
	key = randomKey()
	now := s.now()
	err = s.store.PutOAuthGrant(ctx, store.OAuthGrant{GrantHash: hashOf(key), Kind: "code", ClientID: q.Get("client_id"), RedirectURI: redirectURI,
		ResponseMode: mode, State: state, CodeChallenge: challenge, Scope: sc.String(), DeviceID: sc.DeviceID, Status: "pending",
		ExpiresTS: now.Add(requestTTL).UnixMilli()}, now.Add(-usedKept).UnixMilli())
	if err != nil {
		return "", "", fmt.Errorf("store authorization request: %w", err)
	}
	return key, "", nil
}

// Request is a pending request as the consent page shows it.
type Request struct {
	Client   *ClientMetadata
	DeviceID string
	// RedirectURI is where the answer goes (code requests).
	RedirectURI string
	// UserCode is the code the device shows (device requests).
	UserCode string
}

// RedirectTarget is how the consent page names where the browser goes
// next, and the origin its Content-Security-Policy must allow a form's
// redirect to.
func (r *Request) RedirectTarget() (name, origin string) {
	u, err := url.Parse(r.RedirectURI)
	if err != nil {
		return r.RedirectURI, ""
	}
	if u.Host != "" {
		return u.Host, u.Scheme + "://" + u.Host
	}
	return u.Scheme + ":", u.Scheme + ":"
}

// errNoRequest is a request key or user code that is unknown, expired or
// already answered.
var errNoRequest = &PageError{Status: 400, Reason: "bad_request"}

// ErrNoRequest reports whether err is an unknown, expired or answered
// request.
func ErrNoRequest(err error) bool { return errors.Is(err, errNoRequest) }

// PendingRequest returns the pending authorization request of a key.
func (s *Service) PendingRequest(ctx context.Context, key string) (*Request, error) {
	g, err := s.pending(ctx, hashOf(key), "code")
	if err != nil {
		return nil, err
	}
	c, err := s.client(ctx, g.ClientID)
	if err != nil || c == nil {
		return nil, cmpErr(err, errNoRequest)
	}
	return &Request{Client: c, DeviceID: g.DeviceID, RedirectURI: g.RedirectURI}, nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

func (s *Service) pending(ctx context.Context, hash, kind string) (*store.OAuthGrant, error) {
	if hash == "" {
		return nil, errNoRequest
	}
	g, err := s.store.OAuthGrant(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoRequest
	}
	if err != nil {
		return nil, fmt.Errorf("look up authorization request: %w", err)
	}
	if g.Kind != kind || g.Status != "pending" || g.ExpiresTS <= s.now().UnixMilli() {
		return nil, errNoRequest
	}
	return g, nil
}

// Decide answers a pending authorization request for a logged-in user:
// allowed, an authorization code (single use, codeTTL, hashed at rest)
// goes back to the client with its state; denied, access_denied. It
// returns the URL to send the browser to.
func (s *Service) Decide(ctx context.Context, key, userID string, allow bool) (string, error) {
	g, err := s.pending(ctx, hashOf(key), "code")
	if err != nil {
		return "", err
	}
	params := url.Values{"state": {g.State}}
	now := s.now()
	if allow {
		code := randomKey()
		if err := s.store.DecideOAuthGrant(ctx, g.GrantHash, "approved", userID, hashOf(code), now.Add(codeTTL).UnixMilli()); err != nil {
			return "", cmpErr(ignoreNotFound(err), errNoRequest)
		}
		params.Set("code", code)
	} else {
		if err := s.store.DecideOAuthGrant(ctx, g.GrantHash, "denied", userID, "", now.Add(codeTTL).UnixMilli()); err != nil {
			return "", cmpErr(ignoreNotFound(err), errNoRequest)
		}
		params.Set("error", "access_denied")
		params.Set("error_description", "the user denied the request")
	}
	return callbackURL(g.RedirectURI, g.ResponseMode, params), nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// callbackURL adds params to a redirect URI's query or fragment.
func callbackURL(redirectURI, mode string, params url.Values) string {
	if params.Get("state") == "" {
		params.Del("state")
	}
	if mode == "fragment" {
		return redirectURI + "#" + params.Encode()
	}
	u, err := url.Parse(redirectURI)
	if err != nil {
		return redirectURI
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// TokenResponse is a successful token endpoint answer (RFC 6749 5.1).
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope,omitempty"`
}

func tokenResponse(t *accounts.Tokens, scope string) *TokenResponse {
	return &TokenResponse{AccessToken: t.AccessToken, TokenType: "Bearer", ExpiresIn: t.ExpiresInMS / 1000, RefreshToken: t.RefreshToken, Scope: scope}
}

// Token is the token endpoint: the authorization code, refresh token and
// device code grants. Errors are *Error.
func (s *Service) Token(ctx context.Context, form url.Values) (*TokenResponse, error) {
	for k, v := range form {
		if len(v) > 1 {
			return nil, invalidRequest(k + " is given more than once")
		}
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		return nil, invalidRequest("client_id is required")
	}
	c, err := s.client(ctx, clientID)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, &Error{Status: 401, Code: "invalid_client", Description: "unknown client"}
	}
	grant := form.Get("grant_type")
	switch grant {
	case "":
		return nil, invalidRequest("grant_type is required")
	case GrantAuthorizationCode, GrantDeviceCode:
		if !slices.Contains(c.GrantTypes, grant) {
			return nil, &Error{Status: 400, Code: "unauthorized_client", Description: "the client did not register this grant type"}
		}
	case GrantRefreshToken:
	default:
		return nil, &Error{Status: 400, Code: "unsupported_grant_type", Description: "unsupported grant_type"}
	}
	switch grant {
	case GrantAuthorizationCode:
		return s.exchangeCode(ctx, clientID, form)
	case GrantRefreshToken:
		rt := form.Get("refresh_token")
		if rt == "" {
			return nil, invalidRequest("refresh_token is required")
		}
		t, scope, err := s.accounts.RefreshOAuth(ctx, rt, clientID)
		if errors.Is(err, accounts.ErrInvalidGrant) {
			return nil, invalidGrant("the refresh token is unknown, revoked or was used already")
		}
		if err != nil {
			return nil, err
		}
		return tokenResponse(t, scope), nil
	default:
		return s.pollDevice(ctx, clientID, form.Get("device_code"))
	}
}

// exchangeCode is the authorization code grant. A code is good once: a
// second use ends the session the first one started (RFC 6749 4.1.2).
func (s *Service) exchangeCode(ctx context.Context, clientID string, form url.Values) (*TokenResponse, error) {
	code, verifier := form.Get("code"), form.Get("code_verifier")
	if code == "" || verifier == "" {
		return nil, invalidRequest("code and code_verifier are required")
	}
	codeHash := hashOf(code)
	var replayed *store.OAuthGrant
	var g *store.OAuthGrant
	claim := func(tx *store.Tx) error {
		var err error
		g, err = tx.LockOAuthGrant(ctx, codeHash, true)
		if errors.Is(err, store.ErrNotFound) {
			return invalidGrant("unknown authorization code")
		}
		if err != nil {
			return err
		}
		now := s.now()
		switch {
		case g.Status == "used":
			replayed = g
			return invalidGrant("the authorization code was used already")
		case g.Status != "approved" || g.Kind != "code":
			return invalidGrant("unknown authorization code")
		case g.ExpiresTS <= now.UnixMilli():
			return invalidGrant("the authorization code has expired")
		case g.ClientID != clientID:
			return invalidGrant("the authorization code was issued to another client")
		case form.Get("redirect_uri") != g.RedirectURI:
			return invalidGrant("redirect_uri differs from the authorization request's")
		case !verifierMatches(verifier, g.CodeChallenge):
			return invalidGrant("code_verifier does not match the code_challenge")
		}
		return tx.SetOAuthGrant(ctx, g.GrantHash, "used", now.UnixMilli(), now.Add(usedKept).UnixMilli())
	}
	// The code's user and device are read first; claim checks the row
	// again under its lock.
	pre, err := s.store.OAuthGrantByCode(ctx, codeHash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidGrant("unknown authorization code")
	}
	if err != nil {
		return nil, err
	}
	t, err := s.accounts.StartOAuthSession(ctx, accounts.OAuthSession{UserID: pre.UserID, DeviceID: pre.DeviceID, ClientID: clientID, Scope: pre.Scope}, claim)
	if replayed != nil {
		s.log.Warn("oauth: an authorization code was used twice; ending its session", "user", replayed.UserID, "device", replayed.DeviceID)
		if err := s.accounts.DeleteDevicesNoAuth(ctx, replayed.UserID, []string{replayed.DeviceID}); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, tokenError(err)
	}
	return tokenResponse(t, pre.Scope), nil
}

// tokenError maps a refusal of the session's start (a deactivated user)
// to invalid_grant; an *Error stays as is.
func tokenError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if m, ok := errcode.As(err); ok && m.Status < 500 {
		return invalidGrant(m.Message)
	}
	return err
}

// verifierMatches checks a PKCE verifier (RFC 7636 4.1: 43 to 128
// unreserved characters) against the S256 challenge, in constant time.
func verifierMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 || !validScopeDeviceID(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// Revoke is the revocation endpoint (RFC 7009): the device session of an
// access or refresh token is logged out. An unknown token is not an
// error; nor is a client_id other than the token's (the spec: secret
// scanners revoke leaked tokens).
func (s *Service) Revoke(ctx context.Context, form url.Values) error {
	token := form.Get("token")
	if token == "" {
		return invalidRequest("token is required")
	}
	switch form.Get("token_type_hint") {
	case "", "access_token", "refresh_token":
	default:
		return &Error{Status: 400, Code: "unsupported_token_type", Description: "token_type_hint must be access_token or refresh_token"}
	}
	return s.accounts.RevokeToken(ctx, token)
}

// DeviceAuthorization is the device authorization endpoint (RFC 8628
// 3.1): a device code for the client to poll with and a user code for
// the user to approve on PathDevice.
func (s *Service) DeviceAuthorization(ctx context.Context, form url.Values) (map[string]any, error) {
	c, err := s.client(ctx, form.Get("client_id"))
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, &Error{Status: 401, Code: "invalid_client", Description: "unknown client"}
	}
	if !slices.Contains(c.GrantTypes, GrantDeviceCode) {
		return nil, &Error{Status: 400, Code: "unauthorized_client", Description: "the client did not register the device code grant"}
	}
	sc, err := ParseScope(form.Get("scope"))
	if err != nil {
		return nil, err
	}
	if sc.DeviceID == "" {
		sc.DeviceID = randomDeviceID()
	}
	now := s.now()
	deviceCode := randomKey()
	for range 5 {
		userCode := randomUserCode()
		err = s.store.PutOAuthGrant(ctx, store.OAuthGrant{GrantHash: hashOf(deviceCode), Kind: "device", ClientID: form.Get("client_id"),
			Scope: sc.String(), DeviceID: sc.DeviceID, UserCode: userCode, Status: "pending", ExpiresTS: now.Add(deviceTTL).UnixMilli()},
			now.Add(-usedKept).UnixMilli())
		if errors.Is(err, store.ErrExists) {
			continue // a user code in use: draw another
		}
		if err != nil {
			return nil, fmt.Errorf("store device authorization: %w", err)
		}
		shown := userCode[:4] + "-" + userCode[4:]
		return map[string]any{
			"device_code":               deviceCode,
			"user_code":                 shown,
			"verification_uri":          s.base() + PathDevice,
			"verification_uri_complete": s.base() + PathDevice + "?user_code=" + shown,
			"expires_in":                int(deviceTTL.Seconds()),
			"interval":                  int(pollInterval.Seconds()),
		}, nil
	}
	return nil, fmt.Errorf("no free user code")
}

// pollDevice is the device code grant (RFC 8628 3.4, 3.5).
func (s *Service) pollDevice(ctx context.Context, clientID, deviceCode string) (*TokenResponse, error) {
	if deviceCode == "" {
		return nil, invalidRequest("device_code is required")
	}
	hash := hashOf(deviceCode)
	g, err := s.store.OAuthGrant(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidGrant("unknown device code")
	}
	if err != nil {
		return nil, err
	}
	if g.Kind != "device" || g.ClientID != clientID {
		return nil, invalidGrant("unknown device code")
	}
	var answer *Error
	claim := func(tx *store.Tx) error {
		g, err := tx.LockOAuthGrant(ctx, hash, false)
		if err != nil {
			return cmpErr(ignoreNotFound(err), invalidGrant("unknown device code"))
		}
		now := s.now()
		switch {
		case g.Status == "used":
			return invalidGrant("the device code was used already")
		case g.Status == "denied":
			answer = &Error{Status: 400, Code: "access_denied", Description: "the user denied the request"}
			return tx.DeleteOAuthGrant(ctx, hash)
		case g.ExpiresTS <= now.UnixMilli():
			return &Error{Status: 400, Code: "expired_token", Description: "the device code has expired"}
		case g.Status == "pending":
			answer = &Error{Status: 400, Code: "authorization_pending", Description: "the user has not answered yet"}
			if now.UnixMilli()-g.PolledTS < pollInterval.Milliseconds() {
				answer = &Error{Status: 400, Code: "slow_down", Description: fmt.Sprintf("poll at most every %d seconds", int(pollInterval.Seconds()))}
			}
			return tx.SetOAuthGrant(ctx, hash, g.Status, now.UnixMilli(), g.ExpiresTS)
		case g.Status != "approved":
			return invalidGrant("unknown device code")
		}
		return tx.SetOAuthGrant(ctx, hash, "used", now.UnixMilli(), now.Add(usedKept).UnixMilli())
	}
	if g.Status != "approved" {
		// Nothing to issue: only the grant's row changes.
		if err := s.store.InTx(ctx, claim); err != nil {
			return nil, tokenError(err)
		}
		return nil, answer
	}
	t, err := s.accounts.StartOAuthSession(ctx, accounts.OAuthSession{UserID: g.UserID, DeviceID: g.DeviceID, ClientID: clientID, Scope: g.Scope}, func(tx *store.Tx) error {
		if err := claim(tx); err != nil {
			return err
		}
		if answer != nil {
			return answer
		}
		return nil
	})
	if err != nil {
		return nil, tokenError(err)
	}
	return tokenResponse(t, g.Scope), nil
}

// NormalizeUserCode turns what a user typed into the stored form: letters
// only, upper case.
func NormalizeUserCode(in string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(in) {
		if r >= 'A' && r <= 'Z' && b.Len() < 16 {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// PendingDevice returns the pending device authorization of a user code.
func (s *Service) PendingDevice(ctx context.Context, userCode string) (*Request, error) {
	code := NormalizeUserCode(userCode)
	if len(code) != userCodeLen {
		return nil, errNoRequest
	}
	g, err := s.store.OAuthGrantByUserCode(ctx, code)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoRequest
	}
	if err != nil {
		return nil, err
	}
	if g.Status != "pending" || g.ExpiresTS <= s.now().UnixMilli() {
		return nil, errNoRequest
	}
	c, err := s.client(ctx, g.ClientID)
	if err != nil || c == nil {
		return nil, cmpErr(err, errNoRequest)
	}
	return &Request{Client: c, DeviceID: g.DeviceID, UserCode: code[:4] + "-" + code[4:]}, nil
}

// DecideDevice answers a pending device authorization for a logged-in
// user; the polling client gets its tokens, or access_denied.
func (s *Service) DecideDevice(ctx context.Context, userCode, userID string, allow bool) error {
	code := NormalizeUserCode(userCode)
	if len(code) != userCodeLen {
		return errNoRequest
	}
	g, err := s.store.OAuthGrantByUserCode(ctx, code)
	if errors.Is(err, store.ErrNotFound) {
		return errNoRequest
	}
	if err != nil {
		return err
	}
	if g.ExpiresTS <= s.now().UnixMilli() {
		return errNoRequest
	}
	status := "denied"
	if allow {
		status = "approved"
	}
	return cmpErr(ignoreNotFound(s.store.DecideOAuthGrant(ctx, g.GrantHash, status, userID, "", g.ExpiresTS)), nil)
}

// NewBrowserSession logs a user in to the pages; the returned key is the
// cookie's value.
func (s *Service) NewBrowserSession(ctx context.Context, userID string) (string, error) {
	key := randomKey()
	now := s.now()
	if err := s.store.PutOAuthBrowserSession(ctx, hashOf(key), userID, now.Add(BrowserTTL).UnixMilli(), now.UnixMilli()); err != nil {
		return "", fmt.Errorf("store browser session: %w", err)
	}
	return key, nil
}

// BrowserUser returns the user of a browser session cookie, "" when it
// is unknown, expired, or its account deactivated.
func (s *Service) BrowserUser(ctx context.Context, key string) (string, error) {
	if len(key) != 43 {
		return "", nil
	}
	u, err := s.store.OAuthBrowserSession(ctx, hashOf(key), s.now().UnixMilli())
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return u, err
}

// EndBrowserSession logs the browser out of the pages.
func (s *Service) EndBrowserSession(ctx context.Context, key string) error {
	return s.store.DeleteOAuthBrowserSession(ctx, hashOf(key))
}

// Session is a device as the account page lists it.
type Session struct {
	accounts.Device
	Client *ClientMetadata // nil: not an OAuth session
}

// Sessions lists a user's devices, with the client of those logged in
// through this API.
func (s *Service) Sessions(ctx context.Context, userID string) ([]Session, error) {
	devs, err := s.accounts.Devices(ctx, userID)
	if err != nil {
		return nil, err
	}
	clients, err := s.store.OAuthSessions(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list oauth sessions: %w", err)
	}
	out := make([]Session, 0, len(devs))
	for _, d := range devs {
		se := Session{Device: d}
		if c, ok := clients[d.DeviceID]; ok {
			se.Client, _ = loadClient(c.Metadata)
		}
		out = append(out, se)
	}
	return out, nil
}

// EndSession logs one of a user's devices out.
func (s *Service) EndSession(ctx context.Context, userID, deviceID string) error {
	if _, err := s.accounts.Device(ctx, userID, deviceID); err != nil {
		return err
	}
	return s.accounts.DeleteDevicesNoAuth(ctx, userID, []string{deviceID})
}

// userCodeAlphabet has no vowels (no words) and no look-alike letters.
const (
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLen      = 8
)

func randomUserCode() string { return randomString(userCodeAlphabet, userCodeLen) }

func randomDeviceID() string { return randomString(deviceIDAlphabet, generatedDeviceIDLen) }

func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		// 256 is not a multiple of len(alphabet): reject the top values.
		for int(b[i]) >= 256-256%len(alphabet) {
			var one [1]byte
			_, _ = rand.Read(one[:])
			b[i] = one[0]
		}
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// randomKey is 256 random bits, unpadded base64url: codes, device codes,
// request keys, browser sessions.
func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomID is a client id: 128 random bits.
func randomID() string {
	return strings.ToLower(randomString("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 26))
}

// hashOf is how keys are stored: SHA-256, hex.
func hashOf(k string) string {
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:])
}
