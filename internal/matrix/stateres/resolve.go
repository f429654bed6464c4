package stateres

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

// StateSet is a room state: state tuple → event id.
type StateSet map[pdu.StateTuple]string

// ErrMissingEvent means that fetch did not supply a conflicted event, which
// resolution cannot do without; the caller should fetch it (over
// federation) and try again.
var ErrMissingEvent = errors.New("stateres: conflicted event not found")

// Option configures Resolve.
type Option func(*options)

type options struct {
	rejected func(eventID string) bool
}

// WithRejected tells Resolve which events were rejected on receipt. The
// iterative auth checks never fall back to a rejected auth event; events in
// the state sets are replayed whatever their status, as the spec says.
func WithRejected(rejected func(eventID string) bool) Option {
	return func(o *options) { o.rejected = rejected }
}

// Resolve returns the resolved state from the state sets at the tips of a
// fork, using the state resolution algorithm of room version v. fetch
// returns events by id; those it does not know are absent from the map,
// and it may return more events than asked for. Events must carry their
// room Version and be in one room. The result is a new map; the sets are
// not modified.
func Resolve(v *roomversion.Version, sets []StateSet, fetch func(ids []string) (map[string]*pdu.Event, error), opts ...Option) (StateSet, error) {
	if v == nil {
		return nil, errors.New("stateres: no room version")
	}
	if fetch == nil {
		return nil, errors.New("stateres: no fetch function")
	}
	for _, s := range sets {
		for t, id := range s {
			if id == "" {
				return nil, fmt.Errorf("stateres: empty event id for %v", t)
			}
		}
	}
	switch len(sets) {
	case 0:
		return StateSet{}, nil
	case 1:
		return maps.Clone(sets[0]), nil
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	g := newGraph(v, fetch, &o)
	switch v.StateRes {
	case roomversion.StateResV1:
		return resolveV1(g, sets)
	case roomversion.StateResV2, roomversion.StateResV21:
		return resolveV2(g, sets)
	default:
		return nil, fmt.Errorf("stateres: room version %s has unknown state resolution %d", v.ID, v.StateRes)
	}
}

// checkLoaded makes sure the conflicted events are known and that every
// known event of the sets is filed under its own tuple.
func checkLoaded(g *graph, sets []StateSet, conflicted []string) error {
	for _, id := range conflicted {
		if g.events[id] == nil {
			return fmt.Errorf("%w: %s", ErrMissingEvent, id)
		}
	}
	for _, s := range sets {
		for t, id := range s {
			if ev := g.events[id]; ev != nil && (!ev.IsState() || ev.Tuple() != t) {
				return fmt.Errorf("stateres: state set files %s under %v, which is not its state tuple", id, t)
			}
		}
	}
	return nil
}

// sortedKeys lists a state map's tuples in a fixed order.
func sortedKeys[V any](m map[pdu.StateTuple]V) []pdu.StateTuple {
	return slices.SortedFunc(maps.Keys(m), func(a, b pdu.StateTuple) int {
		if a.Type != b.Type {
			if a.Type < b.Type {
				return -1
			}
			return 1
		}
		switch {
		case a.StateKey < b.StateKey:
			return -1
		case a.StateKey > b.StateKey:
			return 1
		}
		return 0
	})
}

// allIDs lists the event ids of all sets, each once.
func allIDs(sets []StateSet) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range sets {
		for _, id := range s {
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	slices.Sort(out)
	return out
}
