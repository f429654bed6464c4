package roomfed

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
	"luxchat/internal/rooms"
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

// Bounds on what backfill may spend, so that a slow or dead server never
// holds a client for long.
const (
	backfillBudget         = 4 * time.Second // for the exchanges of one request
	backfillServerTimeout  = 3 * time.Second // for one server
	backfillMaxServers     = 5
	backfillRetry          = 30 * time.Second // after a round that brought nothing
	backfillMaxExtremities = 20               // the v parameters of one request
	backfillMaxPDUs        = 200              // accepted from one answer
)

// backfillState is the service's backfill bookkeeping; mu guards all.
type backfillState struct {
	mu      sync.Mutex
	running map[string]chan struct{} // room → closed when its backfill ends
	retryAt map[string]time.Time     // room → no backfill before
}

// FetchHistory backfills a room once (or waits for the backfill already
// running) until deadline, for a pagination that reached its earliest
// stored event: it returns how many events joined the timeline.
func (s *Service) FetchHistory(ctx context.Context, roomID string, want int, deadline time.Time) (int, error) {
	return s.backfillRoom(ctx, roomID, want, deadline)
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
	hv, err := s.rooms.StateEntry(ctx, roomID, group, pdu.StateTuple{Type: "m.room.history_visibility"})
	if err != nil {
		return 0, err
	}
	if vis := rooms.HistoryVisibility(hv); vis != "shared" && vis != "world_readable" {
		return 0, nil
	}
	v, err := s.rooms.VersionOf(ctx, roomID)
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
	all, err := s.rooms.RoomServers(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var out []string
	if c, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.create", ""); err == nil {
		out = append(out, serverOf(c.Sender))
	}
	for _, sv := range all {
		if !slices.Contains(out, sv) {
			out = append(out, sv)
		}
	}
	out = slices.DeleteFunc(out, func(sv string) bool {
		if sv == "" || sv == s.serverName || (s.f.Allowed != nil && s.f.Allowed(sv) != nil) {
			return true
		}
		ok, err := s.rooms.ServerACLAllows(ctx, roomID, sv)
		return err != nil || !ok
	})
	return out[:min(len(out), backfillMaxServers)], nil
}

func (s *Service) requestBackfill(ctx context.Context, server, roomID string, ext []store.BackwardExtremity, limit int) ([]json.RawMessage, error) {
	from := make([]string, 0, len(ext))
	for _, e := range ext {
		from = append(from, e.EventID)
	}
	resp, err := s.f.Client.Backfill(ctx, server, roomID, from, limit)
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
	return s.rooms.StoreBackfilled(ctx, roomID, group, evs)
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
