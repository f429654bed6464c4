// Package alertbot is the server's own bot account, the sender of
// incoming webhooks' alerts: Post puts an event into a room, in clear in
// an unencrypted room, encrypted with Megolm by the bot's own device in an
// encrypted one (m.room.encryption), the room key shared over Olm with
// every device of the room's members at send time.
//
// The bot is an application service that the server registers for
// itself (random as_token and hs_token each start, never written down):
// it reaches the server as a client, over HTTP on the server's own client
// listener, and receives its transactions (invites, MSC2409 to-device,
// MSC3202 device lists and one-time key counts) on a listener of its own
// on loopback. Olm and Megolm are mautrix-go's pure-Go implementation
// (crypto/goolm); its state is sealed in the server's database under a
// data key wrapped by the media master key (vault.go).
//
// It must not import httpapi, rooms or e2ee: it goes through the client
// API like any client's device.
package alertbot
