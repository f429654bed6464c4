package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// What single sign-on needs of accounts: login tokens (m.login.token), the
// m.login.sso stage of user-interactive auth, accounts created for a
// provider's user, their third-party identifiers.

const (
	// LoginToken is the login type of the short-lived tokens that single
	// sign-on and POST /login/get_token hand out.
	LoginToken = "m.login.token"
	// AuthSSO is the user-interactive auth stage completed by logging in
	// again at an upstream provider, through the fallback page.
	AuthSSO = "m.login.sso"

	loginTokenPrefix = "lxl_"
)

// PasswordLoginEnabled reports whether users may log in with a password.
func (s *Service) PasswordLoginEnabled() bool { return s.cfg.Auth.PasswordLogin }

// ssoEnabled reports whether upstream providers are configured.
func (s *Service) ssoEnabled() bool { return len(s.cfg.OIDC.Providers) > 0 }

// reauthFlows is what account operations ask of a user: the password
// where password login is on, single sign-on where providers are
// configured (either one will do). Single sign-on is offered only to a
// logged-in caller (userID set): its stage is completed in a browser, and
// an anonymous session (a password change without an access token) would
// let whoever started it have a victim's browser complete it for them.
func (s *Service) reauthFlows(userID string) [][]string {
	sso := s.ssoEnabled() && userID != ""
	var flows [][]string
	if s.PasswordLoginEnabled() || !sso {
		flows = append(flows, []string{AuthPassword})
	}
	if sso {
		flows = append(flows, []string{AuthSSO})
	}
	return flows
}

// NewLoginToken issues a single-use login token for a user, valid for
// auth.login_token_lifetime. Only its hash is stored.
func (s *Service) NewLoginToken(ctx context.Context, userID string) (string, time.Duration, error) {
	token := newToken(loginTokenPrefix)
	life := s.cfg.Auth.LoginTokenLifetime.Duration
	now := s.now()
	if err := s.store.PutLoginToken(ctx, hashToken(token), userID, now.Add(life).UnixMilli(), now.UnixMilli()); err != nil {
		return "", 0, fmt.Errorf("store login token: %w", err)
	}
	return token, life, nil
}

// takeLoginToken spends a login token: the user it logs in, or
// M_FORBIDDEN when it is unknown, used or expired.
func (s *Service) takeLoginToken(ctx context.Context, token string) (*store.User, error) {
	if token == "" {
		return nil, errcode.MissingParam("token is required")
	}
	userID, err := s.store.TakeLoginToken(ctx, hashToken(token), s.now().UnixMilli())
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.Forbidden("invalid or expired login token")
	}
	if err != nil {
		return nil, fmt.Errorf("take login token: %w", err)
	}
	u, err := s.lookupUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	if u == nil {
		return nil, errcode.Forbidden("invalid or expired login token")
	}
	if u.Deactivated {
		return nil, errcode.UserDeactivated("this account has been deactivated")
	}
	return u, nil
}

// GetLoginToken hands a logged-in user a login token for another device
// (POST /login/get_token), after user-interactive auth. M_UNRECOGNIZED
// while auth.get_login_token is off.
func (s *Service) GetLoginToken(ctx context.Context, caller Caller, auth json.RawMessage) (string, time.Duration, error) {
	if !s.cfg.Auth.GetLoginToken {
		return "", 0, errcode.Unrecognized("login tokens for other devices are not enabled on this server")
	}
	sess, err := s.userInteractiveAuth(ctx, uiaOp{name: "get_login_token", userID: caller.UserID, flows: s.reauthFlows(caller.UserID)}, auth)
	if err != nil {
		return "", 0, err
	}
	s.finishUIA(ctx, sess)
	return s.NewLoginToken(ctx, caller.UserID)
}

// UIASessionInfo is what the m.login.sso fallback page shows of a
// session: whose it is and what it authorises (the operation's name:
// delete_devices, deactivate, password, get_login_token,
// device_signing_upload…).
type UIASessionInfo struct {
	UserID string
	Action string
}

// UIASession describes an unexpired user-interactive auth session that
// single sign-on may complete; M_NOT_FOUND when there is none, or when it
// is anonymous (see reauthFlows).
func (s *Service) UIASession(ctx context.Context, sessionID string) (UIASessionInfo, error) {
	sess, err := s.loadUIASession(ctx, sessionID)
	if err != nil {
		return UIASessionInfo{}, err
	}
	if sess == nil || sess.userID == "" {
		return UIASessionInfo{}, errcode.NotFound("unknown or expired auth session")
	}
	return UIASessionInfo{UserID: sess.userID, Action: sess.params.Op}, nil
}

// CompleteSSOStage marks the m.login.sso stage of a session completed by
// userID, who has just logged in again at an upstream provider. It is
// refused when the session belongs to someone else.
func (s *Service) CompleteSSOStage(ctx context.Context, sessionID, userID string) error {
	sess, err := s.loadUIASession(ctx, sessionID)
	if err != nil {
		return err
	}
	if sess == nil || sess.userID == "" {
		return errcode.NotFound("unknown or expired auth session")
	}
	if sess.userID != userID {
		return errcode.Forbidden("you logged in as another user than the one this session is for")
	}
	sess.userID = userID
	for _, c := range sess.completed {
		if c == AuthSSO {
			return nil
		}
	}
	sess.completed = append(sess.completed, AuthSSO)
	return s.saveUIASession(ctx, sess)
}

// UserStatus tells whether a local account exists and whether it was
// deactivated.
func (s *Service) UserStatus(ctx context.Context, userID string) (exists, deactivated bool, err error) {
	u, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("look up user: %w", err)
	}
	return true, u.Deactivated, nil
}

// ExternalAccount is an account to create for a user of an upstream
// provider: no password; Link runs in the account's transaction, so that
// the account never exists without the link that finds it again.
type ExternalAccount struct {
	Localpart   string
	DisplayName string // "" starts with the localpart
	Email       string // "" for none; kept as a validated email 3PID when free
	Link        func(ctx context.Context, tx *store.Tx, userID string) error
}

// CreateExternalUser creates an account without a password. M_USER_IN_USE
// when the localpart is taken.
func (s *Service) CreateExternalUser(ctx context.Context, a ExternalAccount) (string, error) {
	if _, err := s.CheckUsername(ctx, a.Localpart); err != nil {
		return "", err
	}
	res, err := s.createAccount(ctx, newAccount{localpart: a.Localpart, displayName: a.DisplayName,
		extra: func(tx *store.Tx, userID string) error {
			if a.Email != "" {
				now := s.now().UnixMilli()
				err := tx.AddThreePID(ctx, userID, store.ThreePID{Medium: "email", Address: a.Email, ValidatedTS: now, AddedTS: now})
				if errors.Is(err, store.ErrExists) {
					// Another account has it: this one goes without.
					s.log.Info("email of a new account is another account's already", "user", userID)
				} else if err != nil {
					return fmt.Errorf("add email: %w", err)
				}
			}
			if a.Link != nil {
				return a.Link(ctx, tx, userID)
			}
			return nil
		}})
	if err != nil {
		return "", err
	}
	return res.UserID, nil
}

// ThreePID is a third-party identifier of an account.
type ThreePID = store.ThreePID

// ThreePIDs lists a user's third-party identifiers.
func (s *Service) ThreePIDs(ctx context.Context, userID string) ([]ThreePID, error) {
	out, err := s.store.ThreePIDs(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list 3pids: %w", err)
	}
	return out, nil
}
