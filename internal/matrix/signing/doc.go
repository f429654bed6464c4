// Package signing holds server signing keys and the signature formats built
// on them: unpadded base64, signed JSON (appendix "Signing JSON") and the
// X-Matrix Authorization header of federation requests.
//
// It imports only the standard library and internal/matrix packages.
package signing
