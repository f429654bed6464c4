package clientapi

import (
	"encoding/json"
	"errors"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Account data types the server manages itself.
var serverManaged = map[string]bool{"m.fully_read": true, "m.push_rules": true}

func (a *API) putAccountDataFor(r *httputil.Request, roomID, typ string, content []byte) error {
	err := a.Store.InTx(r.Context(), func(tx *store.Tx) error {
		if _, err := tx.PutAccountData(r.Context(), r.Session.UserID, roomID, typ, content); err != nil {
			return err
		}
		if a.Directory != nil {
			// The directory choice commits with the account data.
			return a.Directory.AccountDataChanged(r.Context(), tx, r.Session.UserID, roomID, typ, content)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if typ == "m.ignored_user_list" && roomID == "" {
		a.Rooms.ForgetIgnoredUsers(r.Session.UserID)
	}
	if (typ == rooms.InvitePermissionType || typ == rooms.InvitePermissionUnstableType) && roomID == "" {
		a.Rooms.ForgetInvitePolicy(r.Session.UserID)
	}
	a.Sync.Wake(r.Session.UserID)
	return nil
}

func (a *API) getAccountDataFor(r *httputil.Request, roomID, typ string) (any, error) {
	if err := a.ownUser(r); err != nil {
		return nil, err
	}
	if typ == "m.push_rules" && roomID == "" && a.Push != nil {
		// The rules in force, also before the user changed any.
		return a.Push.RulesEvent(r.Context(), r.Session.UserID)
	}
	c, err := a.Store.GetAccountData(r.Context(), r.Session.UserID, roomID, typ)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.AccountDataDeleted(c)) {
		return nil, errcode.NotFound("no account data of that type")
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(c), nil
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
	var members map[string]json.RawMessage
	if json.Unmarshal(c, &members) == nil && len(members) == 0 {
		// An empty object deletes (MSC3391): stored as the deletion mark
		// syncs send on.
		c = json.RawMessage(store.DeletedAccountData)
	}
	if err := a.putAccountDataFor(r, roomID, typ, c); err != nil {
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
	c, err := a.Store.GetAccountData(r.Context(), r.Session.UserID, roomID, typ)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.AccountDataDeleted(c)) {
		return struct{}{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := a.putAccountDataFor(r, roomID, typ, []byte(store.DeletedAccountData)); err != nil {
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

type tagsContent struct {
	Tags map[string]json.RawMessage `json:"tags"`
}

func (a *API) loadTags(r *httputil.Request, roomID string) (*tagsContent, error) {
	t := &tagsContent{Tags: map[string]json.RawMessage{}}
	c, err := a.Store.GetAccountData(r.Context(), r.Session.UserID, roomID, "m.tag")
	if err == nil {
		_ = json.Unmarshal(c, t)
		if t.Tags == nil {
			t.Tags = map[string]json.RawMessage{}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return t, nil
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
	return a.loadTags(r, roomID)
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
	t, err := a.loadTags(r, roomID)
	if err != nil {
		return nil, err
	}
	t.Tags[tag] = raw
	c, _ := json.Marshal(t)
	if err := a.putAccountDataFor(r, roomID, "m.tag", c); err != nil {
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
	t, err := a.loadTags(r, roomID)
	if err != nil {
		return nil, err
	}
	delete(t.Tags, r.Var("tag"))
	c, _ := json.Marshal(t)
	if err := a.putAccountDataFor(r, roomID, "m.tag", c); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
