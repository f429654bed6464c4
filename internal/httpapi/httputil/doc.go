// Package httputil holds the HTTP edge shared by every API: routing with a
// declared auth kind per route, JSON decoding with the spec's error codes,
// error mapping, body limits, rate limits, CORS and request logging.
//
// Handlers here are adapters: decode → call the domain → encode. Domain
// packages never import this one.
package httputil
