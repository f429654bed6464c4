package federation

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
)

// The room directory and space hierarchy of another server.

// PublicRoom is a room as the room directory and the hierarchy describe
// it.
type PublicRoom struct {
	RoomID           string `json:"room_id"`
	Name             string `json:"name,omitempty"`
	Topic            string `json:"topic,omitempty"`
	AvatarURL        string `json:"avatar_url,omitempty"`
	CanonicalAlias   string `json:"canonical_alias,omitempty"`
	NumJoinedMembers int64  `json:"num_joined_members"`
	WorldReadable    bool   `json:"world_readable"`
	GuestCanJoin     bool   `json:"guest_can_join"`
	JoinRule         string `json:"join_rule,omitempty"`
	RoomType         string `json:"room_type,omitempty"`
}

// PublicRoomsFilter narrows a POST publicRooms.
type PublicRoomsFilter struct {
	GenericSearchTerm string    `json:"generic_search_term,omitempty"`
	RoomTypes         []*string `json:"room_types,omitempty"` // a nil entry: rooms without a type
}

// PublicRoomsRequest asks for a page of another server's room directory.
// Filter is sent with SearchPublicRooms only.
type PublicRoomsRequest struct {
	Limit                *int               `json:"limit,omitempty"`
	Since                string             `json:"since,omitempty"`
	Filter               *PublicRoomsFilter `json:"filter,omitempty"`
	IncludeAllNetworks   bool               `json:"include_all_networks,omitempty"`
	ThirdPartyInstanceID string             `json:"third_party_instance_id,omitempty"`
}

// PublicRoomsResponse is a page of another server's room directory.
type PublicRoomsResponse struct {
	Chunk     []PublicRoom `json:"chunk"`
	NextBatch string       `json:"next_batch,omitempty"`
	PrevBatch string       `json:"prev_batch,omitempty"`
	Total     *int64       `json:"total_room_count_estimate,omitempty"` // nil: the server gave none
}

// PublicRooms asks GET /_matrix/federation/v1/publicRooms, the request's
// fields but Filter as query parameters.
func (c *Client) PublicRooms(ctx context.Context, destination string, req *PublicRoomsRequest) (*PublicRoomsResponse, error) {
	q := url.Values{}
	if req.Limit != nil {
		q.Set("limit", strconv.Itoa(*req.Limit))
	}
	if req.Since != "" {
		q.Set("since", req.Since)
	}
	if req.IncludeAllNetworks {
		q.Set("include_all_networks", "true")
	}
	if req.ThirdPartyInstanceID != "" {
		q.Set("third_party_instance_id", req.ThirdPartyInstanceID)
	}
	var out PublicRoomsResponse
	if err := c.Do(ctx, destination, http.MethodGet, withQuery("/_matrix/federation/v1/publicRooms", q), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SearchPublicRooms asks POST /_matrix/federation/v1/publicRooms, which
// takes a filter.
func (c *Client) SearchPublicRooms(ctx context.Context, destination string, req *PublicRoomsRequest) (*PublicRoomsResponse, error) {
	var out PublicRoomsResponse
	if err := c.Do(ctx, destination, http.MethodPost, "/_matrix/federation/v1/publicRooms", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// HierarchyRoom is a room of a hierarchy answer, with the m.space.child
// events of a space.
type HierarchyRoom struct {
	PublicRoom
	AllowedRoomIDs []string          `json:"allowed_room_ids,omitempty"`
	Encryption     string            `json:"encryption,omitempty"`
	RoomVersion    string            `json:"room_version,omitempty"`
	ChildrenState  []ChildStateEvent `json:"children_state"`
}

// ChildStateEvent is a stripped m.space.child event: its state key is the
// child's room id.
type ChildStateEvent struct {
	StateKey       string          `json:"state_key"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
	Content        json.RawMessage `json:"content"`
}

// HierarchyResponse is the answer of hierarchy: the room, its children
// the server could describe, and those the asking server may not see.
type HierarchyResponse struct {
	Room                 HierarchyRoom   `json:"room"`
	Children             []HierarchyRoom `json:"children"`
	InaccessibleChildren []string        `json:"inaccessible_children"`
}

// Hierarchy asks GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only=….
func (c *Client) Hierarchy(ctx context.Context, destination, roomID string, suggestedOnly bool) (*HierarchyResponse, error) {
	q := url.Values{"suggested_only": {strconv.FormatBool(suggestedOnly)}}
	var out HierarchyResponse
	if err := c.Do(ctx, destination, http.MethodGet, withQuery(fedPath("/_matrix/federation/v1/hierarchy/", roomID), q), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
