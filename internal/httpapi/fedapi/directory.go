package fedapi

import (
	"math"

	"luxchat/internal/directory"
	"luxchat/internal/httpapi/httputil"
)

// GET and POST /_matrix/federation/v1/publicRooms: our published rooms.
func (a *API) publicRooms(r *httputil.Request, _ string) (any, error) {
	var req directory.PublicRoomsRequest
	if r.Method == "POST" {
		if err := r.ReadJSON(&req); err != nil {
			return nil, err
		}
	} else {
		if r.Query("limit") != "" {
			n, err := r.QueryInt("limit", 0)
			if err != nil {
				return nil, err
			}
			l := int(min(max(n, -1), math.MaxInt32))
			req.Limit = &l
		}
		req.Since = r.Query("since")
		req.ThirdPartyInstanceID = r.Query("third_party_instance_id")
		var err error
		if req.IncludeAllNetworks, err = r.QueryBool("include_all_networks"); err != nil {
			return nil, err
		}
	}
	return a.Directory.PublicRooms(r.Context(), req)
}

// GET /_matrix/federation/v1/hierarchy/{roomId}
func (a *API) hierarchy(r *httputil.Request, origin string) (any, error) {
	suggested, err := r.QueryBool("suggested_only")
	if err != nil {
		return nil, err
	}
	return a.Directory.FederationHierarchy(r.Context(), origin, r.Var("roomId"), suggested)
}
