package directory

import (
	"context"
	"log/slog"
	"sync"

	"luxchat/internal/config"
	"luxchat/internal/federation"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Remote asks other servers for their directory and space hierarchies
// (federation.Client).
type Remote interface {
	PublicRooms(ctx context.Context, destination string, req *federation.PublicRoomsRequest) (*federation.PublicRoomsResponse, error)
	SearchPublicRooms(ctx context.Context, destination string, req *federation.PublicRoomsRequest) (*federation.PublicRoomsResponse, error)
	Hierarchy(ctx context.Context, destination, roomID string, suggestedOnly bool) (*federation.HierarchyResponse, error)
}

// Service answers directory and hierarchy requests. It is safe for
// concurrent use; it holds no lock of its own (the rooms service's locks
// are taken through its methods only).
type Service struct {
	cfg    *config.Config
	store  *store.Store
	rooms  *rooms.Service
	log    *slog.Logger
	remote Remote // nil when federation is disabled
	// hierCache keeps other servers' hierarchy answers a little while.
	hierCache *remoteCache
	// summarized holds rooms known to have a summary built from their
	// state (summaries are never removed), so that a local join asks the
	// database only once per room (see indexJoinedRoom).
	summarized sync.Map
}

// New returns the service; remote is nil when federation is disabled. Its
// IndexEvent, IndexFullState and account hooks are in the server's wiring.
func New(cfg *config.Config, st *store.Store, rs *rooms.Service, remote Remote, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{cfg: cfg, store: st, rooms: rs, remote: remote, log: log, hierCache: newRemoteCache()}
}

// Caller is who asks: a local user (and whether a server admin).
type Caller struct {
	UserID  string
	IsAdmin bool
}
