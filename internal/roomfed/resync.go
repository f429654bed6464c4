package roomfed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/store"
)

// Partial-state joins (MSC3706/MSC3902): a join through a resident
// server that answered send_join with the member events omitted is usable
// at once; the room's full state is fetched in the background (state_ids
// and state at the join's prev events) and then replaces the partial
// one. Until then the room is marked partial (rooms keeps the marks, in
// memory and in partial_state_rooms), so that a restart resumes the fetch.

// HoldResyncs makes resyncs started from now on wait until the returned
// function is called (or the server stops): tests use it to look at a
// room while its state is partial, or to restart in the middle.
func (s *Service) HoldResyncs() (release func()) {
	s.resyncs.mu.Lock()
	defer s.resyncs.mu.Unlock()
	ch := make(chan struct{})
	s.resyncs.held = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			s.resyncs.mu.Lock()
			if s.resyncs.held == ch {
				s.resyncs.held = nil
			}
			s.resyncs.mu.Unlock()
			close(ch)
		})
	}
}

// resync retry delays: the first attempts come quickly (the resident
// server may simply be busy), then every 30 s at most.
const (
	resyncFirstRetry = 500 * time.Millisecond
	resyncMaxRetry   = 30 * time.Second
)

// bgContext is the context of background resyncs.
func (s *Service) bgContext() context.Context {
	s.resyncs.mu.Lock()
	defer s.resyncs.mu.Unlock()
	if s.resyncs.ctx == nil {
		s.resyncs.ctx, s.resyncs.cancel = context.WithCancel(context.Background())
	}
	return s.resyncs.ctx
}

// ResumePartialJoins restarts the resyncs of rooms joined with partial
// state before a restart. Call once federation is set up.
func (s *Service) ResumePartialJoins(ctx context.Context) error {
	if !s.federated() {
		return nil
	}
	rows, err := s.store.PartialStateRooms(ctx)
	if err != nil {
		return err
	}
	for _, p := range rows {
		if s.rooms.MarkPartial(p.RoomID, p.JoinEventID, p.Servers) {
			s.startResync(p.RoomID, p.JoinEventID, p.Servers)
		}
	}
	return nil
}

// StopBackground stops the resyncs and waits for them; the marks stay,
// so the next start resumes them.
func (s *Service) StopBackground() {
	s.bgContext()
	s.resyncs.mu.Lock()
	s.resyncs.cancel()
	s.resyncs.mu.Unlock()
	s.resyncs.wg.Wait()
}

// startResync fetches the full state of a room marked partial in the
// background.
func (s *Service) startResync(roomID, joinID string, servers []string) {
	ctx := s.bgContext()
	s.resyncs.mu.Lock()
	held := s.resyncs.held
	s.resyncs.mu.Unlock()
	s.resyncs.wg.Add(1)
	go func() {
		defer s.resyncs.wg.Done()
		if held != nil {
			select {
			case <-held:
			case <-ctx.Done():
				return
			}
		}
		delay := resyncFirstRetry
		for {
			err := s.resync(ctx, roomID, joinID, servers)
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("federation: partial state resync failed, retrying", "room_id", roomID, "err", err, "in", delay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, resyncMaxRetry)
		}
	}()
}

// resync fetches the full state before the join from the servers in the
// room (the one that answered send_join first) and commits it.
func (s *Service) resync(ctx context.Context, roomID, joinID string, servers []string) error {
	join, err := s.rooms.Event(ctx, joinID)
	if err != nil {
		return fmt.Errorf("load the join: %w", err)
	}
	var lastErr error
	for _, server := range servers {
		if server == s.serverName {
			continue
		}
		before, err := s.fullStateBefore(ctx, server, join)
		if err != nil {
			lastErr = err
			s.log.Info("federation: state fetch for a partial-state room failed", "server", server, "room_id", roomID, "err", err)
			continue
		}
		return s.rooms.CompleteState(ctx, roomID, join, before, s.checkAuth)
	}
	if lastErr == nil {
		lastErr = errors.New("no server to ask")
	}
	return lastErr
}

// fullStateBefore is the state before join: the resolved states after
// its prev events, each fetched from server.
func (s *Service) fullStateBefore(ctx context.Context, server string, join *pdu.Event) (store.StateMap, error) {
	var sets []store.StateMap
	for _, prev := range join.PrevEvents {
		st, err := s.fetchStateAfter(ctx, server, join.RoomID, join.Version, prev)
		if err != nil {
			return nil, err
		}
		sets = append(sets, st)
	}
	if len(sets) == 1 {
		return sets[0], nil
	}
	return s.rooms.ResolveState(ctx, join.Version, sets)
}

