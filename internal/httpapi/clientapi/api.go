package clientapi

import (
	"log/slog"

	"luxchat/internal/accounts"
	"luxchat/internal/config"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/store"
)

// API holds what the handlers need.
type API struct {
	Config   *config.Config
	Store    *store.Store
	Accounts *accounts.Service
	Log      *slog.Logger
}

// Register adds every client API route to rt.
func (a *API) Register(rt *httputil.Router) {
	a.routes(rt)
}
