package stateres

import (
	"bytes"
	"crypto/sha1"
	"maps"
	"slices"

	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
)

// resolveV1 is the algorithm of room version 1. Its known flaw (state can
// reset to older versions) is the spec's, kept because every server in a
// version 1 room must reach the same answer.
func resolveV1(g *graph, sets []StateSet) (StateSet, error) {
	resolved, conflicts := splitV1(sets)
	if len(conflicts) == 0 {
		return resolved, nil
	}
	var conflicted []string
	for _, ids := range conflicts {
		conflicted = append(conflicted, ids...)
	}
	if err := g.ensure(conflicted); err != nil {
		return nil, err
	}
	if err := checkLoaded(g, sets, conflicted); err != nil {
		return nil, err
	}
	// Fetch, in one go, the unconflicted state the auth checks can consult.
	var needed []string
	for _, id := range conflicted {
		for _, t := range eventauth.SelectAuthEvents(eventauth.FieldsOf(g.events[id])) {
			if sid, ok := resolved[t]; ok {
				needed = append(needed, sid)
			}
		}
	}
	if err := g.ensure(needed); err != nil {
		return nil, err
	}

	keys := sortedKeys(conflicts)
	done := map[pdu.StateTuple]bool{}
	// Power levels, then join rules, then memberships: each tuple's
	// events in turn, against the state resolved by the earlier passes.
	for _, typ := range []string{"m.room.power_levels", "m.room.join_rules", "m.room.member"} {
		pass := StateSet{}
		for _, t := range keys {
			if t.Type != typ {
				continue
			}
			id, err := g.resolveAuthConflict(conflicts[t], resolved)
			if err != nil {
				return nil, err
			}
			pass[t] = id
			done[t] = true
		}
		maps.Copy(resolved, pass)
	}
	pass := StateSet{}
	for _, t := range keys {
		if done[t] {
			continue
		}
		id, err := g.resolveOtherConflict(conflicts[t], resolved)
		if err != nil {
			return nil, err
		}
		pass[t] = id
	}
	maps.Copy(resolved, pass)
	return resolved, nil
}

// splitV1 returns the union of the sets without the conflicting tuples,
// and for those (tuples that two sets map to different events; a tuple
// missing from a set is no conflict) their events, sorted.
func splitV1(sets []StateSet) (StateSet, map[pdu.StateTuple][]string) {
	all := map[pdu.StateTuple][]string{}
	for _, s := range sets {
		for t, id := range s {
			if !slices.Contains(all[t], id) {
				all[t] = append(all[t], id)
			}
		}
	}
	unconflicted := StateSet{}
	conflicts := map[pdu.StateTuple][]string{}
	for t, ids := range all {
		if len(ids) == 1 {
			unconflicted[t] = ids[0]
			continue
		}
		slices.Sort(ids)
		conflicts[t] = ids
	}
	return unconflicted, conflicts
}

// byDepthAndHash sorts events by ascending depth, then descending
// sha1(event_id): SHA-1 is the spec's tie-break here, not a security
// measure.
func (g *graph) byDepthAndHash(ids []string) []*pdu.Event {
	evs := make([]*pdu.Event, len(ids))
	hashes := map[string][sha1.Size]byte{}
	for i, id := range ids {
		evs[i] = g.events[id]
		hashes[id] = sha1.Sum([]byte(id))
	}
	slices.SortFunc(evs, func(a, b *pdu.Event) int {
		if a.Depth != b.Depth {
			if a.Depth < b.Depth {
				return -1
			}
			return 1
		}
		ha, hb := hashes[a.ID], hashes[b.ID]
		return -bytes.Compare(ha[:], hb[:])
	})
	return evs
}

// resolveAuthConflict takes the first event of the depth/hash order, then
// each next one as long as the rules allow it in the state so far.
func (g *graph) resolveAuthConflict(ids []string, state StateSet) (string, error) {
	evs := g.byDepthAndHash(ids)
	cur := evs[0]
	base := g.stateLookup(state)
	lookup := func(t pdu.StateTuple) *pdu.Event {
		if t == cur.Tuple() {
			return cur
		}
		return base(t)
	}
	for _, ev := range evs[1:] {
		ok, err := g.allowed(ev, lookup, false)
		if err != nil {
			return "", err
		}
		if !ok {
			break
		}
		cur = ev
	}
	return cur.ID, nil
}

// resolveOtherConflict picks the event of highest depth and lowest
// sha1(event_id) that the rules allow. When none is allowed the spec is
// silent; the event of lowest depth is kept, as deployed servers do, so
// that the tuple does not vanish.
func (g *graph) resolveOtherConflict(ids []string, state StateSet) (string, error) {
	evs := g.byDepthAndHash(ids)
	lookup := g.stateLookup(state)
	for i := len(evs) - 1; i >= 0; i-- {
		ok, err := g.allowed(evs[i], lookup, false)
		if err != nil {
			return "", err
		}
		if ok {
			return evs[i].ID, nil
		}
	}
	return evs[0].ID, nil
}
