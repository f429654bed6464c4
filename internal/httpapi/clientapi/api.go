package clientapi

import (
	"log/slog"

	"luxchat/internal/accounts"
	"luxchat/internal/config"
	"luxchat/internal/e2ee"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/sync"
)

// API holds what the handlers need.
type API struct {
	Config   *config.Config
	Store    *store.Store
	Accounts *accounts.Service
	Rooms    *rooms.Service
	Sync     *sync.Service
	E2EE     *e2ee.Service
	Log      *slog.Logger

	filters filterCache
}

// Register adds every client API route to rt.
func (a *API) Register(rt *httputil.Router) {
	a.routes(rt)
}
