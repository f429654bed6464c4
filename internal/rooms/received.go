package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/stateres"
	"luxchat/internal/parallel"
	"luxchat/internal/store"
)

// What the room federation (package roomfed) persists through the
// pipeline: received events on top of the current state, forks, a join
// through another server, soft-failed events and outliers.

// nextOutlierPos hands out the positions of events kept outside timelines:
// negative, decreasing, so that no timeline query (all read positions
// above zero) ever returns them.
func (s *Service) nextOutlierPos(ctx context.Context) (int64, error) {
	s.outliers.mu.Lock()
	defer s.outliers.mu.Unlock()
	if s.outliers.pos == 0 {
		m, err := s.store.MinEventPos(ctx)
		if err != nil {
			return 0, err
		}
		s.outliers.pos = min(m, 0)
	}
	s.outliers.pos--
	return s.outliers.pos, nil
}

func SameState(a, b store.StateMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// insertOutlier stores an event outside every timeline; group is the
// state group before it, -1 when unknown.
func (s *Service) insertOutlier(ctx context.Context, tx *store.Tx, ev *pdu.Event, group int64) error {
	pos, err := s.nextOutlierPos(ctx)
	if err != nil {
		return err
	}
	return tx.InsertOutlier(ctx, eventRow(ev, pdu.RoomIDForCreate(ev), pos, group, []byte("{}")))
}

// StateAfterEvent is the state after a stored event; ok is false when the
// event is unknown or an outlier (its state unknown).
func (s *Service) StateAfterEvent(ctx context.Context, eventID string) (store.StateMap, bool, error) {
	row, err := s.store.GetEvent(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if row.StateGroup < 0 {
		return nil, false, nil
	}
	st := store.StateMap{}
	if row.StateGroup > 0 {
		if st, err = s.store.StateGroup(ctx, row.StateGroup); err != nil {
			return nil, false, err
		}
	}
	if row.StateKey.Valid {
		st[store.StateKey{Type: row.Type, StateKey: row.StateKey.String}] = row.EventID
	}
	return st, true, nil
}

// StoreSoftFailed keeps an event that passed every check but the one
// against the current state: outside the timeline and the extremities, but
// with its state, so that later events may build on it. Caller holds the
// room lock.
func (s *Service) StoreSoftFailed(ctx context.Context, ev *pdu.Event, before store.StateMap) error {
	return s.store.InTx(ctx, func(tx *store.Tx) error {
		group, err := tx.NewStateSnapshot(ctx, ev.RoomID, before)
		if err != nil {
			return err
		}
		if err := tx.DeleteOutlier(ctx, ev.ID); err != nil {
			return err
		}
		return s.insertOutlier(ctx, tx, ev, group)
	})
}

// InsertOutliers stores events outside every timeline, their state
// unknown, with one multi-row statement per chunk.
func (s *Service) InsertOutliers(ctx context.Context, tx *store.Tx, evs []*pdu.Event) error {
	if len(evs) == 0 {
		return nil
	}
	first, err := s.reserveOutlierPos(ctx, len(evs))
	if err != nil {
		return err
	}
	rows := make([]*store.EventRow, len(evs))
	for i, ev := range evs {
		rows[i] = eventRow(ev, pdu.RoomIDForCreate(ev), first-int64(i), -1, []byte("{}"))
	}
	return tx.InsertOutliers(ctx, rows)
}

// reserveOutlierPos hands out n outlier positions at once: first, first-1,
// …, first-n+1.
func (s *Service) reserveOutlierPos(ctx context.Context, n int) (int64, error) {
	first, err := s.nextOutlierPos(ctx)
	if err != nil || n == 1 {
		return first, err
	}
	s.outliers.mu.Lock()
	defer s.outliers.mu.Unlock()
	if s.outliers.pos != first {
		// Another caller took positions meanwhile: start below theirs.
		first = s.outliers.pos - 1
		s.outliers.pos--
	}
	s.outliers.pos -= int64(n - 1)
	return first, nil
}

// deleteRemoteOutliers removes the stored outliers of the batch's events
// received over federation, which are stored again with their state: one
// statement for the batch.
func deleteRemoteOutliers(ctx context.Context, tx *store.Tx, b *Batch) error {
	var ids []string
	for _, pe := range b.events {
		if pe.remote {
			ids = append(ids, pe.ev.ID)
		}
	}
	return tx.DeleteOutliers(ctx, ids)
}

// parallelMin is the batch size from which parsing is spread over the
// cores: below it the goroutines cost more than they save.
const parallelMin = 64

// spread runs f(0) … f(n-1), on every core from parallelMin items on.
func spread(n int, f func(i int)) {
	if n < parallelMin {
		for i := range n {
			f(i)
		}
		return
	}
	parallel.For(n, f)
}

// parseRows parses stored events (each a JSON decoding and a canonical
// encoding), spread over the cores for large sets such as a big room's
// state.
func (s *Service) parseRows(ctx context.Context, rows []*store.EventRow) ([]*pdu.Event, error) {
	evs := make([]*pdu.Event, len(rows))
	errs := make([]error, len(rows))
	spread(len(rows), func(i int) { evs[i], errs[i] = s.ParseRow(ctx, rows[i]) })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return evs, nil
}

// ParsePDUs parses received PDUs of one room version, spread over the
// cores; those that do not parse are left out.
func ParsePDUs(raws []json.RawMessage, v *roomversion.Version) []*pdu.Event {
	evs := make([]*pdu.Event, len(raws))
	spread(len(raws), func(i int) {
		if ev, err := pdu.Parse(raws[i], v); err == nil {
			evs[i] = ev
		}
	})
	return slices.DeleteFunc(evs, func(ev *pdu.Event) bool { return ev == nil })
}

// primeJoinedRoom fills the cache of a room just joined from what the join
// stored, rather than have the first lock read the whole state back and
// parse it. A room already cached (or being loaded) is left alone.
func (s *Service) primeJoinedRoom(roomID string, v *roomversion.Version, state store.StateMap, byID map[string]*pdu.Event, group int64, chain store.ChainPos, join *pdu.Event, pos int64) {
	st := make(map[pdu.StateTuple]*pdu.Event, len(state))
	memberships := map[string]string{}
	for k, id := range state {
		ev := byID[id]
		if ev == nil {
			return // not every state event at hand: load reads them
		}
		st[pdu.StateTuple{Type: k.Type, StateKey: k.StateKey}] = ev
		if ev.Type == "m.room.member" {
			memberships[k.StateKey] = MembershipOf(ev)
		}
	}
	r := s.roomEntry(roomID)
	if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	if r.loaded {
		return
	}
	r.version, r.state = v, st
	r.setMembers(memberships)
	r.group, r.chain = group, chain
	r.extremities, r.depth, r.latestPos = []string{join.ID}, join.Depth, pos
	r.loaded, r.stateDropped = true, false
}

// ResolveState merges the states at several events with the room
// version's state resolution: identical states need none. extra are events
// not stored yet that the states name.
func (s *Service) ResolveState(ctx context.Context, v *roomversion.Version, sets []store.StateMap, extra ...*pdu.Event) (store.StateMap, error) {
	if len(sets) == 1 {
		return sets[0], nil
	}
	same := true
	for _, st := range sets[1:] {
		if !SameState(st, sets[0]) {
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

// CommitFork persists an accepted event whose state before differs from
// the room's current state: the room's extremities become the old ones it
// does not cite plus the event, and the current state the resolution of
// the states after them. Caller holds r.mu.
func (s *Service) CommitFork(ctx context.Context, r *Room, ev *pdu.Event, before store.StateMap, origin string) error {
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
			sets = append(sets, r.StateIDs()) // the state after the only old extremity
		} else {
			for _, x := range extremities[1:] {
				st, ok, err := s.StateAfterEvent(ctx, x)
				if err != nil {
					return err
				}
				if ok {
					sets = append(sets, st)
				}
			}
		}
	}
	current, err := s.ResolveState(ctx, r.version, sets, ev)
	if err != nil {
		return err
	}
	// What changes in the cached state, with the events behind it.
	old := r.StateIDs()
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
	sameBefore := SameState(before, old)
	sameAfter := SameState(current, old)
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		beforeGroup := r.group
		group = r.group
		var err error
		if !sameBefore {
			if beforeGroup, err = tx.NewStateSnapshot(ctx, r.id, before); err != nil {
				return err
			}
		}
		if !sameAfter {
			if group, err = tx.NewStateSnapshot(ctx, r.id, current); err != nil {
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
		s.setLatest(r.id, pos)
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
	r.updateMembers(members)
	s.events.put(ev.ID, ev)
	if group != r.group {
		r.group, r.chain = group, store.ChainPos{}
		s.rememberVisibility(r)
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

// Remote is what the pipeline asks of the room federation (package
// roomfed), which the server's wiring passes to New: rooms cannot import
// it, as roomfed commits what it receives through rooms.
type Remote interface {
	// Federated reports whether other servers can be reached.
	Federated() bool
	// RemoteMembership returns how a user's own membership change in a
	// room not known here is made, or nil when it cannot be.
	RemoteMembership(c MemberChange) func(context.Context, MemberChange) (string, error)
	// Invite has the invitee's server countersign an invite built here
	// (stripped: the room's state shown to the invitee), then takes it
	// through the inbound pipeline. No room lock is held.
	Invite(ctx context.Context, v *roomversion.Version, ev *pdu.Event, stripped []json.RawMessage) (string, error)
	// FetchHistory fetches history of a room from before its earliest
	// events here, until deadline; it returns how many events joined the
	// timeline.
	FetchHistory(ctx context.Context, roomID string, want int, deadline time.Time) (int, error)
}

// federated reports whether other servers can be reached.
func (s *Service) federated() bool { return s.remote != nil && s.remote.Federated() }

// remoteMembership returns how a user's own membership change in a room
// not known here is made, or nil when it cannot be.
func (s *Service) remoteMembership(c MemberChange) func(context.Context, MemberChange) (string, error) {
	if s.remote == nil {
		return nil
	}
	return s.remote.RemoteMembership(c)
}

// inviteRoomState is the state an invitee of another server is shown with
// an invite built in b: full PDUs, as spec v1.16 asks (the create event is
// required), and the inviter's member event.
func inviteRoomState(b *Batch, ev *pdu.Event) []json.RawMessage {
	var stripped []json.RawMessage
	for _, t := range StrippedTypes {
		if e := b.Lookup(pdu.StateTuple{Type: t}); e != nil {
			stripped = append(stripped, e.JSON())
		}
	}
	if e := b.Lookup(pdu.StateTuple{Type: "m.room.member", StateKey: ev.Sender}); e != nil {
		stripped = append(stripped, e.JSON())
	}
	return stripped
}

// ID is the room's id.
func (r *Room) ID() string { return r.id }

// Version is the room's version.
func (r *Room) Version() *roomversion.Version { return r.version }

// State returns one entry of the current state, nil when absent.
func (r *Room) State(t pdu.StateTuple) *pdu.Event { return r.state[t] }

// AllState yields the current state's entries (shared: not to be
// modified).
func (r *Room) AllState() iter.Seq2[pdu.StateTuple, *pdu.Event] { return maps.All(r.state) }

// Extremities are the room's forward extremities.
func (r *Room) Extremities() []string { return r.extremities }

// ServerJoined reports whether a user of server is joined now.
func (r *Room) ServerJoined(server string) bool { return serverJoined(r.joined, server) }

// Unlock releases the room's writer lock.
func (r *Room) Unlock() { r.mu.Unlock() }

// HasJoined reports whether a user is joined to the room now.
func (r *Room) HasJoined(userID string) bool { _, ok := r.joined[userID]; return ok }

// JoinedUsers is the users joined to the room now (for the read side).
func (r *Room) JoinedUsers() iter.Seq[string] { return maps.Keys(r.joined) }

// MemberCounts is the number of joined and of invited members.
func (r *Room) MemberCounts() (joined, invited int) { return len(r.joined), r.invited }

// Heroes are up to n members other than userID, lowest user ids first:
// joined or invited ones, or when there are none those who left or were
// banned. One pass over the members, no sort of all of them.
func (r *Room) Heroes(userID string, n int) []string {
	var present, gone []string
	for u, m := range r.memberships {
		if u == userID {
			continue
		}
		switch m {
		case "join", "invite":
			present = keepLowest(present, u, n)
		case "leave", "ban":
			if len(present) == 0 {
				gone = keepLowest(gone, u, n)
			}
		}
	}
	if len(present) == 0 {
		return gone
	}
	return present
}

// keepLowest adds u to the sorted list of at most n lowest strings.
func keepLowest(list []string, u string, n int) []string {
	if len(list) == n && u >= list[n-1] {
		return list
	}
	i, _ := slices.BinarySearch(list, u)
	if len(list) < n {
		list = append(list, "")
	}
	copy(list[i+1:], list[i:])
	list[i] = u
	return list
}

// NewBatch starts a run of events received from origin ("" for ours
// countersigned elsewhere) on top of the room's current state, to commit
// in one transaction (Commit). The caller holds r's lock.
func (s *Service) NewBatch(r *Room, origin string) *Batch {
	b := s.newBatch(r)
	b.origin = origin
	return b
}

// AddReceived adds a received event, checked against the batch's state,
// to the batch: it extends the batch's prev events and depth.
func (b *Batch) AddReceived(ev *pdu.Event) {
	pe := &pending{ev: ev, remote: true}
	if ev.IsState() {
		pe.replaced = b.Lookup(ev.Tuple())
		b.overlay[ev.Tuple()] = ev
	}
	b.events = append(b.events, pe)
	b.prev, b.depth = []string{ev.ID}, max(b.depth, ev.Depth)
}

// Prev is what the batch's next event cites as prev events.
func (b *Batch) Prev() []string { return b.prev }

// Events lists the batch's events in order.
func (b *Batch) Events() []*pdu.Event {
	out := make([]*pdu.Event, len(b.events))
	for i, pe := range b.events {
		out[i] = pe.ev
	}
	return out
}

// BuildEvent builds and authorises an event against the room's current
// state without persisting it (the template of make_join and the like).
// The caller holds r's lock.
func (s *Service) BuildEvent(ctx context.Context, r *Room, p Proto) (*pdu.Event, error) {
	return s.add(ctx, s.newBatch(r), p)
}

// outlierPositions hands out the positions of events kept outside
// timelines; mu guards pos, the last one handed out (0: not loaded).
type outlierPositions struct {
	mu  sync.Mutex
	pos int64
}

// Join is our join of a room through another server, checked: what
// CommitJoin stores.
type Join struct {
	// Server is the resident server that took the join through send_join
	// and announces it to the room.
	Server  string
	Version *roomversion.Version
	Event   *pdu.Event // our join
	Creator string     // the room's creator, per its create event
	// State is the state before the join, StateEvents its events.
	State       store.StateMap
	StateEvents []*pdu.Event
	// Replaced is the member event the join replaces in State, if any.
	Replaced *pdu.Event
	// Outliers are the events of the state and auth chain not stored yet.
	Outliers []*pdu.Event
	// Partial, when not nil, lists the servers to fetch the full state
	// from: State lacks member events, and the room is marked partial.
	Partial []string
	// Committed, if not nil, runs once the join is committed (and the
	// room marked partial), before the listeners: the resync of a
	// partial state starts there, as early as it can.
	Committed func()
}

// CommitJoin stores a room joined through another server in one
// transaction: the room, its state (as outliers) and the join, the
// room's first timeline event here; then tells the listeners (the join
// is not sent back to j.Server, which announces it) and wakes syncs.
func (s *Service) CommitJoin(ctx context.Context, j Join) error {
	roomID, join := j.Event.RoomID, j.Event
	mk := store.StateKey{Type: "m.room.member", StateKey: join.Sender}
	after := cloneState(j.State)
	after[mk] = join.ID
	byID := map[string]*pdu.Event{join.ID: join}
	for _, e := range j.StateEvents {
		byID[e.ID] = e
	}
	var pos, group2 int64
	var chain2 store.ChainPos
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.CreateRoom(ctx, store.Room{RoomID: roomID, Version: j.Version.ID, Creator: j.Creator}); err != nil {
			if errors.Is(err, store.ErrExists) {
				return errcode.RoomInUse("the room was joined meanwhile")
			}
			return err
		}
		if err := s.InsertOutliers(ctx, tx, j.Outliers); err != nil {
			return err
		}
		group, err := tx.NewStateSnapshot(ctx, roomID, j.State)
		if err != nil {
			return err
		}
		pos = tx.Alloc(s.store.Streams.Events)
		jb := &Batch{roomID: roomID, events: []*pending{{ev: join, pos: pos, replaced: j.Replaced}}}
		_, err = s.persist(ctx, tx, jb, jb.events[0], group, func() error {
			var err error
			group2, chain2, err = tx.NewStateGroup(ctx, roomID, group, store.ChainPos{}, store.StateMap{mk: join.ID}, len(after), func() store.StateMap { return after })
			if err != nil {
				return err
			}
			if err := tx.SetCurrentStateMany(ctx, roomID, after); err != nil {
				return err
			}
			var ms []store.Membership
			for k, x := range after {
				if k.Type == "m.room.member" && byID[x] != nil {
					u := k.StateKey
					if serverOf(u) == s.serverName {
						s.membershipsChanged(tx, u)
					}
					ms = append(ms, store.Membership{RoomID: roomID, UserID: u, Membership: MembershipOf(byID[x]), EventID: x, Pos: pos})
				}
			}
			if err := tx.SetMemberships(ctx, ms); err != nil {
				return err
			}
			if err := tx.SetRoomStateGroup(ctx, roomID, group2); err != nil {
				return err
			}
			if err := tx.DeleteRemoteMembership(ctx, roomID, join.Sender); err != nil {
				return err
			}
			if j.Partial != nil {
				return tx.PutPartialStateRoom(ctx, store.PartialStateRoom{RoomID: roomID, JoinEventID: join.ID, Servers: j.Partial})
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.setLatest(roomID, pos)
		s.noteMembershipChange(pos)
		return nil
	})
	if err != nil {
		return err
	}
	s.versions.Store(roomID, j.Version)
	if j.Partial != nil {
		// Before the listeners: the join goes to the servers in the room.
		s.MarkPartial(roomID, join.ID, j.Partial)
	}
	if j.Committed != nil {
		j.Committed()
	}
	s.primeJoinedRoom(roomID, j.Version, after, byID, group2, chain2, join, pos)
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	joined := r.joinedUsers()
	// The resident server announces the join it accepted through
	// send_join, so it is not sent back to it.
	b := &Batch{r: r, roomID: roomID, events: []*pending{{ev: join, pos: pos}}, announcedBy: j.Server}
	s.tellListeners(r, b, nil)
	r.mu.Unlock()
	if s.notifier != nil {
		s.notifier.RoomEvent(roomID, nil, append(joined, join.Sender), pos)
	}
	return nil
}
