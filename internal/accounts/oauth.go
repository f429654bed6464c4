package accounts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Sessions of the OAuth 2.0 API (package oauth decides, this package
// keeps the tokens): a session is an ordinary device with an ordinary
// access token, hashed in access_tokens and cached like any other, and a
// refresh token bound to its client.

// ErrInvalidGrant is a refresh token that is unknown, another client's,
// or was used before (its session is then ended).
var ErrInvalidGrant = errors.New("invalid grant")

// spentRefreshKept is how long a used OAuth refresh token is remembered,
// to recognise its reuse.
const spentRefreshKept = 24 * time.Hour

// OAuthSession is a session the OAuth 2.0 token endpoint starts.
type OAuthSession struct {
	UserID   string
	DeviceID string // created when new; its old tokens are revoked otherwise
	ClientID string
	Scope    string
}

// oauthTokens are new tokens for an OAuth session: the access token
// expires after auth.access_token_lifetime when one is set.
func (s *Service) oauthTokens() (*Tokens, int64) {
	t := &Tokens{AccessToken: newToken(accessPrefix), RefreshToken: newToken(refreshPrefix)}
	var expires int64
	if l := s.cfg.Auth.AccessTokenLifetime.Duration; l > 0 {
		t.ExpiresInMS = l.Milliseconds()
		expires = s.now().Add(l).UnixMilli()
	}
	return t, expires
}

// StartOAuthSession issues the tokens of a session in one transaction
// with claim, which spends the grant they are issued for (and may refuse
// with its own error). A deactivated or unknown user gets
// M_USER_DEACTIVATED / M_FORBIDDEN and nothing is spent.
func (s *Service) StartOAuthSession(ctx context.Context, o OAuthSession, claim func(tx *store.Tx) error) (*Tokens, error) {
	if err := checkDeviceID(o.DeviceID); err != nil {
		return nil, err
	}
	t, expires := s.oauthTokens()
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		if err := claim(tx); err != nil {
			return err
		}
		u, err := tx.GetUser(ctx, o.UserID)
		if errors.Is(err, store.ErrNotFound) {
			return errcode.Forbidden("unknown user")
		}
		if err != nil {
			return fmt.Errorf("look up user: %w", err)
		}
		if u.Deactivated {
			return errcode.UserDeactivated("this account has been deactivated")
		}
		deviceID, err := s.sessionDevice(ctx, tx, o.UserID, sessionParams{deviceID: o.DeviceID})
		if err != nil {
			return err
		}
		if err := tx.InsertTokenPair(ctx, hashToken(t.AccessToken), hashToken(t.RefreshToken), o.UserID, deviceID, expires, "", o.ClientID); err != nil {
			return err
		}
		return tx.PutOAuthSession(ctx, o.UserID, deviceID, o.ClientID, o.Scope, s.now().UnixMilli())
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// RefreshOAuth is the refresh token grant: the refresh token is rotated
// as POST /refresh rotates it (the old one stays usable until the new
// pair is used, so that a client that lost the answer can retry), but
// only for the client it was issued to. A refresh token presented after
// its successor was used ends the device's session (RFC 9700 4.14.2):
// someone else holds a copy. It returns the tokens and the session's
// scope.
func (s *Service) RefreshOAuth(ctx context.Context, refreshToken, clientID string) (*Tokens, string, error) {
	hash := hashToken(refreshToken)
	t, expires := s.oauthTokens()
	var scope string
	var leaked *store.DeviceKey
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		rt, err := tx.RotateRefreshToken(ctx, hash, clientID, hashToken(t.AccessToken), hashToken(t.RefreshToken), expires)
		if errors.Is(err, store.ErrNotFound) {
			u, d, err := tx.SpentOAuthRefresh(ctx, hash)
			if err == nil {
				leaked = &store.DeviceKey{UserID: u, DeviceID: d}
				return nil
			}
			if errors.Is(err, store.ErrNotFound) {
				return ErrInvalidGrant
			}
			return err
		}
		if err != nil {
			return err
		}
		now := s.now()
		if err := tx.SpendOAuthRefresh(ctx, hash, rt.UserID, rt.DeviceID, now.UnixMilli(), now.Add(-spentRefreshKept).UnixMilli()); err != nil {
			return err
		}
		if scope, err = tx.OAuthSessionScope(ctx, rt.UserID, rt.DeviceID); err != nil {
			return err
		}
		tx.OnCommit(func() { s.cache.invalidate(rt.UserID, rt.DeviceID) })
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if leaked != nil {
		s.log.Warn("oauth: a used refresh token came back; ending its session", "user", leaked.UserID, "device", leaked.DeviceID)
		if err := s.deleteDevices(ctx, leaked.UserID, []string{leaked.DeviceID}); err != nil {
			return nil, "", err
		}
		return nil, "", ErrInvalidGrant
	}
	return t, scope, nil
}

// RevokeToken logs out the device of an access or refresh token (RFC
// 7009: both tokens of the session go). An unknown token is not an error.
func (s *Service) RevokeToken(ctx context.Context, token string) error {
	userID, deviceID, err := s.store.TokenDevice(ctx, hashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.deleteDevices(ctx, userID, []string{deviceID})
}

// PasswordLogin checks a user name (localpart or user id) and password
// for the server's own login page, behind the failed-login throttle; it
// returns the user id. Errors are those of POST /login.
func (s *Service) PasswordLogin(ctx context.Context, user, password, ip string) (string, error) {
	if !s.PasswordLoginEnabled() {
		return "", errcode.Forbidden("password login is disabled")
	}
	userID, err := s.resolveUser(nil, user)
	if err != nil {
		return "", err
	}
	u, err := s.throttledVerify(ctx, userID, password, ip)
	if err != nil {
		return "", err
	}
	return u.UserID, nil
}

// AuthOAuth is the user-interactive auth stage of sessions the OAuth 2.0
// API issued (v1.17, MSC4312): the user approves the action on the
// server's account page, then the client retries with the session alone.
const AuthOAuth = "m.oauth"

// OAuthApproval gives the URL of the page where the user approves the
// action of a user-interactive auth session (the m.oauth stage's url).
type OAuthApproval func(session string) string

// oauthIssued reports whether the caller's device is a session of the
// OAuth 2.0 API.
func (s *Service) oauthIssued(ctx context.Context, c Caller) (bool, error) {
	sessions, err := s.store.OAuthSessions(ctx, c.UserID)
	if err != nil {
		return false, fmt.Errorf("list oauth sessions: %w", err)
	}
	_, ok := sessions[c.DeviceID]
	return ok, nil
}

// CompleteOAuthStage marks the m.oauth stage of a session completed:
// userID, logged in to the account page, approved its action there. It
// is refused (M_FORBIDDEN) when the session is someone else's, and
// M_NOT_FOUND when it is unknown, expired, or not for action.
func (s *Service) CompleteOAuthStage(ctx context.Context, sessionID, userID, action string) error {
	sess, err := s.loadUIASession(ctx, sessionID)
	if err != nil {
		return err
	}
	if sess == nil || sess.userID == "" || sess.params.Op != action {
		return errcode.NotFound("unknown or expired auth session")
	}
	if sess.userID != userID {
		return errcode.Forbidden("this request is another user's")
	}
	if slices.Contains(sess.completed, AuthOAuth) {
		return nil
	}
	sess.completed = append(sess.completed, AuthOAuth)
	return s.saveUIASession(ctx, sess)
}
