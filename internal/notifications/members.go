package notifications

import (
	"context"
	"sync"

	"luxchat/internal/push"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Rooms of at least membersCacheMin joined members keep their local
// members grouped by rule set between events (memberSets): an event then
// costs a verdict per rule set, and a look at each member only of the
// sets whose verdict depends on the member or notifies. Smaller rooms
// are grouped afresh per event, which costs about as much as keeping them.
const membersCacheMin = 64

// maxCachedRoomMembers bounds the cached memberships (a member of two
// rooms counts twice); past it, the cache starts over.
const maxCachedRoomMembers = 1 << 20

// roomMembers is a room's local joined members grouped by rule set.
type roomMembers struct {
	version uint64 // the room's membership version it matches
	rules   int64  // Service.gen when its rule sets were looked up
	bySet   map[*push.Compiled]map[string]struct{}
	of      map[string]*push.Compiled
	// unresolved joined since the last event: their rule sets are looked
	// up in the next event's transaction (a Committed listener may not
	// read the store).
	unresolved map[string]struct{}
}

// memberCache holds the roomMembers of big rooms. Each entry is used
// under its room's writer lock (by Index and the Committed listener);
// mu guards the map and size (the members of the entries as put: joins
// since are not counted, the bound need not be exact).
type memberCache struct {
	mu    sync.Mutex
	rooms map[string]*roomMembers
	size  int
}

func (c *memberCache) get(roomID string) *roomMembers {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rooms[roomID]
}

func (c *memberCache) put(roomID string, m *roomMembers) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.rooms[roomID]; old != nil {
		c.size -= len(old.of)
	}
	if c.rooms == nil || c.size+len(m.of) > maxCachedRoomMembers {
		c.rooms, c.size = map[string]*roomMembers{}, 0
	}
	c.rooms[roomID] = m
	c.size += len(m.of)
}

func (c *memberCache) drop(roomID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.rooms[roomID]; old != nil {
		c.size -= len(old.of)
		delete(c.rooms, roomID)
	}
}

// memberSets returns a room's local joined members, its sender included,
// grouped by rule set: kept between events for big rooms, checked
// against the room's membership version and the rules' generation.
// joined are the room's joined members (InspectLocked); the caller holds
// the room's writer lock.
func (s *Service) memberSets(ctx context.Context, tx *store.Tx, roomID string, joined map[string]struct{}) (map[*push.Compiled]map[string]struct{}, error) {
	version := s.rooms.MembershipVersion(roomID)
	gen := s.gen.Load()
	if len(joined) < membersCacheMin || version == 0 {
		m, err := s.groupMembers(ctx, tx, joined)
		if err != nil {
			return nil, err
		}
		s.members.drop(roomID)
		return m.bySet, nil
	}
	m := s.members.get(roomID)
	if m != nil && m.version == version && m.rules == gen {
		if len(m.unresolved) > 0 {
			users := make([]string, 0, len(m.unresolved))
			for u := range m.unresolved {
				users = append(users, u)
			}
			compiled, err := s.compiledFor(ctx, tx, users)
			if err != nil {
				return nil, err
			}
			for _, u := range users {
				m.add(u, compiled[u])
			}
			clear(m.unresolved)
		}
		return m.bySet, nil
	}
	m, err := s.groupMembers(ctx, tx, joined)
	if err != nil {
		return nil, err
	}
	m.version, m.rules = version, gen
	s.members.put(roomID, m)
	return m.bySet, nil
}

// groupMembers groups the local ones of joined by rule set.
func (s *Service) groupMembers(ctx context.Context, tx *store.Tx, joined map[string]struct{}) (*roomMembers, error) {
	var local []string
	for u := range joined {
		if s.isLocal(u) {
			local = append(local, u)
		}
	}
	m := &roomMembers{bySet: map[*push.Compiled]map[string]struct{}{}, of: make(map[string]*push.Compiled, len(local)), unresolved: map[string]struct{}{}}
	if len(local) == 0 {
		return m, nil
	}
	compiled, err := s.compiledFor(ctx, tx, local)
	if err != nil {
		return nil, err
	}
	for _, u := range local {
		m.add(u, compiled[u])
	}
	return m, nil
}

func (m *roomMembers) add(u string, c *push.Compiled) {
	set := m.bySet[c]
	if set == nil {
		set = map[string]struct{}{}
		m.bySet[c] = set
	}
	set[u] = struct{}{}
	m.of[u] = c
}

func (m *roomMembers) remove(u string) {
	delete(m.unresolved, u)
	c, ok := m.of[u]
	if !ok {
		return
	}
	delete(m.of, u)
	if set := m.bySet[c]; set != nil {
		if delete(set, u); len(set) == 0 {
			delete(m.bySet, c)
		}
	}
}

// membersChanged keeps a room's cached members in step with committed
// events (a rooms.Listener's part): applied to the members it matched
// before them, or dropped when it did not.
func (s *Service) membersChanged(c rooms.Committed) {
	m := s.members.get(c.RoomID)
	if m == nil || m.version == c.MembersAfter {
		return
	}
	if c.MembersBefore == 0 || m.version != c.MembersBefore {
		s.members.drop(c.RoomID)
		return
	}
	for u, ms := range c.Memberships {
		if !s.isLocal(u) {
			continue
		}
		if ms == "join" {
			if _, ok := m.of[u]; !ok {
				m.unresolved[u] = struct{}{}
			}
		} else {
			m.remove(u)
		}
	}
	m.version = c.MembersAfter
}
