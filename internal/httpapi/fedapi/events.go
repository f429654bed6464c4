package fedapi

import (
	"encoding/json"
	"strings"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
)

// roomGuard admits origin to a room-scoped endpoint: the room must be
// known here and its server ACL must not deny origin.
func (a *API) roomGuard(r *httputil.Request, origin, roomID string) error {
	if a.Rooms == nil {
		return errcode.Unrecognized("rooms are not served over federation here")
	}
	if _, err := id.ParseRoomID(roomID); err != nil {
		return errcode.InvalidParam("invalid room id")
	}
	ok, err := a.Rooms.ServerACLAllows(r.Context(), roomID, origin)
	if err != nil {
		return err
	}
	if !ok {
		return errcode.Forbidden("server %s is denied by the room's server ACL", origin)
	}
	return nil
}

// GET /_matrix/federation/v1/timestamp_to_event/{roomId}
func (a *API) timestampToEvent(r *httputil.Request) (any, error) {
	origin := r.Origin
	roomID := r.Var("roomId")
	if err := a.roomGuard(r, origin, roomID); err != nil {
		return nil, err
	}
	ts, err := r.QueryInt("ts", -1)
	if err != nil {
		return nil, err
	}
	if ts < 0 {
		return nil, errcode.MissingParam("ts is required")
	}
	dir := r.Query("dir")
	if dir != "b" && dir != "f" {
		return nil, errcode.InvalidParam("dir must be b or f")
	}
	return a.RoomFed.ServeTimestampToEvent(r.Context(), origin, roomID, ts, dir == "b")
}

// GET /_matrix/federation/v1/event/{eventId}
func (a *API) getEvent(r *httputil.Request) (any, error) {
	origin := r.Origin
	if a.Rooms == nil {
		return nil, errcode.Unrecognized("rooms are not served over federation here")
	}
	raw, roomID, err := a.RoomFed.EventForServer(r.Context(), origin, r.Var("eventId"))
	if err != nil {
		return nil, err
	}
	if err := a.roomGuard(r, origin, roomID); err != nil {
		return nil, err
	}
	return map[string]any{"origin": a.Config.ServerName, "origin_server_ts": nowMS(), "pdus": []json.RawMessage{raw}}, nil
}

// stateAt answers the state and auth chain ids that the state and
// state_ids endpoints ask for (the room's state at their event_id).
func (a *API) stateAt(r *httputil.Request, origin string) (state, chain []string, err error) {
	roomID := r.Var("roomId")
	if err := a.roomGuard(r, origin, roomID); err != nil {
		return nil, nil, err
	}
	eventID := r.Query("event_id")
	if eventID == "" {
		return nil, nil, errcode.MissingParam("event_id is required")
	}
	return a.RoomFed.StateForServer(r.Context(), origin, roomID, eventID)
}

// GET /_matrix/federation/v1/state_ids/{roomId}
func (a *API) getStateIDs(r *httputil.Request) (any, error) {
	state, chain, err := a.stateAt(r, r.Origin)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pdu_ids": nonNil(state), "auth_chain_ids": nonNil(chain)}, nil
}

// GET /_matrix/federation/v1/state/{roomId}
func (a *API) getState(r *httputil.Request) (any, error) {
	state, chain, err := a.stateAt(r, r.Origin)
	if err != nil {
		return nil, err
	}
	pdus, err := a.Rooms.PDUs(r.Context(), state)
	if err != nil {
		return nil, err
	}
	authChain, err := a.Rooms.PDUs(r.Context(), chain)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pdus": pdus, "auth_chain": authChain}, nil
}

// GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}
func (a *API) getEventAuth(r *httputil.Request) (any, error) {
	origin := r.Origin
	roomID := r.Var("roomId")
	if err := a.roomGuard(r, origin, roomID); err != nil {
		return nil, err
	}
	chain, err := a.RoomFed.EventAuthForServer(r.Context(), origin, roomID, r.Var("eventId"))
	if err != nil {
		return nil, err
	}
	pdus, err := a.Rooms.PDUs(r.Context(), chain)
	if err != nil {
		return nil, err
	}
	return map[string]any{"auth_chain": pdus}, nil
}

// maxBackfill bounds limit on backfill and get_missing_events.
const maxBackfill = 100

// GET /_matrix/federation/v1/backfill/{roomId}
func (a *API) backfill(r *httputil.Request) (any, error) {
	origin := r.Origin
	roomID := r.Var("roomId")
	if err := a.roomGuard(r, origin, roomID); err != nil {
		return nil, err
	}
	from := r.URL.Query()["v"]
	if len(from) == 0 {
		return nil, errcode.MissingParam("v is required")
	}
	if len(from) > 20 {
		return nil, errcode.InvalidParam("too many v")
	}
	limit, err := r.QueryInt("limit", 0)
	if err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, errcode.InvalidParam("limit must be a positive integer")
	}
	pdus, err := a.RoomFed.Backfill(r.Context(), origin, roomID, from, int(min(limit, maxBackfill)))
	if err != nil {
		return nil, err
	}
	return map[string]any{"origin": a.Config.ServerName, "origin_server_ts": nowMS(), "pdus": pdus}, nil
}

// POST /_matrix/federation/v1/get_missing_events/{roomId}
func (a *API) getMissingEvents(r *httputil.Request) (any, error) {
	origin := r.Origin
	roomID := r.Var("roomId")
	if err := a.roomGuard(r, origin, roomID); err != nil {
		return nil, err
	}
	var body struct {
		EarliestEvents []string `json:"earliest_events"`
		LatestEvents   []string `json:"latest_events"`
		Limit          *int     `json:"limit"`
		MinDepth       int64    `json:"min_depth"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.EarliestEvents == nil || body.LatestEvents == nil {
		return nil, errcode.BadJSON("earliest_events and latest_events are required")
	}
	if len(body.EarliestEvents) > 100 || len(body.LatestEvents) > 20 {
		return nil, errcode.InvalidParam("too many events")
	}
	limit := 10
	if body.Limit != nil {
		limit = *body.Limit
	}
	if limit < 1 {
		return map[string]any{"events": []json.RawMessage{}}, nil
	}
	evs, err := a.RoomFed.MissingEvents(r.Context(), origin, roomID, body.EarliestEvents, body.LatestEvents, min(limit, maxBackfill), body.MinDepth)
	if err != nil {
		return nil, err
	}
	return map[string]any{"events": evs}, nil
}

// GET /_matrix/federation/v1/query/directory
func (a *API) queryDirectory(r *httputil.Request) (any, error) {
	alias := r.Query("room_alias")
	if alias == "" {
		return nil, errcode.MissingParam("room_alias is required")
	}
	if !strings.HasPrefix(alias, "#") || !strings.HasSuffix(alias, ":"+a.Config.ServerName) {
		return nil, errcode.NotFound("room alias %s is not on this server", alias)
	}
	roomID, err := a.Rooms.LocalAlias(r.Context(), alias)
	if err != nil {
		return nil, err
	}
	if err := a.roomGuard(r, r.Origin, roomID); err != nil {
		return nil, err
	}
	servers, err := a.Rooms.RoomServers(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"room_id": roomID, "servers": servers}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
