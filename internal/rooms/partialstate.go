package rooms

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"

	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// Partial-state joins (MSC3706/MSC3902): the marks of rooms whose full
// state is still being fetched (package roomfed fetches it), and the
// commit that completes their state.

// partialJoin is a room whose full state is being fetched.
type partialJoin struct {
	joinID  string
	servers []string      // servers in the room per the resident server, it first
	done    chan struct{} // closed once the full state is committed
}

// partialStates marks the partial-state rooms.
type partialStates struct {
	rooms sync.Map // room id → *partialJoin
}

// MarkPartial marks a room as joined with partial state: join is our
// join, servers those to fetch the full state from (the one that
// answered send_join first). False when the room was marked already.
func (s *Service) MarkPartial(roomID, joinID string, servers []string) bool {
	p := &partialJoin{joinID: joinID, servers: servers, done: make(chan struct{})}
	_, loaded := s.ps.rooms.LoadOrStore(roomID, p)
	return !loaded
}

// AuthCheck applies the authorisation rules to a received event (roomfed
// checks the signatures it needs and the servers allowed).
type AuthCheck func(ctx context.Context, ev *pdu.Event, auth eventauth.AuthEvents) error

// FullStateHook writes what other domains derive from a room's state, in
// the transaction that completes a partial-state room's state (indexers
// only see the join then).
type FullStateHook func(ctx context.Context, tx *store.Tx, roomID string) error

// IsPartialState reports whether a room's full state is still being
// fetched.
func (s *Service) IsPartialState(roomID string) bool {
	_, ok := s.ps.rooms.Load(roomID)
	return ok
}

// partialServers returns the servers in a partial-state room as the
// resident server listed them, or nil for other rooms.
func (s *Service) partialServers(roomID string) []string {
	p, ok := s.ps.rooms.Load(roomID)
	if !ok {
		return nil
	}
	return p.(*partialJoin).servers
}

