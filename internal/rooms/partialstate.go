package rooms

import (
	"cmp"
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
	// rejected now, and what they changed is undone; those refused then
	// are admitted now if they pass.
	c := &completion{before: before, partialBefore: partialBefore, undo: map[string]string{}}
	rejected, cited, err := s.recheckSinceJoin(ctx, r, joinRow.Pos, c, check)
	if err != nil {
		return err
	}
	// A state reached since the join is the full state before it with
	// the changes made since (the join itself included) on top. removed
	// reports a key a rejected event had added: a delta cannot say so.
	completed := func(partial store.StateMap, pos int64) (full, delta store.StateMap, removed bool) {
		full, delta = c.full(partial, pos)
		for k := range partial {
			if _, ok := full[k]; !ok {
				removed = true
			}
		}
		return full, delta, removed
	}
	cur := r.StateIDs()
	now, nowDelta, nowRemoved := completed(cur, math.MaxInt64)
	// The events received or sent since the join have partial states
	// before them too: each such group gets its completed counterpart,
	// per span of positions between two admitted events.
	type completedGroup struct {
		from, to, old int64
		full, delta   store.StateMap
		removed       bool
	}
	var later []completedGroup
	bounds := []int64{joinRow.Pos}
	for _, a := range c.redo {
		if a.afterPos > bounds[len(bounds)-1] {
			bounds = append(bounds, a.afterPos)
		}
	}
	bounds = append(bounds, math.MaxInt64)
	for i := 0; i+1 < len(bounds); i++ {
		from, to := bounds[i], bounds[i+1]
		groups, err := s.store.StateGroupsBetween(ctx, roomID, from, to)
		if err != nil {
			return err
		}
		for _, g := range groups {
			st, err := s.store.StateGroup(ctx, g)
			if err != nil {
				return err
			}
			full, delta, removed := completed(st, to)
			later = append(later, completedGroup{from, to, g, full, delta, removed})
		}
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
	for _, g := range later {
		addMembers(g.full)
	}
	addMembers(now)
	allMembers, err := s.Events(ctx, memberIDs)
	if err != nil {
		return err
	}
	for _, a := range c.redo { // not stored yet
		if seen[a.ev.ID] && a.ev.Type == "m.room.member" {
			allMembers = append(allMembers, a.ev)
		}
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
	// events (those stored here); an admitted event no stored event
	// follows becomes one.
	ext, extChanged := withoutRejected(r.extremities, rejected)
	for _, a := range c.redo {
		// What an admitted event follows (through rejected events, which
		// forks made extremities of) is no extremity.
		before, _ := withoutRejected(a.ev.PrevEvents, rejected)
		n := len(ext)
		ext = slices.DeleteFunc(ext, func(id string) bool { return slices.Contains(before, id) })
		if !cited[a.ev.ID] {
			ext = append(ext, a.ev.ID)
		}
		extChanged = extChanged || len(ext) != n
	}
	if extChanged {
		stored, err := s.store.EventStateGroups(ctx, ext)
		if err != nil {
			return err
		}
		ext = slices.DeleteFunc(ext, func(id string) bool { _, ok := stored[id]; return !ok })
	}
	var pos int64
	var local []string
	var admitted []*Batch
	var unread []int64
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		local, admitted = local[:0], admitted[:0]
		for _, p := range unread {
			s.unread.forget(roomID, p)
		}
		unread = unread[:0]
		g, err := tx.NewStateSnapshot(ctx, roomID, before)
		if err != nil {
			return err
		}
		if err := tx.SetEventStateGroup(ctx, join.ID, g); err != nil {
			return err
		}
		for _, lg := range later {
			ng, _, err := tx.NewStateGroup(ctx, roomID, parentUnless(lg.removed, g), store.ChainPos{}, lg.delta, len(lg.full), func() store.StateMap { return lg.full })
			if err != nil {
				return err
			}
			if err := tx.ReplaceStateGroupBetween(ctx, roomID, lg.from, lg.to, lg.old, ng); err != nil {
				return err
			}
		}
		// Events refused against the partial state and admitted against
		// the full one join the timeline now, with the full state before
		// them.
		for _, a := range c.redo {
			ag, err := tx.NewStateSnapshot(ctx, roomID, a.stateBefore)
			if err != nil {
				return err
			}
			if err := tx.AdmitRejected(ctx, a.ev.ID); err != nil {
				return err
			}
			a.pos = tx.Alloc(s.store.Streams.Events)
			b := s.newBatch(r)
			b.origin = a.origin
			pe := &pending{ev: a.ev, remote: true, pos: a.pos}
			if a.ev.IsState() {
				if x := a.stateBefore[stateKeyOf(a.ev)]; x != "" {
					pe.replaced, _ = s.Event(ctx, x)
				}
			}
			b.events = []*pending{pe}
			if _, err := s.persist(ctx, tx, b, pe, ag, nil); err != nil {
				return err
			}
			if s.countsMessages(a.ev) {
				s.unread.record(roomID, a.pos, a.ev.Sender, r.latestPos)
				unread = append(unread, a.pos)
			}
			admitted = append(admitted, b)
		}
		cg, _, err := tx.NewStateGroup(ctx, roomID, parentUnless(nowRemoved, g), store.ChainPos{}, nowDelta, len(now), func() store.StateMap { return now })
		if err != nil {
			return err
		}
		for _, ev := range rejected {
			if err := tx.RejectStoredEvent(ctx, ev.ID, roomID, "rejected against the room's full state", ev.PrevEvents); err != nil {
				return err
			}
		}
		// Admitted events are the newest: a single extremity must be named.
		if extChanged || len(c.redo) > 0 {
			set := tx.SetExtremities
			if len(c.redo) > 0 {
				set = tx.RecordExtremities
			}
			if err := set(ctx, roomID, ext); err != nil {
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
		// Members learnt count from the join; a membership an admitted
		// event changed, from that event.
		ms := make([]store.Membership, 0, len(members))
		for _, m := range members {
			at := joinRow.Pos
			for _, a := range c.redo {
				if a.ev.ID == m.ID {
					at = a.pos
				}
			}
			if serverOf(*m.StateKey) == s.serverName {
				s.membershipsChanged(tx, *m.StateKey)
				if at != joinRow.Pos {
					local = append(local, *m.StateKey)
				}
			}
			ms = append(ms, store.Membership{RoomID: roomID, UserID: *m.StateKey, Membership: MembershipOf(m), EventID: m.ID, Pos: at})
		}
		// Our members' rooms change at a new position, so that their syncs
		// wake and show the room again, now with its whole state.
		pos = tx.Alloc(s.store.Streams.Events)
		if len(c.redo) > 0 {
			s.setLatest(roomID, c.redo[len(c.redo)-1].pos)
		}
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
		// The state changed without an event: initial syncs read it anew.
		tx.OnCommitted(func() { s.ps.rooms.Delete(roomID); s.views.drop(roomID) })
		if err := tx.DropRoomView(ctx, roomID); err != nil {
			return err
		}
		return tx.DeletePartialStateRoom(ctx, roomID)
	})
	if err != nil {
		for _, p := range unread {
			s.unread.forget(roomID, p)
		}
		return err
	}
	// The cached state is read again from what was just committed.
	r.loaded, r.stateDropped = false, false
	if len(rejected) > 0 || len(admitted) > 0 {
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
	if len(admitted) > 0 {
		local = append(local, ours...) // every local member sees the admitted events
	}
	if s.notifier != nil && len(local) > 0 {
		s.notifier.RoomEvent(roomID, nil, local, pos)
	}
	for _, b := range admitted {
		s.log.Info("federation: event refused against a partial state admitted against the full one", "event_id", b.events[0].ev.ID, "room_id", roomID)
		s.tellListeners(r, b, nil)
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

// completion makes the partial states reached since a partial-state join
// complete.
type completion struct {
	before        store.StateMap    // the full state before the join
	partialBefore store.StateMap    // the partial one it replaces
	undo          map[string]string // rejected state event → the value it replaced ("" when it added its key)
	redo          []*admission      // events refused then, admitted now, in order
}

// admission is an event refused against a partial state and admitted
// against the full one.
type admission struct {
	ev          *pdu.Event
	origin      string
	afterPos    int64          // the room's newest position when it was refused
	replaced    string         // for a state event, its key's value in the partial state before it
	stateBefore store.StateMap // the full state before it
	pos         int64          // its position in the timeline, once stored
}

// full is a partial state reached at position pos made complete (see
// completeState), with the admitted events before pos whose key nothing
// changed since on top; delta holds the changes over c.before.
func (c *completion) full(partial store.StateMap, pos int64) (full, delta store.StateMap) {
	full, delta = completeState(c.before, c.partialBefore, partial, c.undo)
	for _, a := range c.redo {
		if a.afterPos >= pos || !a.ev.IsState() {
			continue
		}
		if k := stateKeyOf(a.ev); partial[k] == a.replaced {
			full[k] = a.ev.ID
			if c.before[k] != a.ev.ID {
				delta[k] = a.ev.ID
			}
		}
	}
	return full, delta
}

func stateKeyOf(ev *pdu.Event) store.StateKey {
	return store.StateKey{Type: ev.Type, StateKey: *ev.StateKey}
}

// recheckSinceJoin checks the events received from other servers since
// a partial-state join, in order, against the full state before each
// (c.before: the full state before the join; c.partialBefore: the partial
// one it replaces), and with them, each where it was refused, the events
// refused against the partial state. It returns the stored events that
// fail, recording in c.undo the value each failing state event replaced,
// records in c.redo the refused events that pass, and reports which
// events the stored ones cite as prev events.
func (s *Service) recheckSinceJoin(ctx context.Context, r *Room, joinPos int64, c *completion, check AuthCheck) ([]*pdu.Event, map[string]bool, error) {
	rows, err := s.store.RoomEvents(ctx, r.id, joinPos, math.MaxInt64, false, recheckMax)
	if err != nil {
		return nil, nil, err
	}
	stored, err := s.store.RefusedEvents(ctx, r.id)
	if err != nil {
		return nil, nil, err
	}
	// Refused at the same position, an event comes after those it
	// follows: in depth order.
	type refusedEvent struct {
		store.RefusedEvent
		ev *pdu.Event
	}
	var refused []refusedEvent
	for _, e := range stored {
		if ev, err := pdu.Parse(e.PDU, r.version); err == nil {
			refused = append(refused, refusedEvent{e, ev})
		}
	}
	slices.SortStableFunc(refused, func(a, b refusedEvent) int {
		if a.AfterPos != b.AfterPos {
			return cmp.Compare(a.AfterPos, b.AfterPos)
		}
		return cmp.Compare(a.ev.Depth, b.ev.Depth)
	})
	var rejected []*pdu.Event
	cited := map[string]bool{}
	groups := map[int64]store.StateMap{}
	lookupIn := func(full store.StateMap) eventauth.AuthEvents {
		return eventauth.AuthEventsFunc(func(t pdu.StateTuple) *pdu.Event {
			id := full[store.StateKey{Type: t.Type, StateKey: t.StateKey}]
			if id == "" {
				return nil
			}
			e, _ := s.Event(ctx, id)
			return e
		})
	}
	// readmit checks the refused events up to position upTo.
	readmit := func(upTo int64) {
		for len(refused) > 0 && refused[0].AfterPos < upTo {
			e, ev := refused[0], refused[0].ev
			refused = refused[1:]
			full, _ := c.full(e.StateBefore, e.AfterPos+1)
			if check(ctx, ev, lookupIn(full)) != nil {
				continue
			}
			a := &admission{ev: ev, origin: e.Origin, afterPos: e.AfterPos, stateBefore: full}
			if ev.IsState() {
				a.replaced = e.StateBefore[stateKeyOf(ev)]
			}
			c.redo = append(c.redo, a)
		}
	}
	for _, row := range rows {
		readmit(row.Pos)
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
		full, _ := c.full(partial, row.Pos)
		ev, err := s.ParseRow(ctx, row)
		if err != nil {
			continue
		}
		for _, p := range ev.PrevEvents {
			cited[p] = true
		}
		if check(ctx, ev, lookupIn(full)) == nil {
			continue
		}
		rejected = append(rejected, ev)
		if ev.IsState() {
			c.undo[ev.ID] = full[stateKeyOf(ev)]
		}
	}
	readmit(math.MaxInt64)
	return rejected, cited, nil
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
