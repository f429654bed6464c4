// Package rooms is the one event pipeline: build → authorise → persist →
// notify, for local sends and inbound federation alike. Each room has
// one in-process serial writer (Room.mu) and a cache of its current
// state. It also keeps what every reader needs of the pipeline: history
// visibility (Viewer, StateEntry), the room's current state, and the
// caches it keeps in step as it persists — events, their client form
// (ClientBase), bundled aggregations (BundleCache), recent events, unread
// counts, memberships — which the read side (package roomread) reads
// through small accessors.
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
// Size: about 5,200 lines of non-test code, over the ~3,000 a package
// should have, because the pipeline is one piece. Local sends (send,
// create, upgrade, membership), received events (received) and partial
// state (partialstate) all build on a locked Room (its state, extremities,
// state group and depth) and commit through one persist step (persist.go,
// which also writes outliers and backfill) whose transactions run the
// hooks and update the caches (inside the transaction or in OnCommitted,
// before a position becomes visible); splitting them apart would export
// the Room's internals and those cache updates. Of the read side only
// history visibility is here (visibility.go, about 300 lines): roomfed,
// sync and search use it as well as roomread, it reads the room's cached
// state under its lock, and the pipeline's backfill invalidates a Viewer.
// The rest of the read side is package roomread (docs/architecture.md,
// "The room wing").
//
// Lock order: Service.mu (the room map) is never held while taking a
// Room.mu; a Room.mu is held across the database transaction that
// persists the room's events and never while taking another room's lock.
//
// It imports store, config, parallel and internal/matrix, never
// federation (the wire is roomfed's), HTTP packages, roomfed nor
// roomread (the import rules of internal/archtest).
package rooms
