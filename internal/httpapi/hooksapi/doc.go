// Package hooksapi is the HTTP adapter of incoming webhooks:
// POST /_luxchat/hooks/{token}, served on the client listener or on
// listen.hooks. It decodes, calls package webhooks and encodes; it must
// not import store.
package hooksapi
