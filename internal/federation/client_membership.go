package federation

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// The membership handshakes with a server in the room (make_* asks for
// a template, send_* sends the signed event) and invites, which the
// invitee's server countersigns.

// MakeResponse is the answer of make_join, make_knock and make_leave: the
// room version and a template of the membership event.
type MakeResponse struct {
	RoomVersion string          `json:"room_version"`
	Event       json.RawMessage `json:"event"`
}

// MakeJoin asks GET /_matrix/federation/v1/make_join/{roomId}/{userId},
// with the room versions we support (one ver parameter each).
func (c *Client) MakeJoin(ctx context.Context, destination, roomID, userID string, versions []string) (*MakeResponse, error) {
	return c.makeMembership(ctx, destination, "make_join", roomID, userID, url.Values{"ver": versions})
}

// MakeKnock asks GET /_matrix/federation/v1/make_knock/{roomId}/{userId},
// with the room versions we support (one ver parameter each).
func (c *Client) MakeKnock(ctx context.Context, destination, roomID, userID string, versions []string) (*MakeResponse, error) {
	return c.makeMembership(ctx, destination, "make_knock", roomID, userID, url.Values{"ver": versions})
}

// MakeLeave asks GET /_matrix/federation/v1/make_leave/{roomId}/{userId}.
func (c *Client) MakeLeave(ctx context.Context, destination, roomID, userID string) (*MakeResponse, error) {
	return c.makeMembership(ctx, destination, "make_leave", roomID, userID, nil)
}

func (c *Client) makeMembership(ctx context.Context, destination, endpoint, roomID, userID string, q url.Values) (*MakeResponse, error) {
	if len(q["ver"]) == 0 {
		q = nil
	}
	var out MakeResponse
	if err := c.Do(ctx, destination, http.MethodGet, withQuery(fedPath("/_matrix/federation/v1/"+endpoint+"/", roomID, userID), q), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SendJoinResponse is the answer of send_join (v2): the room's state and
// auth chain, and the event countersigned when the join was restricted.
// MembersOmitted says the state lacks most member events (a partial-state
// answer); ServersInRoom then lists where to fetch them.
type SendJoinResponse struct {
	State          []json.RawMessage `json:"state"`
	AuthChain      []json.RawMessage `json:"auth_chain"`
	Event          json.RawMessage   `json:"event"`
	MembersOmitted bool              `json:"members_omitted"`
	ServersInRoom  []string          `json:"servers_in_room"`
}

// SendJoin sends PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}.
// omitMembers asks for a partial-state answer (omit_members=true).
func (c *Client) SendJoin(ctx context.Context, destination, roomID, eventID string, event json.RawMessage, omitMembers bool) (*SendJoinResponse, error) {
	var q url.Values
	if omitMembers {
		q = url.Values{"omit_members": {"true"}}
	}
	var out SendJoinResponse
	if err := c.Do(ctx, destination, http.MethodPut, withQuery(fedPath("/_matrix/federation/v2/send_join/", roomID, eventID), q), event, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SendKnockResponse is the answer of send_knock: stripped state for the
// knocking user's clients.
type SendKnockResponse struct {
	KnockRoomState []json.RawMessage `json:"knock_room_state"`
}

// SendKnock sends PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}.
func (c *Client) SendKnock(ctx context.Context, destination, roomID, eventID string, event json.RawMessage) (*SendKnockResponse, error) {
	var out SendKnockResponse
	if err := c.Do(ctx, destination, http.MethodPut, fedPath("/_matrix/federation/v1/send_knock/", roomID, eventID), event, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SendLeave sends PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}.
// Its answer is empty, but must be JSON.
func (c *Client) SendLeave(ctx context.Context, destination, roomID, eventID string, event json.RawMessage) error {
	var out json.RawMessage
	return c.Do(ctx, destination, http.MethodPut, fedPath("/_matrix/federation/v2/send_leave/", roomID, eventID), event, &out)
}

// InviteRequest is the body of invite (v2): the invite event, the room's
// version and stripped state (full PDUs since spec v1.16) for the
// invitee's clients.
type InviteRequest struct {
	Event           json.RawMessage   `json:"event"`
	RoomVersion     string            `json:"room_version"`
	InviteRoomState []json.RawMessage `json:"invite_room_state"`
}

// InviteResponse is the answer of invite: the event, countersigned by
// the invitee's server.
type InviteResponse struct {
	Event json.RawMessage `json:"event"`
}

// Invite sends PUT /_matrix/federation/v2/invite/{roomId}/{eventId}.
func (c *Client) Invite(ctx context.Context, destination, roomID, eventID string, req *InviteRequest) (*InviteResponse, error) {
	var out InviteResponse
	if err := c.Do(ctx, destination, http.MethodPut, fedPath("/_matrix/federation/v2/invite/", roomID, eventID), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
