package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"sort"

	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// LatestPos is the position of a room's newest event, known without a
// query once the room has been written to or loaded; -1 when unknown.
func (s *Service) LatestPos(roomID string) int64 {
	if v, ok := s.latest.Load(roomID); ok {
		return v.(int64)
	}
	return -1
}

// CurrentStateIDs returns a room's current state.
func (s *Service) CurrentStateIDs(ctx context.Context, roomID string) (store.StateMap, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	return r.StateIDs(), nil
}

// RenderState renders state events for a user. Rows already at hand (by
// event id, may be nil) are used before the database.
func (s *Service) RenderState(ctx context.Context, st store.StateMap, userID string, have map[string]*store.EventRow) ([]json.RawMessage, error) {
	if len(have) == 0 {
		return s.renderState(ctx, st, userID)
	}
	out := make([]json.RawMessage, 0, len(st))
	var missing store.StateMap
	for k, id := range st {
		if row := have[id]; row != nil {
			out = append(out, s.ClientEvent(row, Format{Viewer: userID}))
		} else {
			if missing == nil {
				missing = store.StateMap{}
			}
			missing[k] = id
		}
	}
	if len(missing) > 0 {
		rest, err := s.renderState(ctx, missing, userID)
		if err != nil {
			return nil, err
		}
		out = append(out, rest...)
	}
	return out, nil
}

// StrippedState is the state shown with an invite or knock: the room's
// name, avatar, topic, join rules, encryption, create event and aliases
// as they were when the invite or knock was sent (later changes are for
// members only), plus the user's own member event and the inviter's.
func (s *Service) StrippedState(ctx context.Context, roomID, userID string) ([]json.RawMessage, error) {
	if _, err := s.VersionOf(ctx, roomID); err != nil {
		if st := s.RemoteStrippedState(ctx, roomID, userID); st != nil && errors.Is(err, ErrUnknownRoom) {
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
	for _, t := range StrippedTypes {
		ev, err := s.StateEntry(ctx, roomID, row.StateGroup, pdu.StateTuple{Type: t})
		if err != nil {
			return nil, err
		}
		if ev != nil {
			evs = append(evs, ev)
		}
	}
	own, err := s.ParseRow(ctx, row)
	if err != nil {
		return nil, err
	}
	evs = append(evs, own)
	if own.Sender != userID {
		inviter, err := s.StateEntry(ctx, roomID, row.StateGroup, pdu.StateTuple{Type: "m.room.member", StateKey: own.Sender})
		if err != nil {
			return nil, err
		}
		if inviter != nil {
			evs = append(evs, inviter)
		}
	}
	out := make([]json.RawMessage, 0, len(evs))
	for _, ev := range evs {
		out = append(out, StrippedEvent(ev))
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
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	sum := &Summary{Heroes: []string{}}
	var others, left []string
	for t, ev := range r.state {
		if t.Type != "m.room.member" {
			continue
		}
		switch MembershipOf(ev) {
		case "join":
			sum.JoinedMemberCount++
			if t.StateKey != userID {
				others = append(others, t.StateKey)
			}
		case "invite":
			sum.InvitedMemberCount++
			if t.StateKey != userID {
				others = append(others, t.StateKey)
			}
		case "leave", "ban":
			if t.StateKey != userID {
				left = append(left, t.StateKey)
			}
		}
	}
	if len(others) == 0 {
		others = left
	}
	sort.Strings(others)
	if len(others) > 5 {
		others = others[:5]
	}
	sum.Heroes = others
	return sum, nil
}

// CanSendState reports whether a user's power level allows sending a state
// event of this type in the room now.
func (s *Service) CanSendState(ctx context.Context, roomID, userID, typ string) bool {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return false
	}
	defer r.mu.Unlock()
	if _, ok := r.joined[userID]; !ok {
		return false
	}
	pl := eventauth.RoomPowerLevels(r.state[pdu.StateTuple{Type: "m.room.create"}], r.state[pdu.StateTuple{Type: "m.room.power_levels"}])
	return pl.UserLevel(userID) >= pl.EventLevel(typ, true)
}

// IsJoined reports whether a user is joined to a room now.
func (s *Service) IsJoined(ctx context.Context, roomID, userID string) (bool, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return false, err
	}
	defer r.mu.Unlock()
	_, ok := r.joined[userID]
	return ok, nil
}

// StateAfter is a room's state after one of its events; empty when the
// event is not stored here (a room known only through an invite).
func (s *Service) StateAfter(ctx context.Context, roomID, eventID string) (store.StateMap, error) {
	st, err := s.stateAfter(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return st, err
}
