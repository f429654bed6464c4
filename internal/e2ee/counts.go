package e2ee

import (
	"context"
	"maps"
	"slices"
	gosync "sync"
)

// countCache keeps each device's one-time key counts and unused fallback
// key types, which every sync of the device reports and which change only
// through this service (uploads, claims, deleted devices). A change
// invalidates the device's entry after its commit; a generation number per
// device keeps a read that raced with a change from caching what it read.
//
// It holds for one process, like the store's stream positions; several
// processes would share the invalidations or drop the cache.
type countCache struct {
	mu gosync.Mutex
	m  map[string]*countEntry
}

type countEntry struct {
	gen      uint64
	valid    bool
	counts   map[string]int
	fallback []string
}

// maxCountEntries bounds the cache; past it, entries are dropped wholesale
// (they are cheap to read again).
const maxCountEntries = 100000

func (c *countCache) entry(key string) *countEntry {
	if c.m == nil {
		c.m = map[string]*countEntry{}
	}
	e := c.m[key]
	if e == nil {
		if len(c.m) >= maxCountEntries {
			c.m = map[string]*countEntry{}
		}
		e = &countEntry{}
		c.m[key] = e
	}
	return e
}

// invalidate forgets a device's counts.
func (c *countCache) invalidate(userID, deviceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entry(userID + "\x00" + deviceID)
	e.gen++
	e.valid, e.counts, e.fallback = false, nil, nil
}

// KeyCounts returns device_one_time_keys_count and
// device_unused_fallback_key_types for a device. Every sync asks: cached
// answers are shared, never copied, and callers must not change them.
func (s *Service) KeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error) {
	key := userID + "\x00" + deviceID
	s.counts.mu.Lock()
	e := s.counts.entry(key)
	if e.valid {
		counts, fallback := e.counts, e.fallback
		s.counts.mu.Unlock()
		return counts, fallback, nil
	}
	gen := e.gen
	s.counts.mu.Unlock()
	counts, fallback, err := s.store.KeyCounts(ctx, userID, deviceID)
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(fallback)
	s.counts.mu.Lock()
	if e := s.counts.entry(key); e.gen == gen {
		e.valid, e.counts, e.fallback = true, maps.Clone(counts), slices.Clone(fallback)
	}
	s.counts.mu.Unlock()
	return counts, fallback, nil
}
