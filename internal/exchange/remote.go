package exchange

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"luxchat/internal/accounts"
	"luxchat/internal/e2ee"
	"luxchat/internal/federation"
	"luxchat/internal/matrix/errcode"
)

// remoteKeys implements e2ee.Remote with the Server-Server API.
type remoteKeys struct{ s *Service }

// QueryKeys asks POST /_matrix/federation/v1/user/keys/query.
func (r remoteKeys) QueryKeys(ctx context.Context, server string, devices map[string][]string) (*e2ee.QueryResult, error) {
	if r.s.client == nil {
		return nil, federation.ErrNotAllowed
	}
	body := map[string]any{"device_keys": devices}
	var out e2ee.QueryResult
	if err := r.s.client.Do(ctx, server, http.MethodPost, "/_matrix/federation/v1/user/keys/query", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ClaimKeys asks POST /_matrix/federation/v1/user/keys/claim.
func (r remoteKeys) ClaimKeys(ctx context.Context, server string, want map[string]map[string]string) (*e2ee.ClaimResult, error) {
	if r.s.client == nil {
		return nil, federation.ErrNotAllowed
	}
	body := map[string]any{"one_time_keys": want}
	var out e2ee.ClaimResult
	if err := r.s.client.Do(ctx, server, http.MethodPost, "/_matrix/federation/v1/user/keys/claim", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Profile asks a remote user's server for their profile
// (GET /_matrix/federation/v1/query/profile). It is
// accounts.Hooks.RemoteProfile.
func (s *Service) Profile(ctx context.Context, userID string) (*accounts.Profile, error) {
	if s.client == nil {
		return nil, errcode.NotFound("profile not found")
	}
	var out struct {
		DisplayName string `json:"displayname"`
		AvatarURL   string `json:"avatar_url"`
	}
	err := s.client.Do(ctx, serverOf(userID), http.MethodGet, "/_matrix/federation/v1/query/profile?user_id="+url.QueryEscape(userID), nil, &out)
	var re *federation.RemoteError
	switch {
	case err == nil:
		return &accounts.Profile{DisplayName: out.DisplayName, AvatarURL: out.AvatarURL}, nil
	case errors.As(err, &re) && re.Status == http.StatusNotFound, errors.Is(err, federation.ErrNotAllowed):
		return nil, errcode.NotFound("profile not found")
	default:
		s.log.Info("federation: profile query failed", "user", userID, "err", err)
		return nil, &errcode.Error{Code: "M_UNKNOWN", Status: http.StatusBadGateway, Message: "the user's server did not answer"}
	}
}
