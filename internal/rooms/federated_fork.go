package rooms

import (
	"context"
	"fmt"
	"slices"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/stateres"
	"luxchat/internal/store"
)

// resolveSets merges the states at several events with the room
// version's state resolution: identical states need none. extra are events
// not stored yet that the states name.
func (s *Service) resolveSets(ctx context.Context, v *roomversion.Version, sets []store.StateMap, extra ...*pdu.Event) (store.StateMap, error) {
	if len(sets) == 1 {
		return sets[0], nil
	}
	same := true
	for _, st := range sets[1:] {
		if !sameStateIDs(st, sets[0]) {
			same = false
			break
		}
	}
	if same {
		return sets[0], nil
	}
	in := make([]stateres.StateSet, 0, len(sets))
	for _, st := range sets {
		m := make(stateres.StateSet, len(st))
		for k, x := range st {
			m[pdu.StateTuple{Type: k.Type, StateKey: k.StateKey}] = x
		}
		in = append(in, m)
	}
	fetch := func(ids []string) (map[string]*pdu.Event, error) {
		evs, err := s.Events(ctx, ids)
		if err != nil {
			return nil, err
		}
		out := make(map[string]*pdu.Event, len(evs))
		for _, ev := range evs {
			out[ev.ID] = ev
		}
		for _, ev := range extra {
			if slices.Contains(ids, ev.ID) {
				out[ev.ID] = ev
			}
		}
		return out, nil
	}
	rejected := map[string]bool{}
	isRejected := func(id string) bool {
		r, ok := rejected[id]
		if !ok {
			m, err := s.store.RejectedEvents(ctx, []string{id})
			r = err == nil && m[id]
			rejected[id] = r
		}
		return r
	}
	res, err := stateres.Resolve(v, in, fetch, stateres.WithRejected(isRejected))
	if err != nil {
		return nil, fmt.Errorf("resolve state: %w", err)
	}
	out := make(store.StateMap, len(res))
	for t, x := range res {
		out[store.StateKey{Type: t.Type, StateKey: t.StateKey}] = x
	}
	return out, nil
}

// commitFork persists an accepted event whose state before differs from
// the room's current state: the room's extremities become the old ones it
// does not cite plus the event, and the current state the resolution of
// the states after them. Caller holds r.mu.
func (s *Service) commitFork(ctx context.Context, r *roomState, ev *pdu.Event, before store.StateMap, origin string) error {
	extremities := []string{ev.ID}
	for _, x := range r.extremities {
		if !slices.Contains(ev.PrevEvents, x) {
			extremities = append(extremities, x)
		}
	}
	after := cloneState(before)
	if ev.IsState() {
		after[store.StateKey{Type: ev.Type, StateKey: *ev.StateKey}] = ev.ID
	}
	sets := []store.StateMap{after}
	if len(extremities) > 1 {
		if len(r.extremities) == 1 {
			sets = append(sets, r.stateIDs()) // the state after the only old extremity
		} else {
			for _, x := range extremities[1:] {
				st, ok, err := s.stateAfterEvent(ctx, x)
				if err != nil {
					return err
				}
				if ok {
					sets = append(sets, st)
				}
			}
		}
	}
	current, err := s.resolveSets(ctx, r.version, sets, ev)
	if err != nil {
		return err
	}
	// What changes in the cached state, with the events behind it.
	old := r.stateIDs()
	changed := map[pdu.StateTuple]string{}
	var changedIDs []string
	for k, x := range current {
		if old[k] != x {
			changed[pdu.StateTuple{Type: k.Type, StateKey: k.StateKey}] = x
			changedIDs = append(changedIDs, x)
		}
	}
	changedEvs := map[string]*pdu.Event{ev.ID: ev}
	loaded, err := s.Events(ctx, changedIDs)
	if err != nil {
		return err
	}
	for _, e := range loaded {
		changedEvs[e.ID] = e
	}
	b := s.newBatch(r)
	b.origin = origin
	pe := &pending{ev: ev, remote: true}
	if ev.IsState() {
		if x, ok := before[store.StateKey{Type: ev.Type, StateKey: *ev.StateKey}]; ok {
			pe.replaced, _ = s.Event(ctx, x)
		}
	}
	b.events = []*pending{pe}
	members := map[string]string{}
	var pos, group int64
	recorded := false
	// A message concurrent with others mostly leaves the state as it is:
	// the current group then serves as the state before and after it,
	// instead of two full copies.
	sameBefore := sameStateIDs(before, old)
	sameAfter := sameStateIDs(current, old)
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		beforeGroup := r.group
		group = r.group
		var err error
		if !sameBefore {
			if beforeGroup, _, err = tx.NewStateGroup(ctx, r.id, 0, 0, nil, before); err != nil {
				return err
			}
		}
		if !sameAfter {
			if group, _, err = tx.NewStateGroup(ctx, r.id, 0, 0, nil, current); err != nil {
				return err
			}
		}
		pos = tx.Alloc(s.store.Streams.Events)
		pe.pos = pos
		if err := tx.DeleteOutlier(ctx, ev.ID); err != nil {
			return err
		}
		_, err = s.persist(ctx, tx, b, pe, beforeGroup, func() error {
			for t, x := range changed {
				if err := tx.SetCurrentState(ctx, r.id, store.StateKey{Type: t.Type, StateKey: t.StateKey}, x); err != nil {
					return err
				}
				if t.Type == "m.room.member" && changedEvs[x] != nil {
					m := MembershipOf(changedEvs[x])
					members[t.StateKey] = m
					if err := s.setMembership(ctx, tx, store.Membership{RoomID: r.id, UserID: t.StateKey, Membership: m, EventID: x, Pos: pos}); err != nil {
						return err
					}
				}
			}
			if err := tx.SetRoomStateGroup(ctx, r.id, group); err != nil {
				return err
			}
			return tx.SetExtremities(ctx, r.id, extremities)
		})
		if err != nil {
			return err
		}
		s.latest.Store(r.id, pos)
		if len(members) > 0 {
			s.noteMembershipChange(pos)
		}
		s.recent.drop(r.id)
		if s.countsMessages(ev) {
			s.unread.record(r.id, pos, ev.Sender, r.latestPos)
			recorded = true
		}
		return nil
	})
	if err != nil {
		if recorded {
			s.unread.forget(r.id, pos)
		}
		return err
	}
	for t, x := range changed {
		if e := changedEvs[x]; e != nil {
			r.state[t] = e
		}
	}
	for u, m := range members {
		if m == "join" {
			r.joined[u] = struct{}{}
		} else {
			delete(r.joined, u)
		}
	}
	s.events.put(ev.ID, ev)
	if group != r.group {
		r.group, r.chain = group, 0
	}
	r.extremities, r.depth, r.latestPos = extremities, max(r.depth, ev.Depth), pos
	s.announce(r, b, members, pos)
	return nil
}

// cloneState copies a state map, nil included, into one that can be added to.
func cloneState(m store.StateMap) store.StateMap {
	out := make(store.StateMap, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}
