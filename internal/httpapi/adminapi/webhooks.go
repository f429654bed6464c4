package adminapi

import (
	"strings"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/webhooks"
)

func (a *API) webhooks() (*webhooks.Service, error) {
	if a.Webhooks == nil {
		return nil, errcode.Unrecognized("incoming webhooks are not configured")
	}
	return a.Webhooks, nil
}

// POST /_luxchat/admin/v1/webhooks {"room": id or local alias, "name"}:
// makes a hook and returns it with its secret URL, shown this once.
func (a *API) createWebhook(r *httputil.Request) (any, error) {
	wh, err := a.webhooks()
	if err != nil {
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
	switch {
	case room == "":
		return nil, errcode.MissingParam("room is required (a room id or local alias)")
	case strings.HasPrefix(room, "#"):
		if room, err = a.Rooms.LocalAlias(r.Context(), room); err != nil {
			return nil, err
		}
	case !strings.HasPrefix(room, "!"):
		return nil, errcode.InvalidParam("not a room id or alias: %q", room)
	}
	h, err := wh.Create(r.Context(), room, body.Name, r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"webhook": h, "bot_user_id": wh.BotUserID()}, nil
}

// GET /_luxchat/admin/v1/webhooks: every hook, revoked ones too, without
// their URLs (only their secrets' hashes are kept).
func (a *API) listWebhooks(r *httputil.Request) (any, error) {
	wh, err := a.webhooks()
	if err != nil {
		return nil, err
	}
	hs, err := wh.List(r.Context())
	if err != nil {
		return nil, err
	}
	return map[string]any{"webhooks": hs}, nil
}

// POST /_luxchat/admin/v1/webhooks/{hookId}/rotate: a new secret URL; the
// old one is 404 from now on.
func (a *API) rotateWebhook(r *httputil.Request) (any, error) {
	wh, err := a.webhooks()
	if err != nil {
		return nil, err
	}
	h, err := wh.Rotate(r.Context(), r.Var("hookId"))
	if err != nil {
		return nil, err
	}
	return map[string]any{"webhook": h}, nil
}

// DELETE /_luxchat/admin/v1/webhooks/{hookId}: revokes the hook.
func (a *API) revokeWebhook(r *httputil.Request) (any, error) {
	wh, err := a.webhooks()
	if err != nil {
		return nil, err
	}
	if err := wh.Revoke(r.Context(), r.Var("hookId")); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
