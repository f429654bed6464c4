package rooms

import (
	"sync"

	"luxchat/internal/store"
)

// recentEvents keeps the last few stored rows of recently active rooms, so
// that an incremental sync, which mostly wants the one or two events since
// its token, needs no query. Like the unread tracker, a room's ring is
// complete from completeFrom on; older windows go to the database.
type recentEvents struct {
	mu    sync.Mutex
	rooms map[string]*recentRing
}

type recentRing struct {
	completeFrom int64
	rows         []*store.EventRow // ascending positions
}

const (
	recentPerRoom  = 16
	recentMaxRooms = 1000
)

func newRecentEvents() *recentEvents { return &recentEvents{rooms: map[string]*recentRing{}} }

// add records a row being committed; startPos is the room's newest position
// before it (the ring is complete from there when it is new).
func (c *recentEvents) add(row *store.EventRow, startPos int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[row.RoomID]
	if r == nil {
		if len(c.rooms) >= recentMaxRooms {
			for k := range c.rooms { // drop an arbitrary room
				delete(c.rooms, k)
				break
			}
		}
		r = &recentRing{completeFrom: startPos}
		c.rooms[row.RoomID] = r
	}
	r.rows = append(r.rows, row)
	if len(r.rows) > recentPerRoom {
		drop := len(r.rows) - recentPerRoom
		r.completeFrom = r.rows[drop-1].Pos
		r.rows = append(r.rows[:0:0], r.rows[drop:]...)
	}
}

// drop forgets a room's ring (after a rollback or a redaction, whose rows
// would otherwise be stale).
func (c *recentEvents) drop(roomID string) {
	c.mu.Lock()
	delete(c.rooms, roomID)
	c.mu.Unlock()
}

// window returns up to limit rows with from < pos <= to, newest first, and
// whether the ring covers the window.
func (c *recentEvents) window(roomID string, from, to int64, limit int) ([]*store.EventRow, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[roomID]
	if r == nil || from < r.completeFrom {
		return nil, false
	}
	var out []*store.EventRow
	for i := len(r.rows) - 1; i >= 0 && len(out) < limit; i-- {
		if p := r.rows[i].Pos; p > from && p <= to {
			out = append(out, r.rows[i])
		}
	}
	return out, true
}

// RecentEvents returns up to limit events of a room with from < pos <= to,
// newest first, from memory when the window is recent enough, else from
// the database. The slice is new, the caller's; the rows are shared:
// callers must not modify them.
func (s *Service) RecentEvents(roomID string, from, to int64, limit int) ([]*store.EventRow, bool) {
	return s.recent.window(roomID, from, to, limit)
}
