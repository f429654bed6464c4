package fedapi

import (
	"context"

	"luxchat/internal/accounts"
	"luxchat/internal/config"
	"luxchat/internal/directory"
	"luxchat/internal/e2ee"
	"luxchat/internal/exchange"
	"luxchat/internal/federation"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/media"
	"luxchat/internal/roomfed"
	"luxchat/internal/rooms"
)

// API holds what the federation handlers need.
type API struct {
	Config   *config.Config
	Keys     *federation.Keys
	Policy   *federation.Policy
	Accounts *accounts.Service
	Media    *media.Service // serves local media to other servers
	// Directory serves /publicRooms and /hierarchy; nil: no such routes.
	Directory *directory.Service
	// Rooms and RoomFed serve rooms to other servers; nil: no room routes.
	Rooms   *rooms.Service
	RoomFed *roomfed.Service
	// Exchange runs inbound transactions (their PDUs and EDUs).
	Exchange *exchange.Service
	// Contacted is told of every authenticated origin (retry its queue).
	Contacted func(origin string)
	// E2EE and DeviceStreamID serve user devices and keys; nil: no such
	// routes.
	E2EE           *e2ee.Service
	DeviceStreamID func(ctx context.Context, userID string) (int64, error)
}

const (
	none   = httputil.AuthNone
	server = httputil.AuthServer // signed by the origin server (see auth.go)
	fed    = "/_matrix/federation"
)

// route is one line of the API map.
type route struct {
	pattern string
	auth    httputil.AuthKind
	h       httputil.Handler
}

// Register adds the Server-Server API routes to the federation listener's
// router, whose Servers must be a (X-Matrix authentication). A group
// whose service is absent is left out: the router answers M_UNRECOGNIZED.
func Register(rt *httputil.Router, a *API) {
	for _, r := range a.routes() {
		rt.Handle(r.pattern, r.auth, r.h)
	}
}

// routes is the map of the Server-Server API.
func (a *API) routes() []route {
	routes := []route{
		{"GET " + fed + "/v1/version", none, a.version},
		{"GET /_matrix/key/v2/server", none, a.serverKeys},
		{"POST /_matrix/key/v2/query", none, a.queryKeys},
		{"GET /_matrix/key/v2/query/{serverName}", none, a.queryServerKeys},
		{"GET " + fed + "/v1/openid/userinfo", none, a.openIDUserInfo},
		{"GET " + fed + "/v1/query/profile", server, a.queryProfile},
		{"GET " + fed + "/v1/media/download/{mediaId}", server, a.mediaDownload},
		{"GET " + fed + "/v1/media/thumbnail/{mediaId}", server, a.mediaThumbnail},
	}
	if a.E2EE != nil {
		routes = append(routes, []route{
			{"GET " + fed + "/v1/user/devices/{userId}", server, a.userDevices},
			{"POST " + fed + "/v1/user/keys/query", server, a.userKeysQuery},
			{"POST " + fed + "/v1/user/keys/claim", server, a.userKeysClaim},
		}...)
	}
	if a.Directory != nil {
		routes = append(routes, []route{
			{"GET " + fed + "/v1/publicRooms", server, a.publicRooms},
			{"POST " + fed + "/v1/publicRooms", server, a.publicRooms},
			{"GET " + fed + "/v1/hierarchy/{roomId}", server, a.hierarchy},
		}...)
	}
	if a.Rooms != nil {
		// Room routes apply the room's server ACL to the origin.
		routes = append(routes, []route{
			{"PUT " + fed + "/v1/send/{txnId}", server, a.sendTransaction},
			{"GET " + fed + "/v1/event/{eventId}", server, a.getEvent},
			{"GET " + fed + "/v1/state/{roomId}", server, a.getState},
			{"GET " + fed + "/v1/state_ids/{roomId}", server, a.getStateIDs},
			{"GET " + fed + "/v1/event_auth/{roomId}/{eventId}", server, a.getEventAuth},
			{"GET " + fed + "/v1/backfill/{roomId}", server, a.backfill},
			{"GET " + fed + "/v1/timestamp_to_event/{roomId}", server, a.timestampToEvent},
			{"POST " + fed + "/v1/get_missing_events/{roomId}", server, a.getMissingEvents},
			{"GET " + fed + "/v1/query/directory", server, a.queryDirectory},
			{"GET " + fed + "/v1/make_join/{roomId}/{userId}", server, a.makeJoin},
			{"PUT " + fed + "/v1/send_join/{roomId}/{eventId}", server, a.sendJoinV1},
			{"PUT " + fed + "/v2/send_join/{roomId}/{eventId}", server, a.sendJoin},
			{"GET " + fed + "/v1/make_leave/{roomId}/{userId}", server, a.makeLeave},
			{"PUT " + fed + "/v1/send_leave/{roomId}/{eventId}", server, a.sendLeaveV1},
			{"PUT " + fed + "/v2/send_leave/{roomId}/{eventId}", server, a.sendLeave},
			{"GET " + fed + "/v1/make_knock/{roomId}/{userId}", server, a.makeKnock},
			{"PUT " + fed + "/v1/send_knock/{roomId}/{eventId}", server, a.sendKnock},
			{"PUT " + fed + "/v2/invite/{roomId}/{eventId}", server, a.invite},
		}...)
	}
	return routes
}

// RegisterWellKnown adds GET /.well-known/matrix/server to the client
// listener's router: 404 unless federation.well_known_server is set.
func RegisterWellKnown(rt *httputil.Router, cfg *config.Config) {
	rt.Handle("GET /.well-known/matrix/server", httputil.AuthNone, func(*httputil.Request) (any, error) {
		return wellKnownServer(cfg)
	})
}
