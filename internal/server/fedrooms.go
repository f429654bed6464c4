package server

import (
	"context"
	"encoding/json"
	"time"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/roomfed"
	"luxchat/internal/rooms"
)

// roomsFederation gives the room federation the federation client, key
// look-ups and policy; nil when federation is disabled.
func (s *Server) roomsFederation() *roomfed.Federation {
	if s.Federation == nil {
		return nil
	}
	return &roomfed.Federation{Client: s.Federation, VerifyKey: s.Keys.VerifyKey, Allowed: s.policy.Allowed}
}

// roomsRemote is the rooms service's way to the room federation, which is
// built after it (the room federation commits through rooms): each call
// goes to s.RoomFed at the time it runs.
type roomsRemote struct{ s *Server }

func (r roomsRemote) Federated() bool { return r.s.RoomFed.Federated() }

func (r roomsRemote) RemoteMembership(c rooms.MemberChange) func(context.Context, rooms.MemberChange) (string, error) {
	return r.s.RoomFed.RemoteMembership(c)
}

func (r roomsRemote) Invite(ctx context.Context, v *roomversion.Version, ev *pdu.Event, stripped []json.RawMessage) (string, error) {
	return r.s.RoomFed.Invite(ctx, v, ev, stripped)
}

func (r roomsRemote) FetchHistory(ctx context.Context, roomID string, want int, deadline time.Time) (int, error) {
	return r.s.RoomFed.FetchHistory(ctx, roomID, want, deadline)
}
