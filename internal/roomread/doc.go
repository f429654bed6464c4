// Package roomread is the read side of rooms: what clients ask of the
// rooms they may see, answered from the store and the pipeline's caches.
// It holds /relations and /threads, /event and /context, the room state
// and members reads (/state, /state/{type}/{key}, /members,
// /joined_members, /aliases), the historic profiles of search results
// and what sync shows of a room: its stripped state (invites, knocks) and
// summary.
//
// Still in package rooms and reached through its exported API: history
// visibility (Viewer, with Membership and MembershipAt), /messages,
// bundled aggregations (WithBundles), the client format (ClientEvent,
// ClientJSON, RenderState), state at an event (StateEntry,
// StateAfterStored) and pagination tokens (TokenPos). They move here next,
// except the caches (events, client format, bundles), which stay with the
// pipeline that drops and updates them as it persists.
//
// It never writes events: package rooms is the one pipeline. It imports
// rooms, store, filter and internal/matrix, never HTTP packages nor
// roomfed.
package roomread
