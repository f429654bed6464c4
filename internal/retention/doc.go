// Package retention applies message retention policies (MSC1763): the
// server's default policy and bounds (config retention.*), each room's
// m.room.retention state event, and the purge job that deletes the
// non-state events older than their room's lifetime, with what hangs
// off them (media, search rows, relations, notifications), batch by
// batch under the room's writer lock (rooms.PurgeHistory). Progress is
// kept in the database, so a purge cut short resumes at the next run.
//
// It must not import httpapi; rooms does the deleting and keeps its
// caches in step, the store keeps the progress.
package retention
