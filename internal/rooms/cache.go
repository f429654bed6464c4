package rooms

import "sync"

// genCache keeps recently used values in two generations: when the young
// generation is full it becomes the old one, so memory stays within 2×size
// and values in use survive by being promoted on access. Safe for
// concurrent use.
type genCache[V any] struct {
	mu         sync.Mutex
	size       int
	young, old map[string]V
	// cost, when set, measures a value (in bytes) and size bounds the
	// young generation's total cost rather than its count.
	cost      func(V) int
	youngCost int
}

func newGenCache[V any](size int) *genCache[V] {
	return &genCache[V]{size: size, young: map[string]V{}, old: map[string]V{}}
}

// newSizedGenCache is a genCache whose generations hold at most bytes of
// values as cost measures them.
func newSizedGenCache[V any](bytes int, cost func(V) int) *genCache[V] {
	return &genCache[V]{size: bytes, young: map[string]V{}, old: map[string]V{}, cost: cost}
}

func (c *genCache[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.young[key]; ok {
		return v, true
	}
	if v, ok := c.old[key]; ok {
		c.putLocked(key, v)
		return v, true
	}
	var zero V
	return zero, false
}

// getAll looks keys up under one lock: out[i] is the value of keys[i],
// the zero value when it is not cached.
func (c *genCache[V]) getAll(keys []string) []V {
	out := make([]V, len(keys))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, key := range keys {
		if v, ok := c.young[key]; ok {
			out[i] = v
		} else if v, ok := c.old[key]; ok {
			c.putLocked(key, v)
			out[i] = v
		}
	}
	return out
}

func (c *genCache[V]) put(key string, v V) {
	c.mu.Lock()
	c.putLocked(key, v)
	c.mu.Unlock()
}

// putAll puts values[i] under keys[i].
func (c *genCache[V]) putAll(keys []string, values []V) {
	c.mu.Lock()
	for i, k := range keys {
		c.putLocked(k, values[i])
	}
	c.mu.Unlock()
}

func (c *genCache[V]) putLocked(key string, v V) {
	if c.cost == nil {
		if len(c.young) >= c.size {
			c.old, c.young = c.young, make(map[string]V, c.size)
		}
		c.young[key] = v
		return
	}
	n := c.cost(v)
	if old, ok := c.young[key]; ok {
		c.youngCost -= c.cost(old)
	} else if c.youngCost+n > c.size {
		c.old, c.young, c.youngCost = c.young, map[string]V{}, 0
	}
	c.young[key] = v
	c.youngCost += n
}

func (c *genCache[V]) drop(key string) {
	c.mu.Lock()
	if old, ok := c.young[key]; ok && c.cost != nil {
		c.youngCost -= c.cost(old)
	}
	delete(c.young, key)
	delete(c.old, key)
	c.mu.Unlock()
}
