// Package canonicaljson encodes JSON exactly as the Matrix appendix
// "Canonical JSON" defines it. It is the one place that decides the byte
// layout of anything that is hashed or signed.
//
// It imports only the standard library.
package canonicaljson
