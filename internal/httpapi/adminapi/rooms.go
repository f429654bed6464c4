package adminapi

import (
	"encoding/json"

	"luxchat/internal/filter"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/roomadmin"
	"luxchat/internal/roomread"
)

// pageParams reads from, limit (default def, at most 1000) and dir
// (f or b, default dflt).
func pageParams(r *httputil.Request, def int64, dflt string) (from, limit int, backward bool, err error) {
	f, err := r.QueryInt("from", 0)
	if err != nil {
		return 0, 0, false, err
	}
	l, err := r.QueryInt("limit", def)
	if err != nil {
		return 0, 0, false, err
	}
	backward, err = direction(r, dflt)
	return int(min(f, 1<<31)), int(min(l, maxPage)), backward, err
}

// optBool reads an optional boolean query parameter (nil: absent).
func optBool(r *httputil.Request, name string) (*bool, error) {
	if r.Query(name) == "" {
		return nil, nil
	}
	b, err := r.QueryBool(name)
	return &b, err
}

func (a *API) roomAdmin() (*roomadmin.Service, error) {
	if a.RoomAdmin == nil {
		return nil, errcode.Unrecognized("room administration is not available")
	}
	return a.RoomAdmin, nil
}

// GET /_synapse/admin/v1/rooms
func (a *API) listRooms(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	from, limit, backward, err := pageParams(r, 100, "f")
	if err != nil {
		return nil, err
	}
	order := r.Query("order_by")
	if order == "" {
		order = "name"
	}
	if _, ok := roomadmin.Orders[order]; !ok {
		return nil, errcode.InvalidParam("unknown order_by %q", order)
	}
	q := roomadmin.ListQuery{From: from, Limit: limit, OrderBy: order, Backward: backward, Search: r.Query("search_term")}
	if q.Public, err = optBool(r, "public_rooms"); err != nil {
		return nil, err
	}
	if q.Empty, err = optBool(r, "empty_rooms"); err != nil {
		return nil, err
	}
	rooms, total, err := ra.List(r.Context(), q)
	if err != nil {
		return nil, err
	}
	if rooms == nil {
		rooms = []roomadmin.Room{}
	}
	out := map[string]any{"rooms": rooms, "offset": from, "total_rooms": total}
	if int64(from+len(rooms)) < total && len(rooms) > 0 {
		out["next_batch"] = from + len(rooms)
	}
	if from > 0 {
		out["prev_batch"] = max(0, from-limit)
	}
	return out, nil
}

// GET /_synapse/admin/v1/rooms/{roomId}
func (a *API) roomDetails(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	return ra.Details(r.Context(), r.Var("roomId"))
}

// GET /_synapse/admin/v1/rooms/{roomId}/members
func (a *API) roomMembers(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	members, err := ra.Members(r.Context(), r.Var("roomId"))
	if err != nil {
		return nil, err
	}
	return map[string]any{"members": members, "total": len(members)}, nil
}

// GET /_synapse/admin/v1/rooms/{roomId}/state
func (a *API) roomState(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	st, err := ra.State(r.Context(), r.Var("roomId"), r.Query("type"))
	if err != nil {
		return nil, err
	}
	return map[string]any{"state": st}, nil
}

// GET /_synapse/admin/v1/rooms/{roomId}/messages: the client API's
// /messages as an administrator sees the room (every event).
func (a *API) roomMessages(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	if err := roomadmin.CheckRoomID(r.Var("roomId")); err != nil {
		return nil, err
	}
	l, err := r.QueryInt("limit", 10)
	if err != nil {
		return nil, err
	}
	limit := int(min(l, 1000))
	dir := r.Query("dir")
	if dir == "" {
		dir = "f"
	}
	if dir != "f" && dir != "b" {
		return nil, errcode.InvalidParam("dir must be f or b")
	}
	backward := dir == "b"
	var f *filter.RoomEventFilter
	if raw := r.Query("filter"); raw != "" {
		f = new(filter.RoomEventFilter)
		if err := json.Unmarshal([]byte(raw), f); err != nil {
			return nil, errcode.InvalidParam("invalid filter: %v", err)
		}
		if f.Limit != nil {
			if *f.Limit < 0 {
				return nil, errcode.InvalidParam("invalid filter: limit must not be negative")
			}
			limit = min(*f.Limit, 1000)
		}
	}
	page, err := ra.Messages(r.Context(), roomread.MessagesRequest{RoomID: r.Var("roomId"), UserID: r.Session.UserID,
		From: r.Query("from"), To: r.Query("to"), Backward: backward, Limit: max(limit, 1), Filter: f})
	if err != nil {
		return nil, err
	}
	return &httputil.Response{Raw: page.JSON()}, nil
}

