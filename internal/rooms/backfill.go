package rooms

import (
	"context"
	"slices"
	"sync"
	"time"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// History fetched from other servers (package roomfed fetches it) is
// stored here below every timeline event of the room, at positions under
// store.BackfillBand; the rooms' own indexer keeps the backward
// extremities that say where history is missing.

// Bounds on what one /messages request may spend on backfill, so that a
// slow or dead server never holds a client for long.
const (
	backfillRounds = 3               // /backfill exchanges per request
	backfillBudget = 4 * time.Second // for all of them
)

// backfillPositions hands out the positions of backfilled events; mu
// guards pos, the last one handed out (0: not loaded).
type backfillPositions struct {
	mu  sync.Mutex
	pos int64
}

// HistoryFetch is one request's backfill budget; the zero value is a
// fresh one.
type HistoryFetch struct {
	rounds   int
	deadline time.Time
}

// MoreHistory is called by a backwards pagination that reached the
// earliest stored event of a room: it backfills once within the request's
// budget and reports whether the room may have more stored events now
// (then v, the reader's Viewer, forgets what it knew of backfilled
// history).
func (s *Service) MoreHistory(ctx context.Context, roomID string, v *Viewer, h *HistoryFetch, want int) bool {
	if s.remote == nil || !s.remote.Federated() || h.rounds >= backfillRounds {
		return false
	}
	h.rounds++
	if h.deadline.IsZero() {
		h.deadline = time.Now().Add(backfillBudget)
		if d, ok := ctx.Deadline(); ok && d.Before(h.deadline) {
			h.deadline = d
		}
	}
	if time.Until(h.deadline) <= 0 {
		return false
	}
	n, err := s.remote.FetchHistory(ctx, roomID, want, h.deadline)
	if err != nil {
		s.log.Info("backfill failed", "room_id", roomID, "err", err)
	}
	if n > 0 {
		v.bf = nil // what it knew about backfilled history is stale
	}
	return n > 0
}

// StoreBackfilled stores checked events of a /backfill answer below the
// room's timeline, newest first, and keeps the room's backward
// extremities; group is the state group stored with them (the state
// before the earliest event with known state). An outlier among them
// joins the timeline. It returns how many events were new.
func (s *Service) StoreBackfilled(ctx context.Context, roomID string, group int64, evs []*pdu.Event) (int, error) {
	pos, err := s.nextBackfillPositions(ctx, len(evs))
	if err != nil {
		return 0, err
	}
	added := 0
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		added = 0
		ids := make([]string, 0, len(evs))
		for i, ev := range evs {
			ok, err := tx.InsertBackfilled(ctx, eventRow(ev, roomID, pos-int64(i), group, []byte("{}")))
			if err != nil {
				return err
			}
			if ok {
				added++
			}
			ids = append(ids, ev.ID)
		}
		if err := tx.DeleteBackwardExtremities(ctx, roomID, ids); err != nil {
			return err
		}
		_, err := s.addBackwardExtremities(ctx, tx, roomID, evs)
		return err
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

// nextBackfillPositions reserves n positions below every backfilled event
// and returns the highest; the others follow downwards.
func (s *Service) nextBackfillPositions(ctx context.Context, n int) (int64, error) {
	s.bf.mu.Lock()
	defer s.bf.mu.Unlock()
	if s.bf.pos == 0 {
		m, err := s.store.MinBackfillPos(ctx)
		if err != nil {
			return 0, err
		}
		s.bf.pos = m
	}
	top := s.bf.pos - 1
	s.bf.pos -= int64(n)
	return top, nil
}

// addBackwardExtremities records the prev events of evs that are not in
// the room's timeline here (nor known rejected) as backward extremities,
// and tells whether there were any.
func (s *Service) addBackwardExtremities(ctx context.Context, tx *store.Tx, roomID string, evs []*pdu.Event) (bool, error) {
	var prevs []string
	for _, ev := range evs {
		for _, p := range ev.PrevEvents {
			if !slices.Contains(prevs, p) {
				prevs = append(prevs, p)
			}
		}
	}
	if len(prevs) == 0 {
		return false, nil
	}
	known, err := tx.KnownEventIDs(ctx, prevs)
	if err != nil {
		return false, err
	}
	var unknown []string
	for _, p := range prevs {
		if !known[p] {
			unknown = append(unknown, p)
		}
	}
	if len(unknown) == 0 {
		return false, nil
	}
	rej, err := tx.RejectedEventIDs(ctx, unknown)
	if err != nil {
		return false, err
	}
	added := false
	for _, ev := range evs {
		for _, p := range ev.PrevEvents {
			if slices.Contains(unknown, p) && !rej[p] {
				if err := tx.AddBackwardExtremity(ctx, roomID, p, ev.Depth); err != nil {
					return false, err
				}
				added = true
			}
		}
	}
	return added, nil
}

// indexBackwardExtremities is an indexer that keeps a room's backward
// extremities as events join its timeline: the event is no longer one,
// and its prev events that are not in the timeline become ones (after a
// join from another server, or an event whose gap was not filled). Events
// built here cite timeline events, except a join through another server.
func (s *Service) indexBackwardExtremities(ctx context.Context, tx *store.Tx, ev *pdu.Event, pos int64) error {
	if serverOf(ev.Sender) == s.serverName && ev.Type != "m.room.member" {
		return nil
	}
	if serverOf(ev.Sender) != s.serverName {
		if err := tx.DeleteBackwardExtremities(ctx, ev.RoomID, []string{ev.ID}); err != nil {
			return err
		}
	}
	gap, err := s.addBackwardExtremities(ctx, tx, ev.RoomID, []*pdu.Event{ev})
	if gap && pos > 0 && serverOf(ev.Sender) != s.serverName {
		tx.OnCommitted(func() { s.gaps.add(ev.RoomID, pos) })
	}
	return err
}
