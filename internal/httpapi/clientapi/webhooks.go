package clientapi

import (
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// luxAdmin is the prefix of luxchat's own administration API.
const luxAdmin = "/_luxchat/admin/v1"

func (a *API) webhookRoutes() []route {
	return []route{
		{"POST " + luxAdmin + "/webhooks", user, a.createWebhook, nil},
		{"GET " + luxAdmin + "/webhooks", user, a.listWebhooks, nil},
		{"POST " + luxAdmin + "/webhooks/{hookId}/rotate", user, a.rotateWebhook, nil},
		{"DELETE " + luxAdmin + "/webhooks/{hookId}", user, a.revokeWebhook, nil},
	}
}

func requireAdmin(r *httputil.Request) error {
	if !r.Session.IsAdmin {
		return errcode.Forbidden("you are not a server administrator")
	}
	return nil
}

// POST /_luxchat/admin/v1/webhooks {"room": id or local alias, "name"}:
// makes a hook and returns it with its secret URL, shown this once.
func (a *API) createWebhook(r *httputil.Request) (any, error) {
	if err := requireAdmin(r); err != nil {
		return nil, err
	}
	var body struct {
		Room   string `json:"room"`
		RoomID string `json:"room_id"`
		Name   string `json:"name"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	room := body.Room
	if room == "" {
		room = body.RoomID
	}
	if room == "" {
		return nil, errcode.MissingParam("room is required (a room id or alias)")
	}
	roomID, err := a.resolveRoom(r, room)
	if err != nil {
		return nil, err
	}
	h, err := a.Webhooks.Create(r.Context(), roomID, body.Name, r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"webhook": h, "bot_user_id": a.Webhooks.BotUserID()}, nil
}

// GET /_luxchat/admin/v1/webhooks: every hook, revoked ones too, without
// their URLs (only their secrets' hashes are kept).
func (a *API) listWebhooks(r *httputil.Request) (any, error) {
	if err := requireAdmin(r); err != nil {
		return nil, err
	}
	hs, err := a.Webhooks.List(r.Context())
	if err != nil {
		return nil, err
	}
	return map[string]any{"webhooks": hs}, nil
}

// POST /_luxchat/admin/v1/webhooks/{hookId}/rotate: a new secret URL; the
// old one is 404 from now on.
func (a *API) rotateWebhook(r *httputil.Request) (any, error) {
	if err := requireAdmin(r); err != nil {
		return nil, err
	}
	h, err := a.Webhooks.Rotate(r.Context(), r.Var("hookId"))
	if err != nil {
		return nil, err
	}
	return map[string]any{"webhook": h}, nil
}

// DELETE /_luxchat/admin/v1/webhooks/{hookId}: revokes the hook.
func (a *API) revokeWebhook(r *httputil.Request) (any, error) {
	if err := requireAdmin(r); err != nil {
		return nil, err
	}
	if err := a.Webhooks.Revoke(r.Context(), r.Var("hookId")); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
