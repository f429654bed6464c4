// Package fedapi is the Server-Server API adapter: the version and key
// endpoints, the notary endpoint, X-Matrix request authentication (the
// router's ServerVerifier for routes marked server), media, and rooms
// (event retrieval, backfill, the join, leave, knock and invite
// handshakes), which it hands to the rooms service, and transactions,
// which it hands to exchange. routes.go is its API map.
//
// It imports federation, accounts, rooms, exchange, config, httputil and
// matrix/*; never store (handlers open no transactions); the domain never
// imports it.
package fedapi
