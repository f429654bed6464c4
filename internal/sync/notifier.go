package sync

import (
	"maps"
	"slices"
	gosync "sync"

	"luxchat/internal/store"
)

// Notifier wakes long-polling syncs. Each user has a channel that is closed
// (and replaced) when something for that user happens; a sync takes the
// channel before it looks for news, so nothing slips between the look and
// the wait.
//
// With concurrent writers (PostgreSQL) a commit may be hidden behind an
// earlier position still in flight: the syncs it wakes do not see it yet.
// Users woken while some stream hides a position are woken again when a
// stream advances, so that no event waits for an unrelated wake-up.
//
// A long poll parked outside net/http waits without a goroutine: it
// registers a Waker (AfterWake), which the next wake of its user calls.
//
// Presence is news only to the waits whose filter shows it: each wait
// says whether it wants presence, and a presence change wakes only those
// (WakePresence). A user coming online wakes every roommate otherwise,
// and most clients that poll by the thousand leave presence out.
type Notifier struct {
	mu       gosync.Mutex
	users    map[string]chan struct{}
	presence map[string]struct{} // users whose channel a wait that wants presence took
	wakers   map[string][]waiter // AfterWake, until the user's next wake
	// presenceWakers counts the wakers that want presence.
	presenceWakers int
	streams        []*store.Stream
	rewake         map[string]struct{}
	deferred       []deferredWake
	events         *store.Stream // the first stream given: room events
}

// waiter is a Waker registered by AfterWake.
type waiter struct {
	w        Waker
	presence bool // woken by presence changes too
}

// deferredWake holds back a wake-up until its position is visible.
type deferredWake struct {
	st    *store.Stream
	pos   int64
	users []string
}

// NewNotifier returns an idle notifier for the given sync streams (the
// first being the events stream, as store.Streams.Sync orders them), and
// registers itself to hear when they advance.
func NewNotifier(streams ...*store.Stream) *Notifier {
	n := &Notifier{users: map[string]chan struct{}{}, presence: map[string]struct{}{}, wakers: map[string][]waiter{}, streams: streams, rewake: map[string]struct{}{}}
	if len(streams) > 0 {
		n.events = streams[0]
	}
	for _, st := range streams {
		st.OnAdvance(n.advanced)
	}
	return n
}

// advanced wakes the users whose news may have been hidden.
func (n *Notifier) advanced() {
	n.mu.Lock()
	defer n.mu.Unlock()
	kept := n.deferred[:0]
	for _, d := range n.deferred {
		if d.st.Current() >= d.pos {
			for _, u := range d.users {
				n.wakeLocked(u)
			}
		} else {
			kept = append(kept, d)
		}
	}
	clear(n.deferred[len(kept):])
	n.deferred = kept
	for u := range n.rewake {
		n.wakeLocked(u)
	}
	clear(n.rewake)
}

// WakeAt wakes users about news at a stream position: now if the position
// is visible, else as soon as it becomes visible (waking them earlier would
// only make them look and find nothing).
func (n *Notifier) WakeAt(st *store.Stream, pos int64, users ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if st.Current() >= pos {
		for _, u := range users {
			n.wakeLocked(u)
		}
		return
	}
	n.deferred = append(n.deferred, deferredWake{st, pos, users})
}

func (n *Notifier) anyHidden() bool {
	for _, st := range n.streams {
		if st.Hidden() {
			return true
		}
	}
	return false
}

// Chan returns the channel that closes on the user's next news,
// presence changes included.
func (n *Notifier) Chan(userID string) <-chan struct{} { return n.ChanFor(userID, true) }

// ChanFor returns the channel that closes on the user's next news;
// presence changes close it only when presence is true, for this wait or
// another that shares the channel.
func (n *Notifier) ChanFor(userID string, presence bool) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.users[userID]
	if !ok {
		ch = make(chan struct{})
		n.users[userID] = ch
	}
	if presence {
		n.presence[userID] = struct{}{}
	}
	return ch
}

