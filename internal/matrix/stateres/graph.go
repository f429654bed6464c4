package stateres

import (
	"errors"
	"fmt"
	"slices"

	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

// fetchBatch bounds the ids asked for in one fetch call, which keeps a
// store's query within the parameter limits of both database engines.
const fetchBatch = 1000

var (
	createTuple      = pdu.StateTuple{Type: "m.room.create"}
	powerLevelsTuple = pdu.StateTuple{Type: "m.room.power_levels"}
)

// graph is the part of the room's auth graph that one resolution looks at:
// every event fetched so far, by id. It belongs to one Resolve call and is
// not safe for concurrent use.
type graph struct {
	v        *roomversion.Version
	fetch    func(ids []string) (map[string]*pdu.Event, error)
	rejected func(eventID string) bool
	events   map[string]*pdu.Event
	absent   map[string]bool // asked for and not returned
	roomID   string
	// create is the room's create event from room version 12 on, where it
	// is never an auth event but every auth check still needs it.
	create *pdu.Event
}

func newGraph(v *roomversion.Version, fetch func([]string) (map[string]*pdu.Event, error), o *options) *graph {
	return &graph{
		v: v, fetch: fetch, rejected: o.rejected,
		events: map[string]*pdu.Event{}, absent: map[string]bool{},
	}
}

// ensure fetches the ids not fetched yet, in batches. Events the callback
// returns beyond those asked for (a store may answer with whole auth
// chains) are kept too and never asked for again.
func (g *graph) ensure(ids []string) error {
	var want []string
	asked := map[string]bool{}
	for _, id := range ids {
		if g.events[id] == nil && !g.absent[id] && !asked[id] {
			asked[id] = true
			want = append(want, id)
		}
	}
	for len(want) > 0 {
		batch := want[:min(len(want), fetchBatch)]
		want = want[len(batch):]
		got, err := g.fetch(batch)
		if err != nil {
			return fmt.Errorf("stateres: fetch events: %w", err)
		}
		for id, ev := range got {
			if err := g.add(id, ev); err != nil {
				return err
			}
		}
		for _, id := range batch {
			if g.events[id] == nil {
				g.absent[id] = true
			}
		}
	}
	return nil
}

// add checks that a fetched event belongs to this resolution: right id,
// right room version, same room as the others.
func (g *graph) add(id string, ev *pdu.Event) error {
	if ev == nil || g.events[id] != nil {
		return nil
	}
	if ev.ID != id {
		return fmt.Errorf("stateres: fetch returned event %s for id %s", ev.ID, id)
	}
	if ev.Version == nil || ev.Version.ID != g.v.ID {
		return fmt.Errorf("stateres: event %s is not of room version %s", id, g.v.ID)
	}
	room := pdu.RoomIDForCreate(ev)
	switch {
	case g.roomID == "":
		g.roomID = room
	case room != g.roomID:
		return fmt.Errorf("stateres: event %s is in room %s, not %s", id, room, g.roomID)
	}
	g.events[id] = ev
	return nil
}

// loadAuthChains fetches ids and every event their auth_events reach, one
// fetch per layer of the auth graph. Auth events nobody can supply are
// left out: the algorithm works on the auth chains as far as they are known.
func (g *graph) loadAuthChains(ids []string) error {
	seen := make(map[string]bool, len(ids))
	frontier := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			frontier = append(frontier, id)
		}
	}
	for len(frontier) > 0 {
		if err := g.ensure(frontier); err != nil {
			return err
		}
		var next []string
		for _, id := range frontier {
			ev := g.events[id]
			if ev == nil {
				continue
			}
			for _, a := range ev.AuthEvents {
				if !seen[a] {
					seen[a] = true
					next = append(next, a)
				}
			}
		}
		frontier = next
	}
	return nil
}

// loadCreate finds the create event of a room version 12 room, named by
// the room id.
func (g *graph) loadCreate() error {
	if !g.v.RoomIDFromCreate || g.roomID == "" || g.roomID[0] != '!' {
		return nil
	}
	id := "$" + g.roomID[1:]
	if err := g.ensure([]string{id}); err != nil {
		return err
	}
	if ev := g.events[id]; ev != nil && ev.Type == createTuple.Type && ev.StateKeyIs("") {
		g.create = ev
	}
	return nil
}

