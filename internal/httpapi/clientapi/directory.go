package clientapi

import (
	"luxchat/internal/directory"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// GET /_matrix/client/v3/publicRooms
func (a *API) getPublicRooms(r *httputil.Request) (any, error) {
	req, err := directory.PublicRoomsQuery(r)
	if err != nil {
		return nil, err
	}
	return a.publicRoomsFrom(r, req, true)
}

// POST /_matrix/client/v3/publicRooms
func (a *API) postPublicRooms(r *httputil.Request) (any, error) {
	var req directory.PublicRoomsRequest
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	return a.publicRoomsFrom(r, req, false)
}

// publicRoomsFrom answers from our directory, or from the one of the
// server named by ?server= over federation.
func (a *API) publicRoomsFrom(r *httputil.Request, req directory.PublicRoomsRequest, get bool) (any, error) {
	server := r.Query("server")
	if server == "" || server == a.Config.ServerName {
		return a.Directory.PublicRooms(r.Context(), req)
	}
	if r.Session == nil {
		// Anonymous callers do not get to make us contact other servers.
		return nil, errcode.MissingToken("an access token is required to list another server's rooms")
	}
	return a.Directory.RemotePublicRooms(r.Context(), server, req, get)
}

// GET /_matrix/client/v3/directory/list/room/{roomId}
func (a *API) getRoomVisibility(r *httputil.Request) (any, error) {
	v, err := a.Directory.Visibility(r.Context(), r.Var("roomId"))
	if err != nil {
		return nil, err
	}
	return map[string]string{"visibility": v}, nil
}

// PUT /_matrix/client/v3/directory/list/room/{roomId}
func (a *API) putRoomVisibility(r *httputil.Request) (any, error) {
	var body struct {
		Visibility *string `json:"visibility"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	v := "public"
	if body.Visibility != nil {
		v = *body.Visibility
	}
	c := directory.Caller{UserID: r.Session.UserID, IsAdmin: r.Session.IsAdmin}
	if err := a.Directory.SetVisibility(r.Context(), c, r.Var("roomId"), v); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// POST /_matrix/client/v3/user_directory/search
func (a *API) searchUserDirectory(r *httputil.Request) (any, error) {
	var body struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int64  `json:"limit"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.SearchTerm == nil {
		return nil, errcode.MissingParam("search_term is required")
	}
	if len(*body.SearchTerm) > 1000 {
		return nil, errcode.InvalidParam("search_term is too long")
	}
	limit := 0
	if body.Limit != nil {
		if *body.Limit < 0 {
			return nil, errcode.InvalidParam("limit must not be negative")
		}
		limit = int(min(*body.Limit, 1000))
	}
	return a.Directory.SearchUsers(r.Context(), r.Session.UserID, *body.SearchTerm, limit)
}

// GET /_matrix/client/v1/rooms/{roomId}/hierarchy
func (a *API) hierarchy(r *httputil.Request) (any, error) {
	req := directory.HierarchyRequest{RoomID: r.Var("roomId"), From: r.Query("from")}
	var err error
	if req.SuggestedOnly, err = r.QueryBool("suggested_only"); err != nil {
		return nil, err
	}
	if r.Query("limit") != "" {
		n, err := r.QueryInt("limit", 0)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return nil, errcode.InvalidParam("limit must be greater than zero")
		}
		req.Limit = int(min(n, 1000))
	}
	if r.Query("max_depth") != "" {
		n, err := r.QueryInt("max_depth", 0)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, errcode.InvalidParam("max_depth must not be negative")
		}
		d := int(min(n, 1000))
		req.MaxDepth = &d
	}
	return a.Directory.Hierarchy(r.Context(), r.Session.UserID, req)
}

// mayViewProfile applies profile.require_shared_room to a profile read.
func (a *API) mayViewProfile(r *httputil.Request, target string) error {
	if a.Directory == nil {
		return nil
	}
	requester := ""
	if r.Session != nil {
		requester = r.Session.UserID
	}
	return a.Directory.MayViewProfile(r.Context(), requester, target)
}

// mayPublishNewRoom applies directory.room_publication to createRoom with
// visibility public: the creator holds every power in the new room, so
// only the server's policy can refuse.
func (a *API) mayPublishNewRoom(r *httputil.Request, visibility string) error {
	if visibility != "public" || a.Directory == nil {
		return nil
	}
	return a.Directory.MayPublish(directory.Caller{UserID: r.Session.UserID, IsAdmin: r.Session.IsAdmin})
}