// Wake tells users that they have news. Call it after the news committed.
func (n *Notifier) Wake(users ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	hidden := n.anyHidden()
	for _, u := range users {
		n.wakeLocked(u)
		if hidden {
			n.rewake[u] = struct{}{}
		}
	}
}

func (n *Notifier) wakeLocked(u string) {
	if ch, ok := n.users[u]; ok {
		close(ch)
		delete(n.users, u)
		delete(n.presence, u)
	}
	if ws, ok := n.wakers[u]; ok {
		delete(n.wakers, u)
		for _, w := range ws {
			if w.presence {
				n.presenceWakers--
			}
			w.w.Wake()
		}
	}
}

// WantsPresence reports whether any wait wants presence: when none does,
// a presence change need not look for whom to wake.
func (n *Notifier) WantsPresence() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.presence) > 0 || n.presenceWakers > 0
}

// WakePresence tells users of a presence change: it wakes their waits
// that want presence, and leaves the others waiting.
func (n *Notifier) WakePresence(users ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	hidden := n.anyHidden()
	for _, u := range users {
		woke := false
		if _, ok := n.presence[u]; ok {
			close(n.users[u])
			delete(n.users, u)
			delete(n.presence, u)
			woke = true
		}
		if ws, ok := n.wakers[u]; ok && n.presenceWakers > 0 {
			kept := ws[:0]
			for _, w := range ws {
				if w.presence {
					n.presenceWakers--
					w.w.Wake()
					woke = true
				} else {
					kept = append(kept, w)
				}
			}
			clear(ws[len(kept):])
			if len(kept) == 0 {
				delete(n.wakers, u)
			} else {
				n.wakers[u] = kept
			}
		}
		if woke && hidden {
			n.rewake[u] = struct{}{}
		}
	}
}

// A Waker is told of its user's next news. Wake is called with the
// notifier's lock held: it must return at once and not call the
// notifier.
type Waker interface{ Wake() }

// AfterWake calls w.Wake once, at the user's next wake (a presence
// change counts when presence is true), unless StopWake comes first.
func (n *Notifier) AfterWake(userID string, w Waker, presence bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.wakers[userID] = append(n.wakers[userID], waiter{w, presence})
	if presence {
		n.presenceWakers++
	}
}

// StopWake cancels an AfterWake not called yet.
func (n *Notifier) StopWake(userID string, w Waker) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ws := n.wakers[userID]
	if i := slices.IndexFunc(ws, func(x waiter) bool { return x.w == w }); i >= 0 {
		if ws[i].presence {
			n.presenceWakers--
		}
		ws = slices.Delete(ws, i, i+1)
		if len(ws) == 0 {
			delete(n.wakers, userID)
		} else {
			n.wakers[userID] = ws
		}
	}
}

// RoomEvent implements rooms.Notifier. It looks through whichever is
// smaller, the room's members or the users waiting: an event in a room of
// 10,000 with 50 of them long-polling costs 50 lookups.
func (n *Notifier) RoomEvent(roomID string, joined map[string]struct{}, others []string, pos int64) {
	if n.events == nil {
		n.Wake(append(slices.Collect(maps.Keys(joined)), others...)...)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.events.Current() < pos {
		users := append(slices.Collect(maps.Keys(joined)), others...)
		n.deferred = append(n.deferred, deferredWake{n.events, pos, users})
		return
	}
	if len(n.users)+len(n.wakers) < len(joined) {
		for u := range n.users {
			if _, ok := joined[u]; ok {
				n.wakeLocked(u)
			}
		}
		for u := range n.wakers {
			if _, ok := joined[u]; ok {
				n.wakeLocked(u)
			}
		}
	} else {
		for u := range joined {
			n.wakeLocked(u)
		}
	}
	for _, u := range others {
		n.wakeLocked(u)
	}
}
