package webhooks

import (
	"context"
	"encoding/json"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/rooms"
)

// Poster sends the hooks' events into rooms. Implementations must be safe
// for concurrent use.
type Poster interface {
	// Post sends one event as the hooks' bot into the room and returns its event id.
	Post(ctx context.Context, roomID, eventType string, content map[string]any) (eventID string, err error)
}

// RoomPoster posts as a local user through the one event pipeline, in
// the clear: for rooms that are not encrypted.
type RoomPoster struct {
	Rooms  *rooms.Service
	Sender string // the bot's user id
}

// Post implements Poster.
func (p RoomPoster) Post(ctx context.Context, roomID, eventType string, content map[string]any) (string, error) {
	data, err := json.Marshal(content)
	if err != nil {
		return "", errcode.BadJSON("content cannot be encoded")
	}
	return p.Rooms.Send(ctx, roomID, rooms.Proto{Type: eventType, Sender: p.Sender, Content: data}, nil)
}
