package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/store"
)

// maxJoinEvents bounds the state and auth chain accepted with a join: a
// room of tens of thousands of members still fits.
const maxJoinEvents = 100000

// verified is the outcome of checkSignaturesAndHash for one event.
type verified struct {
	ev  *pdu.Event
	err error
}

type preverifiedKey struct{}

// preverify runs the signature and hash checks of evs (those not already
// stored with their state) on every core before the per-room work, which
// is serial, and returns a context that carries the outcomes to
// verifiedOnce. Each check is independent of the others and of the room.
func (s *Service) preverify(ctx context.Context, evs []*pdu.Event) context.Context {
	if !s.federated() || len(evs) == 0 {
		return ctx
	}
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	stored, err := s.store.EventStateGroups(ctx, ids)
	if err != nil {
		return ctx
	}
	var todo []*pdu.Event
	for _, ev := range evs {
		if g, ok := stored[ev.ID]; !ok || g < 0 {
			todo = append(todo, ev)
		}
	}
	out := make(map[*pdu.Event]verified, len(todo))
	res := make([]verified, len(todo))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(todo); i = int(next.Add(1)) - 1 {
				ev, err := s.checkSignaturesAndHash(ctx, todo[i])
				res[i] = verified{ev, err}
			}
		}()
	}
	wg.Wait()
	for i, ev := range todo {
		out[ev] = res[i]
	}
	return context.WithValue(ctx, preverifiedKey{}, out)
}

// verifiedOnce is checkSignaturesAndHash, answered from preverify's work
// when it has checked this very event.
func (s *Service) verifiedOnce(ctx context.Context, ev *pdu.Event) (*pdu.Event, error) {
	if m, ok := ctx.Value(preverifiedKey{}).(map[*pdu.Event]verified); ok {
		if v, ok := m[ev]; ok {
			return v.ev, v.err
		}
	}
	return s.checkSignaturesAndHash(ctx, ev)
}

// errRunEnds stops a run of linear events at an event that needs the
// general pipeline.
var errRunEnds = errors.New("event needs the general pipeline")

// receiveRun persists, in one transaction, the longest run of evs (from
// the first, in order) in which every event has exactly the previous one
// as its prev event (the first: the room's extremities), is new, and
// passes every check with what is at hand: its signatures and hash, the
// auth rules against its own auth events (stored or earlier in the run)
// and against the state before it, which is the current state as the run
// has changed it, so there is nothing to resolve and no soft failure. It
// records the outcome of each event of the run in out and returns how
// many there were; an event that ends the run goes through receive.
func (s *Service) receiveRun(ctx context.Context, origin string, evs []*pdu.Event, out PDUResult) int {
	if !s.federated() || len(evs) == 0 {
		return 0
	}
	r, err := s.lockRoom(ctx, evs[0].RoomID)
	if err != nil {
		return 0
	}
	defer r.mu.Unlock()
	if !sameSet(evs[0].PrevEvents, r.extremities) {
		return 0
	}
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	stored, err := s.store.EventStateGroups(ctx, ids)
	if err != nil {
		return 0
	}
	rej, err := s.store.RejectedEvents(ctx, ids)
	if err != nil {
		return 0
	}
	b := s.newBatch(r)
	b.origin = origin
	inRun := map[string]*pdu.Event{}
	for _, ev := range evs {
		if _, ok := stored[ev.ID]; ok || rej[ev.ID] || inRun[ev.ID] != nil || !sameSet(ev.PrevEvents, b.prev) {
			break
		}
		checked, err := s.verifiedOnce(ctx, ev)
		if err != nil || s.checkInRun(ctx, checked, b, inRun) != nil {
			break
		}
		pe := &pending{ev: checked, remote: true}
		if checked.IsState() {
			pe.replaced = b.lookup(checked.Tuple())
			b.overlay[checked.Tuple()] = checked
		}
		b.events = append(b.events, pe)
		b.prev, b.depth = []string{checked.ID}, max(b.depth, checked.Depth)
		inRun[checked.ID] = checked
	}
	if len(b.events) == 0 {
		return 0
	}
	if err := s.commit(ctx, b); err != nil {
		// Nothing was stored (e.g. one of the events arrived meanwhile as
		// an outlier): each event takes the general path instead.
		s.log.Info("federation: batch not committed", "room_id", b.roomID, "events", len(b.events), "err", err)
		return 0
	}
	for _, pe := range b.events {
		out[pe.ev.ID] = nil
	}
	return len(b.events)
}

