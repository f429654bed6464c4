package fedapi

import (
	"context"
	"log/slog"

	"luxchat/internal/accounts"
	"luxchat/internal/config"
	"luxchat/internal/directory"
	"luxchat/internal/e2ee"
	"luxchat/internal/federation"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/media"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// API holds what the federation handlers need.
type API struct {
	Config   *config.Config
	Keys     *federation.Keys
	Policy   *federation.Policy
	Accounts *accounts.Service
	Media    *media.Service // serves local media to other servers
	Log      *slog.Logger
	// Directory serves /publicRooms and /hierarchy; nil: no such routes.
	Directory *directory.Service
	// Rooms and Store serve rooms to other servers; nil: no room routes.
	Rooms *rooms.Service
	Store *store.Store
	// EDU takes inbound EDUs; nil: they are dropped.
	EDU EDUHandler
	// Contacted is told of every authenticated origin (retry its queue).
	Contacted func(origin string)
	// E2EE and DeviceStreamID serve user devices and keys; nil: no such
	// routes.
	E2EE           *e2ee.Service
	DeviceStreamID func(ctx context.Context, userID string) (int64, error)

	txns txnLocks
}

// Register adds the Server-Server API routes to the federation listener's
// router. Routes marked "server" authenticate the X-Matrix header.
func Register(rt *httputil.Router, a *API) {
	none := httputil.AuthNone
	rt.Handle("GET /_matrix/federation/v1/version", none, a.version)
	rt.Handle("GET /_matrix/key/v2/server", none, a.serverKeys)
	rt.Handle("POST /_matrix/key/v2/query", none, a.queryKeys)
	rt.Handle("GET /_matrix/key/v2/query/{serverName}", none, a.queryServerKeys)
	rt.Handle("GET /_matrix/federation/v1/openid/userinfo", none, a.openIDUserInfo)
	rt.Handle("GET /_matrix/federation/v1/query/profile", none, a.Authenticated(a.queryProfile))               // server
	rt.Handle("GET /_matrix/federation/v1/media/download/{mediaId}", none, a.Authenticated(a.mediaDownload))   // server
	rt.Handle("GET /_matrix/federation/v1/media/thumbnail/{mediaId}", none, a.Authenticated(a.mediaThumbnail)) // server
	if a.E2EE != nil {
		rt.Handle("GET /_matrix/federation/v1/user/devices/{userId}", none, a.Authenticated(a.userDevices)) // server
		rt.Handle("POST /_matrix/federation/v1/user/keys/query", none, a.Authenticated(a.userKeysQuery))    // server
		rt.Handle("POST /_matrix/federation/v1/user/keys/claim", none, a.Authenticated(a.userKeysClaim))    // server
	}
	if a.Directory != nil {
		rt.Handle("GET /_matrix/federation/v1/publicRooms", none, a.Authenticated(a.publicRooms))      // server
		rt.Handle("POST /_matrix/federation/v1/publicRooms", none, a.Authenticated(a.publicRooms))     // server
		rt.Handle("GET /_matrix/federation/v1/hierarchy/{roomId}", none, a.Authenticated(a.hierarchy)) // server
	}
	if a.Rooms == nil {
		return
	}
	// Rooms: every route is signed by a server; room routes apply the ACL.
	fed := "/_matrix/federation/"
	rt.Handle("PUT "+fed+"v1/send/{txnId}", none, a.Authenticated(a.sendTransaction))
	rt.Handle("GET "+fed+"v1/event/{eventId}", none, a.Authenticated(a.getEvent))
	rt.Handle("GET "+fed+"v1/state/{roomId}", none, a.Authenticated(a.getState))
	rt.Handle("GET "+fed+"v1/state_ids/{roomId}", none, a.Authenticated(a.getStateIDs))
	rt.Handle("GET "+fed+"v1/event_auth/{roomId}/{eventId}", none, a.Authenticated(a.getEventAuth))
	rt.Handle("GET "+fed+"v1/backfill/{roomId}", none, a.Authenticated(a.backfill))
	rt.Handle("GET "+fed+"v1/timestamp_to_event/{roomId}", none, a.Authenticated(a.timestampToEvent))
	rt.Handle("POST "+fed+"v1/get_missing_events/{roomId}", none, a.Authenticated(a.getMissingEvents))
	rt.Handle("GET "+fed+"v1/query/directory", none, a.Authenticated(a.queryDirectory))
	rt.Handle("GET "+fed+"v1/make_join/{roomId}/{userId}", none, a.Authenticated(a.makeJoin))
	rt.Handle("PUT "+fed+"v1/send_join/{roomId}/{eventId}", none, a.Authenticated(a.sendJoinV1))
	rt.Handle("PUT "+fed+"v2/send_join/{roomId}/{eventId}", none, a.Authenticated(a.sendJoin))
	rt.Handle("GET "+fed+"v1/make_leave/{roomId}/{userId}", none, a.Authenticated(a.makeLeave))
	rt.Handle("PUT "+fed+"v1/send_leave/{roomId}/{eventId}", none, a.Authenticated(a.sendLeaveV1))
	rt.Handle("PUT "+fed+"v2/send_leave/{roomId}/{eventId}", none, a.Authenticated(a.sendLeave))
	rt.Handle("GET "+fed+"v1/make_knock/{roomId}/{userId}", none, a.Authenticated(a.makeKnock))
	rt.Handle("PUT "+fed+"v1/send_knock/{roomId}/{eventId}", none, a.Authenticated(a.sendKnock))
	rt.Handle("PUT "+fed+"v2/invite/{roomId}/{eventId}", none, a.Authenticated(a.invite))
}

// RegisterWellKnown adds GET /.well-known/matrix/server to the client
// listener's router: 404 unless federation.well_known_server is set.
func RegisterWellKnown(rt *httputil.Router, cfg *config.Config) {
	rt.Handle("GET /.well-known/matrix/server", httputil.AuthNone, func(*httputil.Request) (any, error) {
		return wellKnownServer(cfg)
	})
}
