package accounts

import (
	"context"
	"errors"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// openIDLifetime is how long an OpenID token proves its user's identity.
const openIDLifetime = time.Hour

// OpenIDToken is the answer of /user/{userId}/openid/request_token.
type OpenIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int64  `json:"expires_in"`
}

// RequestOpenIDToken issues a token that lets a third party learn the
// caller's user id from this server (and nothing else). Only the user
// may ask for its own.
func (s *Service) RequestOpenIDToken(ctx context.Context, callerID, userID string) (*OpenIDToken, error) {
	if callerID != userID {
		return nil, errcode.Forbidden("cannot request an OpenID token for another user")
	}
	tok := newToken("lxo_")
	now := time.Now()
	if err := s.store.PutOpenIDToken(ctx, hashToken(tok), userID, now.Add(openIDLifetime).UnixMilli(), now.UnixMilli()); err != nil {
		return nil, err
	}
	return &OpenIDToken{AccessToken: tok, TokenType: "Bearer", MatrixServerName: s.cfg.ServerName, ExpiresIn: int64(openIDLifetime / time.Second)}, nil
}

// OpenIDUser returns the user an unexpired OpenID token was issued to;
// M_UNKNOWN_TOKEN otherwise.
func (s *Service) OpenIDUser(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", errcode.UnknownToken("access_token is required")
	}
	u, err := s.store.OpenIDTokenUser(ctx, hashToken(token), time.Now().UnixMilli())
	if errors.Is(err, store.ErrNotFound) {
		return "", errcode.UnknownToken("unknown or expired OpenID token")
	}
	return u, err
}
