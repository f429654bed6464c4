// Package exchange is what this server and others exchange besides the
// event graph's own requests: every event built here goes to the servers
// of the room's members through the outbound queue (federation.Queue),
// recorded for that in the event's own transaction so that a crash
// before the queueing only delays it (fanout.go);
// local typing, receipts, presence, device list and signing key updates
// and to-device messages go out as EDUs; EDUs received from other servers
// are checked (the users they name must belong to the sending server) and
// applied, after the PDUs of the inbound transaction they came in, which
// runs here (ReceiveTransaction); and key and profile queries for remote
// users are asked of their servers.
//
// It imports federation, rooms, sync, e2ee, accounts and store; never
// httpapi. Hooks it registers only queue work.
package exchange
