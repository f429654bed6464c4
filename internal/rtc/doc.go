// Package rtc is the server side of group calls (MatrixRTC) over a LiveKit
// SFU: the transports advertised to clients (MSC4143) and the built-in
// token service of the lk-jwt-service contract (MSC4195), which turns a
// Matrix OpenID token into a LiveKit access token for a member of a room.
//
// It checks OpenID tokens against accounts (ours) or the user's server
// (federation.Client.OpenIDUserInfo) and memberships against rooms; it
// does not talk to the SFU itself. It must not import httpapi or store.
package rtc
