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

// RoomSummary is the summary of one room for userID (RoomSummaries).
func (s *Service) RoomSummary(ctx context.Context, roomID, userID string) (*Summary, error) {
	sums, err := s.RoomSummaries(ctx, []string{roomID}, userID)
	if err != nil {
		return nil, err
	}
	return sums[roomID], nil
}

// RoomSummaries returns the summaries of rooms for userID: member counts
// and up to five heroes, the first joined or invited members other than
// the user by user id, or when there are none the first who left or were
// banned. The store keeps counts and candidates as members change, so
// this is one statement for all rooms (and one more for the rooms
// nobody else is in).
func (s *Service) RoomSummaries(ctx context.Context, roomIDs []string, userID string) (map[string]*Summary, error) {
	stored, err := s.store.MemberSummaries(ctx, roomIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Summary, len(roomIDs))
	var alone []string
	for _, roomID := range roomIDs {
		m := stored[roomID]
		sum := &Summary{Heroes: m.Heroes(userID), JoinedMemberCount: int(m.Joined), InvitedMemberCount: int(m.Invited)}
		if len(sum.Heroes) == 0 {
			alone = append(alone, roomID)
		}
		out[roomID] = sum
	}
	if len(alone) > 0 {
		former, err := s.store.FormerMembers(ctx, alone, userID)
		if err != nil {
			return nil, err
		}
		for roomID, users := range former {
			out[roomID].Heroes = users
		}
	}
	return out, nil
}
