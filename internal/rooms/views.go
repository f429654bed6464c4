package rooms

import (
	"container/list"
	"sync"

	"luxchat/internal/store"
)

// RoomView is what an initial sync reads of a room: its newest timeline
// rows and its current state, as of a position. An initial sync of a user
// in a thousand rooms would otherwise read some 30,000 rows again each
// time. Views are shared between syncs: never modify one.
type RoomView struct {
	UpTo     int64             // the view holds the room as of this position
	Rows     []*store.EventRow // newest first, at most the limit it was read with
	Complete bool              // Rows are the room's whole timeline up to UpTo
	State    []StateEntryID    // the current state; nil when not read
	size     int
}

// StateEntryID is one entry of a room's current state.
type StateEntryID struct {
	Key     store.StateKey
	EventID string
}

// StateMap is the view's state as a new map the caller may change.
func (v *RoomView) StateMap() store.StateMap {
	st := make(store.StateMap, len(v.State))
	for _, e := range v.State {
		st[e.Key] = e.EventID
	}
	return st
}

// Covers reports whether the view answers a timeline of limit rows.
func (v *RoomView) Covers(limit int) bool { return v.Complete || len(v.Rows) >= limit }

// roomViews caches RoomViews, least recently used first out, within a
// bound in bytes (an estimate of what the rows and state hold). A view
// stays valid as long as no event enters its room after UpTo: every
// change of a room's timeline or state is an event at a new position
// (LatestPos), a redaction too; what changes a room without one (the
// completion of a partial state) drops the room's view.
type roomViews struct {
	mu    sync.Mutex
	max   int // bytes
	bytes int
	lru   list.List // of *viewItem, most recently used first
	items map[string]*list.Element
	gen   uint64 // counts drops: a view read across one is not kept
}

type viewItem struct {
	roomID string
	view   *RoomView
}

// viewBytes bounds the views: about 1,300 rooms of a typical user (~11
// rows and ~17 state entries each, ~12 KiB).
const viewBytes = 16 << 20

// viewRoomShare is the largest view kept, as a share of the bound: the
// state of a room of thousands of members is read by few syncs (most
// lazy-load members), and would push out the views of hundreds of small
// rooms.
const viewRoomShare = 32

func newRoomViews(max int) *roomViews {
	return &roomViews{max: max, items: map[string]*list.Element{}}
}

func (c *roomViews) get(roomID string) *RoomView {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.items[roomID]
	if e == nil {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*viewItem).view
}

func (c *roomViews) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *roomViews) put(roomID string, v *RoomView, gen uint64) {
	v.size = 200 + 48*len(v.State)
	for _, r := range v.Rows {
		v.size += rowBytes(r)
	}
	for _, e := range v.State {
		v.size += len(e.Key.Type) + len(e.Key.StateKey) + len(e.EventID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	c.removeLocked(roomID)
	if v.size > c.max/viewRoomShare {
		return
	}
	c.items[roomID] = c.lru.PushFront(&viewItem{roomID: roomID, view: v})
	c.bytes += v.size
	for c.bytes > c.max {
		c.removeLocked(c.lru.Back().Value.(*viewItem).roomID)
	}
}

func (c *roomViews) removeLocked(roomID string) {
	if e := c.items[roomID]; e != nil {
		c.bytes -= e.Value.(*viewItem).view.size
		c.lru.Remove(e)
		delete(c.items, roomID)
	}
}

func (c *roomViews) drop(roomID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.removeLocked(roomID)
}

// rowBytes estimates the memory a row holds.
func rowBytes(r *store.EventRow) int {
	// The struct, its strings, the compressed PDU (rendering decodes it
	// without keeping the result: EventRow.JSONOnce).
	return 450 + len(r.EventID) + len(r.Sender) + len(r.Unsigned) + r.StoredSize()
}

// RoomView returns the cached view of a room that is still current at
// position upTo, or nil. A view of a room with events after its UpTo is
// stale; one made at a later position than upTo could show more than
// upTo and is not used either.
func (s *Service) RoomView(roomID string, upTo int64) *RoomView {
	v := s.views.get(roomID)
	if v == nil || v.UpTo > upTo {
		return nil
	}
	// LatestPos is unknown (-1) for a room without events since the
	// process started, which then has none after UpTo either.
	if latest := s.LatestPos(roomID); latest > v.UpTo {
		return nil
	}
	return v
}

// RoomViewGeneration is taken before reading what PutRoomView caches.
func (s *Service) RoomViewGeneration() uint64 { return s.views.generation() }

// PutRoomView caches a view of a room read at position v.UpTo (rows
// with positions up to UpTo, the current state read once UpTo was
// reached) after RoomViewGeneration returned gen.
func (s *Service) PutRoomView(roomID string, v *RoomView, gen uint64) {
	if latest := s.LatestPos(roomID); latest > v.UpTo {
		return // already stale
	}
	s.views.put(roomID, v, gen)
}
