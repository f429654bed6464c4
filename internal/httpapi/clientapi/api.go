package clientapi

import (
	"log/slog"

	"luxchat/internal/accounts"
	"luxchat/internal/appservice"
	"luxchat/internal/config"
	"luxchat/internal/delayed"
	"luxchat/internal/directory"
	"luxchat/internal/e2ee"
	"luxchat/internal/notices"
	"luxchat/internal/notifications"
	"luxchat/internal/oauth"
	"luxchat/internal/reports"
	"luxchat/internal/roomfed"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/rtc"
	"luxchat/internal/search"
	"luxchat/internal/slidingsync"
	"luxchat/internal/sso"
	"luxchat/internal/sync"
	"luxchat/internal/threadsubs"
	"luxchat/internal/turn"
)

// API holds what the handlers need.
type API struct {
	Config   *config.Config
	Accounts *accounts.Service
	// AppServices are the registered application services (nil: none).
	AppServices *appservice.Service
	Rooms       *rooms.Service
	// Read answers the read questions of rooms (package roomread).
	Read *roomread.Service
	Sync *sync.Service
	// SlidingSync answers simplified sliding sync (MSC4186).
	SlidingSync *slidingsync.Service
	E2EE        *e2ee.Service
	Log         *slog.Logger
	// Push serves push rules, pushers and /notifications.
	Push *notifications.Service
	// Directory serves /publicRooms, the user directory and /hierarchy.
	Directory *directory.Service
	// RoomFed reaches other servers' rooms: aliases, jumps to a date.
	RoomFed *roomfed.Service
	// Search, Reports and Notices are optional: nil leaves their routes
	// out.
	Search  *search.Service
	Reports *reports.Service
	Notices *notices.Service
	// ThreadSubs serves thread subscriptions (MSC4306, MSC4308); nil
	// leaves their routes out.
	ThreadSubs *threadsubs.Service
	// TURN issues TURN credentials; nil: no TURN server is configured.
	TURN *turn.Issuer
	// RTC serves the MatrixRTC transports and the LiveKit token service;
	// nil (rtc.livekit unset) leaves their routes out.
	RTC *rtc.Service
	// SSO logs users in through upstream OpenID Connect providers; nil
	// (oidc.providers empty) leaves its routes out.
	SSO *sso.Service
	// OAuth is the OAuth 2.0 API's authorization server; nil
	// (oauth.enabled off) leaves its routes out.
	OAuth *oauth.Service
	// Delayed schedules and manages delayed events (MSC4140); nil leaves
	// their routes out and /send and /state ignore the delay.
	Delayed *delayed.Service

	filters filterCache
}
