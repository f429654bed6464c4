package rooms

import (
	"context"
	"errors"

	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// UserMembership returns a user's membership of a room ("join", "ban",
// …), "" when they have none.
func (s *Service) UserMembership(ctx context.Context, roomID, userID string) (string, error) {
	m, err := s.store.GetMembership(ctx, roomID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return m.Membership, nil
}

// IsLocal reports whether userID is a user of this server.
func (s *Service) IsLocal(userID string) bool {
	return id.UserID(userID).Server() == id.ServerName(s.serverName)
}
