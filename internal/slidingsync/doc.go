// Package slidingsync answers simplified sliding sync (MSC4186, the
// unstable org.matrix.simplified_msc3575 endpoint): a client keeps a
// connection, asks for windows of its room list ordered by activity and
// for rooms by id, and each answer sends only what changed since the pos
// it names. Connections live in memory (conn.go); the room list is the
// user's memberships ordered by each room's newest position (list.go);
// rooms are built from the same timelines, state, summaries, unread
// counts and client forms as /sync (service.go), and the extensions
// (to_device, e2ee, account_data, receipts, typing) from what the sync
// service shares (sync/shared.go). There is no presence extension: no MSC
// defines one (MSC4186 names it only as a possible future one, Synapse
// has none), so a request naming it, like any unknown extension, is
// answered as if it did not.
package slidingsync
