package sync

import (
	"context"
	"errors"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Presence is a user's presence as last set.
type Presence = store.Presence

// PresenceOf returns userID's presence as viewerID may see it: their own,
// or that of a user they share a room with (else M_FORBIDDEN). It is nil
// for a user who never set one (offline); M_NOT_FOUND for a user unknown
// here.
func (s *Service) PresenceOf(ctx context.Context, viewerID, userID string) (*Presence, error) {
	if userID != viewerID {
		shares, err := s.store.SharesRoom(ctx, viewerID, userID)
		if err != nil {
			return nil, err
		}
		if !shares {
			return nil, errcode.Forbidden("you do not share a room with this user")
		}
	}
	p, err := s.store.GetPresence(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		if ok, _ := s.store.UserExists(ctx, userID); !ok {
			return nil, errcode.NotFound("unknown user")
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}
