package rooms

import (
	"slices"
	"sync"
)

// activeLog remembers which rooms received events at recent positions, so
// that an incremental sync learns the few rooms with news in its window
// without asking after each of the user's rooms (a user may be in a
// thousand). It keeps at least the last activeLogSize entries; a window
// older than that is answered "unknown" and the caller looks room by room.
type activeLog struct {
	mu      sync.Mutex
	entries []activeEntry // ascending positions
	// coveredFrom: every event at a position above it is in entries.
	coveredFrom int64
}

type activeEntry struct {
	pos    int64
	roomID string
}

const activeLogSize = 4096

func newActiveLog(start int64) *activeLog {
	return &activeLog{coveredFrom: start}
}

// add records that roomID has an event at pos. It is called where the
// room's newest position is published, before the position becomes
// visible to syncs.
func (l *activeLog) add(roomID string, pos int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pos <= l.coveredFrom {
		return // older than the window kept (or a room loaded at start)
	}
	// Concurrent writers may publish slightly out of order: insert in place.
	i := len(l.entries)
	for i > 0 && l.entries[i-1].pos > pos {
		i--
	}
	l.entries = slices.Insert(l.entries, i, activeEntry{pos, roomID})
	if len(l.entries) >= 2*activeLogSize {
		drop := len(l.entries) - activeLogSize
		l.coveredFrom = max(l.coveredFrom, l.entries[drop-1].pos)
		l.entries = append(l.entries[:0:0], l.entries[drop:]...)
	}
}

// since returns the rooms with events at positions above from (each
// once, newest last), and false when the log does not reach back that far.
// A woken sync's window usually holds one room: no map is made.
func (l *activeLog) since(from int64) ([]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if from < l.coveredFrom {
		return nil, false
	}
	i, _ := slices.BinarySearchFunc(l.entries, from+1, func(e activeEntry, p int64) int {
		switch {
		case e.pos < p:
			return -1
		case e.pos > p:
			return 1
		}
		return 0
	})
	var out []string
	for _, e := range l.entries[i:] {
		if !slices.Contains(out, e.roomID) {
			out = append(out, e.roomID)
		}
		if len(out) > 64 {
			return l.distinct(l.entries[i:]), true
		}
	}
	return out, true
}

// distinct lists the rooms of many entries, each once.
func (l *activeLog) distinct(entries []activeEntry) []string {
	seen := make(map[string]bool, len(entries))
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		if !seen[e.roomID] {
			seen[e.roomID] = true
			out = append(out, e.roomID)
		}
	}
	return out
}

// ActiveSince returns the rooms with events at positions above from, or
// false when that is too long ago to know without looking room by room
// (see LatestPos).
func (s *Service) ActiveSince(from int64) ([]string, bool) {
	return s.active.since(from)
}

// setLatest publishes a room's newest position: for LatestPos and for
// ActiveSince.
func (s *Service) setLatest(roomID string, pos int64) {
	s.latest.Store(roomID, pos)
	s.active.add(roomID, pos)
	s.viewsDirty.add(roomID)
}
