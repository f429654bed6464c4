// Package roomfed is rooms over federation: what other servers ask of
// our rooms (events, state, auth chains, backfill, missing events, the
// event nearest a time), the inbound pipeline of received PDUs, both
// sides of the membership handshakes (make_/send_join, leave, knock,
// invites), history fetched from other servers (backfill) and the
// resync of rooms joined with partial state.
//
// Every event it accepts is persisted by package rooms (the one event
// pipeline: per-room writer, state cache, persist, hooks) through the
// small API rooms exports for it; roomfed holds no room lock of its own
// and never writes event rows itself. It imports rooms, store, federation
// (the wire) and internal/matrix, never HTTP packages; rooms reaches it
// back only through the rooms.Remote interface the server wires in.
package roomfed
