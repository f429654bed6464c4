package pdu

import "sync"

// strs shares the strings that recur across parsed events: room ids,
// senders, event types, and the ids of the few events (the create event,
// the power levels, the join rules) that authorise most others. A room's
// cached state, thousands of member events, then holds each once, which
// keeps the heap, and the collector's work on it, smaller.
var strs = &interner{m: map[string]string{}}

// internMax bounds the table; when full it starts over (strings already
// shared stay shared).
const internMax = 1 << 16

type interner struct {
	mu sync.Mutex
	m  map[string]string
}

func (in *interner) get(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[s]; ok {
		return v
	}
	if len(in.m) >= internMax {
		clear(in.m)
	}
	in.m[s] = s
	return s
}
