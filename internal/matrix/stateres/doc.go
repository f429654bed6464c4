// Package stateres implements Matrix state resolution: given the room
// states at the tips of a fork, it computes the one state that every
// server in the room agrees on.
//
// Three algorithms exist, chosen by roomversion.Version.StateRes: the
// original algorithm of room version 1, state resolution v2 (room versions
// 2–11) and v2.1 (room version 12, which adds the conflicted state
// subgraph to the events replayed and replays power events from an empty
// state rather than from the unconflicted state).
//
// The package is pure: events come from a fetch callback, which it calls
// in batches (one call per layer of the auth graph, never one per event),
// and it does no I/O, SQL or logging of its own. The authorisation rules
// are those of internal/matrix/eventauth. It imports only the standard
// library and other internal/matrix packages.
package stateres
