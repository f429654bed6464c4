package accounts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Authentication types of user-interactive auth.
const (
	AuthPassword          = "m.login.password"
	AuthDummy             = "m.login.dummy"
	AuthRegistrationToken = "m.login.registration_token"
)

// uiaSessionTTL is how long a user-interactive auth session lives.
const uiaSessionTTL = time.Hour

// AuthRequired is the answer of an endpoint that needs (more) user-interactive
// authentication; the client API sends it as the spec's 401 body. Err is why
// the last attempt failed, nil when nothing was attempted.
type AuthRequired struct {
	Flows     [][]string
	Params    map[string]any
	Session   string
	Completed []string
	Err       *errcode.Error
}

func (e *AuthRequired) Error() string {
	if e.Err != nil {
		return "user-interactive auth required: " + e.Err.Error()
	}
	return "user-interactive auth required"
}

// Identifier is a user identifier object (m.id.user, m.id.thirdparty,
// m.id.phone).
type Identifier struct {
	Type    string `json:"type"`
	User    string `json:"user"`
	Medium  string `json:"medium"`
	Address string `json:"address"`
	Country string `json:"country"`
	Phone   string `json:"phone"`
}

// authDict is the "auth" object a client submits.
type authDict struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	// m.login.password
	Identifier *Identifier `json:"identifier"`
	User       string      `json:"user"` // deprecated form of identifier
	Password   string      `json:"password"`
	// m.login.registration_token
	Token string `json:"token"`
}

// uiaOp is one call of an endpoint that uses user-interactive auth.
type uiaOp struct {
	name   string // what a session authorises: sessions are not reusable across endpoints
	userID string // the authenticated caller; "" when anonymous
	flows  [][]string
}

// uiaParams is stored in uia_sessions.params.
type uiaParams struct {
	Op                string `json:"op"`
	RegistrationToken string `json:"registration_token,omitempty"`
}

// uiaSession is the state of one session.
type uiaSession struct {
	id        string
	userID    string // who the password stage proved to be, or op.userID
	completed []string
	params    uiaParams
	createdTS int64
}

// userInteractiveAuth runs one round of user-interactive auth for op with
// the client's auth object (nil or JSON null when absent). It returns the
// completed session, or an *AuthRequired, or another error (for example
// M_BAD_JSON). The caller deletes the session once the operation succeeded.
func (s *Service) userInteractiveAuth(ctx context.Context, op uiaOp, auth json.RawMessage) (*uiaSession, error) {
	var dict authDict
	if raw := bytes.TrimSpace(auth); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		if raw[0] != '{' {
			return nil, errcode.BadJSON("auth must be an object")
		}
		if err := json.Unmarshal(raw, &dict); err != nil {
			return nil, errcode.BadJSON("auth: %v", err)
		}
	}
	var sess *uiaSession
	if dict.Session != "" {
		var err error
		if sess, err = s.loadUIASession(ctx, dict.Session); err != nil {
			return nil, err
		}
		// A session authorises one endpoint for one user.
		if sess == nil || sess.params.Op != op.name || (op.userID != "" && sess.userID != "" && sess.userID != op.userID) {
			return nil, errcode.Unknown("unknown or expired auth session")
		}
	} else {
		sess = &uiaSession{id: randomString(alnum, 24), params: uiaParams{Op: op.name}, createdTS: s.now().UnixMilli()}
		s.sweep(ctx)
	}
	if sess.userID == "" {
		sess.userID = op.userID
	}
	var failure *errcode.Error
	if dict.Type != "" && !slices.Contains(sess.completed, dict.Type) {
		if !nextStage(op.flows, sess.completed, dict.Type) {
			failure = errcode.Forbidden("auth type %s is not expected now", dict.Type)
		} else if e, err := s.checkStage(ctx, sess, &dict); err != nil {
			return nil, err
		} else if e != nil {
			failure = e
		} else {
			sess.completed = append(sess.completed, dict.Type)
		}
	}
	if err := s.saveUIASession(ctx, sess); err != nil {
		return nil, err
	}
	if failure != nil || !flowDone(op.flows, sess.completed) {
		return nil, &AuthRequired{Flows: op.flows, Params: map[string]any{}, Session: sess.id, Completed: slices.Clone(sess.completed), Err: failure}
	}
	return sess, nil
}

