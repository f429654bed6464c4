package rooms

import (
	"context"
	"sync"

	"luxchat/internal/matrix/pdu"
)

// notifyingTypes are the event types that count as unread by default.
// Kept in step with store.CountUnread.
var notifyingTypes = map[string]bool{
	"m.room.message": true, "m.room.encrypted": true, "m.sticker": true,
	"m.poll.start": true, "org.matrix.msc3381.poll.start": true,
}

// unreadTracker answers unread counts incrementally. Each room keeps a ring
// of its latest notifying events (position and sender); each (room, user)
// keeps the count as of some position. A sync then only adds the events the
// ring holds past that position, instead of counting rows: counting made
// every sync of a busy room cost as much as its backlog.
//
// A ring is complete from completeFrom on: events at or before it may be
// missing (before the process started, or dropped from the ring), and a
// count older than that is recomputed from the database.
type unreadTracker struct {
	mu     sync.Mutex
	rings  map[string]*ring
	counts map[[2]string]unreadCount
}

type ring struct {
	completeFrom int64
	entries      []ringEntry // ascending positions
}

type ringEntry struct {
	pos    int64
	sender string
}

type unreadCount struct {
	n    int64
	asOf int64
}

const ringSize = 256

func newUnreadTracker() *unreadTracker {
	return &unreadTracker{rings: map[string]*ring{}, counts: map[[2]string]unreadCount{}}
}

// record adds a committed (or committing) notifying event.
func (t *unreadTracker) record(roomID string, pos int64, sender string, startPos int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rings[roomID]
	if r == nil {
		// Complete from just before the first event seen in this process.
		r = &ring{completeFrom: startPos}
		t.rings[roomID] = r
	}
	r.entries = append(r.entries, ringEntry{pos, sender})
	if len(r.entries) > ringSize {
		drop := len(r.entries) - ringSize
		r.completeFrom = r.entries[drop-1].pos
		r.entries = append(r.entries[:0:0], r.entries[drop:]...)
	}
}

// forget removes entries of a transaction that did not commit.
func (t *unreadTracker) forget(roomID string, pos int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.rings[roomID]; r != nil {
		for i, e := range r.entries {
			if e.pos == pos {
				r.entries = append(r.entries[:i], r.entries[i+1:]...)
				break
			}
		}
	}
}

// reset drops a user's count after their read position moved.
func (t *unreadTracker) reset(roomID, userID string) {
	t.mu.Lock()
	delete(t.counts, [2]string{roomID, userID})
	t.mu.Unlock()
}

// incremental returns the count up to upTo when the ring can provide it.
func (t *unreadTracker) incremental(roomID, userID string, upTo int64) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := [2]string{roomID, userID}
	c, ok := t.counts[key]
	if !ok {
		return 0, false
	}
	if c.asOf >= upTo {
		return c.n, true
	}
	r := t.rings[roomID]
	if r == nil {
		// No notifying event since the process started.
		c.asOf = upTo
		t.counts[key] = c
		return c.n, true
	}
	if c.asOf < r.completeFrom {
		return 0, false
	}
	for _, e := range r.entries {
		if e.pos > c.asOf && e.pos <= upTo && e.sender != userID {
			c.n++
		}
	}
	c.asOf = upTo
	t.counts[key] = c
	return c.n, true
}

func (t *unreadTracker) store(roomID, userID string, n, asOf int64) {
	t.mu.Lock()
	t.counts[[2]string{roomID, userID}] = unreadCount{n, asOf}
	t.mu.Unlock()
}

// Unread returns the number of notifying events by others after the user's
// read receipt, up to position upTo.
func (s *Service) Unread(ctx context.Context, roomID, userID string, upTo int64) (int64, error) {
	if n, ok := s.unread.incremental(roomID, userID, upTo); ok {
		return n, nil
	}
	n, err := s.store.CountUnread(ctx, roomID, userID, upTo)
	if err != nil {
		return 0, err
	}
	s.unread.store(roomID, userID, n, upTo)
	return n, nil
}

// countsMessages reports whether ev goes into the message counter: only
// when push rules are off, since otherwise sync takes its counts from them.
func (s *Service) countsMessages(ev *pdu.Event) bool {
	return !s.cfg.Push.Enabled && !ev.IsState() && notifyingTypes[ev.Type]
}

// ReadMoved tells the tracker that a user's read receipt in a room changed.
// Call it before the receipt's stream position becomes visible
// (store.Tx.OnCommitted), so that no sync sees the receipt with counts
// from before it.
func (s *Service) ReadMoved(roomID, userID string) {
	s.unread.reset(roomID, userID)
	if s.hooks.ReadMoved != nil {
		s.hooks.ReadMoved(roomID, userID)
	}
}

// dropRoom forgets the room's counts (its history was purged): the next
// ones are counted from the database.
func (t *unreadTracker) dropRoom(roomID string) {
	t.mu.Lock()
	for k := range t.counts {
		if k[0] == roomID {
			delete(t.counts, k)
		}
	}
	t.mu.Unlock()
}
