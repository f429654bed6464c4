package rooms

import (
	"context"
	"time"

	"luxchat/internal/store"
)

// Message retention (MSC1763, package retention decides what and when):
// the deletion of a batch of a room's expired history. A batch holds the
// room's writer lock across its one transaction, so that it never races a
// send (a relation to an event being purged, a redaction of one), and is
// kept small by the caller so that the lock is held briefly.

// HistoryBatch is what PurgeHistory did.
type HistoryBatch struct {
	// Purged is how many events it deleted.
	Purged int
	// Scanned is how many expired candidates it read (those kept
	// included); fewer than the limit: nothing older is left.
	Scanned int
	// Next is where the next batch continues.
	Next store.PurgeCursor
	// MaxPos is the newest position deleted (0: none).
	MaxPos int64
	// Held is how long the room's writer lock was held.
	Held time.Duration
	// Media is how many media files lost their last reference.
	Media int
}

// PurgeHistory deletes up to limit of a room's non-state events sent
// before beforeTS (origin_server_ts), after the cursor, oldest first,
// keeping the room's forward extremities; see store.Tx.PurgeEvents for
// what goes with them. The caches that could still show a deleted event
// drop it (parsed events, client forms, the recent rows and views of the
// room, bundled aggregations of parents whose relations changed, unread
// counts). A room being purged whole or unknown purges nothing.
func (s *Service) PurgeHistory(ctx context.Context, roomID string, beforeTS int64, after store.PurgeCursor, limit int) (b HistoryBatch, err error) {
	b.Next = after
	if s.isPurging(roomID) {
		return b, nil
	}
	r := s.roomEntry(roomID)
	r.mu.Lock()
	start := time.Now()
	defer func() {
		b.Held = time.Since(start)
		r.mu.Unlock()
	}()
	if r.gone {
		return b, nil
	}
	var ids []string
	var parents []string
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		expired, keep, err := tx.ExpiredEvents(ctx, roomID, beforeTS, after, limit)
		if err != nil {
			return err
		}
		// The room's own extremities, when it is loaded, are kept too.
		for _, id := range r.extremities {
			keep[id] = true
		}
		b.Scanned = len(expired)
		pos := make([]int64, 0, len(expired))
		ids = make([]string, 0, len(expired))
		for _, e := range expired {
			b.Next = store.PurgeCursor{TS: e.TS}
			if keep[e.ID] {
				continue
			}
			pos, ids = append(pos, e.Pos), append(ids, e.ID)
			b.MaxPos = max(b.MaxPos, e.Pos)
		}
		if len(ids) == 0 {
			return nil
		}
		eff, err := tx.PurgeEvents(ctx, roomID, pos, ids)
		if err != nil {
			return err
		}
		parents, b.Media = eff.Parents, eff.Media
		// Readers that look now (inside the transaction) see the rows
		// still; the caches are dropped again once it committed.
		s.dropPurged(roomID, ids, parents)
		tx.OnCommitted(func() { s.dropPurged(roomID, ids, parents) })
		return nil
	})
	if err != nil {
		return HistoryBatch{Next: after}, err
	}
	b.Purged = len(ids)
	return b, nil // Held is set on the way out
}

// dropPurged forgets what the caches hold of purged events.
func (s *Service) dropPurged(roomID string, ids, parents []string) {
	for _, id := range ids {
		s.events.drop(id)
		s.bases.drop(id)
		s.forms.drop(id)
	}
	if len(parents) > 0 || len(ids) > 0 {
		c := s.rel.entries()
		s.rel.gen.Add(1)
		for _, p := range append(parents, ids...) {
			c.drop(p)
		}
	}
	s.recent.drop(roomID)
	s.views.drop(roomID)
	s.unread.dropRoom(roomID)
}
