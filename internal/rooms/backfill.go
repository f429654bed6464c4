package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/store"
)

// Client-driven backfill: when a backwards /messages runs out of stored
// events in a room whose history here has a gap before its earliest
// events (backward extremities, see store/backfill.go), the servers of the
// room are asked for the events before the gap with /backfill. The events
// are checked like any received PDU but only against their own auth
// events (they are history: they never change the current state), stored
// below every timeline event of the room (positions under
// store.BackfillBand, which no sync stream reaches) and the page is
// answered from the store.

// Bounds on what one /messages request may spend on backfill, so that a
// slow or dead server never holds a client for long.
const (
	backfillRounds         = 3               // /backfill exchanges per request
	backfillBudget         = 4 * time.Second // for all of them
	backfillServerTimeout  = 3 * time.Second // for one server
	backfillMaxServers     = 5
	backfillRetry          = 30 * time.Second // after a round that brought nothing
	backfillMaxExtremities = 20               // the v parameters of one request
	backfillMaxPDUs        = 200              // accepted from one answer
)

// backfillState is the service's backfill bookkeeping; mu guards all.
type backfillState struct {
	mu      sync.Mutex
	pos     int64                    // last position handed out; 0: not loaded
	running map[string]chan struct{} // room → closed when its backfill ends
	retryAt map[string]time.Time     // room → no backfill before
}

// historyFetch is one request's backfill budget.
type historyFetch struct {
	rounds   int
	deadline time.Time
}

// moreHistory is called by a backwards pagination that reached the
// earliest stored event of a room: it backfills once within the request's
// budget and reports whether the room may have more stored events now.
func (s *Service) moreHistory(ctx context.Context, roomID string, v *viewer, h *historyFetch, want int) bool {
	if !s.federated() || h.rounds >= backfillRounds {
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
	n, err := s.backfillRoom(ctx, roomID, want, h.deadline)
	if err != nil {
		s.log.Info("backfill failed", "room_id", roomID, "err", err)
	}
	if n > 0 {
		v.bf = nil // what it knew about backfilled history is stale
	}
	return n > 0
}

// backfillRoom runs one backfill of a room, or waits for the one already
// running. It returns how many events joined the timeline (1 after
// waiting for another request's backfill: the caller reads again).
func (s *Service) backfillRoom(ctx context.Context, roomID string, want int, deadline time.Time) (int, error) {
	s.bf.mu.Lock()
	if s.bf.running == nil {
		s.bf.running, s.bf.retryAt = map[string]chan struct{}{}, map[string]time.Time{}
	}
	if t, ok := s.bf.retryAt[roomID]; ok && time.Now().Before(t) {
		s.bf.mu.Unlock()
		return 0, nil
	}
	if ch, ok := s.bf.running[roomID]; ok {
		s.bf.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-ch:
			return 1, nil
		case <-ctx.Done():
		case <-t.C:
		}
		return 0, nil
	}
	ch := make(chan struct{})
	s.bf.running[roomID] = ch
	s.bf.mu.Unlock()

	n, err := s.backfillOnce(ctx, roomID, want, deadline)

	s.bf.mu.Lock()
	delete(s.bf.running, roomID)
	if n == 0 && ctx.Err() == nil {
		now := time.Now()
		if len(s.bf.retryAt) > 1000 {
			for k, t := range s.bf.retryAt {
				if now.After(t) {
					delete(s.bf.retryAt, k)
				}
			}
		}
		s.bf.retryAt[roomID] = now.Add(backfillRetry)
	} else if n > 0 {
		delete(s.bf.retryAt, roomID)
	}
	close(ch)
	s.bf.mu.Unlock()
	return n, err
}

