package clientapi

import (
	"strings"

	"luxchat/internal/directory"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// GET /.well-known/matrix/support
func (a *API) wellKnownSupport(r *httputil.Request) (any, error) {
	s := a.Config.Support
	if len(s.Contacts) == 0 && s.SupportPage == "" {
		return nil, errcode.NotFound("no support information is configured")
	}
	return s, nil
}

// GET /_matrix/client/v1/mutual_rooms
func (a *API) mutualRooms(r *httputil.Request) (any, error) {
	other := r.Query("user_id")
	if other == "" {
		return nil, errcode.MissingParam("user_id is required")
	}
	return a.Directory.MutualRooms(r.Context(), r.Session.UserID, other, r.Query("from"))
}

// GET /_matrix/client/v1/room_summary/{roomIdOrAlias}
func (a *API) roomSummary(r *httputil.Request) (any, error) {
	req := directory.SummaryRequest{Via: r.URL.Query()["via"]}
	if r.Session != nil {
		req.UserID = r.Session.UserID
	}
	idOrAlias := r.Var("roomIdOrAlias")
	if i := strings.IndexByte(idOrAlias, ':'); strings.HasPrefix(idOrAlias, "#") && i > 0 && idOrAlias[i+1:] != a.Config.ServerName {
		if req.UserID == "" {
			// Anonymous callers do not get to make us contact other servers.
			return nil, errcode.NotFound("room alias %s not found", idOrAlias)
		}
		roomID, servers, err := a.RoomFed.QueryAlias(r.Context(), idOrAlias)
		if err != nil {
			return nil, err
		}
		req.RoomID, req.Via = roomID, append(servers, req.Via...)
	} else {
		roomID, err := a.resolveRoom(r, idOrAlias)
		if err != nil {
			return nil, err
		}
		req.RoomID = roomID
	}
	if len(req.Via) > 20 {
		req.Via = req.Via[:20]
	}
	return a.Directory.Summary(r.Context(), req)
}
