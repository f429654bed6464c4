package fedapi

import (
	"encoding/json"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/roomfed"
)

// makeMembership serves make_join, make_leave and make_knock.
func (a *API) makeMembership(r *httputil.Request, origin, membership string) (any, error) {
	roomID, userID := r.Var("roomId"), r.Var("userId")
	if err := a.roomGuard(r, origin, roomID); err != nil {
		return nil, err
	}
	if _, err := id.ParseUserID(userID); err != nil {
		return nil, errcode.InvalidParam("invalid user id")
	}
	versions := r.URL.Query()["ver"]
	if len(versions) == 0 {
		versions = []string{"1"} // the spec's default when ver is absent
	}
	version, tmpl, err := a.RoomFed.MakeMembership(r.Context(), origin, roomID, userID, membership, versions)
	if err != nil {
		return nil, err
	}
	return map[string]any{"room_version": version, "event": tmpl}, nil
}

// GET /_matrix/federation/v1/make_join/{roomId}/{userId}
func (a *API) makeJoin(r *httputil.Request) (any, error) {
	return a.makeMembership(r, r.Origin, "join")
}

// GET /_matrix/federation/v1/make_leave/{roomId}/{userId}
func (a *API) makeLeave(r *httputil.Request) (any, error) {
	return a.makeMembership(r, r.Origin, "leave")
}

// GET /_matrix/federation/v1/make_knock/{roomId}/{userId}
func (a *API) makeKnock(r *httputil.Request) (any, error) {
	return a.makeMembership(r, r.Origin, "knock")
}

// sendMembership checks a send_join/leave/knock request's room and hands
// its event to the rooms domain.
func (a *API) sendMembership(r *httputil.Request, origin, membership string, omitMembers bool) (*roomfed.SendMembershipResult, error) {
	roomID := r.Var("roomId")
	if err := a.roomGuard(r, origin, roomID); err != nil {
		return nil, err
	}
	raw, err := a.readEvent(r)
	if err != nil {
		return nil, err
	}
	return a.RoomFed.SendMembership(r.Context(), origin, roomID, r.Var("eventId"), membership, raw, omitMembers)
}

func (a *API) readEvent(r *httputil.Request) (json.RawMessage, error) {
	body, err := r.Body()
	if err != nil {
		return nil, err
	}
	var probe map[string]json.RawMessage
	if err := httputil.DecodeJSON(body, &probe); err != nil {
		return nil, err
	}
	return body, nil
}

// PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}
// omit_members=true asks for a partial-state answer (member events other
// than the heroes' left out, servers_in_room added).
func (a *API) sendJoin(r *httputil.Request) (any, error) {
	omit := false
	switch v := r.URL.Query().Get("omit_members"); v {
	case "", "false":
	case "true":
		omit = true
	default:
		return nil, errcode.InvalidParam("omit_members must be true or false")
	}
	res, err := a.sendMembership(r, r.Origin, "join", omit)
	if err != nil {
		return nil, err
	}
	out := map[string]any{
		"origin": a.Config.ServerName, "members_omitted": res.MembersOmitted,
		"state": nonNilRaw(res.State), "auth_chain": nonNilRaw(res.AuthChain),
	}
	if res.MembersOmitted {
		out["servers_in_room"] = res.ServersInRoom
	}
	if res.Event != nil {
		out["event"] = res.Event
	}
	return out, nil
}

// PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}: the
// deprecated form, the same answer wrapped as [200, {...}].
func (a *API) sendJoinV1(r *httputil.Request) (any, error) {
	res, err := a.sendMembership(r, r.Origin, "join", false)
	if err != nil {
		return nil, err
	}
	return []any{200, map[string]any{
		"origin": a.Config.ServerName,
		"state":  nonNilRaw(res.State), "auth_chain": nonNilRaw(res.AuthChain),
	}}, nil
}

// PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}: answers
// [200, {}].
func (a *API) sendLeaveV1(r *httputil.Request) (any, error) {
	if _, err := a.sendMembership(r, r.Origin, "leave", false); err != nil {
		return nil, err
	}
	return []any{200, struct{}{}}, nil
}

// PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}
func (a *API) sendLeave(r *httputil.Request) (any, error) {
	if _, err := a.sendMembership(r, r.Origin, "leave", false); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}
func (a *API) sendKnock(r *httputil.Request) (any, error) {
	res, err := a.sendMembership(r, r.Origin, "knock", false)
	if err != nil {
		return nil, err
	}
	return map[string]any{"knock_room_state": nonNilRaw(res.Stripped)}, nil
}

// PUT /_matrix/federation/v2/invite/{roomId}/{eventId}
func (a *API) invite(r *httputil.Request) (any, error) {
	origin := r.Origin
	roomID := r.Var("roomId")
	if _, err := id.ParseRoomID(roomID); err != nil {
		return nil, errcode.InvalidParam("invalid room id")
	}
	var body struct {
		Event           json.RawMessage   `json:"event"`
		RoomVersion     string            `json:"room_version"`
		InviteRoomState []json.RawMessage `json:"invite_room_state"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if len(body.Event) == 0 || body.RoomVersion == "" {
		return nil, errcode.BadJSON("event and room_version are required")
	}
	// A room we are in applies its ACL; for others we only have the
	// inviter's word.
	if ok, err := a.Rooms.ServerACLAllows(r.Context(), roomID, origin); err == nil && !ok {
		return nil, errcode.Forbidden("server %s is denied by the room's server ACL", origin)
	}
	signed, err := a.RoomFed.ReceiveInvite(r.Context(), origin, roomID, r.Var("eventId"), body.RoomVersion, body.Event, body.InviteRoomState)
	if err != nil {
		return nil, err
	}
	return map[string]any{"event": signed}, nil
}

func nonNilRaw(s []json.RawMessage) []json.RawMessage {
	if s == nil {
		return []json.RawMessage{}
	}
	return s
}
