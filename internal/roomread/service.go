package roomread

import (
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Service answers the read questions of clients about rooms. It holds no
// state of its own: the caches it reads through are the pipeline's, which
// drops and updates them as events are persisted.
type Service struct {
	store *store.Store
	rooms *rooms.Service
}

// New returns the read side over the store and the room pipeline.
func New(st *store.Store, rs *rooms.Service) *Service {
	return &Service{store: st, rooms: rs}
}
