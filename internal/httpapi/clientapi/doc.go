// Package clientapi adapts the Client-Server API to the domain packages:
// decode the request, call the domain, encode the answer. routes.go is the
// map of the API.
//
// It never imports store: what a handler reads or writes is a method of
// the domain that owns it.
package clientapi
