package clientapi

import (
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// Account data types the server manages itself.
var serverManaged = map[string]bool{"m.fully_read": true, "m.push_rules": true}

func (a *API) getAccountDataFor(r *httputil.Request, roomID, typ string) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	if typ == "m.push_rules" && roomID == "" && a.Push != nil {
		// The rules in force, also before the user changed any.
		return a.Push.RulesEvent(r.Context(), r.Session.UserID)
	}
	return a.Sync.AccountData(r.Context(), r.Session.UserID, roomID, typ)
}

// GET /user/{userId}/account_data/{type}
func (a *API) getAccountData(r *httputil.Request) (any, error) {
	return a.getAccountDataFor(r, "", r.Var("type"))
}

// PUT /user/{userId}/account_data/{type}
func (a *API) putAccountData(r *httputil.Request) (any, error) {
	return a.putAccountDataIn(r, "")
}

// putAccountDataIn stores the body as account data of the caller, global
// (roomID "") or for a room.
func (a *API) putAccountDataIn(r *httputil.Request, roomID string) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	typ := r.Var("type")
	if serverManaged[typ] {
		return nil, errcode.BadJSON("%s is managed by the server", typ)
	}
	c, err := readObject(r, 65536)
	if err != nil {
		return nil, err
	}
	// An empty object deletes (MSC3391).
	if err := a.Sync.PutAccountData(r.Context(), r.Session.UserID, roomID, typ, c); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// deleteAccountDataIn deletes an item of the caller's account data
// (MSC3391): incremental syncs see it with empty content, GET and initial
// syncs no longer see it. Deleting what is not there changes nothing.
func (a *API) deleteAccountDataIn(r *httputil.Request, roomID string) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	typ := r.Var("type")
	if serverManaged[typ] {
		return nil, errcode.BadJSON("%s is managed by the server", typ)
	}
	if err := a.Sync.DeleteAccountData(r.Context(), r.Session.UserID, roomID, typ); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// DELETE /user/{userId}/account_data/{type} (MSC3391)
func (a *API) deleteAccountData(r *httputil.Request) (any, error) {
	return a.deleteAccountDataIn(r, "")
}

// DELETE /user/{userId}/rooms/{roomId}/account_data/{type} (MSC3391)
func (a *API) deleteRoomAccountData(r *httputil.Request) (any, error) {
	roomID, err := a.roomForAccountData(r)
	if err != nil {
		return nil, err
	}
	return a.deleteAccountDataIn(r, roomID)
}

func (a *API) roomForAccountData(r *httputil.Request) (string, error) {
	roomID := r.Var("roomId")
	if !validRoomID(roomID) {
		return "", errcode.InvalidParam("invalid room id")
	}
	return roomID, nil
}

// GET /user/{userId}/rooms/{roomId}/account_data/{type}
func (a *API) getRoomAccountData(r *httputil.Request) (any, error) {
	roomID, err := a.roomForAccountData(r)
	if err != nil {
		return nil, err
	}
	return a.getAccountDataFor(r, roomID, r.Var("type"))
}

// PUT /user/{userId}/rooms/{roomId}/account_data/{type}
func (a *API) putRoomAccountData(r *httputil.Request) (any, error) {
	roomID, err := a.roomForAccountData(r)
	if err != nil {
		return nil, err
	}
	return a.putAccountDataIn(r, roomID)
}

// GET /user/{userId}/rooms/{roomId}/tags
func (a *API) getTags(r *httputil.Request) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	roomID, err := a.roomForAccountData(r)
	if err != nil {
		return nil, err
	}
	return a.Sync.RoomTags(r.Context(), r.Session.UserID, roomID)
}

// PUT /user/{userId}/rooms/{roomId}/tags/{tag}
func (a *API) putTag(r *httputil.Request) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	roomID, err := a.roomForAccountData(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Order *float64 `json:"order"`
	}
	raw, err := r.Body()
	if err != nil {
		return nil, err
	}
	if err := httputil.DecodeJSON(raw, &body); err != nil {
		return nil, err
	}
	tag := r.Var("tag")
	if len(tag) > 255 {
		return nil, errcode.InvalidParam("tag too long")
	}
	if err := a.Sync.PutTag(r.Context(), r.Session.UserID, roomID, tag, raw); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// DELETE /user/{userId}/rooms/{roomId}/tags/{tag}
func (a *API) deleteTag(r *httputil.Request) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	roomID, err := a.roomForAccountData(r)
	if err != nil {
		return nil, err
	}
	if err := a.Sync.DeleteTag(r.Context(), r.Session.UserID, roomID, r.Var("tag")); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
