package rooms

import (
	"sync"

	"luxchat/internal/matrix/pdu"
)

// eventCache keeps recently used parsed events. It is a two-generation map:
// when the young generation is full it becomes the old one, so memory stays
// within 2×size and hot events survive by being promoted on use.
type eventCache struct {
	mu         sync.Mutex
	size       int
	young, old map[string]*pdu.Event
}

func newEventCache(size int) *eventCache {
	return &eventCache{size: size, young: map[string]*pdu.Event{}, old: map[string]*pdu.Event{}}
}

func (c *eventCache) get(id string) *pdu.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev, ok := c.young[id]; ok {
		return ev
	}
	if ev, ok := c.old[id]; ok {
		c.putLocked(ev)
		return ev
	}
	return nil
}

func (c *eventCache) put(ev *pdu.Event) {
	c.mu.Lock()
	c.putLocked(ev)
	c.mu.Unlock()
}

func (c *eventCache) putLocked(ev *pdu.Event) {
	if len(c.young) >= c.size {
		c.old, c.young = c.young, make(map[string]*pdu.Event, c.size)
	}
	c.young[ev.ID] = ev
}

func (c *eventCache) drop(id string) {
	c.mu.Lock()
	delete(c.young, id)
	delete(c.old, id)
	c.mu.Unlock()
}
