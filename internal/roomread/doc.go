// Package roomread is the read side of rooms: what clients ask of the
// rooms they may see, answered from the store and the pipeline's caches.
// So far it holds /relations and /threads; history visibility, the
// messages, context and state reads, bundles and the client format are
// still in package rooms and reached through its exported API (Viewer,
// ReaderUpTo, TokenPos, WithBundles, ClientJSON, IgnoredUsers,
// VersionOf).
//
// It never writes events: package rooms is the one pipeline, and owns
// the caches (events, client format, bundles) it drops as it persists.
// It imports rooms, store and internal/matrix, never HTTP packages nor
// roomfed.
package roomread
