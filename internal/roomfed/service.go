package roomfed

import (
	"log/slog"

	"luxchat/internal/matrix/id"

	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Service is rooms over federation. It is safe for concurrent use.
type Service struct {
	rooms      *rooms.Service
	store      *store.Store
	serverName string
	log        *slog.Logger
}

// New returns the room federation service over the rooms pipeline.
func New(serverName string, st *store.Store, rs *rooms.Service, log *slog.Logger) *Service {
	return &Service{rooms: rs, store: st, serverName: serverName, log: log}
}

// serverOf is the server name of a user, room or event id.
func serverOf(s string) string { return string(id.UserID(s).Server()) }