// DELETE /_synapse/admin/v2/rooms/{roomId}: starts the room's deletion
// in the background and answers its delete_id.
func (a *API) deleteRoom(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	raw, err := r.Body()
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, errcode.NotJSON("the body must be a JSON object, at least {}")
	}
	var body struct {
		NewRoomUserID string `json:"new_room_user_id"`
		RoomName      string `json:"room_name"`
		Message       string `json:"message"`
		Block         bool   `json:"block"`
		Purge         *bool  `json:"purge"`
		ForcePurge    bool   `json:"force_purge"`
	}
	if err := httputil.DecodeJSON(raw, &body); err != nil {
		return nil, err
	}
	req := roomadmin.DeleteRequest{NewRoomUserID: body.NewRoomUserID, RoomName: body.RoomName, Message: body.Message,
		Block: body.Block, Purge: body.Purge == nil || *body.Purge, ForcePurge: body.ForcePurge}
	id, err := ra.StartDelete(r.Context(), r.Var("roomId"), r.Session.UserID, req)
	if err != nil {
		return nil, err
	}
	return map[string]string{"delete_id": id}, nil
}

// GET /_synapse/admin/v2/rooms/{roomId}/delete_status
func (a *API) roomDeleteStatus(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	st, err := ra.RoomDeleteStatus(r.Context(), r.Var("roomId"))
	if err != nil {
		return nil, err
	}
	return map[string]any{"results": st}, nil
}

// GET /_synapse/admin/v2/rooms/delete_status/{deleteId}
func (a *API) deleteStatus(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	return ra.DeleteStatusOf(r.Context(), r.Var("deleteId"))
}

// PUT /_synapse/admin/v1/rooms/{roomId}/block
func (a *API) putRoomBlock(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	var body struct {
		Block *bool `json:"block"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Block == nil {
		return nil, errcode.MissingParam("block is required")
	}
	if err := ra.Block(r.Context(), r.Var("roomId"), r.Session.UserID, *body.Block); err != nil {
		return nil, err
	}
	return map[string]bool{"block": *body.Block}, nil
}

// GET /_synapse/admin/v1/rooms/{roomId}/block
func (a *API) getRoomBlock(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	by, blocked, err := ra.BlockStatus(r.Context(), r.Var("roomId"))
	if err != nil {
		return nil, err
	}
	out := map[string]any{"block": blocked}
	if blocked {
		out["user_id"] = by
	}
	return out, nil
}

// POST /_synapse/admin/v1/rooms/{roomIdOrAlias}/make_room_admin
func (a *API) makeRoomAdmin(r *httputil.Request) (any, error) {
	ra, err := a.roomAdmin()
	if err != nil {
		return nil, err
	}
	var body struct {
		UserID string `json:"user_id"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.UserID == "" {
		body.UserID = r.Session.UserID
	}
	if err := ra.MakeRoomAdmin(r.Context(), r.Var("roomId"), body.UserID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// GET /_synapse/admin/v2/rooms/{roomId}/delete_status; other {sub} are
// unknown. (A literal last segment would conflict, in the router's
// patterns, with /v2/rooms/delete_status/{deleteId}.)
func (a *API) roomSub(r *httputil.Request) (any, error) {
	if r.Var("sub") != "delete_status" {
		return nil, errcode.Unrecognized("unrecognized request")
	}
	return a.roomDeleteStatus(r)
}
