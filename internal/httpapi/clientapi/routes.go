package clientapi

import (
	"luxchat/internal/accounts"
	"luxchat/internal/httpapi/httputil"
)

const (
	none     = httputil.AuthNone
	user     = httputil.AuthUser
	optional = httputil.AuthOptional
	tolerant = httputil.AuthTolerant
	v3       = "/_matrix/client/v3" // the router serves the legacy r0 prefix from it
	v1       = "/_matrix/client/v1"
	msc3391  = "/_matrix/client/unstable/org.matrix.msc3391"
	msc3814  = "/_matrix/client/unstable/org.matrix.msc3814.v1" // dehydrated devices
	synapse  = "/_synapse/admin/v1"
)

// route is one line of the API map; opts are its limits.
type route struct {
	pattern string
	auth    httputil.AuthKind
	h       httputil.Handler
	opts    []httputil.Option
}

// limited applies the router's rate limiter to a route.
var limited = []httputil.Option{httputil.RateLimited()}

// Register adds every client API route to rt.
func (a *API) Register(rt *httputil.Router) {
	for _, r := range a.routes() {
		rt.Handle(r.pattern, r.auth, r.h, r.opts...)
	}
}

// routes is the map of the Client-Server API. A group whose service is
// not configured is left out, so that the router answers M_UNRECOGNIZED.
func (a *API) routes() []route {
	const (
		displayName = "/" + accounts.FieldDisplayName
		avatarURL   = "/" + accounts.FieldAvatarURL
		pushRule    = v3 + "/pushrules/global/{kind}/{ruleId}"
	)
	routes := []route{
		// Discovery.
		{"GET /.well-known/matrix/client", none, a.wellKnown, nil},
		{"GET /.well-known/matrix/support", none, a.wellKnownSupport, nil},
		{"GET /_matrix/client/versions", optional, a.versions, nil},
		{"GET " + v3 + "/capabilities", user, a.capabilities, nil},

		// Registration, login, tokens.
		{"GET " + v3 + "/register/available", none, a.registerAvailable, limited},
		// Registration and login take an application service's as_token
		// (m.login.application_service).
		{"POST " + v3 + "/register", tolerant, a.register, limited},
		{"GET " + v1 + "/register/m.login.registration_token/validity", none, a.registrationTokenValidity, limited},
		{"GET " + synapse + "/register", none, a.sharedSecretNonce, limited},
		{"POST " + synapse + "/register", none, a.sharedSecretRegister, limited},
		{"GET " + v3 + "/login", none, a.loginFlows, nil},
		{"POST " + v3 + "/login", tolerant, a.login, limited},
		{"POST " + v1 + "/login/get_token", user, a.getLoginToken, limited},
		{"POST " + v3 + "/refresh", none, a.refresh, limited},
		{"POST " + v3 + "/logout", user, a.logout, nil},
		{"POST " + v3 + "/logout/all", user, a.logoutAll, nil},
		{"GET " + v3 + "/account/whoami", user, a.whoami, nil},
		// Password change and deactivation take an access token when the
		// client has one; the password stage identifies the user otherwise.
		{"POST " + v3 + "/account/password", optional, a.changePassword, limited},
		{"POST " + v3 + "/account/deactivate", optional, a.deactivate, limited},
		{"GET " + v3 + "/account/3pid", user, a.threePIDs, nil},

		// Application services: the ping companion and the third-party
		// networks their services declare.
		{"POST " + v1 + "/appservice/{appserviceId}/ping", user, a.appservicePing, nil},
		{"GET " + v3 + "/thirdparty/protocols", user, a.thirdPartyProtocols, nil},
		{"GET " + v3 + "/thirdparty/protocol/{protocol}", user, a.thirdPartyProtocol, nil},
		{"GET " + v3 + "/thirdparty/location/{protocol}", user, a.thirdPartyLookup("location", true), nil},
		{"GET " + v3 + "/thirdparty/user/{protocol}", user, a.thirdPartyLookup("user", true), nil},
		{"GET " + v3 + "/thirdparty/location", user, a.thirdPartyLookup("location", false), nil},
		{"GET " + v3 + "/thirdparty/user", user, a.thirdPartyLookup("user", false), nil},
		{"PUT " + v3 + "/directory/list/appservice/{networkId}/{roomId}", user, a.putAppServiceRoomVisibility, nil},

		// Devices.
		{"GET " + v3 + "/devices", user, a.listDevices, nil},
		{"GET " + v3 + "/devices/{deviceId}", user, a.getDevice, nil},
		{"PUT " + v3 + "/devices/{deviceId}", user, a.updateDevice, nil},
		{"DELETE " + v3 + "/devices/{deviceId}", user, a.deleteDevice, limited},
		{"POST " + v3 + "/delete_devices", user, a.deleteDevices, limited},

		// Profiles. Reads take a token when given:
		// profile.require_shared_room needs to know who asks.
		{"GET " + v3 + "/profile/{userId}", optional, a.getProfile, nil},
		{"GET " + v3 + "/profile/{userId}" + displayName, optional, a.getProfileField(accounts.FieldDisplayName), nil},
		{"PUT " + v3 + "/profile/{userId}" + displayName, user, a.setProfileField(accounts.FieldDisplayName), nil},
		{"DELETE " + v3 + "/profile/{userId}" + displayName, user, a.deleteProfileField(accounts.FieldDisplayName), nil},
		{"GET " + v3 + "/profile/{userId}" + avatarURL, optional, a.getProfileField(accounts.FieldAvatarURL), nil},
		{"PUT " + v3 + "/profile/{userId}" + avatarURL, user, a.setProfileField(accounts.FieldAvatarURL), nil},
		{"DELETE " + v3 + "/profile/{userId}" + avatarURL, user, a.deleteProfileField(accounts.FieldAvatarURL), nil},

		// Rooms: membership.
		{"POST " + v3 + "/createRoom", user, a.createRoom, limited},
		{"POST " + v3 + "/join/{roomIdOrAlias}", user, a.joinByIDOrAlias, limited},
		{"POST " + v3 + "/rooms/{roomId}/join", user, a.join, limited},
		{"POST " + v3 + "/rooms/{roomId}/invite", user, a.invite, limited},
		{"POST " + v3 + "/rooms/{roomId}/leave", user, a.leave, limited},
		{"POST " + v3 + "/rooms/{roomId}/forget", user, a.forget, limited},
		{"POST " + v3 + "/rooms/{roomId}/kick", user, a.kick, limited},
		{"POST " + v3 + "/rooms/{roomId}/ban", user, a.ban, limited},
		{"POST " + v3 + "/rooms/{roomId}/unban", user, a.unban, limited},
		{"POST " + v3 + "/knock/{roomIdOrAlias}", user, a.knock, limited},
		{"GET " + v3 + "/joined_rooms", user, a.joinedRooms, nil},
		{"GET " + v3 + "/rooms/{roomId}/joined_members", user, a.joinedMembers, nil},
		{"GET " + v3 + "/rooms/{roomId}/members", user, a.members, nil},

		// Rooms: state and events.
		{"GET " + v3 + "/rooms/{roomId}/state", user, a.state, nil},
		{"GET " + v3 + "/rooms/{roomId}/state/{eventType}", user, a.stateEvent, nil},
		{"GET " + v3 + "/rooms/{roomId}/state/{eventType}/{stateKey...}", user, a.stateEvent, nil},
		{"PUT " + v3 + "/rooms/{roomId}/state/{eventType}", user, a.putState, limited},
		{"PUT " + v3 + "/rooms/{roomId}/state/{eventType}/{stateKey...}", user, a.putState, limited},
		{"PUT " + v3 + "/rooms/{roomId}/send/{eventType}/{txnId}", user, a.send, limited},
		{"PUT " + v3 + "/rooms/{roomId}/redact/{eventId}/{txnId}", user, a.redact, limited},
		{"GET " + v3 + "/rooms/{roomId}/event/{eventId}", user, a.event, nil},
		{"GET " + v3 + "/rooms/{roomId}/context/{eventId}", user, a.context, nil},
		{"GET " + v3 + "/rooms/{roomId}/messages", user, a.messages, nil},
		{"GET " + v1 + "/rooms/{roomId}/timestamp_to_event", user, a.timestampToEvent, nil},
		{"GET " + v1 + "/rooms/{roomId}/relations/{eventId}", user, a.relations, nil},
		{"GET " + v1 + "/rooms/{roomId}/relations/{eventId}/{relType}", user, a.relations, nil},
		{"GET " + v1 + "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", user, a.relations, nil},
		{"GET " + v1 + "/rooms/{roomId}/threads", user, a.threads, nil},
		{"POST " + v3 + "/rooms/{roomId}/upgrade", user, a.upgrade, limited},

		// Room aliases.
		{"GET " + v3 + "/rooms/{roomId}/aliases", user, a.roomAliases, nil},
		{"GET " + v3 + "/directory/room/{roomAlias}", none, a.getAlias, nil},
		{"PUT " + v3 + "/directory/room/{roomAlias}", user, a.putAlias, limited},
		{"DELETE " + v3 + "/directory/room/{roomAlias}", user, a.deleteAlias, limited},

		// Sync, filters and ephemeral data.
		{"GET " + v3 + "/sync", user, a.sync, nil},
		{"POST " + slidingSyncPrefix + "/sync", user, a.slidingSync, nil},
		{"POST " + v3 + "/user/{userId}/filter", user, a.putFilter, nil},
		{"GET " + v3 + "/user/{userId}/filter/{filterId}", user, a.getFilter, nil},
		{"POST " + v3 + "/user/{userId}/openid/request_token", user, a.openIDRequestToken, limited},
		{"PUT " + v3 + "/rooms/{roomId}/typing/{userId}", user, a.typing, nil},
		{"POST " + v3 + "/rooms/{roomId}/receipt/{receiptType}/{eventId}", user, a.receipt, nil},
		{"POST " + v3 + "/rooms/{roomId}/read_markers", user, a.readMarkers, nil},
		{"GET " + v3 + "/presence/{userId}/status", user, a.getPresence, nil},
		{"PUT " + v3 + "/presence/{userId}/status", user, a.putPresence, limited},

		// Account data and tags.
		{"GET " + v3 + "/user/{userId}/account_data/{type}", user, a.getAccountData, nil},
		{"PUT " + v3 + "/user/{userId}/account_data/{type}", user, a.putAccountData, nil},
		{"DELETE " + msc3391 + "/user/{userId}/account_data/{type}", user, a.deleteAccountData, nil},
		{"GET " + v3 + "/user/{userId}/rooms/{roomId}/account_data/{type}", user, a.getRoomAccountData, nil},
		{"PUT " + v3 + "/user/{userId}/rooms/{roomId}/account_data/{type}", user, a.putRoomAccountData, nil},
		{"DELETE " + msc3391 + "/user/{userId}/rooms/{roomId}/account_data/{type}", user, a.deleteRoomAccountData, nil},
		{"GET " + v3 + "/user/{userId}/rooms/{roomId}/tags", user, a.getTags, nil},
		{"PUT " + v3 + "/user/{userId}/rooms/{roomId}/tags/{tag}", user, a.putTag, nil},
		{"DELETE " + v3 + "/user/{userId}/rooms/{roomId}/tags/{tag}", user, a.deleteTag, nil},

		// End-to-end encryption: device and one-time keys, cross-signing,
		// to-device messages.
		{"POST " + v3 + "/keys/upload", user, a.keysUpload, nil},
		{"POST " + v3 + "/keys/query", user, a.keysQuery, nil},
		{"POST " + v3 + "/keys/claim", user, a.keysClaim, nil},
		{"GET " + v3 + "/keys/changes", user, a.keysChanges, nil},
		{"POST " + v3 + "/keys/device_signing/upload", user, a.deviceSigningUpload, limited},
		{"POST " + v3 + "/keys/signatures/upload", user, a.signaturesUpload, nil},
		{"PUT " + v3 + "/sendToDevice/{eventType}/{txnId}", user, a.sendToDevice, nil},

		// Key backups.
		{"POST " + v3 + "/room_keys/version", user, a.createBackup, limited},
		{"GET " + v3 + "/room_keys/version", user, a.getBackup, nil},
		{"GET " + v3 + "/room_keys/version/{version}", user, a.getBackup, nil},
		{"PUT " + v3 + "/room_keys/version/{version}", user, a.updateBackup, nil},
		{"DELETE " + v3 + "/room_keys/version/{version}", user, a.deleteBackup, nil},
		{"GET " + v3 + "/room_keys/keys", user, a.getBackupKeys, nil},
		{"PUT " + v3 + "/room_keys/keys", user, a.putBackupKeys, nil},
		{"DELETE " + v3 + "/room_keys/keys", user, a.deleteBackupKeys, nil},
		{"GET " + v3 + "/room_keys/keys/{roomId}", user, a.getBackupKeys, nil},
		{"PUT " + v3 + "/room_keys/keys/{roomId}", user, a.putBackupKeys, nil},
		{"DELETE " + v3 + "/room_keys/keys/{roomId}", user, a.deleteBackupKeys, nil},
		{"GET " + v3 + "/room_keys/keys/{roomId}/{sessionId}", user, a.getBackupKeys, nil},
		{"PUT " + v3 + "/room_keys/keys/{roomId}/{sessionId}", user, a.putBackupKeys, nil},
		{"DELETE " + v3 + "/room_keys/keys/{roomId}/{sessionId}", user, a.deleteBackupKeys, nil},

		// Dehydrated devices (MSC3814).
		{"GET " + msc3814 + "/dehydrated_device", user, a.getDehydratedDevice, nil},
		{"PUT " + msc3814 + "/dehydrated_device", user, a.putDehydratedDevice, limited},
		{"DELETE " + msc3814 + "/dehydrated_device", user, a.deleteDehydratedDevice, nil},
		{"POST " + msc3814 + "/dehydrated_device/{deviceId}/events", user, a.dehydratedDeviceEvents, nil},
		{"GET " + msc3814 + "/dehydrated_device/{deviceId}/events", user, a.dehydratedDeviceEvents, nil},

		// Push rules, pushers and the notifications list.
		{"GET " + v3 + "/pushrules/{$}", user, a.pushRules, nil},
		{"GET " + v3 + "/pushrules/global/{$}", user, a.pushRulesGlobal, nil},
		{"GET " + v3 + "/pushrules/global/{kind}/{$}", user, a.pushRulesOfKind, nil},
		{"GET " + pushRule, user, a.pushRule, nil},
		{"PUT " + pushRule, user, a.putPushRule, nil},
		{"DELETE " + pushRule, user, a.deletePushRule, nil},
		{"GET " + pushRule + "/enabled", user, a.pushRuleEnabled, nil},
		{"PUT " + pushRule + "/enabled", user, a.putPushRuleEnabled, nil},
		{"GET " + pushRule + "/actions", user, a.pushRuleActions, nil},
		{"PUT " + pushRule + "/actions", user, a.putPushRuleActions, nil},
		{"GET " + v3 + "/pushers", user, a.getPushers, nil},
		{"POST " + v3 + "/pushers/set", user, a.setPusher, limited},
		{"GET " + v3 + "/notifications", user, a.notifications, nil},

		// Calls: TURN credentials ({} when no TURN server is configured).
		{"GET " + v3 + "/voip/turnServer", user, a.turnServer, limited},
	}
	if a.Directory != nil {
		routes = append(routes, []route{
			// The published room directory: GET is open to anonymous
			// callers as the spec has it; asking another server's
			// directory takes a token (see publicRoomsFrom).
			{"GET " + v3 + "/publicRooms", optional, a.getPublicRooms, limited},
			{"POST " + v3 + "/publicRooms", user, a.postPublicRooms, limited},
			{"GET " + v3 + "/directory/list/room/{roomId}", none, a.getRoomVisibility, nil},
			{"PUT " + v3 + "/directory/list/room/{roomId}", user, a.putRoomVisibility, limited},
			{"POST " + v3 + "/user_directory/search", user, a.searchUserDirectory, limited},
			{"GET " + v1 + "/rooms/{roomId}/hierarchy", user, a.hierarchy, limited},
			// Room summaries (spec v1.15, and MSC3266's unstable path) and
			// mutual rooms (spec v1.19).
			{"GET " + v1 + "/room_summary/{roomIdOrAlias}", optional, a.roomSummary, limited},
			{"GET /_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary", optional, a.roomSummary, limited},
			// The MSC's unstable path (ruma's, for servers without v1.15).
			{"GET /_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}", optional, a.roomSummary, limited},
			{"GET " + v1 + "/mutual_rooms", user, a.mutualRooms, limited},
		}...)
	}
	if a.Search != nil {
		routes = append(routes, route{"POST " + v3 + "/search", user, a.search, limited})
	}
	if a.Reports != nil {
		routes = append(routes, []route{
			{"POST " + v3 + "/rooms/{roomId}/report/{eventId}", user, a.reportEvent, limited},
			{"POST " + v3 + "/rooms/{roomId}/report", user, a.reportRoom, limited},
			{"POST " + v3 + "/users/{userId}/report", user, a.reportUser, limited},
		}...)
	}
	if a.ThreadSubs != nil {
		const sub = msc4306 + "/rooms/{roomId}/thread/{threadRootId}/subscription"
		routes = append(routes, []route{
			{"PUT " + sub, user, a.putThreadSubscription, nil},
			{"GET " + sub, user, a.getThreadSubscription, nil},
			{"DELETE " + sub, user, a.deleteThreadSubscription, nil},
			{"GET " + msc4308 + "/thread_subscriptions", user, a.threadSubscriptions, nil},
		}...)
	}
	if a.Delayed != nil {
		routes = append(routes, a.delayedRoutes()...)
	}
	if a.RTC != nil {
		routes = append(routes, a.rtcRoutes()...)
	}
	if a.SSO != nil {
		routes = append(routes, a.ssoRoutes()...)
	}
	if a.OAuth != nil {
		routes = append(routes, a.oauthRoutes()...)
	}
	return routes
}
