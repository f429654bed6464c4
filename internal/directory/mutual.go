package directory

import (
	"context"
	"encoding/base64"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
)

// mutualRoomsPage is the number of rooms one /mutual_rooms answer lists
// (a variable for tests).
var mutualRoomsPage = 100

// MutualRoomsResponse is the answer of GET /_matrix/client/v1/mutual_rooms.
type MutualRoomsResponse struct {
	Joined    []string `json:"joined"`
	Count     int64    `json:"count"`
	NextBatch string   `json:"next_batch,omitempty"`
}

// MutualRooms lists the rooms where both userID and other are joined, by
// room id, a page at a time; from is a previous answer's next_batch. The
// token holds the last room id listed, so it never expires.
func (s *Service) MutualRooms(ctx context.Context, userID, other, from string) (*MutualRoomsResponse, error) {
	u, err := id.ParseUserID(other)
	if err != nil || !u.IsCompliant() {
		return nil, errcode.InvalidParam("user_id is not a valid user id")
	}
	if other == userID {
		return nil, errcode.InvalidParam("user_id must be another user than yourself")
	}
	after := ""
	if from != "" {
		raw, err := base64.RawURLEncoding.DecodeString(from)
		if err != nil || !strings.HasPrefix(string(raw), "r") || len(raw) > 300 {
			return nil, errcode.InvalidParam("invalid from token")
		}
		after = string(raw[1:])
	}
	rooms, total, err := s.store.MutualRooms(ctx, userID, other, after, mutualRoomsPage+1)
	if err != nil {
		return nil, err
	}
	out := &MutualRoomsResponse{Joined: rooms, Count: total}
	if len(rooms) > mutualRoomsPage {
		out.Joined = rooms[:mutualRoomsPage]
		out.NextBatch = base64.RawURLEncoding.EncodeToString([]byte("r" + out.Joined[mutualRoomsPage-1]))
	}
	return out, nil
}
