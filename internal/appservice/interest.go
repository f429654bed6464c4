package appservice

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"luxchat/internal/store"
)

// interestCache remembers, per room, which services are interested in it
// through its members, its aliases or its id ("An application service is
// said to be interested in a given event if it matches any of the
// namespaces"). An entry is dropped when the room's membership changes
// (Committed) and lives interestTTL at most, since local aliases change
// outside the event pipeline.
type interestCache struct {
	mu    sync.Mutex
	rooms map[string]roomInterest
}

type roomInterest struct {
	services map[string]bool // service id → interested
	at       time.Time
}

const (
	interestTTL      = 30 * time.Second
	interestCacheMax = 100_000
)

func newInterestCache() *interestCache { return &interestCache{rooms: map[string]roomInterest{}} }

func (c *interestCache) drop(roomID string) {
	c.mu.Lock()
	delete(c.rooms, roomID)
	c.mu.Unlock()
}

// roomInterested reports whether r is interested in everything in a room.
func (s *Service) roomInterested(ctx context.Context, r *Registration, roomID string) (bool, error) {
	s.interest.mu.Lock()
	e, ok := s.interest.rooms[roomID]
	if ok && time.Since(e.at) < interestTTL {
		v, known := e.services[r.ID]
		s.interest.mu.Unlock()
		if known {
			return v, nil
		}
	} else {
		s.interest.mu.Unlock()
	}
	v, err := s.computeRoomInterest(ctx, r, roomID)
	if err != nil {
		return false, err
	}
	s.interest.mu.Lock()
	e, ok = s.interest.rooms[roomID]
	if !ok || time.Since(e.at) >= interestTTL {
		if len(s.interest.rooms) >= interestCacheMax {
			s.interest.rooms = map[string]roomInterest{}
		}
		e = roomInterest{services: map[string]bool{}, at: time.Now()}
		s.interest.rooms[roomID] = e
	}
	e.services[r.ID] = v
	s.interest.mu.Unlock()
	return v, nil
}

func (s *Service) computeRoomInterest(ctx context.Context, r *Registration, roomID string) (bool, error) {
	if matchAny(r.Rooms, roomID) {
		return true, nil
	}
	if r.Internal {
		m, err := s.store.GetMembership(ctx, roomID, r.Sender)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil && m.Membership == "join", err
	}
	if len(r.Aliases) > 0 {
		aliases, err := s.store.RoomAliases(ctx, roomID)
		if err != nil {
			return false, err
		}
		for _, a := range aliases {
			if matchAny(r.Aliases, a) {
				return true, nil
			}
		}
	}
	joined, err := s.rooms.JoinedUsers(ctx, roomID)
	if err != nil {
		return false, err
	}
	for _, u := range joined {
		if s.isLocal(u) && r.IsInterestedInUser(u) {
			return true, nil
		}
	}
	return false, nil
}

func (s *Service) isLocal(userID string) bool { return strings.HasSuffix(userID, ":"+s.serverName) }

// eventInterests reports whether r wants an event: its sender or the
// member it is about are r's users, or r is interested in its room.
func (s *Service) eventInterests(ctx context.Context, r *Registration, e *store.EventRow) (bool, error) {
	if s.isLocal(e.Sender) && r.IsInterestedInUser(e.Sender) {
		return true, nil
	}
	if e.Type == "m.room.member" && e.StateKey.Valid && s.isLocal(e.StateKey.String) && r.IsInterestedInUser(e.StateKey.String) {
		return true, nil
	}
	return s.roomInterested(ctx, r, e.RoomID)
}
