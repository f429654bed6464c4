// Package eventauth implements the Matrix authorisation rules of room
// versions 1–12: whether an event is allowed given a set of room state,
// the auth events selection algorithm, and the power levels model the
// rules rely on.
//
// On receipt of a PDU a server runs, in the spec's order:
//
//	CheckAuthEventsShape(ev, its auth events by id, rejected)  // the list itself
//	Check(ev, NewStateMap(its auth events...), …)             // rejected if not allowed
//	Check(ev, state before ev, …)                             // rejected if not allowed
//	Check(ev, current room state, …)                          // soft-failed if not allowed
//
// From room version 12 the create event is never an auth event; every
// AuthEvents lookup must still supply it, found through the room id.
//
// Every rejection is a *NotAllowed naming the rule it breaks, numbered as
// in the room version's own specification: numbers move between versions
// (the banned-join rule is 5.2.3 in v1, 4.3.3 in v8, 5.3.3 in v12).
//
// The package is pure: no I/O, no clock, no storage. Callers hand it the
// state it needs and, for the one rule that needs another server's
// signature, a callback. It imports only the standard library and other
// internal/matrix packages.
package eventauth
