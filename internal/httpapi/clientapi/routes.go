package clientapi

import "luxchat/internal/httpapi/httputil"

const (
	none     = httputil.AuthNone
	user     = httputil.AuthUser
	optional = httputil.AuthOptional
	v3       = "/_matrix/client/v3"
)

// routes is the map of the Client-Server API.
func (a *API) routes(rt *httputil.Router) {
	limited := httputil.RateLimited()

	// Discovery.
	rt.Handle("GET /.well-known/matrix/client", none, a.wellKnown)
	rt.Handle("GET /_matrix/client/versions", optional, a.versions)
	rt.Handle("GET "+v3+"/capabilities", user, a.capabilities)

	a.accountRoutes(rt)

	// Rooms.
	rt.Handle("POST "+v3+"/createRoom", user, a.createRoom, limited)
	rt.Handle("POST "+v3+"/join/{roomIdOrAlias}", user, a.joinByIDOrAlias, limited)
	rt.Handle("POST "+v3+"/rooms/{roomId}/join", user, a.join, limited)
	rt.Handle("POST "+v3+"/rooms/{roomId}/invite", user, a.invite, limited)
	rt.Handle("POST "+v3+"/rooms/{roomId}/leave", user, a.leave, limited)
	rt.Handle("POST "+v3+"/rooms/{roomId}/forget", user, a.forget, limited)
	rt.Handle("POST "+v3+"/rooms/{roomId}/kick", user, a.kick, limited)
	rt.Handle("POST "+v3+"/rooms/{roomId}/ban", user, a.ban, limited)
	rt.Handle("POST "+v3+"/rooms/{roomId}/unban", user, a.unban, limited)
	rt.Handle("POST "+v3+"/knock/{roomIdOrAlias}", user, a.knock, limited)
	rt.Handle("GET "+v3+"/joined_rooms", user, a.joinedRooms)
	rt.Handle("GET "+v3+"/rooms/{roomId}/joined_members", user, a.joinedMembers)
	rt.Handle("GET "+v3+"/rooms/{roomId}/members", user, a.members)
	rt.Handle("GET "+v3+"/rooms/{roomId}/state", user, a.state)
	rt.Handle("GET "+v3+"/rooms/{roomId}/state/{eventType}", user, a.stateEvent)
	rt.Handle("GET "+v3+"/rooms/{roomId}/state/{eventType}/{stateKey...}", user, a.stateEvent)
	rt.Handle("PUT "+v3+"/rooms/{roomId}/state/{eventType}", user, a.putState, limited)
	rt.Handle("PUT "+v3+"/rooms/{roomId}/state/{eventType}/{stateKey...}", user, a.putState, limited)
	rt.Handle("PUT "+v3+"/rooms/{roomId}/send/{eventType}/{txnId}", user, a.send, limited)
	rt.Handle("PUT "+v3+"/rooms/{roomId}/redact/{eventId}/{txnId}", user, a.redact, limited)
	rt.Handle("GET "+v3+"/rooms/{roomId}/event/{eventId}", user, a.event)
	rt.Handle("GET "+v3+"/rooms/{roomId}/context/{eventId}", user, a.context)
	rt.Handle("GET "+v3+"/rooms/{roomId}/messages", user, a.messages)
	rt.Handle("GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event", user, a.timestampToEvent)
	a.relationsRoutes(rt)
	rt.Handle("POST "+v3+"/rooms/{roomId}/upgrade", user, a.upgrade, limited)
	rt.Handle("GET "+v3+"/rooms/{roomId}/aliases", user, a.roomAliases)
	rt.Handle("GET "+v3+"/directory/room/{roomAlias}", none, a.getAlias)
	rt.Handle("PUT "+v3+"/directory/room/{roomAlias}", user, a.putAlias, limited)
	rt.Handle("DELETE "+v3+"/directory/room/{roomAlias}", user, a.deleteAlias, limited)

	// Sync and ephemeral data.
	rt.Handle("GET "+v3+"/sync", user, a.sync)
	rt.Handle("POST "+v3+"/user/{userId}/filter", user, a.putFilter)
	rt.Handle("POST "+v3+"/user/{userId}/openid/request_token", user, a.openIDRequestToken, limited)
	rt.Handle("GET "+v3+"/user/{userId}/filter/{filterId}", user, a.getFilter)
	rt.Handle("PUT "+v3+"/rooms/{roomId}/typing/{userId}", user, a.typing)
	rt.Handle("POST "+v3+"/rooms/{roomId}/receipt/{receiptType}/{eventId}", user, a.receipt)
	rt.Handle("POST "+v3+"/rooms/{roomId}/read_markers", user, a.readMarkers)
	rt.Handle("GET "+v3+"/presence/{userId}/status", user, a.getPresence)
	rt.Handle("PUT "+v3+"/presence/{userId}/status", user, a.putPresence, limited)
	rt.Handle("GET "+v3+"/user/{userId}/account_data/{type}", user, a.getAccountData)
	rt.Handle("PUT "+v3+"/user/{userId}/account_data/{type}", user, a.putAccountData)
	rt.Handle("GET "+v3+"/user/{userId}/rooms/{roomId}/account_data/{type}", user, a.getRoomAccountData)
	rt.Handle("PUT "+v3+"/user/{userId}/rooms/{roomId}/account_data/{type}", user, a.putRoomAccountData)
	msc3391 := "/_matrix/client/unstable/org.matrix.msc3391"
	rt.Handle("DELETE "+msc3391+"/user/{userId}/account_data/{type}", user, a.deleteAccountData)
	rt.Handle("DELETE "+msc3391+"/user/{userId}/rooms/{roomId}/account_data/{type}", user, a.deleteRoomAccountData)
	rt.Handle("GET "+v3+"/user/{userId}/rooms/{roomId}/tags", user, a.getTags)
	rt.Handle("PUT "+v3+"/user/{userId}/rooms/{roomId}/tags/{tag}", user, a.putTag)
	rt.Handle("DELETE "+v3+"/user/{userId}/rooms/{roomId}/tags/{tag}", user, a.deleteTag)
	a.moderationRoutes(rt)
	a.directoryRoutes(rt)
	a.socialRoutes(rt)
	a.e2eeRoutes(rt)
	a.pushRoutes(rt)
}
