// Package directory serves discovery: the published room directory
// (/publicRooms, /directory/list/room), the opt-in user directory
// (/user_directory/search) with the profile privacy rule that goes with
// it, and the space hierarchy (/hierarchy), for clients and for other
// servers.
//
// Everything it answers comes from tables kept current as things change:
// room_summaries and space_children by a rooms indexer inside the
// transaction of each state event, user_directory by account hooks and
// the same indexer (remote members). No request reads room state.
//
// It imports store, rooms and the matrix packages; never httpapi.
package directory
