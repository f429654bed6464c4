// Package webclient serves the web client embedded in the binary: the
// Preact + matrix-js-sdk application built from web/ into dist/ by `make
// web` (committed, so that go build and go install need no Node). It
// serves the files under web.path with a strict Content-Security-Policy,
// long cache lifetimes for content-hashed assets, no-cache for the rest,
// gzip when the browser takes it, and index.html for every other path
// under web.path (the client's own routes). It never answers under the
// APIs' prefixes (/_matrix/, /_synapse/, /_luxchat/, /.well-known/): the
// router keeps those (httputil.Router.Fallback).
//
// It imports only the standard library and config: no domain package, no
// store.
package webclient