// WaitFullState blocks while a room's full state is being fetched.
func (s *Service) WaitFullState(ctx context.Context, roomID string) error {
	p, ok := s.ps.rooms.Load(roomID)
	if !ok {
		return nil
	}
	select {
	case <-p.(*partialJoin).done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CompleteState replaces a partial-state room's state: the join gets the
// full state before it, and the current state becomes that state with
// every change made since the join on top. The room's members learnt this
// way are recorded, the mark is cleared and waiting readers are released.
// The events received since the join, checked against the partial state,
// are checked again with check against the full one.
func (s *Service) CompleteState(ctx context.Context, roomID string, join *pdu.Event, before store.StateMap, check AuthCheck) error {
	v, ok := s.ps.rooms.Load(roomID)
	if !ok {
		return fmt.Errorf("room %s is not partial", roomID)
	}
	p := v.(*partialJoin)
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	joinRow, err := s.store.GetEvent(ctx, join.ID)
	if err != nil {
		return err
	}
	partialBefore := store.StateMap{}
	if joinRow.StateGroup > 0 {
		if partialBefore, err = s.store.StateGroup(ctx, joinRow.StateGroup); err != nil {
			return err
		}
	}
	// Events received since the join were checked against a partial
	// state: checked again against the full one, those that fail are
	// rejected now, and what they changed is undone.
	undo, rejected, err := s.recheckSinceJoin(ctx, roomID, joinRow.Pos, before, partialBefore, check)
	if err != nil {
		return err
	}
	// A state reached since the join is the full state before it with
	// the changes made since (the join itself included) on top. removed
	// reports a key a rejected event had added: a delta cannot say so.
	completed := func(partial store.StateMap) (full, delta store.StateMap, removed bool) {
		full, delta = completeState(before, partialBefore, partial, undo)
		for k := range partial {
			if _, ok := full[k]; !ok {
				removed = true
			}
		}
		return full, delta, removed
	}
	cur := r.StateIDs()
	now, nowDelta, nowRemoved := completed(cur)
	// The events received or sent since the join have partial states
	// before them too: each such group gets its completed counterpart.
	groups, err := s.store.StateGroupsAfter(ctx, roomID, joinRow.Pos)
	if err != nil {
		return err
	}
	type completedGroup struct {
		full, delta store.StateMap
		removed     bool
	}
	later := make(map[int64]completedGroup, len(groups))
	for _, g := range groups {
		st, err := s.store.StateGroup(ctx, g)
		if err != nil {
			return err
		}
		full, delta, removed := completed(st)
		later[g] = completedGroup{full, delta, removed}
	}
	// The member events of every state since the join, completed: those
	// the partial state lacked are recorded, and servers that had a member
	// joined at some point (it may have left since) missed our device
	// changes unless the partial state showed them.
	var memberIDs []string
	seen := map[string]bool{}
	addMembers := func(st store.StateMap) {
		for k, x := range st {
			if k.Type == "m.room.member" && !seen[x] {
				seen[x] = true
				memberIDs = append(memberIDs, x)
			}
		}
	}
	addMembers(before)
	for _, c := range later {
		addMembers(c.full)
	}
	addMembers(now)
	allMembers, err := s.Events(ctx, memberIDs)
	if err != nil {
		return err
	}
	var members []*pdu.Event
	for _, m := range allMembers {
		k := store.StateKey{Type: "m.room.member", StateKey: *m.StateKey}
		if now[k] == m.ID && cur[k] != m.ID {
			members = append(members, m)
		}
	}
	known := map[string]bool{s.serverName: true}
	for _, srv := range p.servers {
		known[srv] = true
	}
	var ours []string
	for u := range r.joined {
		known[serverOf(u)] = true
		if serverOf(u) == s.serverName {
			ours = append(ours, u)
		}
	}
	var found []string
	for _, m := range allMembers {
		if srv := serverOf(*m.StateKey); MembershipOf(m) == "join" && !known[srv] {
			known[srv] = true
			found = append(found, srv)
		}
	}
	// Forward extremities that were rejected give way to their prev
	// events (those stored here).
	ext, extChanged := withoutRejected(r.extremities, rejected)
	if extChanged {
		stored, err := s.store.EventStateGroups(ctx, ext)
		if err != nil {
			return err
		}
		ext = slices.DeleteFunc(ext, func(id string) bool { _, ok := stored[id]; return !ok })
	}
	var pos int64
	var local []string
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		local = local[:0]
		g, _, err := tx.NewStateGroup(ctx, roomID, 0, 0, nil, before)
		if err != nil {
			return err
		}
		if err := tx.SetEventStateGroup(ctx, join.ID, g); err != nil {
			return err
		}
		for old, c := range later {
			ng, _, err := tx.NewStateGroup(ctx, roomID, parentUnless(c.removed, g), 0, c.delta, c.full)
			if err != nil {
				return err
			}
			if err := tx.ReplaceStateGroupAfter(ctx, roomID, joinRow.Pos, old, ng); err != nil {
				return err
			}
		}
		cg, _, err := tx.NewStateGroup(ctx, roomID, parentUnless(nowRemoved, g), 0, nowDelta, now)
		if err != nil {
			return err
		}
		for _, ev := range rejected {
			if err := tx.RejectStoredEvent(ctx, ev.ID, roomID, "rejected against the room's full state", ev.PrevEvents); err != nil {
				return err
			}
		}
		if extChanged {
			if err := tx.SetExtremities(ctx, roomID, ext); err != nil {
				return err
			}
		}
		for k := range cur {
			if _, ok := now[k]; ok {
				continue
			}
			// Only a rejected event had set it.
			if err := tx.DeleteCurrentState(ctx, roomID, k); err != nil {
				return err
			}
			if k.Type == "m.room.member" {
				if serverOf(k.StateKey) == s.serverName {
					s.membershipsChanged(tx, k.StateKey)
				}
				if err := tx.DeleteMembership(ctx, roomID, k.StateKey); err != nil {
					return err
				}
			}
		}
		if err := tx.SetCurrentStateMany(ctx, roomID, now); err != nil {
			return err
		}
		ms := make([]store.Membership, 0, len(members))
		for _, m := range members {
			if serverOf(*m.StateKey) == s.serverName {
				s.membershipsChanged(tx, *m.StateKey)
			}
			ms = append(ms, store.Membership{RoomID: roomID, UserID: *m.StateKey, Membership: MembershipOf(m), EventID: m.ID, Pos: joinRow.Pos})
		}
		// Our members' rooms change at a new position, so that their syncs
		// wake and show the room again, now with its whole state.
		pos = tx.Alloc(s.store.Streams.Events)
		for u := range r.joined {
			if serverOf(u) == s.serverName && !slices.ContainsFunc(ms, func(m store.Membership) bool { return m.UserID == u }) {
				s.membershipsChanged(tx, u)
				local = append(local, u)
				ms = append(ms, store.Membership{RoomID: roomID, UserID: u, Membership: "join", EventID: cur[store.StateKey{Type: "m.room.member", StateKey: u}], Pos: pos})
			}
		}
		s.noteMembershipChange(pos)
		if err := tx.SetMemberships(ctx, ms); err != nil {
			return err
		}
		if err := tx.SetRoomStateGroup(ctx, roomID, cg); err != nil {
			return err
		}
		if s.hooks.FullState != nil {
			if err := s.hooks.FullState(ctx, tx, roomID); err != nil {
				return err
			}
		}
		// Before the new position is visible: a sync that sees it must
		// treat the room as complete (the cache is reloaded under r.mu,
		// which its readers wait for).
		tx.OnCommitted(func() { s.ps.rooms.Delete(roomID) })
		return tx.DeletePartialStateRoom(ctx, roomID)
	})
	if err != nil {
		return err
	}
	// The cached state is read again from what was just committed.
	r.loaded = false
	if len(rejected) > 0 {
		s.recent.drop(roomID)
		for _, ev := range rejected {
			s.events.drop(ev.ID)
			s.log.Info("federation: event rejected against the full state of a partial-state room", "event_id", ev.ID, "room_id", roomID)
		}
	}
	if err := s.load(ctx, r); err != nil {
		close(p.done) // the mark is gone; readers load the room themselves
		return nil
	}
	close(p.done)
	if s.notifier != nil && len(local) > 0 {
		s.notifier.RoomEvent(roomID, local, pos)
	}
	if len(found) > 0 && s.hooks.ServersFound != nil {
		s.hooks.ServersFound(roomID, ours, found)
	}
	s.log.Info("federation: full state of a partial-state room fetched", "room_id", roomID, "state", len(now))
	return nil
}