// checkInRun applies the auth rules to an event of a run: against its own
// auth events, then against the state before it (the batch's state).
// Auth events that are neither in the run nor stored end the run: the
// general pipeline fetches them.
func (s *Service) checkInRun(ctx context.Context, ev *pdu.Event, b *batch, inRun map[string]*pdu.Event) error {
	byID, err := s.knownAuthEvents(ctx, ev, inRun)
	if err != nil {
		return err
	}
	list := make([]*pdu.Event, 0, len(ev.AuthEvents)+1)
	for _, a := range ev.AuthEvents {
		if byID[a] == nil {
			return errRunEnds
		}
		list = append(list, byID[a])
	}
	// Stored events were never rejected: rejected ones are not stored.
	if err := eventauth.CheckAuthEventsShape(ev, byID, func(string) bool { return false }); err != nil {
		return err
	}
	list, err = s.withCreate(ctx, ev, list, inRun)
	if err != nil {
		return err
	}
	if err := s.checkAuth(ctx, ev, eventauth.NewStateMap(list...)); err != nil {
		return err
	}
	return s.checkAuth(ctx, ev, eventauth.AuthEventsFunc(b.lookup))
}

// insertOutliers stores events outside every timeline, their state
// unknown, with one multi-row statement per chunk.
func (s *Service) insertOutliers(ctx context.Context, tx *store.Tx, evs []*pdu.Event) error {
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
	s.fed.mu.Lock()
	defer s.fed.mu.Unlock()
	if s.fed.outlierPos != first {
		// Another caller took positions meanwhile: start below theirs.
		first = s.fed.outlierPos - 1
		s.fed.outlierPos--
	}
	s.fed.outlierPos -= int64(n - 1)
	return first, nil
}

// deleteRemoteOutliers removes the stored outliers of the batch's events
// received over federation, which are stored again with their state: one
// statement for the batch.
func deleteRemoteOutliers(ctx context.Context, tx *store.Tx, b *batch) error {
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

// parallel runs f(0) … f(n-1) on every core.
func parallel(n int, f func(i int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < parallelMin || workers < 2 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// parseRows parses stored events (each parse computes the event id: a
// canonical encoding and a hash), spread over the cores for large sets
// such as a big room's state.
func (s *Service) parseRows(ctx context.Context, rows []*store.EventRow) ([]*pdu.Event, error) {
	evs := make([]*pdu.Event, len(rows))
	errs := make([]error, len(rows))
	parallel(len(rows), func(i int) { evs[i], errs[i] = s.ParseRow(ctx, rows[i]) })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return evs, nil
}

// parsePDUs parses received PDUs of one room version, spread over the
// cores; those that do not parse are left out.
func parsePDUs(raws []json.RawMessage, v *roomversion.Version) []*pdu.Event {
	evs := make([]*pdu.Event, len(raws))
	parallel(len(raws), func(i int) {
		if ev, err := pdu.Parse(raws[i], v); err == nil {
			evs[i] = ev
		}
	})
	return slices.DeleteFunc(evs, func(ev *pdu.Event) bool { return ev == nil })
}

// primeJoinedRoom fills the cache of a room just joined from what the join
// stored, rather than have the first lock read the whole state back and
// parse it. A room already cached (or being loaded) is left alone.
func (s *Service) primeJoinedRoom(roomID string, v *roomversion.Version, state store.StateMap, byID map[string]*pdu.Event, group int64, chain int, join *pdu.Event, pos int64) {
	st := make(map[pdu.StateTuple]*pdu.Event, len(state))
	joined := map[string]struct{}{}
	for k, id := range state {
		ev := byID[id]
		if ev == nil {
			return // not every state event at hand: load reads them
		}
		st[pdu.StateTuple{Type: k.Type, StateKey: k.StateKey}] = ev
		if ev.Type == "m.room.member" && MembershipOf(ev) == "join" {
			joined[k.StateKey] = struct{}{}
		}
	}
	s.mu.Lock()
	r, ok := s.rooms[roomID]
	if !ok {
		r = &roomState{id: roomID}
		s.rooms[roomID] = r
	}
	s.mu.Unlock()
	if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	if r.loaded {
		return
	}
	r.version, r.state, r.joined = v, st, joined
	r.group, r.chain = group, chain
	r.extremities, r.depth, r.latestPos = []string{join.ID}, join.Depth, pos
	r.loaded = true
}
