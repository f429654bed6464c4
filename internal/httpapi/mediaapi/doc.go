// Package mediaapi serves the content repository of the Client-Server API
// (/_matrix/media/* and /_matrix/client/v1/media/*): decode, call
// internal/media, encode. Downloads stream with byte ranges and the
// spec's protective headers.
//
// It imports media and httputil; nothing imports it but server.
package mediaapi
