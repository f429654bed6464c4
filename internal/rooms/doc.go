// Package rooms is the one event pipeline: build → authorise → persist →
// notify, for local sends and inbound federation alike. Each room has
// one in-process serial writer (Room.mu) and a cache of its current
// state. It also answers read questions that need room state: history
// visibility, state at an event, members, and renders events in the
// client format.
//
// Room federation (package roomfed) commits what it receives through a
// small exported API: LockRoom hands out a locked *Room whose state,
// extremities and version it reads; NewBatch, Batch.AddReceived and
// Commit take received events on top of the current state; CommitFork,
// CommitJoin, CompleteState, StoreSoftFailed, InsertOutliers and
// StoreBackfilled are the other ways an event is stored; ResolveState and
// StateAfterEvent answer its state questions. rooms reaches roomfed back
// only through the Remote interface the server's wiring passes to New
// (joins and knocks through other servers, remote invites, backfill).
//
// Size: about 6,200 lines, over the ~3,000 a package should have. The
// pipeline itself (service, send, persist, hooks, caches, membership,
// create, upgrade, received) is about half of it; the read side (read.go,
// relationsread.go, clientevent.go, syncsupport.go, searchsupport.go,
// pushsupport.go, backfill_read.go, the bundle cache of relations.go) is
// the rest and is to move into a package of its own, over an exported
// state-entry lookup, the event caches and a client-format renderer
// (docs/architecture.md, "The room wing").
//
// Lock order: Service.mu (the room map) is never held while taking a
// Room.mu; a Room.mu is held across the database transaction that
// persists the room's events and never while taking another room's lock.
//
// It imports store and internal/matrix, never federation (the wire is
// roomfed's), HTTP packages nor roomfed.
package rooms