// fetchStateAfter asks server for the state at (before) an event with
// state_ids, fetches the events we lack (with /state when many are, else
// or then with /event), stores them as outliers (each checked against its
// own auth events) and adds the event itself when it is a state event:
// the state after the event. Used for the gaps of received events and
// for the resync of partial-state rooms.
func (s *Service) fetchStateAfter(ctx context.Context, server, roomID string, v *roomversion.Version, eventID string) (store.StateMap, error) {
	fctx, cancel := context.WithTimeout(ctx, 4*fetchTimeout)
	defer cancel()
	ids, err := s.f.Client.StateIDs(fctx, server, roomID, eventID)
	if err != nil {
		return nil, fmt.Errorf("state_ids at %s: %w", eventID, err)
	}
	if len(ids.PDUIDs) == 0 {
		return nil, fmt.Errorf("state_ids at %s lists no state", eventID)
	}
	if len(ids.PDUIDs)+len(ids.AuthChainIDs) > maxJoinEvents {
		return nil, fmt.Errorf("state of %d events is too large", len(ids.PDUIDs)+len(ids.AuthChainIDs))
	}
	all := append(append(slices.Clone(ids.AuthChainIDs), ids.PDUIDs...), eventID)
	need, err := s.unknownEvents(ctx, all)
	if err != nil {
		return nil, err
	}
	// A few missing events are fetched one by one; more (a tenth of the
	// state, as after a partial-state join) with one /state request.
	if len(need) > 0 && (len(need) > maxFetchEvents || 10*len(need) > len(all)) {
		var raws []json.RawMessage
		if st, err := s.f.Client.State(fctx, server, roomID, eventID); err == nil && len(st.PDUs)+len(st.AuthChain) <= maxJoinEvents {
			raws = append(st.AuthChain, st.PDUs...)
		}
		if _, err := s.storeOutliers(ctx, roomID, v, raws); err != nil {
			return nil, err
		}
		if need, err = s.unknownEvents(ctx, need); err != nil {
			return nil, err
		}
	}
	if len(need) > maxFetchEvents {
		need = need[:maxFetchEvents]
	}
	if len(need) > 0 {
		if _, err := s.storeOutliers(ctx, roomID, v, s.fetchEvents(fctx, server, need)); err != nil {
			return nil, err
		}
	}
	evs, err := s.rooms.Events(ctx, append(slices.Clone(ids.PDUIDs), eventID))
	if err != nil {
		return nil, err
	}
	st := store.StateMap{}
	var self *pdu.Event
	for _, e := range evs {
		if e.ID == eventID {
			self = e
			continue
		}
		if e.IsState() && pdu.RoomIDForCreate(e) == roomID {
			st[store.StateKey{Type: e.Type, StateKey: *e.StateKey}] = e.ID
		}
	}
	if self != nil && self.IsState() {
		st[store.StateKey{Type: self.Type, StateKey: *self.StateKey}] = self.ID
	}
	if _, ok := st[store.StateKey{Type: "m.room.create"}]; !ok {
		return nil, fmt.Errorf("could not obtain the state at %s", eventID)
	}
	return st, nil
}

// unknownEvents returns the ids of those not stored here.
func (s *Service) unknownEvents(ctx context.Context, ids []string) ([]string, error) {
	have, err := s.rooms.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(have))
	for _, e := range have {
		known[e.ID] = true
	}
	var out []string
	for _, x := range ids {
		if !known[x] {
			known[x] = true
			out = append(out, x)
		}
	}
	return out, nil
}

// partialAuth is the state an event received in a room joined with
// partial state is checked against: the partial state before it, which
// lacks most members, resolved with the event's own auth events, so that
// what the state holds (a ban, a kick) still counts against what the
// event claims and what it lacks comes from the event. The resync checks
// the event again against the full state (recheckSinceJoin).
func (s *Service) partialAuth(ctx context.Context, v *roomversion.Version, before store.StateMap, authEvs []*pdu.Event) (eventauth.AuthEvents, error) {
	claimed := store.StateMap{}
	for _, a := range authEvs {
		if a.StateKey != nil {
			claimed[store.StateKey{Type: a.Type, StateKey: *a.StateKey}] = a.ID
		}
	}
	st, err := s.rooms.ResolveState(ctx, v, []store.StateMap{before, claimed}, authEvs...)
	if err != nil {
		return nil, err
	}
	m, err := s.stateEvents(ctx, st)
	if err != nil {
		return nil, err
	}
	// Auth events just fetched may not be readable yet.
	for _, a := range authEvs {
		if a.StateKey == nil {
			continue
		}
		if k := (pdu.StateTuple{Type: a.Type, StateKey: *a.StateKey}); m[k] == nil && st[store.StateKey{Type: a.Type, StateKey: *a.StateKey}] == a.ID {
			m[k] = a
		}
	}
	return m, nil
}

// refuse rejects an event that passed its own auth events but not the
// partial state of its room, and keeps it: the partial state may be what
// is wrong, and the resync checks it again against the full state.
func (s *Service) refuse(ctx context.Context, origin string, ev *pdu.Event, before store.StateMap, err error) error {
	if !errors.Is(err, eventauth.ErrNotAllowed) {
		return s.reject(ctx, ev, err)
	}
	e := store.RefusedEvent{EventID: ev.ID, RoomID: ev.RoomID, Origin: origin, PDU: ev.JSON(),
		AfterPos: s.rooms.LatestPos(ev.RoomID), StateBefore: before}
	if rerr := s.store.RejectPartial(ctx, e, truncate(err.Error(), 500), ev.PrevEvents); rerr != nil {
		return rerr
	}
	return fmt.Errorf("%w: %w", errRejected, err)
}

// errPartialState refuses what another server may not do through us while
// we lack the room's full state.
var errPartialState = errcode.NotFound("this server is still fetching the room's state; try another server")
