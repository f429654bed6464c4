// Package rooms is the one event pipeline: build → authorise → persist →
// notify, for local sends and inbound federation alike. Each room has
// one in-process serial writer (roomState.mu) and a cache of its current
// state. It also answers read questions that need room state: history
// visibility, state at an event, members.
//
// Lock order: Service.mu (the room map) is never held while taking a
// roomState.mu; a roomState.mu is held across the database transaction that
// persists the room's events and never while taking another room's lock.
//
// It imports store and internal/matrix, never HTTP packages.
package rooms
