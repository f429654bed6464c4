package exchange

import (
	"context"
	"errors"
	"net/http"

	"luxchat/internal/accounts"
	"luxchat/internal/e2ee"
	"luxchat/internal/federation"
	"luxchat/internal/matrix/errcode"
)

// remoteKeys implements e2ee.Remote with the Server-Server API.
type remoteKeys struct{ s *Service }

// QueryKeys asks the server's user/keys/query.
func (r remoteKeys) QueryKeys(ctx context.Context, server string, devices map[string][]string) (*e2ee.QueryResult, error) {
	if r.s.client == nil {
		return nil, federation.ErrNotAllowed
	}
	out, err := r.s.client.UserKeysQuery(ctx, server, devices)
	if err != nil {
		return nil, err
	}
	return &e2ee.QueryResult{DeviceKeys: out.DeviceKeys, MasterKeys: out.MasterKeys, SelfSigningKeys: out.SelfSigningKeys}, nil
}

// ClaimKeys asks the server's user/keys/claim.
func (r remoteKeys) ClaimKeys(ctx context.Context, server string, want map[string]map[string]string) (*e2ee.ClaimResult, error) {
	if r.s.client == nil {
		return nil, federation.ErrNotAllowed
	}
	out, err := r.s.client.UserKeysClaim(ctx, server, want)
	if err != nil {
		return nil, err
	}
	return &e2ee.ClaimResult{OneTimeKeys: out.OneTimeKeys}, nil
}

// Profile asks a remote user's server for their profile (query/profile).
// It is accounts.Hooks.RemoteProfile.
func (s *Service) Profile(ctx context.Context, userID string) (*accounts.Profile, error) {
	if s.client == nil {
		return nil, errcode.NotFound("profile not found")
	}
	out, err := s.client.QueryProfile(ctx, serverOf(userID), userID)
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