// completeState is a state reached since a partial-state join, made
// complete: the full state before the join (before) with what changed
// since the partial one before it (partialBefore) on top, except what
// rejected events changed (undo: event id → the value it replaced, ""
// when it added the key). delta holds the changes over before.
func completeState(before, partialBefore, partial store.StateMap, undo map[string]string) (full, delta store.StateMap) {
	full, delta = cloneState(before), store.StateMap{}
	for k, x := range partial {
		if partialBefore[k] == x {
			continue
		}
		for u, ok := undo[x]; ok && u != x; u, ok = undo[x] {
			x = u // what a rejected event replaced, itself perhaps rejected
		}
		switch {
		case x == "":
			delete(full, k)
		case before[k] != x:
			full[k], delta[k] = x, x
		}
	}
	return full, delta
}

// withoutRejected replaces, among a room's forward extremities, the
// events rejected since by their prev events (each once); ok is false
// when none was rejected.
func withoutRejected(extremities []string, rejected []*pdu.Event) ([]string, bool) {
	byID := make(map[string]*pdu.Event, len(rejected))
	for _, ev := range rejected {
		byID[ev.ID] = ev
	}
	var out []string
	changed := false
	add := func(id string) {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	var walk func(id string)
	walk = func(id string) {
		ev, ok := byID[id]
		if !ok {
			add(id)
			return
		}
		changed = true
		delete(byID, id) // each once
		for _, p := range ev.PrevEvents {
			walk(p)
		}
	}
	for _, x := range extremities {
		walk(x)
	}
	return out, changed
}

// parentUnless is the parent a completed state group is stored as a delta
// of, or 0 (stored in full) when it lost a key.
func parentUnless(removed bool, parent int64) int64 {
	if removed {
		return 0
	}
	return parent
}

// recheckSinceJoin checks the events received from other servers since
// a partial-state join, in order, against the full state before each
// (before: the full state before the join; partialBefore: the partial one
// it replaces). It returns those that fail, and for each failing state
// event the value it replaced ("" when it added its key).
func (s *Service) recheckSinceJoin(ctx context.Context, roomID string, joinPos int64, before, partialBefore store.StateMap, check AuthCheck) (map[string]string, []*pdu.Event, error) {
	rows, err := s.store.RoomEvents(ctx, roomID, joinPos, math.MaxInt64, false, recheckMax)
	if err != nil {
		return nil, nil, err
	}
	undo := map[string]string{}
	var rejected []*pdu.Event
	groups := map[int64]store.StateMap{}
	for _, row := range rows {
		if serverOf(row.Sender) == s.serverName || row.StateGroup <= 0 {
			continue // built here, on checks of our own
		}
		partial, ok := groups[row.StateGroup]
		if !ok {
			if partial, err = s.store.StateGroup(ctx, row.StateGroup); err != nil {
				return nil, nil, err
			}
			groups[row.StateGroup] = partial
		}
		full, _ := completeState(before, partialBefore, partial, undo)
		ev, err := s.ParseRow(ctx, row)
		if err != nil {
			continue
		}
		lookup := func(t pdu.StateTuple) *pdu.Event {
			id := full[store.StateKey{Type: t.Type, StateKey: t.StateKey}]
			if id == "" {
				return nil
			}
			e, _ := s.Event(ctx, id)
			return e
		}
		if check(ctx, ev, eventauth.AuthEventsFunc(lookup)) == nil {
			continue
		}
		rejected = append(rejected, ev)
		if ev.IsState() {
			undo[ev.ID] = full[store.StateKey{Type: ev.Type, StateKey: *ev.StateKey}]
		}
	}
	return undo, rejected, nil
}

// recheckMax bounds the events checked again when a partial-state room's
// state completes (those received while it was partial).
const recheckMax = 10000

// SenderMembersFromAuth finds, for a room joined with partial state, the
// member events of senders that the room's state lacks among the auth
// events of their events (a lazy-loading sync shows them). eventIDs are
// the events, senders their senders.
func (s *Service) SenderMembersFromAuth(ctx context.Context, roomID string, eventIDs []string, senders map[string]bool) (store.StateMap, error) {
	if !s.IsPartialState(roomID) || len(senders) == 0 {
		return nil, nil
	}
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for u := range senders {
		if r.state[pdu.StateTuple{Type: "m.room.member", StateKey: u}] == nil {
			want[u] = true
		}
	}
	r.mu.Unlock()
	if len(want) == 0 {
		return nil, nil
	}
	evs, err := s.Events(ctx, eventIDs)
	if err != nil {
		return nil, err
	}
	var authIDs []string
	for _, ev := range evs {
		if want[ev.Sender] {
			authIDs = append(authIDs, ev.AuthEvents...)
		}
	}
	auth, err := s.Events(ctx, authIDs)
	if err != nil {
		return nil, err
	}
	out := store.StateMap{}
	for _, a := range auth {
		if a.Type == "m.room.member" && a.StateKey != nil && want[*a.StateKey] {
			out[store.StateKey{Type: a.Type, StateKey: *a.StateKey}] = a.ID
		}
	}
	return out, nil
}

// PartialServers returns the servers of a room joined with partial state
// as the resident server listed them (nil for other rooms): until its
// members are known, they are the room's servers for ephemeral traffic.
func (s *Service) PartialServers(roomID string) []string { return s.partialServers(roomID) }

// InPartialServers reports whether a room is joined with partial state and
// userID's server is among its listed servers: such a user may well be a
// member whose join we have not seen.
func (s *Service) InPartialServers(roomID, userID string) bool {
	return slices.Contains(s.partialServers(roomID), serverOf(userID))
}

// PartialServersOfUser returns the listed servers of the partial-state
// rooms userID is joined to.
func (s *Service) PartialServersOfUser(ctx context.Context, userID string) []string {
	var out []string
	s.ps.rooms.Range(func(k, v any) bool {
		if ok, err := s.IsJoined(ctx, k.(string), userID); err == nil && ok {
			for _, sv := range v.(*partialJoin).servers {
				if !slices.Contains(out, sv) {
					out = append(out, sv)
				}
			}
		}
		return true
	})
	return out
}
