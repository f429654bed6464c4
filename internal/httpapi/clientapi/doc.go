// Package clientapi adapts the Client-Server API to the domain packages:
// decode the request, call the domain, encode the answer. routes.go is the
// map of the API.
package clientapi
