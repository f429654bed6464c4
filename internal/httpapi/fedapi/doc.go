// Package fedapi is the Server-Server API adapter: the version and key
// endpoints, the notary endpoint, X-Matrix request authentication and the
// few authenticated queries implemented so far. routes.go is its API map.
//
// It imports federation, accounts, config, httputil and matrix/*; the
// domain never imports it.
package fedapi
