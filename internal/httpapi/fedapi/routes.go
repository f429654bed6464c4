package fedapi

import (
	"log/slog"

	"luxchat/internal/accounts"
	"luxchat/internal/config"
	"luxchat/internal/federation"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/media"
)

// API holds what the federation handlers need.
type API struct {
	Config   *config.Config
	Keys     *federation.Keys
	Policy   *federation.Policy
	Accounts *accounts.Service
	Media    *media.Service // serves local media to other servers
	Log      *slog.Logger
}

// Register adds the Server-Server API routes to the federation listener's
// router. Routes marked "server" authenticate the X-Matrix header.
func Register(rt *httputil.Router, a *API) {
	none := httputil.AuthNone
	rt.Handle("GET /_matrix/federation/v1/version", none, a.version)
	rt.Handle("GET /_matrix/key/v2/server", none, a.serverKeys)
	rt.Handle("POST /_matrix/key/v2/query", none, a.queryKeys)
	rt.Handle("GET /_matrix/key/v2/query/{serverName}", none, a.queryServerKeys)
	rt.Handle("GET /_matrix/federation/v1/query/profile", none, a.Authenticated(a.queryProfile))               // server
	rt.Handle("GET /_matrix/federation/v1/media/download/{mediaId}", none, a.Authenticated(a.mediaDownload))   // server
	rt.Handle("GET /_matrix/federation/v1/media/thumbnail/{mediaId}", none, a.Authenticated(a.mediaThumbnail)) // server
}

// RegisterWellKnown adds GET /.well-known/matrix/server to the client
// listener's router: 404 unless federation.well_known_server is set.
func RegisterWellKnown(rt *httputil.Router, cfg *config.Config) {
	rt.Handle("GET /.well-known/matrix/server", httputil.AuthNone, func(*httputil.Request) (any, error) {
		return wellKnownServer(cfg)
	})
}
