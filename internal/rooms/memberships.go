package rooms

import (
	"context"
	"slices"
	"sync"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// membershipCache keeps each syncing user's membership list, which every
// sync needs and which rarely changes.
//
// Writers bump the user's generation twice: inside the transaction (before
// commit) and right after the commit, before the stream position becomes
// visible. A reader stores what it loaded only if the generation did not
// move while it queried, so a list read before a commit can never be
// served alongside a stream position that includes that commit.
type membershipCache struct {
	mu    sync.Mutex
	gen   map[string]uint64
	lists map[string]cachedMemberships
}

type cachedMemberships struct {
	gen  uint64
	list []store.Membership
}

func newMembershipCache() *membershipCache {
	return &membershipCache{gen: map[string]uint64{}, lists: map[string]cachedMemberships{}}
}

func (c *membershipCache) bump(users ...string) {
	c.mu.Lock()
	for _, u := range users {
		c.gen[u]++
		delete(c.lists, u)
	}
	c.mu.Unlock()
}

// Memberships returns a user's memberships (forgotten rooms excluded).
// The caller must not modify the result.
func (s *Service) Memberships(ctx context.Context, userID string) ([]store.Membership, error) {
	c := s.memberships
	c.mu.Lock()
	g := c.gen[userID]
	if e, ok := c.lists[userID]; ok && e.gen == g {
		c.mu.Unlock()
		return e.list, nil
	}
	c.mu.Unlock()
	list, err := s.store.UserMemberships(ctx, userID)
	if err != nil {
		return nil, err
	}
	list = slices.Clip(list)
	c.mu.Lock()
	if c.gen[userID] == g {
		c.lists[userID] = cachedMemberships{g, list}
	}
	c.mu.Unlock()
	return list, nil
}

// JoinedBefore reports whether a join event's sender was already joined
// when they sent it (a profile change, not an arrival): its auth events
// hold the sender's membership before it.
func (s *Service) JoinedBefore(ctx context.Context, join *pdu.Event) (bool, error) {
	auth, err := s.Events(ctx, join.AuthEvents)
	if err != nil {
		return false, err
	}
	for _, a := range auth {
		if a.Type == "m.room.member" && a.StateKey != nil && *a.StateKey == join.Sender && MembershipOf(a) == "join" {
			return true, nil
		}
	}
	return false, nil
}
