package clientapi

import (
	"encoding/json"
	"strings"

	"luxchat/internal/delayed"
	"luxchat/internal/filter"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
)

// POST /createRoom
func (a *API) createRoom(r *httputil.Request) (any, error) {
	var req rooms.CreateRequest
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	if err := a.mayPublishNewRoom(r, req.Visibility); err != nil {
		return nil, err
	}
	if req.RoomAliasName != "" {
		if err := a.AppServices.CheckAliasClaim(r.Session.AppService, "#"+req.RoomAliasName+":"+a.Config.ServerName); err != nil {
			return nil, err
		}
	}
	id, err := a.Rooms.CreateRoom(r.Context(), r.Session.UserID, req)
	if err != nil {
		return nil, err
	}
	return map[string]string{"room_id": id}, nil
}

func validRoomID(s string) bool {
	return strings.HasPrefix(s, "!") && len(s) > 1 && len(s) <= 255
}

// lookUpLocalAlias resolves a local alias; one that is unknown but in an
// application service's alias namespace is first asked of the service,
// which may create it (GET /_matrix/app/v1/rooms/{roomAlias}).
func (a *API) lookUpLocalAlias(r *httputil.Request, alias string) (string, error) {
	roomID, err := a.Rooms.LocalAlias(r.Context(), alias)
	if e, ok := errcode.As(err); ok && e.Code == "M_NOT_FOUND" && a.AppServices.QueryAlias(r.Context(), alias) {
		roomID, err = a.Rooms.LocalAlias(r.Context(), alias)
	}
	return roomID, err
}

// resolveRoom accepts a room id or a local alias.
func (a *API) resolveRoom(r *httputil.Request, idOrAlias string) (string, error) {
	switch {
	case strings.HasPrefix(idOrAlias, "!") && validRoomID(idOrAlias):
		return idOrAlias, nil
	case strings.HasPrefix(idOrAlias, "#"):
		return a.lookUpLocalAlias(r, idOrAlias)
	}
	return "", errcode.InvalidParam("not a room id or alias: %q", idOrAlias)
}

type reasonBody struct {
	Reason string `json:"reason"`
}

// membership changes the caller's own membership (join, knock, leave);
// the body's keys besides reason are extra content of a join or knock.
func (a *API) membership(r *httputil.Request, roomID, target, membership string, servers ...string) (string, error) {
	var body map[string]json.RawMessage
	if err := r.ReadJSON(&body); err != nil {
		return "", err
	}
	var reason string
	if raw, ok := body["reason"]; ok && json.Unmarshal(raw, &reason) != nil {
		return "", errcode.BadJSON("reason must be a string")
	}
	c := rooms.MemberChange{RoomID: roomID, Sender: r.Session.UserID, Target: target, Membership: membership, Reason: reason, Servers: servers}
	if membership == "join" || membership == "knock" {
		c.Extra = body
	}
	return a.Rooms.ChangeMembership(r.Context(), c)
}

