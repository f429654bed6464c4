package rooms

import (
	"context"
	"errors"
	"fmt"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// What administrators do to whole rooms (Synapse's admin API): block,
// shut down (every local member leaves) and purge (every row of the room
// goes).
//
// A purge marks the room as being purged (Service.purging), so that
// LockRoom answers ErrUnknownRoom from then on, then takes the room's
// writer lock once: a send that holds it commits first, one waiting for
// it finds the room gone (Room.gone). The rows are deleted afterwards, in
// batches of their own transactions, without the room's lock (no writer
// can reach the room any more) and without holding SQLite's one writer
// for long.

// ErrRoomBlocked refuses joins and invites to a blocked room.
var ErrRoomBlocked = errcode.Forbidden("this room has been blocked on this server")

// checkBlocked refuses a local user's join, knock or invite into a room
// an administrator blocked.
func (s *Service) checkBlocked(ctx context.Context, c MemberChange) error {
	if c.Membership != "join" && c.Membership != "invite" && c.Membership != "knock" {
		return nil
	}
	_, blocked, err := s.store.RoomBlock(ctx, c.RoomID)
	if err != nil {
		return err
	}
	if blocked {
		return ErrRoomBlocked
	}
	return nil
}

// SetBlocked blocks (by: the administrator) or unblocks a room, known
// here or not.
func (s *Service) SetBlocked(ctx context.Context, roomID, by string, block bool) error {
	return s.store.SetRoomBlocked(ctx, roomID, by, block)
}

// Blocked reports whether a room is blocked and by whom.
func (s *Service) Blocked(ctx context.Context, roomID string) (by string, blocked bool, err error) {
	return s.store.RoomBlock(ctx, roomID)
}

// LocalMembers returns the local users whose membership of the room is
// join, invite or knock.
func (s *Service) LocalMembers(ctx context.Context, roomID string) ([]string, error) {
	ms, err := s.store.RoomMemberships(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if s.IsLocal(m.UserID) && (m.Membership == "join" || m.Membership == "invite" || m.Membership == "knock") {
			out = append(out, m.UserID)
		}
	}
	return out, nil
}

// EvictLocal makes a local user leave a room (a join, an invite or a
// knock ends) as they would themselves, so that no power is needed, and
// forget it. Other servers learn of it from the leave event.
func (s *Service) EvictLocal(ctx context.Context, roomID, userID string) error {
	if _, err := s.ChangeMembership(ctx, MemberChange{RoomID: roomID, Sender: userID, Target: userID, Membership: "leave"}); err != nil {
		return err
	}
	if err := s.Forget(ctx, roomID, userID); err != nil {
		var e *errcode.Error
		if !errors.As(err, &e) {
			return err
		}
	}
	return nil
}

// RoomAliases lists the local aliases that point at a room.
func (s *Service) RoomAliases(ctx context.Context, roomID string) ([]string, error) {
	return s.store.RoomAliases(ctx, roomID)
}

// MoveAlias points a local alias at another room (a shut-down room's
// aliases lead to its replacement).
func (s *Service) MoveAlias(ctx context.Context, alias, roomID, userID string) error {
	return s.store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.DeleteAlias(ctx, alias); err != nil {
			return err
		}
		return tx.PutAlias(ctx, alias, roomID, userID)
	})
}

// HighestLocalPower returns the local joined member with the highest
// power level in the room ("" when none may change power levels) and
// that level.
func (s *Service) HighestLocalPower(ctx context.Context, roomID string) (string, int64, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return "", 0, err
	}
	defer r.Unlock()
	pl := eventauth.RoomPowerLevels(r.state[pdu.StateTuple{Type: "m.room.create"}], r.state[pdu.StateTuple{Type: "m.room.power_levels"}])
	best, level := "", int64(0)
	for u := range r.joined {
		if !s.IsLocal(u) {
			continue
		}
		l := int64(pl.UserLevel(u))
		if pl.IsCreator(u) {
			l = 1 << 53 // a creator's power is above any level (room version 12)
		}
		if best == "" || l > level || (l == level && u < best) {
			best, level = u, l
		}
	}
	if best != "" && level < int64(pl.EventLevel("m.room.power_levels", true)) {
		return "", 0, nil
	}
	return best, level, nil
}

// PurgeProgress is told how many events a purge deleted so far.
type PurgeProgress func(events int64)

// Purge deletes every row of a room: its events and what hangs off them
// (media references, search rows, relations, receipts, notifications,
// state), its memberships, aliases and summaries, and the room itself,
// then drops what the caches hold of it. Only the block and the
// deletion's status are kept (store.KeptRoomTables). Local members
// should have left first: their clients would otherwise keep a room the
// server no longer knows. Safe while the room is being written to:
// writers then find the room unknown.
func (s *Service) Purge(ctx context.Context, roomID string, progress PurgeProgress) error {
	s.purging.Store(roomID, true)
	defer s.purging.Delete(roomID)
	r := s.roomEntry(roomID)
	r.mu.Lock()
	r.gone, r.loaded, r.stateDropped = true, false, false
	r.state, r.joined, r.memberships = nil, nil, nil
	s.mu.Lock()
	if s.rooms[roomID] == r {
		delete(s.rooms, roomID)
	}
	s.mu.Unlock()
	r.mu.Unlock()

	ms, err := s.store.RoomMemberships(ctx, roomID)
	if err != nil {
		return err
	}
	if err := s.store.PurgeRoomEventKeyed(ctx, roomID); err != nil {
		return err
	}
	const batch = 500
	var total int64
	// Twice: rows written without the room's lock while the first pass
	// ran (receipts, tags, staged notifications) go in the second.
	for pass := 0; pass < 2; pass++ {
		for {
			ids, err := s.store.PurgeRoomEvents(ctx, roomID, batch)
			if err != nil {
				return fmt.Errorf("purge %s: %w", roomID, err)
			}
			for _, id := range ids {
				s.events.drop(id)
				s.bases.drop(id)
				s.forms.drop(id)
			}
			total += int64(len(ids))
			if progress != nil && len(ids) > 0 {
				progress(total)
			}
			if len(ids) < batch {
				break
			}
		}
		for {
			n, err := s.store.PurgeRoomStateGroups(ctx, roomID, batch)
			if err != nil {
				return fmt.Errorf("purge %s: %w", roomID, err)
			}
			if n < batch {
				break
			}
		}
		if err := s.store.PurgeRoomRows(ctx, roomID); err != nil {
			return fmt.Errorf("purge %s: %w", roomID, err)
		}
	}
	s.versions.Delete(roomID)
	s.latest.Delete(roomID)
	s.recent.drop(roomID)
	s.views.drop(roomID)
	users := make([]string, 0, len(ms))
	for _, m := range ms {
		users = append(users, m.UserID)
	}
	s.memberships.bump(users...)
	return nil
}

// isPurging reports whether the room is being purged.
func (s *Service) isPurging(roomID string) bool {
	_, ok := s.purging.Load(roomID)
	return ok
}

// AdminViewer is a server administrator's view of a room's history: every
// event, whatever the history visibility (Synapse's admin /messages).
func (s *Service) AdminViewer(ctx context.Context, roomID string) (*Viewer, error) {
	if _, err := s.VersionOf(ctx, roomID); err != nil {
		return nil, err
	}
	return &Viewer{s: s, all: true, byGroup: map[int64]bool{}}, nil
}
