// Package federation is the outbound side of the Server-Server API and the
// server keys it depends on: server name resolution (the spec's "Resolving
// server names"), an HTTPS client that signs requests with the X-Matrix
// header and refuses denied networks and servers outside the allow list,
// fetching, verifying and caching other servers' signing keys (directly
// or through notaries), and the persistent per-destination queue of
// outbound transactions (Queue).
//
// The wire protocol of every request we make lives here: each endpoint is
// a typed method of Client (client_*.go) with its request and answer
// types, and any non-2xx answer is a *RemoteError. Other packages never
// build a federation URL.
//
// It imports matrix/*, config and store; never httpapi nor the domain
// packages that use it (rooms, directory, exchange).
package federation
