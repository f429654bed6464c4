package roomread

import (
	"context"
	"encoding/json"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// Profile is a member's display name and avatar as a member event had them.
type Profile struct {
	DisplayName *string `json:"displayname,omitempty"`
	AvatarURL   *string `json:"avatar_url,omitempty"`
}

// ProfileAt returns the profile a user had in the room just before an
// event (search results show the historic profile of their senders); nil
// when the user was not a member then.
func (s *Service) ProfileAt(ctx context.Context, row *store.EventRow, userID string) (*Profile, error) {
	ev, err := s.rooms.StateEntry(ctx, row.RoomID, row.StateGroup, pdu.StateTuple{Type: "m.room.member", StateKey: userID})
	if err != nil || ev == nil {
		return nil, err
	}
	var p Profile
	_ = json.Unmarshal(ev.Content, &p)
	return &p, nil
}
