package roomread

import (
	"context"
	"encoding/json"
	"errors"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/rooms"
)

// StrippedState is the state shown with an invite or knock: the room's
// name, avatar, topic, join rules, encryption, create event and aliases
// as they were when the invite or knock was sent (later changes are for
// members only), plus the user's own member event and the inviter's.
func (s *Service) StrippedState(ctx context.Context, roomID, userID string) ([]json.RawMessage, error) {
	if _, err := s.rooms.VersionOf(ctx, roomID); err != nil {
		if st := s.rooms.RemoteStrippedState(ctx, roomID, userID); st != nil && errors.Is(err, rooms.ErrUnknownRoom) {
			return st, nil // an invite or knock to a room not known here
		}
		return nil, err
	}
	m, err := s.store.GetMembership(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	row, err := s.store.GetEvent(ctx, m.EventID)
	if err != nil {
		return nil, err
	}
	var evs []*pdu.Event
	for _, t := range rooms.StrippedTypes {
		ev, err := s.rooms.StateEntry(ctx, roomID, row.StateGroup, pdu.StateTuple{Type: t})
		if err != nil {
			return nil, err
		}
		if ev != nil {
			evs = append(evs, ev)
		}
	}
	own, err := s.rooms.ParseRow(ctx, row)
	if err != nil {
		return nil, err
	}
	evs = append(evs, own)
	if own.Sender != userID {
		inviter, err := s.rooms.StateEntry(ctx, roomID, row.StateGroup, pdu.StateTuple{Type: "m.room.member", StateKey: own.Sender})
		if err != nil {
			return nil, err
		}
		if inviter != nil {
			evs = append(evs, inviter)
		}
	}
	out := make([]json.RawMessage, 0, len(evs))
	for _, ev := range evs {
		out = append(out, rooms.StrippedEvent(ev))
	}
	return out, nil
}

// Summary is the room summary of /sync.
type Summary struct {
	Heroes             []string `json:"m.heroes"`
	JoinedMemberCount  int      `json:"m.joined_member_count"`
	InvitedMemberCount int      `json:"m.invited_member_count"`
}

// RoomSummary counts members and picks up to five heroes (other members,
// by user id) for rooms without a name.
func (s *Service) RoomSummary(ctx context.Context, roomID, userID string) (*Summary, error) {
	r, err := s.rooms.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.Unlock()
	sum := &Summary{Heroes: r.Heroes(userID, 5)}
	if sum.Heroes == nil {
		sum.Heroes = []string{}
	}
	sum.JoinedMemberCount, sum.InvitedMemberCount = r.MemberCounts()
	return sum, nil
}
