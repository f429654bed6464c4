package roomfed

import (
	"context"
	"errors"

	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/parallel"
	"luxchat/internal/rooms"
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
	parallel.For(len(todo), func(i int) {
		ev, err := s.checkSignaturesAndHash(ctx, todo[i])
		res[i] = verified{ev, err}
	})
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
	// A partial-state room's events are checked against a resolution of
	// its state with their auth events (receive).
	if !s.federated() || len(evs) == 0 || s.rooms.IsPartialState(evs[0].RoomID) {
		return 0
	}
	r, err := s.rooms.LockRoom(ctx, evs[0].RoomID)
	if err != nil {
		return 0
	}
	defer r.Unlock()
	if !sameSet(evs[0].PrevEvents, r.Extremities()) {
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
	b := s.rooms.NewBatch(r, origin)
	inRun := map[string]*pdu.Event{}
	for _, ev := range evs {
		if _, ok := stored[ev.ID]; ok || rej[ev.ID] || inRun[ev.ID] != nil || !sameSet(ev.PrevEvents, b.Prev()) {
			break
		}
		checked, err := s.verifiedOnce(ctx, ev)
		if err != nil || s.checkInRun(ctx, checked, b, inRun) != nil {
			break
		}
		b.AddReceived(checked)
		inRun[checked.ID] = checked
	}
	run := b.Events()
	if len(run) == 0 {
		return 0
	}
	if err := s.rooms.Commit(ctx, b); err != nil {
		// Nothing was stored (e.g. one of the events arrived meanwhile as
		// an outlier): each event takes the general path instead.
		s.log.Info("federation: batch not committed", "room_id", r.ID(), "events", len(run), "err", err)
		return 0
	}
	for _, ev := range run {
		out[ev.ID] = nil
	}
	return len(run)
}

// checkInRun applies the auth rules to an event of a run: against its own
// auth events, then against the state before it (the batch's state).
// Auth events that are neither in the run nor stored end the run: the
// general pipeline fetches them.
func (s *Service) checkInRun(ctx context.Context, ev *pdu.Event, b *rooms.Batch, inRun map[string]*pdu.Event) error {
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
	return s.checkAuth(ctx, ev, eventauth.AuthEventsFunc(b.Lookup))
}
