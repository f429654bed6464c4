package server

import (
	"context"
	"errors"

	"luxchat/internal/federation"
	"luxchat/internal/rooms"
)

// roomsFederation gives the rooms service the federation client's
// requests, key look-ups and policy, with remote refusals translated to
// rooms.RemoteError (rooms does not import federation).
func (s *Server) roomsFederation(policy *federation.Policy) *rooms.Federation {
	return &rooms.Federation{
		Do: func(ctx context.Context, destination, method, uri string, body, out any) error {
			err := s.Federation.Do(ctx, destination, method, uri, body, out)
			var re *federation.RemoteError
			if errors.As(err, &re) {
				return &rooms.RemoteError{Server: destination, Status: re.Status, Body: re.Body}
			}
			return err
		},
		VerifyKey: s.Keys.VerifyKey,
		Allowed:   policy.Allowed,
	}
}
