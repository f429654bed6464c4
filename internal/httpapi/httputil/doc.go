// Package httputil holds the HTTP edge shared by every API: routing with a
// declared auth kind per route (access tokens, server signatures), JSON
// decoding with the spec's error codes, error mapping, body limits, rate
// limits, CORS, request ids and the per-request logger.
//
// Handlers here are adapters: decode → call the domain → encode. Domain
// packages never import this one.
package httputil
