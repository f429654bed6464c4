// Package search is server-side full-text search (POST /search,
// category room_events): an indexer that records the plain-text fields of
// unencrypted events inside the transaction that persists them, and the
// query that returns only events the searching user may see.
//
// It uses store and rooms; it must not import httpapi.
package search
