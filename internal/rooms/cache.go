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

// byteCache is eventCache for rendered bytes.
type byteCache struct {
	mu         sync.Mutex
	size       int
	young, old map[string][]byte
}

func newByteCache(size int) *byteCache {
	return &byteCache{size: size, young: map[string][]byte{}, old: map[string][]byte{}}
}

func (c *byteCache) get(id string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.young[id]; ok {
		return b
	}
	if b, ok := c.old[id]; ok {
		c.putLocked(id, b)
		return b
	}
	return nil
}

func (c *byteCache) put(id string, b []byte) {
	c.mu.Lock()
	c.putLocked(id, b)
	c.mu.Unlock()
}

func (c *byteCache) putLocked(id string, b []byte) {
	if len(c.young) >= c.size {
		c.old, c.young = c.young, make(map[string][]byte, c.size)
	}
	c.young[id] = b
}

func (c *byteCache) drop(id string) {
	c.mu.Lock()
	delete(c.young, id)
	delete(c.old, id)
	c.mu.Unlock()
}
