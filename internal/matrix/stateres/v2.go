package stateres

import (
	"cmp"
	"container/heap"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"

	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

// resolveV2 is the algorithm of room versions 2–12 ("State resolution" of
// room version 2, with the v2.1 changes of room version 12).
func resolveV2(g *graph, sets []StateSet) (StateSet, error) {
	v21 := g.v.StateRes == roomversion.StateResV21
	unconflicted, conflicted := splitV2(sets)
	if len(conflicted) == 0 {
		return unconflicted, nil
	}
	// The full auth chain of every set is needed for the auth difference,
	// unconflicted events included.
	if err := g.loadAuthChains(allIDs(sets)); err != nil {
		return nil, err
	}
	if err := checkLoaded(g, sets, conflicted); err != nil {
		return nil, err
	}
	if err := g.loadCreate(); err != nil {
		return nil, err
	}
	if g.v.RoomIDFromCreate && g.create == nil {
		// Without it no event can be authorised.
		return nil, fmt.Errorf("%w: the create event of %s", ErrMissingEvent, g.roomID)
	}

	full := g.authDifference(sets)
	for _, id := range conflicted {
		full[id] = true
	}
	if v21 {
		for id := range g.conflictedSubgraph(conflicted) {
			full[id] = true
		}
	}

	// Steps 1 and 2: power events and the conflicted part of their auth
	// chains, replayed in reverse topological power order.
	sortedPower, inPower := g.powerSort(full)
	partial := StateSet{}
	if !v21 {
		partial = maps.Clone(unconflicted)
	}
	if err := g.iterativeAuthChecks(partial, sortedPower); err != nil {
		return nil, err
	}

	// Steps 3 and 4: everything else, in mainline order of the resolved
	// power levels.
	var rest []string
	for id := range full {
		if !inPower[id] {
			rest = append(rest, id)
		}
	}
	rest = g.mainlineSort(rest, partial[powerLevelsTuple])
	if err := g.iterativeAuthChecks(partial, rest); err != nil {
		return nil, err
	}

	// Step 5: the unconflicted state always wins.
	maps.Copy(partial, unconflicted)
	return partial, nil
}

// splitV2 returns the unconflicted state map (tuples every set maps to the
// same event) and the conflicted state set (every event of the other
// tuples), sorted.
func splitV2(sets []StateSet) (StateSet, []string) {
	unconflicted := StateSet{}
	conflicted := map[string]bool{}
	seen := map[pdu.StateTuple]bool{}
	for _, s := range sets {
		for t := range s {
			if seen[t] {
				continue
			}
			seen[t] = true
			id, same := sets[0][t], true
			for _, other := range sets {
				if oid, ok := other[t]; !ok || oid != id {
					same = false
					break
				}
			}
			if same {
				unconflicted[t] = id
				continue
			}
			for _, other := range sets {
				if oid, ok := other[t]; ok {
					conflicted[oid] = true
				}
			}
		}
	}
	return unconflicted, slices.Sorted(maps.Keys(conflicted))
}

// authDifference is the union minus the intersection of the sets' full
// auth chains. As deployed servers compute it, a set's chain here includes
// the set's own events; that changes nothing for conflicted events (they
// join the full conflicted set anyway) and keeps unconflicted ones out.
func (g *graph) authDifference(sets []StateSet) map[string]bool {
	type mark struct{ lastSet, count int }
	marks := map[string]*mark{}
	for i, s := range sets {
		roots := make([]string, 0, len(s))
		for _, id := range s {
			roots = append(roots, id)
		}
		g.walk(roots, func(ev *pdu.Event) bool {
			m := marks[ev.ID]
			if m == nil {
				m = &mark{}
				marks[ev.ID] = m
			} else if m.lastSet == i+1 {
				return false
			}
			m.lastSet = i + 1
			m.count++
			return true
		})
	}
	diff := map[string]bool{}
	for id, m := range marks {
		if m.count < len(sets) {
			diff[id] = true
		}
	}
	return diff
}

// conflictedSubgraph is room version 12's conflicted state subgraph: the
// events on auth_events paths from one conflicted event to another,
// endpoints included. Every event reached from a conflicted event that in
// turn reaches a conflicted event (or is one) lies on such a path.
func (g *graph) conflictedSubgraph(conflicted []string) map[string]bool {
	isConflicted := map[string]bool{}
	for _, id := range conflicted {
		isConflicted[id] = true
	}
	reaches := map[string]bool{}
	out := map[string]bool{}
	g.postorder(conflicted, func(ev *pdu.Event) {
		r := isConflicted[ev.ID]
		for _, a := range ev.AuthEvents {
			r = r || reaches[a]
		}
		if r {
			reaches[ev.ID] = true
			out[ev.ID] = true
		}
	})
	return out
}

// isPowerEvent: power levels, join rules, and kicks and bans (a leave or
// ban whose sender is not its target).
func isPowerEvent(ev *pdu.Event) bool {
	if !ev.IsState() {
		return false
	}
	switch ev.Type {
	case "m.room.power_levels", "m.room.join_rules":
		return true
	case "m.room.member":
		var c struct {
			Membership any `json:"membership"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		m, _ := c.Membership.(string)
		return (m == "leave" || m == "ban") && ev.Sender != *ev.StateKey
	}
	return false
}

// powerSort picks the power events of the full conflicted set, adds the
// events of the full conflicted set in their auth chains, and orders them
// all by the reverse topological power ordering. It returns the order and
// the set it sorted.
func (g *graph) powerSort(full map[string]bool) ([]string, map[string]bool) {
	inX := map[string]bool{}
	var roots []string
	for _, id := range slices.Sorted(maps.Keys(full)) {
		if ev := g.events[id]; ev != nil && isPowerEvent(ev) {
			inX[id] = true
			roots = append(roots, id)
		}
	}
	var authRoots []string
	for _, id := range roots {
		authRoots = append(authRoots, g.events[id].AuthEvents...)
	}
	seen := map[string]bool{}
	g.walk(authRoots, func(ev *pdu.Event) bool {
		if seen[ev.ID] {
			return false
		}
		seen[ev.ID] = true
		if full[ev.ID] && ev.IsState() {
			inX[ev.ID] = true
		}
		return true
	})
	if len(inX) == 0 {
		return nil, inX
	}

	// near[e]: the nearest events of X in e's auth chain, found through
	// events outside X too, so that the order respects the whole chain.
	// For e in X these are the edges Kahn's algorithm needs; the rest of
	// the ordering follows by transitivity.
	xs := slices.Sorted(maps.Keys(inX))
	near := map[string][]string{}
	g.postorder(xs, func(ev *pdu.Event) {
		var ps []string
		for _, a := range ev.AuthEvents {
			if g.events[a] == nil {
				continue
			}
			if inX[a] {
				if !slices.Contains(ps, a) {
					ps = append(ps, a)
				}
				continue
			}
			for _, p := range near[a] {
				if !slices.Contains(ps, p) {
					ps = append(ps, p)
				}
			}
		}
		near[ev.ID] = ps
	})

	keys := make(map[string]powerKey, len(xs))
	indegree := make(map[string]int, len(xs))
	children := map[string][]string{}
	q := &powerQueue{}
	for _, id := range xs {
		ev := g.events[id]
		keys[id] = powerKey{id: id, level: g.senderLevel(ev), ts: ev.OriginServerTS}
		indegree[id] = len(near[id])
		for _, p := range near[id] {
			children[p] = append(children[p], id)
		}
		if indegree[id] == 0 {
			q.keys = append(q.keys, keys[id])
		}
	}
	heap.Init(q)
	out := make([]string, 0, len(xs))
	for q.Len() > 0 {
		k := heap.Pop(q).(powerKey)
		out = append(out, k.id)
		for _, c := range children[k.id] {
			if indegree[c]--; indegree[c] == 0 {
				heap.Push(q, keys[c])
			}
		}
	}
	if len(out) < len(xs) {
		// Only a cycle leaves events behind; place them by the tie-breaks.
		var left []powerKey
		for _, id := range xs {
			if indegree[id] > 0 {
				left = append(left, keys[id])
			}
		}
		slices.SortFunc(left, comparePower)
		for _, k := range left {
			out = append(out, k.id)
		}
	}
	return out, inX
}

// powerKey orders events in the reverse topological power ordering:
// sender's level descending, then origin_server_ts, then event id.
type powerKey struct {
	id    string
	level eventauth.Level
	ts    int64
}

func comparePower(a, b powerKey) int {
	return cmp.Or(cmp.Compare(b.level, a.level), cmp.Compare(a.ts, b.ts), cmp.Compare(a.id, b.id))
}

// powerQueue is a min-heap of the events ready in Kahn's algorithm.
type powerQueue struct{ keys []powerKey }

func (q *powerQueue) Len() int           { return len(q.keys) }
func (q *powerQueue) Less(i, j int) bool { return comparePower(q.keys[i], q.keys[j]) < 0 }
func (q *powerQueue) Swap(i, j int)      { q.keys[i], q.keys[j] = q.keys[j], q.keys[i] }
func (q *powerQueue) Push(x any)         { q.keys = append(q.keys, x.(powerKey)) }
func (q *powerQueue) Pop() any {
	k := q.keys[len(q.keys)-1]
	q.keys = q.keys[:len(q.keys)-1]
	return k
}

// iterativeAuthChecks applies each event of ids in turn to state when the
// authorisation rules allow it against state; events they reject are
// skipped.
func (g *graph) iterativeAuthChecks(state StateSet, ids []string) error {
	lookup := g.stateLookup(state)
	for _, id := range ids {
		ev := g.events[id]
		if ev == nil || !ev.IsState() {
			continue
		}
		ok, err := g.allowed(ev, lookup, true)
		if err != nil {
			return err
		}
		if ok {
			state[ev.Tuple()] = id
		}
	}
	return nil
}

// noMainline is the mainline position of an event whose power levels
// chain never meets the mainline: it sorts before every other.
const noMainline = math.MaxInt

// mainlineSort orders ids by the mainline ordering based on the power
// levels event pl (none: every event is off the mainline).
func (g *graph) mainlineSort(ids []string, pl string) []string {
	onMainline := map[string]int{}
	for i, cur := 0, pl; cur != ""; i++ {
		if _, loop := onMainline[cur]; loop || g.events[cur] == nil {
			break
		}
		onMainline[cur] = i
		cur = g.authPowerLevels(cur)
	}
	// memo: a power levels event → the mainline position reached by walking
	// from it (itself included); events share most of their chains.
	memo := map[string]int{}
	position := func(ev *pdu.Event) int {
		var path []string
		pos := noMainline
		for cur := g.authPowerLevels(ev.ID); cur != ""; cur = g.authPowerLevels(cur) {
			if p, ok := onMainline[cur]; ok {
				pos = p
				break
			}
			if p, ok := memo[cur]; ok {
				pos = p
				break
			}
			if slices.Contains(path, cur) {
				break
			}
			path = append(path, cur)
		}
		for _, p := range path {
			memo[p] = pos
		}
		return pos
	}
	type entry struct {
		id  string
		pos int
		ts  int64
	}
	entries := make([]entry, 0, len(ids))
	for _, id := range ids {
		if ev := g.events[id]; ev != nil {
			entries = append(entries, entry{id: id, pos: position(ev), ts: ev.OriginServerTS})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		return cmp.Or(cmp.Compare(b.pos, a.pos), cmp.Compare(a.ts, b.ts), cmp.Compare(a.id, b.id))
	})
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.id
	}
	return out
}

// authPowerLevels is the id of the power levels event among the auth
// events of the event id, or "".
func (g *graph) authPowerLevels(id string) string {
	ev := g.events[id]
	if ev == nil {
		return ""
	}
	if pl := g.authEvent(ev, powerLevelsTuple); pl != nil {
		return pl.ID
	}
	return ""
}
