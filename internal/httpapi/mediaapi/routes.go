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

// Register adds the content repository's routes to rt: the map of the API.
func Register(rt *httputil.Router, a *API) {
	limited := httputil.RateLimited()
	// Uploads may be larger than other request bodies; the service caps
	// them while streaming.
	body := httputil.BodyLimit(a.Config.Media.MaxUploadBytes)
	if a.Preview == nil && a.Config.Media.URLPreview.Enabled {
		a.Preview = media.NewPreviewer(a.Media, a.Log, a.Config.Media.URLPreview.AllowNetworks)
	}

	rt.Handle("POST "+mediaV3+"/upload", user, a.upload, limited, body)
	rt.Handle("POST "+mediaV1+"/create", user, a.create, limited)
	rt.Handle("PUT "+mediaV3+"/upload/{serverName}/{mediaId}", user, a.uploadTo, limited, body)

	// Authenticated media (Matrix 1.11).
	rt.Handle("GET "+clientV1+"/config", user, a.config)
	rt.Handle("GET "+clientV1+"/download/{serverName}/{mediaId}", user, a.download)
	rt.Handle("GET "+clientV1+"/download/{serverName}/{mediaId}/{fileName}", user, a.download)
	rt.Handle("GET "+clientV1+"/thumbnail/{serverName}/{mediaId}", user, a.thumbnail)
	rt.Handle("GET "+clientV1+"/preview_url", user, a.previewURL, limited)

	// Deprecated unauthenticated endpoints, frozen by default.
	rt.Handle("GET "+mediaV3+"/config", user, a.config)
	rt.Handle("GET "+mediaV3+"/download/{serverName}/{mediaId}", none, a.legacyDownload)
	rt.Handle("GET "+mediaV3+"/download/{serverName}/{mediaId}/{fileName}", none, a.legacyDownload)
	rt.Handle("GET "+mediaV3+"/thumbnail/{serverName}/{mediaId}", none, a.legacyThumbnail)
	// Deprecated but authenticated, so not frozen (content-repo.yaml).
	rt.Handle("GET "+mediaV3+"/preview_url", user, a.previewURL, limited)
}
