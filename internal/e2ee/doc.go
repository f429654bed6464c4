// Package e2ee is the server side of end-to-end encryption: device identity
// keys, one-time and fallback keys and their claims, cross-signing keys and
// signatures (verified with crypto/ed25519 through matrix/signing),
// to-device messages, device list changes, server-side key backups and
// dehydrated devices (MSC3814). Service implements sync.DeviceData.
//
// The server never sees a private key or a plaintext: it checks the shape
// and the signatures of what clients publish, hands one-time keys out once,
// and stores what it is given.
//
// Keys of other servers' users are asked of their servers through Remote
// (in parallel, within the request's timeout) and kept, checked like local
// uploads, while a local user shares a room with them; to-device messages
// for them leave through SendRemote.
//
// Concurrency: every change is one store transaction; syncs are woken
// (Service.Wake) only after the commit. A one-time key is deleted by the
// claim that returns it (DELETE … RETURNING), so concurrent claims never
// share a key.
//
// It imports store, streamtoken and internal/matrix; never HTTP packages
// nor other domain packages (user-interactive auth and waking syncs are
// functions the server wiring provides).
package e2ee