// walk visits each fetched event reachable from roots through auth_events,
// roots included; enter returns false to stop the walk below an event.
// It is iterative, so a long auth chain cannot overflow the stack.
func (g *graph) walk(roots []string, enter func(ev *pdu.Event) bool) {
	stack := slices.Clone(roots)
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ev := g.events[id]
		if ev == nil || !enter(ev) {
			continue
		}
		stack = append(stack, ev.AuthEvents...)
	}
}

// postorder calls fn once for each fetched event reachable from roots,
// after it has been called for all of that event's fetched auth events.
// An auth_events cycle, which only forged events of room versions 1 and 2
// can form, is broken where it is found.
func (g *graph) postorder(roots []string, fn func(ev *pdu.Event)) {
	const (
		onStack = 1
		done    = 2
	)
	mark := map[string]uint8{}
	type frame struct {
		ev   *pdu.Event
		next int
	}
	var stack []frame
	for _, root := range roots {
		ev := g.events[root]
		if ev == nil || mark[root] != 0 {
			continue
		}
		mark[root] = onStack
		stack = append(stack[:0], frame{ev: ev})
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.next < len(top.ev.AuthEvents) {
				a := top.ev.AuthEvents[top.next]
				top.next++
				if ae := g.events[a]; ae != nil && mark[a] == 0 {
					mark[a] = onStack
					stack = append(stack, frame{ev: ae})
				}
				continue
			}
			mark[top.ev.ID] = done
			fn(top.ev)
			stack = stack[:len(stack)-1]
		}
	}
}

// authEvent returns the fetched auth event of ev with tuple t, or nil.
func (g *graph) authEvent(ev *pdu.Event, t pdu.StateTuple) *pdu.Event {
	for _, a := range ev.AuthEvents {
		if ae := g.events[a]; ae != nil && ae.IsState() && ae.Tuple() == t {
			return ae
		}
	}
	return nil
}

// senderLevel is the power level of ev's sender according to ev's own
// auth events (the room's creators count as infinite from version 12).
func (g *graph) senderLevel(ev *pdu.Event) eventauth.Level {
	create := g.authEvent(ev, createTuple)
	if create == nil {
		create = g.create
	}
	return eventauth.RoomPowerLevels(create, g.authEvent(ev, powerLevelsTuple)).UserLevel(ev.Sender)
}

// allowed runs the authorisation rules on ev against state. With
// fallback, a tuple the rules need and state lacks is taken from ev's own
// auth events, unless that auth event was rejected, and from room version
// 12 the create event comes from the room id. Signatures were verified when the events were
// received: state resolution re-applies only the rules that depend on the
// room state, so the join_authorised_via_users_server signature counts as
// checked.
func (g *graph) allowed(ev *pdu.Event, state func(t pdu.StateTuple) *pdu.Event, fallback bool) (bool, error) {
	lookup := eventauth.AuthEventsFunc(func(t pdu.StateTuple) *pdu.Event {
		if e := state(t); e != nil || !fallback {
			return e
		}
		for _, a := range ev.AuthEvents {
			if ae := g.events[a]; ae != nil && ae.IsState() && ae.Tuple() == t && (g.rejected == nil || !g.rejected(a)) {
				return ae
			}
		}
		if t == createTuple && g.v.RoomIDFromCreate {
			return g.create
		}
		return nil
	})
	err := eventauth.Check(ev, lookup, eventauth.WithSignatureCheck(func(*pdu.Event, string) bool { return true }))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, eventauth.ErrNotAllowed):
		return false, nil
	default:
		return false, fmt.Errorf("stateres: auth check of %s: %w", ev.ID, err)
	}
}

// stateLookup reads a state map through the graph.
func (g *graph) stateLookup(s StateSet) func(t pdu.StateTuple) *pdu.Event {
	return func(t pdu.StateTuple) *pdu.Event {
		if id, ok := s[t]; ok {
			return g.events[id]
		}
		return nil
	}
}