func (s *Service) backfillOnce(ctx context.Context, roomID string, want int, deadline time.Time) (int, error) {
	// Only the gaps before the earliest live event: a gap between live
	// events (a prev event never fetched) cannot be filled below them.
	group, depth, err := s.store.EarliestLiveEvent(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	ext, err := s.store.BackwardExtremities(ctx, roomID, depth, backfillMaxExtremities)
	if err != nil || len(ext) == 0 {
		return 0, err
	}
	// The state before the earliest live event stands for the state of
	// the history before it (see canSeeBackfilled); history that no user
	// here could see is not fetched.
	hv, err := s.StateEntry(ctx, roomID, group, pdu.StateTuple{Type: "m.room.history_visibility"})
	if err != nil {
		return 0, err
	}
	if vis := HistoryVisibility(hv); vis != "shared" && vis != "world_readable" {
		return 0, nil
	}
	v, err := s.VersionOf(ctx, roomID)
	if err != nil {
		return 0, err
	}
	servers, err := s.backfillServers(ctx, roomID)
	if err != nil {
		return 0, err
	}
	limit := min(max(want, 20), 100)
	for _, sv := range servers {
		d := time.Now().Add(backfillServerTimeout)
		if deadline.Before(d) {
			d = deadline
		}
		if time.Until(d) <= 0 {
			break
		}
		rctx, cancel := context.WithDeadline(ctx, d)
		raws, err := s.requestBackfill(rctx, sv, roomID, ext, limit)
		if err != nil {
			cancel()
			s.log.Info("backfill: server did not answer", "server", sv, "room_id", roomID, "err", err)
			continue
		}
		n, err := s.storeBackfilled(rctx, sv, roomID, v, group, raws)
		cancel()
		if err != nil {
			s.log.Info("backfill: answer not stored", "server", sv, "room_id", roomID, "err", err)
			continue
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, nil
}

// backfillServers lists the servers to ask: the room's origin (the
// creator's server) first, then the other servers with joined members;
// only those federation.allowed_servers and the room's server ACL allow,
// never this one.
func (s *Service) backfillServers(ctx context.Context, roomID string) ([]string, error) {
	all, err := s.RoomServers(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var out []string
	if c, err := s.CurrentStateEvent(ctx, roomID, "m.room.create", ""); err == nil {
		out = append(out, serverOf(c.Sender))
	}
	for _, sv := range all {
		if !slices.Contains(out, sv) {
			out = append(out, sv)
		}
	}
	out = slices.DeleteFunc(out, func(sv string) bool {
		if sv == "" || sv == s.serverName || (s.fed.f.Allowed != nil && s.fed.f.Allowed(sv) != nil) {
			return true
		}
		ok, err := s.ServerACLAllows(ctx, roomID, sv)
		return err != nil || !ok
	})
	return out[:min(len(out), backfillMaxServers)], nil
}

func (s *Service) requestBackfill(ctx context.Context, server, roomID string, ext []store.BackwardExtremity, limit int) ([]json.RawMessage, error) {
	from := make([]string, 0, len(ext))
	for _, e := range ext {
		from = append(from, e.EventID)
	}
	resp, err := s.fed.f.Client.Backfill(ctx, server, roomID, from, limit)
	if err != nil {
		return nil, err
	}
	return resp.PDUs[:min(len(resp.PDUs), backfillMaxPDUs)], nil
}

// storeBackfilled checks the PDUs of a /backfill answer (format,
// signatures, hashes, auth against their own auth events: checkEvents)
// and stores those that pass below the room's timeline, newest first. An
// outlier among them joins the timeline. group is the state group stored
// for them (the state before the earliest event with known state).
func (s *Service) storeBackfilled(ctx context.Context, server, roomID string, v *roomversion.Version, group int64, raws []json.RawMessage) (int, error) {
	if err := s.fetchMissingAuth(ctx, server, roomID, v, raws); err != nil {
		return 0, err
	}
	good, _, err := s.checkEvents(ctx, roomID, v, raws)
	if err != nil {
		return 0, err
	}
	ids := make([]string, 0, len(good))
	for x := range good {
		ids = append(ids, x)
	}
	// Events rejected against the state before them stay out.
	rej, err := s.store.RejectedEvents(ctx, ids)
	if err != nil {
		return 0, err
	}
	evs := make([]*pdu.Event, 0, len(good))
	for _, raw := range raws {
		ev, err := pdu.Parse(raw, v)
		if err != nil {
			continue
		}
		if g := good[ev.ID]; g != nil && !rej[g.ID] && !slices.Contains(evs, g) {
			evs = append(evs, g)
		}
	}
	if len(evs) == 0 {
		return 0, nil
	}
	// Newest first, so that positions decrease as history goes back.
	sort.SliceStable(evs, func(i, j int) bool {
		if evs[i].Depth != evs[j].Depth {
			return evs[i].Depth > evs[j].Depth
		}
		return evs[i].ID > evs[j].ID
	})
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

// fetchMissingAuth fetches, from server, the auth events of backfilled
// events that are neither in the answer nor stored here, and stores them
// as outliers (checked like every outlier), so that the events can be
// checked against their own auth events.
func (s *Service) fetchMissingAuth(ctx context.Context, server, roomID string, v *roomversion.Version, raws []json.RawMessage) error {
	inBatch := map[string]bool{}
	var want []string
	var evs []*pdu.Event
	for _, raw := range raws {
		ev, err := pdu.Parse(raw, v)
		if err != nil {
			continue
		}
		inBatch[ev.ID] = true
		evs = append(evs, ev)
	}
	for _, ev := range evs {
		for _, a := range ev.AuthEvents {
			if !inBatch[a] && !slices.Contains(want, a) {
				want = append(want, a)
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	have, err := s.store.GetEvents(ctx, want)
	if err != nil {
		return err
	}
	for _, row := range have {
		want = slices.DeleteFunc(want, func(x string) bool { return x == row.EventID })
	}
	if rej, err := s.store.RejectedEvents(ctx, want); err == nil {
		want = slices.DeleteFunc(want, func(x string) bool { return rej[x] })
	}
	if len(want) == 0 {
		return nil
	}
	if len(want) > maxFetchEvents {
		want = want[:maxFetchEvents]
	}
	_, err = s.storeOutliers(ctx, roomID, v, s.fetchEvents(ctx, server, want))
	return err
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
