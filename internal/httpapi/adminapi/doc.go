// Package adminapi serves the server administration API: the
// Synapse-compatible endpoints operators' tools speak
// (/_synapse/admin/...), luxchat's own (/_luxchat/admin/...) and the
// spec's (/_matrix/client/v1/admin/..., /_matrix/client/v3/admin/...).
// routes.go is its map. Every route is for server administrators only
// (requireAdmin, applied to the whole table) and every call is audited in
// the log with the administrator and the target.
//
// Like the other httpapi packages it adapts requests to the domain
// packages and never imports store.
package adminapi