// checkStage verifies one stage; a non-nil *errcode.Error is a failed
// attempt the client may repeat.
func (s *Service) checkStage(ctx context.Context, sess *uiaSession, d *authDict) (*errcode.Error, error) {
	switch d.Type {
	case AuthDummy:
		return nil, nil
	case AuthSSO:
		// Completed by the fallback page (CompleteSSOStage), never by
		// the client's word.
		return errcode.Unauthorized("log in again through single sign-on in the fallback page first"), nil
	case AuthOAuth:
		// Completed on the account page (CompleteOAuthStage).
		return errcode.Unauthorized("approve this action on the page the m.oauth parameters name first"), nil
	case AuthPassword:
		if !s.PasswordLoginEnabled() {
			return errcode.Forbidden("password login is disabled on this server"), nil
		}
		userID, err := s.resolveUser(d.Identifier, d.User)
		if e, ok := errcode.As(err); ok {
			return e, nil
		} else if err != nil {
			return nil, err
		}
		u, err := s.throttledVerify(ctx, userID, d.Password, "")
		if e, ok := errcode.As(err); ok && e.Code == "M_LIMIT_EXCEEDED" {
			return nil, e // not a stage failure: the client must wait
		} else if ok {
			return e, nil
		} else if err != nil {
			return nil, err
		}
		if sess.userID != "" && u.UserID != sess.userID {
			// Right credentials of the wrong user: no retry of this stage
			// can succeed, so the request is refused (403), not re-asked
			// (401). The session stays as it was.
			return nil, errcode.Forbidden("the credentials are not those of the logged-in user")
		}
		sess.userID = u.UserID
		return nil, nil
	case AuthRegistrationToken:
		ok, err := s.RegistrationTokenValid(ctx, d.Token)
		if err != nil {
			return nil, err
		}
		if !ok {
			return errcode.Unauthorized("invalid registration token"), nil
		}
		sess.params.RegistrationToken = d.Token
		return nil, nil
	}
	return errcode.Forbidden("unsupported auth type %s", d.Type), nil
}

// nextStage reports whether stage may follow completed in some flow: stages
// are completed in order.
func nextStage(flows [][]string, completed []string, stage string) bool {
	for _, f := range flows {
		if len(f) > len(completed) && slices.Equal(f[:len(completed)], completed) && f[len(completed)] == stage {
			return true
		}
	}
	return false
}

// flowDone reports whether completed finishes some flow.
func flowDone(flows [][]string, completed []string) bool {
	for _, f := range flows {
		if len(completed) >= len(f) && slices.Equal(completed[:len(f)], f) {
			return true
		}
	}
	return false
}

func (s *Service) loadUIASession(ctx context.Context, sessionID string) (*uiaSession, error) {
	row, err := s.store.GetUIASession(ctx, sessionID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load auth session: %w", err)
	}
	if s.now().Sub(time.UnixMilli(row.CreatedTS)) > uiaSessionTTL {
		return nil, nil
	}
	sess := &uiaSession{id: row.ID, userID: row.UserID, createdTS: row.CreatedTS}
	if err := json.Unmarshal([]byte(row.Completed), &sess.completed); err != nil {
		return nil, fmt.Errorf("auth session %s: completed: %w", row.ID, err)
	}
	if err := json.Unmarshal([]byte(row.Params), &sess.params); err != nil {
		return nil, fmt.Errorf("auth session %s: params: %w", row.ID, err)
	}
	return sess, nil
}

