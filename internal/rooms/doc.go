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
// Size: about 6,000 lines, over the ~3,000 a package should have. The
// pipeline itself (service, send, persist, hooks, caches, membership,
// create, upgrade, received) is about half of it; the rest is the read
// side still here (read.go: Viewer, Messages; relations.go's bundles;
// clientevent.go; syncsupport.go; pushsupport.go; backfill_read.go),
// moving step by step into package roomread. roomread already answers
// /relations, /threads, /event, /context, the state, members and
// aliases reads and sync's stripped state and summary, over the exported
// Viewer, StateEntry, StateAfterStored, RenderState, WithBundles,
// ClientJSON, TokenPos and Room accessors (docs/architecture.md, "The
// room wing"). The event, client-format and bundle caches stay here: the
// pipeline drops and updates them.
//
// Lock order: Service.mu (the room map) is never held while taking a
// Room.mu; a Room.mu is held across the database transaction that
// persists the room's events and never while taking another room's lock.
//
// It imports store and internal/matrix, never federation (the wire is
// roomfed's), HTTP packages, roomfed nor roomread.
package rooms
