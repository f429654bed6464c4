package clientapi

import (
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/slidingsync"
)

// slidingSyncPrefix is simplified sliding sync's unstable prefix (MSC4186).
const slidingSyncPrefix = "/_matrix/client/unstable/org.matrix.simplified_msc3575"

// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync
func (a *API) slidingSync(r *httputil.Request) (any, error) {
	body, err := r.Body()
	if err != nil {
		return nil, err
	}
	req, err := slidingsync.DecodeRequest(body, r.Query("pos"), r.Query("timeout"))
	if err != nil {
		return nil, err
	}
	if p := r.Query("set_presence"); p != "" {
		req.SetPresence = p
	}
	req.UserID, req.DeviceID = r.Session.UserID, r.Session.DeviceID
	return a.SlidingSync.Sync(r.Context(), req)
}
