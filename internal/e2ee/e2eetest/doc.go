// Package e2eetest plays the client side of end-to-end encryption in
// tests: a device with an ed25519 identity key that signs its device keys,
// one-time and fallback keys, and cross-signing keys that sign devices and
// other users' master keys. Signing follows the spec's "Signing JSON"
// appendix with crypto/ed25519; no private key ever reaches the server.
//
// It imports only the standard library and internal/matrix.
package e2eetest
