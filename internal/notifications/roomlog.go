package notifications

import (
	"slices"

	"luxchat/internal/store"
)

// The fast path of Counts.
//
// A busy room notifies its members on every message, so a sync woken by a
// message would count in the database each time. Instead each room keeps,
// in memory, its recent notifications and the "read by sending" marks of
// its senders, recorded as their transaction commits and before their
// stream position becomes visible (OnCommitted). A cached count as of a
// position still covered by the log, with unchanged read receipts, is
// brought up to date from the log alone.

// maxLogNotes bounds one room's log; maxLogRooms bounds the rooms logged.
const (
	maxLogNotes = 512
	maxLogRooms = 20000
)

// roomLog is a room's recent notifications, in position order: every
// note of the room above start is in it. Positions at or below start may
// be missing from it.
type roomLog struct {
	start int64
	notes []note
}

// note is one event's notifications, or (sentBy set) the mark that its
// sender read their thread up to it by sending it. A room-wide note
// (everyone) notifies every member but its sender, except as recipients
// say otherwise.
type note struct {
	pos        int64
	thread     string
	recipients []store.StagedRecipient
	everyone   bool
	sender     string // of a room-wide note, whom it does not notify
	sentBy     string
}

// record adds an event's note to its room's log. Called in OnCommitted,
// so per room in position order (one writer per room).
func (c *countCache) record(roomID string, n note) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.logs[roomID]
	if l == nil {
		if len(c.logs) >= maxLogRooms {
			c.logs = map[string]*roomLog{}
			c.logFloor = c.maxNotePos
		}
		// Every note of the room above the floor comes after this one.
		l = &roomLog{start: c.logFloor}
		c.logs[roomID] = l
	}
	c.maxNotePos = max(c.maxNotePos, n.pos)
	if len(l.notes) >= maxLogNotes {
		drop := len(l.notes) / 2
		l.start = l.notes[drop-1].pos
		l.notes = slices.Delete(l.notes, 0, drop)
	}
	l.notes = append(l.notes, n)
}

// readMoved marks a user's read receipts in a room changed: their cached
// counts must be recounted.
func (c *countCache) readMoved(userID, roomID string) {
	c.mu.Lock()
	c.reads[[2]string{userID, roomID}]++
	c.mu.Unlock()
}

// fromLog brings e up to upTo from the room's log, or reports false when
// the log does not cover (e.asOf, upTo] or the user's receipts moved.
// Caller holds c.mu.
func (c *countCache) fromLog(userID, roomID string, e *countEntry, upTo int64) (*countEntry, bool) {
	l := c.logs[roomID]
	if l == nil {
		// Nothing logged: the room had no notifications above the floor
		// (an idle room's counts need no query).
		l = &roomLog{start: c.logFloor}
	}
	if e.asOf < l.start || e.readVer != c.reads[[2]string{userID, roomID}] {
		return nil, false
	}
	out := &countEntry{asOf: upTo, reads: e.reads, readVer: e.readVer, threads: slices.Clone(e.threads)}
	i, _ := slices.BinarySearchFunc(l.notes, e.asOf+1, func(n note, pos int64) int { return int(n.pos - pos) })
	for _, n := range l.notes[i:] {
		if n.pos > upTo {
			break
		}
		j := slices.IndexFunc(out.threads, func(t store.ThreadCount) bool { return t.ThreadID == n.thread })
		if n.sentBy == userID {
			if j >= 0 {
				out.threads[j].Notify, out.threads[j].Highlight = 0, 0
			}
			continue
		}
		if n.everyone && n.sender == userID {
			continue
		}
		k := slices.IndexFunc(n.recipients, func(r store.StagedRecipient) bool { return r.UserID == userID })
		if (k < 0 && !n.everyone) || (k >= 0 && n.recipients[k].Skip) {
			continue
		}
		if j < 0 {
			out.threads = append(out.threads, store.ThreadCount{RoomID: roomID, ThreadID: n.thread})
			j = len(out.threads) - 1
		}
		out.threads[j].Notify++
		if k >= 0 && n.recipients[k].Highlight {
			out.threads[j].Highlight++
		}
	}
	return out, true
}

// ReadMoved tells the counts that a user's read receipts in a room moved.
// It is the rooms hook ReadMoved (see the server wiring).
func (s *Service) ReadMoved(roomID, userID string) { s.counts.readMoved(userID, roomID) }
