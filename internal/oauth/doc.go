// Package oauth is the Matrix OAuth 2.0 API's authorization server (spec
// v1.15 "OAuth 2.0 API", with v1.18's device grant and account
// management): server metadata, dynamic client registration (RFC 7591 as
// the spec restricts it), the authorization code grant with PKCE S256,
// the device authorization grant (RFC 8628), refresh token rotation,
// revocation (RFC 7009), and the state behind the server's own login,
// consent, device and account pages (browser sessions).
//
// Sessions are ordinary devices with ordinary access tokens (package
// accounts issues, caches and revokes them): a request with a token from
// here costs what one with a password login's costs. Everything in
// flight — clients, requests, codes, device codes, browser sessions —
// lives in the store, hashed where it is a credential.
//
// The pages and cookies are the HTTP edge's (httpapi/clientapi,
// httpapi/pages); this package must not import httpapi.
package oauth
