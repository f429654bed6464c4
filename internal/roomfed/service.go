package roomfed

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"sync"

	"luxchat/internal/federation"
	"luxchat/internal/matrix/id"
	"luxchat/internal/matrix/signing"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Federation is what the room federation needs to reach other servers;
// the server wiring passes it (nil: federation is disabled).
type Federation struct {
	// Client makes the requests to other servers: the wire protocol is
	// the federation package's.
	Client *federation.Client
	// VerifyKey returns a server's public key valid at ts (milliseconds).
	VerifyKey func(ctx context.Context, server, keyID string, ts int64) (ed25519.PublicKey, error)
	// Allowed returns nil when a server may federate with this one.
	Allowed func(server string) error
}

// Service is rooms over federation. It is safe for concurrent use; it
// takes room locks only through rooms.Service.LockRoom, never two at once
// and never across a request to another server.
type Service struct {
	rooms      *rooms.Service
	store      *store.Store
	serverName string
	key        signing.KeyPair
	f          *Federation // nil: federation is disabled
	log        *slog.Logger

	bf      backfillState // see backfill.go
	resyncs resyncs       // see resync.go
}

// New returns the room federation service over the rooms pipeline; f is
// nil when federation is disabled.
func New(serverName string, st *store.Store, key signing.KeyPair, rs *rooms.Service, f *Federation, log *slog.Logger) *Service {
	return &Service{rooms: rs, store: st, serverName: serverName, key: key, f: f, log: log}
}

// Federated reports whether other servers can be reached.
func (s *Service) Federated() bool { return s.f != nil }

// federated reports whether other servers can be reached.
func (s *Service) federated() bool { return s.f != nil }

// serverOf is the server name of a user, room or event id.
func serverOf(s string) string { return string(id.UserID(s).Server()) }

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// resyncs are the background fetches of partial-state rooms' full state.
type resyncs struct {
	mu     sync.Mutex
	ctx    context.Context // of the resyncs; cancelled by StopBackground
	cancel context.CancelFunc
	wg     sync.WaitGroup
	held   chan struct{} // non-nil: resyncs wait for it to close (tests)
}
