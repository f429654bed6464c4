package mediaapi

import (
	"log/slog"

	"luxchat/internal/config"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/media"
)

// API holds what the handlers need.
type API struct {
	Config *config.Config
	Media  *media.Service
	Log    *slog.Logger
	// Preview fetches URL previews; Register creates it when
	// media.url_preview.enabled is set and it is nil.
	Preview *media.Previewer
}

const (
	none     = httputil.AuthNone
	user     = httputil.AuthUser
	mediaV3  = "/_matrix/media/v3"
	mediaV1  = "/_matrix/media/v1"
	clientV1 = "/_matrix/client/v1/media"
)

// route is one line of the API map; opts are its rate and body limits.
type route struct {
	pattern string
	auth    httputil.AuthKind
	h       httputil.Handler
	opts    []httputil.Option
}

// Register adds the content repository's routes to rt.
func Register(rt *httputil.Router, a *API) {
	if a.Preview == nil && a.Config.Media.URLPreview.Enabled {
		a.Preview = media.NewPreviewer(a.Media, a.Log, a.Config.Media.URLPreview.AllowNetworks)
	}
	for _, r := range a.routes() {
		rt.Handle(r.pattern, r.auth, r.h, r.opts...)
	}
}

// routes is the map of the content repository.
func (a *API) routes() []route {
	limited := []httputil.Option{httputil.RateLimited()}
	// Uploads may be larger than other request bodies; the service caps
	// them while streaming.
	upload := []httputil.Option{httputil.RateLimited(), httputil.BodyLimit(a.Config.Media.MaxUploadBytes)}
	return []route{
		{"POST " + mediaV3 + "/upload", user, a.upload, upload},
		{"POST " + mediaV1 + "/create", user, a.create, limited},
		{"PUT " + mediaV3 + "/upload/{serverName}/{mediaId}", user, a.uploadTo, upload},

		// Authenticated media (Matrix 1.11).
		{"GET " + clientV1 + "/config", user, a.config, nil},
		{"GET " + clientV1 + "/download/{serverName}/{mediaId}", user, a.download, nil},
		{"GET " + clientV1 + "/download/{serverName}/{mediaId}/{fileName}", user, a.download, nil},
		{"GET " + clientV1 + "/thumbnail/{serverName}/{mediaId}", user, a.thumbnail, nil},
		{"GET " + clientV1 + "/preview_url", user, a.previewURL, limited},

		// Deprecated unauthenticated endpoints, frozen by default.
		{"GET " + mediaV3 + "/config", user, a.config, nil},
		{"GET " + mediaV3 + "/download/{serverName}/{mediaId}", none, a.legacyDownload, nil},
		{"GET " + mediaV3 + "/download/{serverName}/{mediaId}/{fileName}", none, a.legacyDownload, nil},
		{"GET " + mediaV3 + "/thumbnail/{serverName}/{mediaId}", none, a.legacyThumbnail, nil},
		// Deprecated but authenticated, so not frozen (content-repo.yaml).
		{"GET " + mediaV3 + "/preview_url", user, a.previewURL, limited},
	}
}
