package rooms

import (
	"slices"
	"time"
)

// The cache of current states (Room) fills with every room a sync, a
// send or a read touched since the start: on a sector's server, the
// parsed state of thousands of DMs and groups that the online users'
// first syncs read once, and of rooms of 10,000 members, about half the
// live heap. TrimStates bounds it: the rooms used least recently lose
// their parsed state (the Room entry, its lock and its position stay) and
// load it again from the store on their next LockRoom, as after a start.
// Unloading happens under the room's lock, so a writer or reader holding
// the room never sees it go; unloaded maps are dropped, not cleared,
// since a notifier may still be reading a joined set it was handed.

// StateBudget is what the parsed current states kept in memory may cost
// (an estimate, see stateCost) once TrimStates has run: the rooms of
// 10,000 members of a sector and a heavy user's thousand rooms fit, the
// DMs and groups nobody used lately do not need to.
const StateBudget = 24 << 20

// TrimIdle is how long a room stays loaded after its last use whatever
// the budget: the rooms of a conversation going on are not read again
// between its messages.
const TrimIdle = time.Minute

// eventCost estimates what one parsed state event costs in memory: its
// canonical JSON, the reference hash's input kept beside it (about the
// same size) and the structures around them (the Event, its ids, the
// map entries of the state and of the memberships).
func eventCost(n int) int64 { return int64(2*n + 400) }

// stateCost is the estimated memory of a loaded room's parsed state; the
// caller holds r.mu.
func (r *Room) stateCost() int64 {
	var n int64
	for _, ev := range r.state {
		n += eventCost(len(ev.JSON()))
	}
	return n
}

// unload drops the room's parsed state; the next LockRoom reads it
// again (and only it: see Room.stateDropped). The caller holds r.mu.
func (r *Room) unload() {
	r.loaded, r.stateDropped = false, true
	r.state, r.joined, r.servers, r.memberships = nil, nil, nil, nil
}

// TrimStates unloads the parsed current state of the rooms used least
// recently, none used within idle, until the states kept cost at most
// budget. Rooms in use (their lock held) and rooms whose state is partial
// are kept. It returns what the states kept and those unloaded cost.
func (s *Service) TrimStates(budget int64, idle time.Duration) (kept, freed int64) {
	s.mu.Lock()
	all := make([]*Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		all = append(all, r)
	}
	s.mu.Unlock()
	type entry struct {
		r    *Room
		used time.Time
		cost int64
	}
	var loaded []entry
	for _, r := range all {
		if !r.mu.TryLock() {
			continue // in use: neither counted nor unloaded now
		}
		if r.loaded {
			e := entry{r, r.used, r.stateCost()}
			loaded = append(loaded, e)
			kept += e.cost
		}
		r.mu.Unlock()
	}
	if kept <= budget {
		return kept, 0
	}
	slices.SortFunc(loaded, func(a, b entry) int { return a.used.Compare(b.used) })
	recent := time.Now().Add(-idle)
	for _, e := range loaded {
		if kept <= budget || e.used.After(recent) {
			break
		}
		if s.IsPartialState(e.r.id) || !e.r.mu.TryLock() {
			continue
		}
		// Used since it was counted: it is no longer among the oldest.
		if e.r.loaded && e.r.used.Equal(e.used) {
			e.r.unload()
			kept -= e.cost
			freed += e.cost
		}
		e.r.mu.Unlock()
	}
	return kept, freed
}
