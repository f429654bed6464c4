// Package sync serves /sync: per-stream positions (see streamtoken), the
// long-poll notifier, typing notifications, and the assembly of joined,
// invited, knocked and left rooms with their timelines, state, ephemeral
// events and account data. It also keeps what syncs show besides events:
// receipts (one PutReceipt for local and received ones), presence,
// filters, account data and tags.
//
// It imports store, rooms, filter and internal/matrix; never HTTP packages.
package sync
