package clientapi

import (
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/roomread"
)

// pageLimit reads limit: def when absent, at least 1, at most 100.
func pageLimit(r *httputil.Request, def int64) (int, error) {
	limit, err := r.QueryInt("limit", def)
	if err != nil {
		return 0, err
	}
	if limit < 1 {
		return 0, errcode.InvalidParam("limit must be greater than zero")
	}
	return int(min(limit, 100)), nil
}

// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]
func (a *API) relations(r *httputil.Request) (any, error) {
	limit, err := pageLimit(r, 50)
	if err != nil {
		return nil, err
	}
	dir := r.Query("dir")
	if dir != "" && dir != "b" && dir != "f" {
		return nil, errcode.InvalidParam("dir must be b or f")
	}
	recurse, err := r.QueryBool("recurse")
	if err != nil {
		return nil, err
	}
	if err := eventIDToRead(r.Var("eventId")); err != nil {
		return nil, err
	}
	return a.Read.Relations(r.Context(), roomread.RelationsRequest{
		RoomID: r.Var("roomId"), EventID: r.Var("eventId"),
		UserID: r.Session.UserID, DeviceID: r.Session.DeviceID,
		RelType: r.Var("relType"), EventType: r.Var("eventType"),
		From: r.Query("from"), To: r.Query("to"), Forward: dir == "f", Limit: limit,
		Recurse: recurse, RecurseGiven: r.URL.Query().Has("recurse"),
	})
}

// GET /_matrix/client/v1/rooms/{roomId}/threads
func (a *API) threads(r *httputil.Request) (any, error) {
	limit, err := pageLimit(r, 20)
	if err != nil {
		return nil, err
	}
	include := r.Query("include")
	if include != "" && include != "all" && include != "participated" {
		return nil, errcode.InvalidParam("include must be all or participated")
	}
	return a.Read.Threads(r.Context(), roomread.ThreadsRequest{
		RoomID: r.Var("roomId"), UserID: r.Session.UserID, DeviceID: r.Session.DeviceID,
		Participated: include == "participated", From: r.Query("from"), Limit: limit,
	})
}
