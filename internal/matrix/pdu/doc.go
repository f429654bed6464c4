// Package pdu implements persistent data units: the event formats of each
// room version, content and reference hashes, event ids, redaction, and
// building/signing new events.
//
// It imports only the standard library, golang.org/x/crypto and the other
// internal/matrix packages.
package pdu
