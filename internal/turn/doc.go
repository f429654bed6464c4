// Package turn is calls' relay: it issues the TURN REST API's
// time-limited credentials handed out by /voip/turnServer, and runs the
// embedded TURN/STUN server (pion/turn) that accepts only those
// credentials, never relays into the operator's networks, and bounds
// allocations per user, in total, and in bitrate.
//
// It must not import httpapi, store or the room packages: it knows
// users only by the id inside a credential.
package turn
