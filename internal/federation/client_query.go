package federation

import (
	"context"
	"net/http"
	"net/url"
)

// The query endpoints: facts another server holds about its own users and
// aliases.

// QueryProfileResponse is the answer of query/profile.
type QueryProfileResponse struct {
	DisplayName string `json:"displayname"`
	AvatarURL   string `json:"avatar_url"`
}

// QueryProfile asks GET /_matrix/federation/v1/query/profile?user_id=…
// for a user's whole profile.
func (c *Client) QueryProfile(ctx context.Context, destination, userID string) (*QueryProfileResponse, error) {
	var out QueryProfileResponse
	if err := c.Do(ctx, destination, http.MethodGet, withQuery("/_matrix/federation/v1/query/profile", url.Values{"user_id": {userID}}), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QueryDirectoryResponse is the answer of query/directory: the room an
// alias names and servers in it.
type QueryDirectoryResponse struct {
	RoomID  string   `json:"room_id"`
	Servers []string `json:"servers"`
}

// QueryDirectory asks GET /_matrix/federation/v1/query/directory?room_alias=….
func (c *Client) QueryDirectory(ctx context.Context, destination, alias string) (*QueryDirectoryResponse, error) {
	var out QueryDirectoryResponse
	if err := c.Do(ctx, destination, http.MethodGet, withQuery("/_matrix/federation/v1/query/directory", url.Values{"room_alias": {alias}}), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
