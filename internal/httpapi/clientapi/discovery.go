package clientapi

import (
	"maps"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/roomversion"
)

// GET /.well-known/matrix/client
func (a *API) wellKnown(r *httputil.Request) (any, error) {
	out := map[string]any{"m.homeserver": map[string]string{"base_url": a.Config.ClientBaseURL()}}
	if a.RTC != nil {
		// For clients from before /rtc/transports (MSC4143's first form).
		out["org.matrix.msc4143.rtc_foci"] = a.RTC.Transports()
	}
	return out, nil
}

// specVersions are the spec versions whose required behaviour is served.
// Optional features of later versions that are not (OAuth 2.0 login,
// peeking, administrators' suspend and lock) answer M_UNRECOGNIZED, as
// the spec lets servers do.
var specVersions = []string{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9",
	"v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18", "v1.19"}

// unstableFeatures are the MSCs served under their unstable names.
var unstableFeatures = map[string]bool{
	"org.matrix.msc3391": true, // account data deletion
	"org.matrix.msc3874": true, // rel_types / not_rel_types filters
	"org.matrix.msc4155": true, // invite filtering (org.matrix.msc4155.invite_permission_config)
	"org.matrix.msc4222": true, // state_after in sync
	// Simplified sliding sync (MSC4186) with its to_device, e2ee,
	// account_data, receipts and typing extensions.
	"org.matrix.simplified_msc3575": true,
	"im.nheko.summary":              true, // room summaries under MSC3266's path
	// Thread subscriptions, with sliding sync's extension (MSC4308).
	"org.matrix.msc4306": true,
	// Delayed events: /send and /state with org.matrix.msc4140.delay,
	// and their management endpoints.
	"org.matrix.msc4140": true,
	// Their listing's filters and pagination.
	"org.matrix.msc4486": true,
}

// GET /_matrix/client/versions — only versions whose features work.
func (a *API) versions(r *httputil.Request) (any, error) {
	features := unstableFeatures
	if a.RTC != nil {
		features = maps.Clone(unstableFeatures)
		features["org.matrix.msc4143"] = true // RTC transports
	}
	return map[string]any{"versions": specVersions, "unstable_features": features}, nil
}

// GET /_matrix/client/v3/capabilities
func (a *API) capabilities(r *httputil.Request) (any, error) {
	available := map[string]string{}
	for _, v := range roomversion.All() {
		available[v.ID] = "stable"
	}
	for _, v := range roomversion.Unstable() {
		available[v.ID] = "unstable"
	}
	caps := map[string]any{
		"m.change_password": map[string]bool{"enabled": a.Config.Auth.PasswordLogin},
		"m.room_versions":   map[string]any{"default": a.Config.Rooms.DefaultVersion, "available": available},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
		"m.get_login_token": map[string]bool{"enabled": a.Config.Auth.GetLoginToken},
		"m.profile_fields":  map[string]any{"enabled": false},
	}
	if a.Delayed != nil {
		l := a.Delayed.Limits()
		caps["org.matrix.msc4140.delayed_events"] = map[string]int64{"max_delay_ms": l.MaxDelay.Milliseconds(), "max_scheduled": int64(l.MaxPerUser)}
	}
	return map[string]any{"capabilities": caps}, nil
}
