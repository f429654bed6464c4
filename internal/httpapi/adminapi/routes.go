package adminapi

import (
	"luxchat/internal/httpapi/httputil"
)

// Path prefixes of the admin API.
const (
	synapseV1 = "/_synapse/admin/v1"
	synapseV2 = "/_synapse/admin/v2"
	luxchatV1 = "/_luxchat/admin/v1"
	specV1    = "/_matrix/client/v1/admin"
	specV3    = "/_matrix/client/v3/admin"
)

// Prefixes are the paths that listen.admin, when set, serves alone. The
// spec's admin endpoints are not among them: clients find those on the
// client API.
var Prefixes = []string{"/_synapse/admin/", "/_luxchat/admin/"}

// route is one line of the admin API map. Every route takes an access
// token and is for server administrators only (see selfAllowed for the
// exception).
type route struct {
	pattern string
	h       httputil.Handler
}

// selfAllowed are the routes a user who is not an administrator may call
// about themself ({userId} is the caller): the spec lets a user ask whois
// about their own account.
var selfAllowed = map[string]bool{
	"GET " + specV3 + "/whois/{userId}": true,
}

// Routes registers the admin API: the Synapse-compatible and luxchat's
// routes on admin (the listen.admin router, or the client router when it
// is unset), the spec's on client. Each handler is wrapped by
// requireAdmin, which refuses non-administrators with 403 M_FORBIDDEN
// before the handler runs, and audits the call.
func (a *API) Routes(admin, client *httputil.Router) {
	for _, r := range a.routes() {
		rt := admin
		if !reserved(r.pattern) {
			rt = client
		}
		rt.Handle(r.pattern, httputil.AuthUser, a.requireAdmin(r))
	}
}

// routes is the map of the admin API, grouped by the file that serves
// each group. Add a group's lines here; keep one route per line.
func (a *API) routes() []route {
	return []route{
		// Users, devices, registration tokens, suspension and locking
		// (users.go, devices.go, tokens.go, spec.go).

		// Server notices (notices.go).
		{"POST " + synapseV1 + "/send_server_notice", a.sendServerNotice},
		{"PUT " + synapseV1 + "/send_server_notice/{txnId}", a.putServerNotice},

		// Rooms, reports, media and the server (rooms.go, reports.go,
		// media.go, server.go).
		{"GET " + synapseV1 + "/rooms", a.listRooms},
		{"GET " + synapseV1 + "/rooms/{roomId}", a.roomDetails},
		{"GET " + synapseV1 + "/rooms/{roomId}/members", a.roomMembers},
		{"GET " + synapseV1 + "/rooms/{roomId}/state", a.roomState},
		{"GET " + synapseV1 + "/rooms/{roomId}/messages", a.roomMessages},
		{"GET " + synapseV1 + "/rooms/{roomId}/block", a.getRoomBlock},
		{"PUT " + synapseV1 + "/rooms/{roomId}/block", a.putRoomBlock},
		{"POST " + synapseV1 + "/rooms/{roomId}/make_room_admin", a.makeRoomAdmin},
		{"DELETE " + synapseV2 + "/rooms/{roomId}", a.deleteRoom},
		{"GET " + synapseV2 + "/rooms/{roomId}/{sub}", a.roomSub}, // {sub} is delete_status (beside the next line's pattern)
		{"GET " + synapseV2 + "/rooms/delete_status/{deleteId}", a.deleteStatus},
		{"GET " + synapseV1 + "/event_reports", a.listEventReports},
		{"GET " + synapseV1 + "/event_reports/{reportId}", a.getEventReport},
		{"DELETE " + synapseV1 + "/event_reports/{reportId}", a.deleteEventReport},
		{"POST " + synapseV1 + "/media/quarantine/{serverName}/{mediaId}", a.quarantine(false)},
		{"POST " + synapseV1 + "/media/unquarantine/{serverName}/{mediaId}", a.quarantine(true)},
		{"POST " + synapseV1 + "/room/{roomId}/media/quarantine", a.quarantineRoomMedia},
		{"POST " + synapseV1 + "/user/{userId}/media/quarantine", a.quarantineUserMedia},
		{"DELETE " + synapseV1 + "/media/{serverName}/{mediaId}", a.deleteMedia},
		{"POST " + synapseV1 + "/purge_media_cache", a.purgeMediaCache},
		{"GET " + synapseV1 + "/statistics/users/media", a.userMediaStats},
		{"GET " + synapseV1 + "/server_version", a.serverVersion},
		{"GET " + synapseV1 + "/federation/destinations", a.listDestinations},
		{"GET " + synapseV1 + "/federation/destinations/{destination}", a.getDestination},
		{"POST " + synapseV1 + "/federation/destinations/{destination}/reset_connection", a.resetDestination},

		// Incoming webhooks (webhooks.go).
		{"POST " + luxchatV1 + "/webhooks", a.createWebhook},
		{"GET " + luxchatV1 + "/webhooks", a.listWebhooks},
		{"POST " + luxchatV1 + "/webhooks/{hookId}/rotate", a.rotateWebhook},
		{"DELETE " + luxchatV1 + "/webhooks/{hookId}", a.revokeWebhook},
	}
}