func (s *Service) saveUIASession(ctx context.Context, sess *uiaSession) error {
	completed, _ := json.Marshal(append([]string{}, sess.completed...))
	params, _ := json.Marshal(sess.params)
	err := s.store.PutUIASession(ctx, store.UIASession{ID: sess.id, UserID: sess.userID, Completed: string(completed), Params: string(params), CreatedTS: sess.createdTS})
	if err != nil {
		return fmt.Errorf("save auth session: %w", err)
	}
	return nil
}

// finishUIA deletes a session whose operation succeeded, so that it cannot
// authorise a second one.
func (s *Service) finishUIA(ctx context.Context, sess *uiaSession) {
	cutoff := s.now().Add(-uiaSessionTTL).UnixMilli()
	if err := s.store.DeleteUIASession(ctx, sess.id, cutoff); err != nil {
		s.log.Warn("delete auth session", "err", err)
	}
}

// sweep deletes expired UIA sessions and nonces, at most once a minute.
func (s *Service) sweep(ctx context.Context) {
	now := s.now().UnixMilli()
	last := s.lastSweep.Load()
	if now-last < time.Minute.Milliseconds() || !s.lastSweep.CompareAndSwap(last, now) {
		return
	}
	if err := s.store.DeleteUIASession(ctx, "", now-uiaSessionTTL.Milliseconds()); err != nil {
		s.log.Warn("sweep auth sessions", "err", err)
	}
	if err := s.store.DeleteStaleNonces(ctx, now-nonceTTL.Milliseconds()); err != nil {
		s.log.Warn("sweep nonces", "err", err)
	}
}

// resolveUser turns a login identifier (or the deprecated top-level "user")
// into a local user id. Third-party identifiers are unknown here: 403.
func (s *Service) resolveUser(ident *Identifier, legacyUser string) (string, error) {
	user := legacyUser
	if ident != nil {
		switch ident.Type {
		case "m.id.user":
			user = ident.User
		case "m.id.thirdparty", "m.id.phone":
			return "", errcode.Forbidden("unknown third-party identifier")
		default:
			return "", errcode.Unknown("unknown identifier type %q", ident.Type)
		}
	}
	if user == "" {
		return "", errcode.MissingParam("identifier is required")
	}
	if !strings.HasPrefix(user, "@") {
		return s.localUserID(strings.ToLower(user)), nil
	}
	if !s.isLocal(user) {
		return "", errcode.Forbidden("invalid username or password")
	}
	return user, nil
}

// RequireUIA runs one round of user-interactive auth (the password) before
// an action of a logged-in user that another domain guards, such as
// replacing cross-signing keys. It returns nil once the caller completed
// it, an *AuthRequired for the client's next round, or another error. The
// session is spent on success: action names what it authorised, so a
// session is never reused for another endpoint.
//
// With approval set (the OAuth 2.0 API is on), a caller whose session
// that API issued is asked for the m.oauth stage alone, approved on the
// page whose URL approval gives for the UIA session (v1.17: such
// sessions know no password stage).
func (s *Service) RequireUIA(ctx context.Context, caller Caller, auth json.RawMessage, action string, approval OAuthApproval) error {
	flows := s.reauthFlows(caller.UserID)
	oauthIssued := false
	if approval != nil && caller.DeviceID != "" {
		var err error
		if oauthIssued, err = s.oauthIssued(ctx, caller); err != nil {
			return err
		}
		if oauthIssued {
			flows = [][]string{{AuthOAuth}}
		}
	}
	sess, err := s.userInteractiveAuth(ctx, uiaOp{name: action, userID: caller.UserID, flows: flows}, auth)
	var ar *AuthRequired
	if oauthIssued && errors.As(err, &ar) {
		ar.Params[AuthOAuth] = map[string]string{"url": approval(ar.Session)}
	}
	if err != nil {
		return err
	}
	s.finishUIA(ctx, sess)
	return nil
}
