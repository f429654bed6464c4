// Package roomread is the read side of rooms: what clients ask of the
// rooms they may see, answered from the store and the pipeline's caches.
// It holds /messages, /relations and /threads, /event and /context, the
// room state and members reads (/state, /state/{type}/{key}, /members,
// /joined_members, /aliases), bundled aggregations, the client format of
// events (ClientEvent, RenderState), the users' ignore lists, the historic
// profiles of search results and what sync shows of a room: its stripped
// state (invites, knocks) and summary. Sync, search and notifications
// render events through it.
//
// It builds on the pipeline's exported API: history visibility (Viewer,
// with Membership, MembershipAt and CanSee; StateEntry), the state after
// an event (StateAfterEvent), the current state (LockRoom with the Room
// accessors, CurrentStateEvent), backfill when /messages reaches the
// oldest stored event (MoreHistory), and the caches the pipeline drops
// and updates as it persists: events (ParseRow), their client form
// (ClientBase, CachedClientBase) and bundled aggregations (BundleCache).
//
// It never writes events: package rooms is the one pipeline. It imports
// rooms, store, filter, streamtoken and internal/matrix, never HTTP
// packages, federation nor roomfed.
package roomread