// POST /join/{roomIdOrAlias}
func (a *API) joinByIDOrAlias(r *httputil.Request) (any, error) {
	roomID, servers, err := a.roomAndServers(r, r.Var("roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	if _, err := a.membership(r, roomID, r.Session.UserID, "join", servers...); err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

// POST /rooms/{roomId}/join
func (a *API) join(r *httputil.Request) (any, error) {
	roomID := r.Var("roomId")
	if !validRoomID(roomID) {
		return nil, errcode.InvalidParam("invalid room id")
	}
	if _, err := a.membership(r, roomID, r.Session.UserID, "join"); err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

// POST /knock/{roomIdOrAlias}
func (a *API) knock(r *httputil.Request) (any, error) {
	roomID, servers, err := a.roomAndServers(r, r.Var("roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	if _, err := a.membership(r, roomID, r.Session.UserID, "knock", servers...); err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

type targetBody struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

func (a *API) targeted(r *httputil.Request, membership string) (any, error) {
	var body targetBody
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.UserID == "" {
		return nil, errcode.MissingParam("user_id is required")
	}
	if _, err := id.ParseUserID(body.UserID); err != nil {
		return nil, errcode.InvalidParam("invalid user_id")
	}
	roomID := r.Var("roomId")
	if membership == "unban" {
		// Unbanning is a leave event sent by a moderator.
		membership = "leave"
		if m, err := a.Rooms.UserMembership(r.Context(), roomID, body.UserID); err != nil || m != "ban" {
			return nil, errcode.Forbidden("user is not banned")
		}
	}
	if membership == "leave" && body.UserID == r.Session.UserID && a.Notices != nil {
		// Kicking oneself is leaving: the same rule for notices rooms.
		if err := a.Notices.CheckLeave(r.Context(), roomID, body.UserID); err != nil {
			return nil, err
		}
	}
	if membership == "leave" && body.UserID != r.Session.UserID {
		// A kick needs the target to be in the room.
		m, err := a.Rooms.UserMembership(r.Context(), roomID, body.UserID)
		if err != nil || (m != "join" && m != "invite" && m != "knock" && m != "ban") {
			if _, verr := a.Rooms.Version(r.Context(), roomID); verr != nil {
				return nil, verr
			}
			return nil, errcode.Forbidden("user is not in the room")
		}
	}
	_, err := a.Rooms.ChangeMembership(r.Context(), rooms.MemberChange{RoomID: roomID, Sender: r.Session.UserID, Target: body.UserID, Membership: membership, Reason: body.Reason})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// POST /rooms/{roomId}/invite
func (a *API) invite(r *httputil.Request) (any, error) {
	roomID := r.Var("roomId")
	var body targetBody
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.UserID == "" {
		return nil, errcode.MissingParam("user_id is required (third-party invites are not supported)")
	}
	if _, err := id.ParseUserID(body.UserID); err != nil {
		return nil, errcode.InvalidParam("invalid user_id")
	}
	if shadowBanned(r) {
		return struct{}{}, nil // the invite goes nowhere
	}
	if m, err := a.Rooms.UserMembership(r.Context(), roomID, body.UserID); err == nil && m == "join" {
		return nil, errcode.Forbidden("user is already in the room")
	} else if err == nil && m == "ban" {
		return nil, errcode.Forbidden("user is banned from the room")
	}
	_, err := a.Rooms.ChangeMembership(r.Context(), rooms.MemberChange{RoomID: roomID, Sender: r.Session.UserID, Target: body.UserID, Membership: "invite", Reason: body.Reason})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// POST /rooms/{roomId}/leave
func (a *API) leave(r *httputil.Request) (any, error) {
	if a.Notices != nil {
		if err := a.Notices.CheckLeave(r.Context(), r.Var("roomId"), r.Session.UserID); err != nil {
			return nil, err
		}
	}
	if _, err := a.membership(r, r.Var("roomId"), r.Session.UserID, "leave"); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// POST /rooms/{roomId}/kick
func (a *API) kick(r *httputil.Request) (any, error) { return a.targeted(r, "leave") }

// POST /rooms/{roomId}/ban
func (a *API) ban(r *httputil.Request) (any, error) { return a.targeted(r, "ban") }

// POST /rooms/{roomId}/unban
func (a *API) unban(r *httputil.Request) (any, error) { return a.targeted(r, "unban") }

// POST /rooms/{roomId}/forget
func (a *API) forget(r *httputil.Request) (any, error) {
	if err := a.Rooms.Forget(r.Context(), r.Var("roomId"), r.Session.UserID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// GET /joined_rooms
func (a *API) joinedRooms(r *httputil.Request) (any, error) {
	ms, err := a.Rooms.Memberships(r.Context(), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	ids := []string{}
	for _, m := range ms {
		if m.Membership == "join" {
			ids = append(ids, m.RoomID)
		}
	}
	return map[string][]string{"joined_rooms": ids}, nil
}

// GET /rooms/{roomId}/joined_members
func (a *API) joinedMembers(r *httputil.Request) (any, error) {
	m, err := a.Read.JoinedMembers(r.Context(), r.Var("roomId"), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"joined": m}, nil
}

// GET /rooms/{roomId}/members
func (a *API) members(r *httputil.Request) (any, error) {
	q := roomread.MembersRequest{RoomID: r.Var("roomId"), UserID: r.Session.UserID, At: r.Query("at"), Membership: r.Query("membership"), NotMembership: r.Query("not_membership")}
	for _, m := range []string{q.Membership, q.NotMembership} {
		switch m {
		case "", "join", "invite", "knock", "leave", "ban":
		default:
			return nil, errcode.InvalidParam("unknown membership %q", m)
		}
	}
	chunk, err := a.Read.Members(r.Context(), q)
	if err != nil {
		return nil, err
	}
	// Already JSON: a list of thousands is not parsed again to be encoded.
	body := make([]byte, 0, len(chunk)+12)
	body = append(append(append(body, `{"chunk":`...), chunk...), '}')
	return json.RawMessage(body), nil
}

// GET /rooms/{roomId}/state
func (a *API) state(r *httputil.Request) (any, error) {
	evs, err := a.Read.State(r.Context(), r.Var("roomId"), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return evs, nil
}

// GET /rooms/{roomId}/state/{eventType}/{stateKey}
func (a *API) stateEvent(r *httputil.Request) (any, error) {
	content, row, err := a.Read.StateContent(r.Context(), r.Var("roomId"), r.Session.UserID, r.Var("eventType"), r.Var("stateKey"))
	if err != nil {
		return nil, err
	}
	if r.Query("format") == "event" {
		return a.Read.ClientEvent(row, roomread.Format{Viewer: r.Session.UserID}), nil
	}
	return content, nil
}

// readObject reads a body that must be a JSON object of at most max bytes.
func readObject(r *httputil.Request, max int) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	raw, err := r.Body()
	if err != nil {
		return nil, err
	}
	if err := httputil.DecodeJSON(raw, &obj); err != nil {
		return nil, err
	}
	if len(raw) > max {
		return nil, errcode.TooLarge("body larger than %d bytes", max)
	}
	return json.RawMessage(raw), nil
}

func readContent(r *httputil.Request) (json.RawMessage, error) {
	return readObject(r, rooms.MaxEventBytes)
}

// PUT /rooms/{roomId}/state/{eventType}/{stateKey}
func (a *API) putState(r *httputil.Request) (any, error) {
	content, err := readContent(r)
	if err != nil {
		return nil, err
	}
	typ, key := r.Var("eventType"), r.Var("stateKey")
	if typ == "m.room.create" {
		return nil, errcode.BadJSON("a room's m.room.create event cannot be replaced")
	}
	if typ == "m.room.member" {
		// Membership goes through the membership endpoints' checks too,
		// but a direct PUT is allowed by the spec; the auth rules decide.
		if !strings.HasPrefix(key, "@") {
			return nil, errcode.BadJSON("m.room.member state key must be a user id")
		}
	}
	if typ == "m.room.canonical_alias" {
		if err := a.checkCanonicalAlias(r, content); err != nil {
			return nil, err
		}
	}
	if delay, ok := delayOf(r); ok && a.Delayed != nil {
		ms, err := a.Delayed.ParseDelay(delay)
		if err != nil {
			return nil, err
		}
		return a.scheduleDelayed(r, delayed.Request{RoomID: r.Var("roomId"), Type: typ, StateKey: &key, DelayMS: ms}, content)
	}
	ts, err := massagedTS(r)
	if err != nil {
		return nil, err
	}
	if shadowBanned(r) {
		return shadowSent()
	}
	id, err := a.Rooms.SendState(r.Context(), r.Var("roomId"), rooms.Proto{Type: typ, StateKey: &key, Sender: r.Session.UserID, Content: content, OriginTS: ts})
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": id}, nil
}

// checkCanonicalAlias enforces that local aliases named by the event point
// at the room (M_BAD_ALIAS otherwise), as the spec requires.
func (a *API) checkCanonicalAlias(r *httputil.Request, content json.RawMessage) error {
	var c struct {
		Alias      *string  `json:"alias"`
		AltAliases []string `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return errcode.BadJSON("invalid m.room.canonical_alias content")
	}
	aliases := c.AltAliases
	if c.Alias != nil && *c.Alias != "" {
		aliases = append(aliases, *c.Alias)
	}
	for _, al := range aliases {
		if !strings.HasPrefix(al, "#") || !strings.Contains(al, ":") {
			return errcode.InvalidParam("invalid alias %q", al)
		}
		if !strings.HasSuffix(al, ":"+a.Config.ServerName) {
			continue
		}
		roomID, err := a.Rooms.LocalAlias(r.Context(), al)
		if err != nil || roomID != r.Var("roomId") {
			return &errcode.Error{Code: "M_BAD_ALIAS", Status: 400, Message: "alias " + al + " does not point to this room"}
		}
	}
	return nil
}

// PUT /rooms/{roomId}/send/{eventType}/{txnId}
func (a *API) send(r *httputil.Request) (any, error) {
	if delay, ok := delayOf(r); ok && a.Delayed != nil {
		return a.sendDelayed(r, delay)
	}
	content, err := readContent(r)
	if err != nil {
		return nil, err
	}
	typ := r.Var("eventType")
	ts, err := massagedTS(r)
	if err != nil {
		return nil, err
	}
	if shadowBanned(r) {
		return shadowSent()
	}
	id, err := a.Rooms.Send(r.Context(), r.Var("roomId"), rooms.Proto{Type: typ, Sender: r.Session.UserID, Content: content, OriginTS: ts},
		&rooms.Txn{DeviceID: r.Session.DeviceID, ID: r.Var("txnId"), Scope: "send/" + r.Var("roomId") + "/" + typ})
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": id}, nil
}

// PUT /rooms/{roomId}/redact/{eventId}/{txnId}
func (a *API) redact(r *httputil.Request) (any, error) {
	var body reasonBody
	raw, err := r.Body()
	if err != nil {
		return nil, err
	}
	if err := httputil.DecodeJSON(raw, &body); err != nil {
		return nil, err
	}
	roomID, target := r.Var("roomId"), r.Var("eventId")
	// A well-formed id of an event we do not have is accepted in a room
	// shared with other servers: the redaction may arrive before the
	// event does.
	if err := eventIDToWrite(target, "eventId"); err != nil {
		return nil, err
	}
	if err := a.Rooms.CheckRedactionTarget(r.Context(), roomID, target); err != nil {
		return nil, err
	}
	if err := a.checkSuspendedRedaction(r, target); err != nil {
		return nil, err
	}
	if shadowBanned(r) {
		return shadowSent()
	}
	v, err := a.Rooms.Version(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	content := map[string]any{}
	if body.Reason != "" {
		content["reason"] = body.Reason
	}
	if v.RedactsInContent {
		content["redacts"] = target
	}
	c, _ := json.Marshal(content)
	id, err := a.Rooms.Send(r.Context(), roomID, rooms.Proto{Type: "m.room.redaction", Sender: r.Session.UserID, Content: c, Redacts: target},
		&rooms.Txn{DeviceID: r.Session.DeviceID, ID: r.Var("txnId"), Scope: "redact/" + roomID + "/" + target})
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": id}, nil
}

// GET /rooms/{roomId}/event/{eventId}
func (a *API) event(r *httputil.Request) (any, error) {
	if err := eventIDToRead(r.Var("eventId")); err != nil {
		return nil, err
	}
	return a.Read.GetEvent(r.Context(), r.Var("roomId"), r.Var("eventId"), r.Session.UserID, r.Session.DeviceID)
}

func parseRoomEventFilter(r *httputil.Request) (*filter.RoomEventFilter, error) {
	raw := r.Query("filter")
	if raw == "" {
		return nil, nil
	}
	var f filter.RoomEventFilter
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		return nil, errcode.InvalidParam("invalid filter: %v", err)
	}
	if f.Limit != nil && *f.Limit < 0 {
		return nil, errcode.InvalidParam("invalid filter: limit must not be negative")
	}
	return &f, nil
}

// GET /rooms/{roomId}/context/{eventId}
func (a *API) context(r *httputil.Request) (any, error) {
	if err := eventIDToRead(r.Var("eventId")); err != nil {
		return nil, err
	}
	limit, err := r.QueryInt("limit", 10)
	if err != nil {
		return nil, err
	}
	f, err := parseRoomEventFilter(r)
	if err != nil {
		return nil, err
	}
	return a.Read.Context(r.Context(), r.Var("roomId"), r.Var("eventId"), r.Session.UserID, r.Session.DeviceID, int(min(max(limit, 0), 100)), f)
}

// GET /rooms/{roomId}/messages
func (a *API) messages(r *httputil.Request) (any, error) {
	limit, err := r.QueryInt("limit", 10)
	if err != nil {
		return nil, err
	}
	dir := r.Query("dir")
	if dir != "b" && dir != "f" {
		// Whoever may not read the room learns that first.
		if err := a.Rooms.MayRead(r.Context(), r.Var("roomId"), r.Session.UserID); err != nil {
			return nil, err
		}
		return nil, errcode.InvalidParam("dir must be b or f")
	}
	f, err := parseRoomEventFilter(r)
	if err != nil {
		return nil, err
	}
	if f != nil && f.Limit != nil {
		limit = int64(*f.Limit)
	}
	page, err := a.Read.Messages(r.Context(), roomread.MessagesRequest{
		RoomID: r.Var("roomId"), UserID: r.Session.UserID, DeviceID: r.Session.DeviceID,
		From: r.Query("from"), To: r.Query("to"), Backward: dir == "b", Limit: int(min(max(limit, 1), 1000)), Filter: f,
	})
	if err != nil {
		return nil, err
	}
	return &httputil.Response{Raw: page.JSON()}, nil
}

// GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event
func (a *API) timestampToEvent(r *httputil.Request) (any, error) {
	ts, err := r.QueryInt("ts", -1)
	if err != nil || ts < 0 {
		return nil, errcode.InvalidParam("ts must be a timestamp")
	}
	dir := r.Query("dir")
	if dir != "b" && dir != "f" {
		return nil, errcode.InvalidParam("dir must be b or f")
	}
	return a.RoomFed.TimestampToEvent(r.Context(), r.Var("roomId"), r.Session.UserID, ts, dir == "b")
}

// GET /rooms/{roomId}/aliases
func (a *API) roomAliases(r *httputil.Request) (any, error) {
	al, err := a.Read.LocalAliases(r.Context(), r.Var("roomId"), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return map[string][]string{"aliases": al}, nil
}

func (a *API) localAlias(r *httputil.Request) (string, error) {
	alias := r.Var("roomAlias")
	if !strings.HasPrefix(alias, "#") || !strings.Contains(alias, ":") || len(alias) > 255 {
		return "", errcode.InvalidParam("invalid room alias")
	}
	return alias, nil
}

// GET /directory/room/{roomAlias}
func (a *API) getAlias(r *httputil.Request) (any, error) {
	alias, err := a.localAlias(r)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(alias, ":"+a.Config.ServerName) {
		roomID, servers, err := a.RoomFed.QueryAlias(r.Context(), alias)
		if err != nil {
			return nil, err
		}
		return map[string]any{"room_id": roomID, "servers": servers}, nil
	}
	roomID, err := a.lookUpLocalAlias(r, alias)
	if err != nil {
		return nil, err
	}
	// The servers in the room (ours first) can help others join it.
	servers, err := a.Rooms.RoomServers(r.Context(), roomID)
	if err != nil {
		servers = []string{a.Config.ServerName}
	}
	return map[string]any{"room_id": roomID, "servers": servers}, nil
}

// PUT /directory/room/{roomAlias}
func (a *API) putAlias(r *httputil.Request) (any, error) {
	alias, err := a.localAlias(r)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(alias, ":"+a.Config.ServerName) {
		return nil, errcode.InvalidParam("alias must be on this server")
	}
	var body struct {
		RoomID string `json:"room_id"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if err := a.AppServices.CheckAliasClaim(r.Session.AppService, alias); err != nil {
		return nil, err
	}
	if err := a.Rooms.CreateAlias(r.Context(), alias, body.RoomID, r.Session.UserID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// DELETE /directory/room/{roomAlias}
func (a *API) deleteAlias(r *httputil.Request) (any, error) {
	alias, err := a.localAlias(r)
	if err != nil {
		return nil, err
	}
	if err := a.Rooms.DeleteAlias(r.Context(), alias, r.Session.UserID, r.Session.IsAdmin); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// POST /rooms/{roomId}/upgrade
func (a *API) upgrade(r *httputil.Request) (any, error) {
	var body struct {
		NewVersion         string          `json:"new_version"`
		AdditionalCreators json.RawMessage `json:"additional_creators"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.NewVersion == "" {
		return nil, errcode.MissingParam("new_version is required")
	}
	var extra []string
	if len(body.AdditionalCreators) > 0 && string(body.AdditionalCreators) != "null" {
		if err := json.Unmarshal(body.AdditionalCreators, &extra); err != nil {
			return nil, errcode.BadJSON("additional_creators must be an array of user ids")
		}
	}
	id, err := a.Rooms.Upgrade(r.Context(), r.Session.UserID, r.Var("roomId"), body.NewVersion, extra)
	if err != nil {
		return nil, err
	}
	return map[string]string{"replacement_room": id}, nil
}

// massagedTS is the ts query parameter of an application service's send
// ("Timestamp massaging"); 0 for other callers and when absent.
func massagedTS(r *httputil.Request) (int64, error) {
	if r.Session.AppService == "" || r.Query("ts") == "" {
		return 0, nil
	}
	ts, err := r.QueryInt("ts", 0)
	if err != nil || ts <= 0 || ts > 1<<53 {
		return 0, errcode.InvalidParam("ts must be a timestamp in milliseconds")
	}
	return ts, nil
}
