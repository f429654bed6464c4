package rooms

import (
	"context"
	"slices"

	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// Questions about a room's current state and newest event, answered from
// the room's cache (under its lock) or the pipeline's bookkeeping.

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

// CurrentStateIDsOf is the room's current state without the member
// events of users member does not keep: what a lazy-loading sync shows of
// a big room costs its few members, not a copy of all of them.
func (s *Service) CurrentStateIDsOf(ctx context.Context, roomID string, member func(userID string) bool) (store.StateMap, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	m := make(store.StateMap, max(len(r.state)-len(r.memberships), 0)+8)
	for t, ev := range r.state {
		if t.Type != "m.room.member" || member(t.StateKey) {
			m[store.StateKey{Type: t.Type, StateKey: t.StateKey}] = ev.ID
		}
	}
	return m, nil
}

// CurrentStateIDsWith is CurrentStateIDsOf for a known list of members.
// A room not in the cache is not loaded for it: its state is read from
// the store without the other members' events (a lazy-loading sync of a
// room of 10,000 would otherwise parse 10,000 member events first).
func (s *Service) CurrentStateIDsWith(ctx context.Context, roomID string, members []string) (store.StateMap, error) {
	if !s.StateLoaded(roomID) {
		return s.store.CurrentStateWithMembers(ctx, roomID, members)
	}
	return s.CurrentStateIDsOf(ctx, roomID, func(u string) bool { return slices.Contains(members, u) })
}

// CurrentStateEvent returns a piece of current state (or store.ErrNotFound).
func (s *Service) CurrentStateEvent(ctx context.Context, roomID, typ, key string) (*pdu.Event, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	ev := r.state[pdu.StateTuple{Type: typ, StateKey: key}]
	r.mu.Unlock()
	if ev == nil {
		return nil, store.ErrNotFound
	}
	return ev, nil
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
