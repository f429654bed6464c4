package clientapi

import (
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/roomversion"
)

// GET /.well-known/matrix/client
func (a *API) wellKnown(r *httputil.Request) (any, error) {
	base := a.Config.PublicBaseURL
	if base == "" {
		base = "http://" + a.Config.Listen.Client
	}
	return map[string]any{"m.homeserver": map[string]string{"base_url": base}}, nil
}

// GET /_matrix/client/versions — only versions whose features work.
func (a *API) versions(r *httputil.Request) (any, error) {
	return map[string]any{
		"versions":          []string{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"},
		"unstable_features": map[string]bool{"org.matrix.msc3391": true},
	}, nil
}

// GET /_matrix/client/v3/capabilities
func (a *API) capabilities(r *httputil.Request) (any, error) {
	available := map[string]string{}
	for _, v := range roomversion.All() {
		available[v.ID] = "stable"
	}
	return map[string]any{"capabilities": map[string]any{
		"m.change_password": map[string]bool{"enabled": true},
		"m.room_versions":   map[string]any{"default": a.Config.Rooms.DefaultVersion, "available": available},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
		"m.get_login_token": map[string]bool{"enabled": false},
		"m.profile_fields":  map[string]any{"enabled": false},
	}}, nil
}
