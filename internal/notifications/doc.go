// Package notifications acts on push rules: it stores each user's rule set
// (as the m.push_rules account data the spec shows clients), evaluates
// every new event for the room's local members inside the transaction
// that persists it (notification counts, GET /notifications), keeps the
// users' pushers, and delivers pushes to HTTP push gateways from a
// persistent queue, after the commit and with retries.
//
// It uses store and rooms; it never imports httpapi.
package notifications
