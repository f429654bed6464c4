package notifications

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"luxchat/internal/store"
)

// countCache keeps each (user, room)'s unread notification counts as of a
// position, with the read receipts they were counted against. A sync then
// counts only the notifications after that position (one index range per
// room) instead of every unread one: a user who never reads a busy room
// would otherwise make each sync count its whole backlog.
//
// Counts only grow while the receipts stay; a moved receipt (a different
// fingerprint) recounts. A redaction deletes rows below cached positions:
// it drops the room's entries in OnCommitted, before its position becomes
// visible, and bumps gen so that a count begun before it is not cached.
type countCache struct {
	mu      sync.Mutex
	entries map[[2]string]*countEntry // (user, room)
	gen     atomic.Int64
	logs    map[string]*roomLog  // see roomlog.go
	reads   map[[2]string]uint64 // (user, room) → changes of its read receipts
	// Every note above logFloor is in logs: it is the events position
	// when the process started, then the highest note (maxNotePos) when
	// logs starts over.
	logFloor, maxNotePos int64
}

type countEntry struct {
	asOf    int64
	reads   string // fingerprint of the receipts counted against
	readVer uint64 // countCache.reads when counted
	threads []store.ThreadCount
}

// maxCountEntries bounds the cache; past it, it starts over.
const maxCountEntries = 100000

// newCountCache returns an empty cache for a process whose events stream
// is at position start.
func newCountCache(start int64) *countCache {
	return &countCache{entries: map[[2]string]*countEntry{}, logs: map[string]*roomLog{}, reads: map[[2]string]uint64{},
		logFloor: start, maxNotePos: start}
}

// dropRoom forgets a room's counts (after a redaction).
func (c *countCache) dropRoom(roomID string) {
	c.mu.Lock()
	c.gen.Add(1)
	for k := range c.entries {
		if k[1] == roomID {
			delete(c.entries, k)
		}
	}
	// The log still holds what was redacted: it starts again, empty.
	c.logs[roomID] = &roomLog{start: c.maxNotePos}
	c.mu.Unlock()
}

// dropMember forgets a user's counts in a room (their membership changed:
// what counts for them begins anew).
func (c *countCache) dropMember(userID, roomID string) {
	c.mu.Lock()
	c.gen.Add(1)
	delete(c.entries, [2]string{userID, roomID})
	c.mu.Unlock()
}

func fingerprint(reads map[string]int64) string {
	if len(reads) == 0 {
		return ""
	}
	keys := make([]string, 0, len(reads))
	for k := range reads {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d;", k, reads[k])
	}
	return b.String()
}

// Counts returns a user's unread notification counts up to position upTo
// in some rooms, per thread ("main" for the main timeline): one statement
// for all rooms, a second one for the rooms whose receipts moved. It fits
// sync.Service.NotificationCounts.
func (s *Service) Counts(ctx context.Context, userID string, roomIDs []string, upTo int64) ([]store.ThreadCount, error) {
	if len(roomIDs) == 0 {
		return nil, nil
	}
	c := s.counts
	gen := c.gen.Load()
	// Made only when some room must be counted in the database: a woken
	// sync's room is usually brought up to date from its log.
	var ranges []store.CountRange
	var bases map[string]*countEntry
	var readVers map[string]uint64
	var out []store.ThreadCount
	c.mu.Lock()
	for _, room := range roomIDs {
		e := c.entries[[2]string{userID, room}]
		if e != nil && e.asOf <= upTo {
			if ne, ok := c.fromLog(userID, room, e, upTo); ok {
				c.entries[[2]string{userID, room}] = ne
				out = append(out, ne.threads...)
				continue
			}
		}
		if ranges == nil {
			ranges = make([]store.CountRange, 0, len(roomIDs))
			bases = make(map[string]*countEntry, len(roomIDs))
			readVers = make(map[string]uint64, len(roomIDs))
		}
		r := store.CountRange{RoomID: room}
		if e != nil && e.asOf <= upTo {
			bases[room] = e
			r.From = e.asOf
		}
		ranges = append(ranges, r)
		readVers[room] = c.reads[[2]string{userID, room}]
	}
	c.mu.Unlock()
	if len(ranges) == 0 {
		return out, nil
	}
	roomIDs = roomIDs[:0:0]
	for _, r := range ranges {
		roomIDs = append(roomIDs, r.RoomID)
	}
	delta, reads, err := s.store.NotificationCounts(ctx, userID, ranges, upTo)
	if err != nil {
		return nil, err
	}
	// Rooms whose receipts moved since their cached counts: count again.
	var recount []store.CountRange
	for room, e := range bases {
		if e.reads != fingerprint(reads[room]) {
			recount = append(recount, store.CountRange{RoomID: room})
			delete(bases, room)
		}
	}
	if len(recount) > 0 {
		again, againReads, err := s.store.NotificationCounts(ctx, userID, recount, upTo)
		if err != nil {
			return nil, err
		}
		redo := make(map[string]bool, len(recount))
		for _, r := range recount {
			redo[r.RoomID] = true
			reads[r.RoomID] = againReads[r.RoomID]
		}
		delta = slices.DeleteFunc(delta, func(tc store.ThreadCount) bool { return redo[tc.RoomID] })
		delta = append(delta, again...)
	}
	byRoom := map[string][]store.ThreadCount{}
	for _, tc := range delta {
		byRoom[tc.RoomID] = append(byRoom[tc.RoomID], tc)
	}
	entries := make([]*countEntry, len(roomIDs))
	for i, room := range roomIDs {
		e := &countEntry{asOf: upTo, reads: fingerprint(reads[room]), readVer: readVers[room]}
		if b := bases[room]; b != nil {
			e.threads = slices.Clone(b.threads)
		}
		for _, tc := range byRoom[room] {
			j := slices.IndexFunc(e.threads, func(x store.ThreadCount) bool { return x.ThreadID == tc.ThreadID })
			if j < 0 {
				e.threads = append(e.threads, tc)
				continue
			}
			e.threads[j].Notify += tc.Notify
			e.threads[j].Highlight += tc.Highlight
		}
		entries[i] = e
		out = append(out, e.threads...)
	}
	c.mu.Lock()
	if c.gen.Load() == gen {
		if len(c.entries)+len(roomIDs) > maxCountEntries {
			c.entries = map[[2]string]*countEntry{}
		}
		for i, room := range roomIDs {
			c.entries[[2]string{userID, room}] = entries[i]
		}
	}
	c.mu.Unlock()
	return out, nil
}

// HistoryPurged forgets a room's cached counts after the retention job
// deleted some of its events (and their notification rows).
func (s *Service) HistoryPurged(roomID string) { s.counts.dropRoom(roomID) }
