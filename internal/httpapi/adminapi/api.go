package adminapi

import (
	"log/slog"

	"luxchat/internal/accounts"
	"luxchat/internal/config"
	"luxchat/internal/directory"
	"luxchat/internal/federation"
	"luxchat/internal/media"
	"luxchat/internal/notices"
	"luxchat/internal/reports"
	"luxchat/internal/roomadmin"
	"luxchat/internal/roomfed"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/webhooks"
)

// API holds what the admin handlers need. The server's wiring fills it;
// a nil optional service leaves its routes answering M_UNRECOGNIZED.
type API struct {
	Config *config.Config
	Log    *slog.Logger
	// Audit receives one line per admin call (nil: Log).
	Audit *slog.Logger

	// Users (users.go, devices.go, tokens.go, moderation.go).
	Accounts *accounts.Service

	// Rooms, reports, media and the server (rooms.go, reports.go,
	// media.go, server.go).
	Rooms     *rooms.Service
	Read      *roomread.Service
	RoomFed   *roomfed.Service
	Directory *directory.Service
	Reports   *reports.Service
	Media     *media.Service
	Notices   *notices.Service
	RoomAdmin *roomadmin.Service // room list, details, block, delete (rooms.go)
	// Federation is the outbound queue (destinations and their back-off,
	// server.go); nil when federation is off.
	Federation *federation.Queue

	// Webhooks makes and manages incoming webhooks (webhooks.go).
	Webhooks *webhooks.Service
}
