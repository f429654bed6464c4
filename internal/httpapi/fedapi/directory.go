package fedapi

import (
	"luxchat/internal/directory"
	"luxchat/internal/httpapi/httputil"
)

// GET and POST /_matrix/federation/v1/publicRooms: our published rooms.
func (a *API) publicRooms(r *httputil.Request) (any, error) {
	var req directory.PublicRoomsRequest
	if r.Method == "POST" {
		if err := r.ReadJSON(&req); err != nil {
			return nil, err
		}
	} else {
		var err error
		if req, err = directory.PublicRoomsQuery(r); err != nil {
			return nil, err
		}
	}
	return a.Directory.PublicRooms(r.Context(), req)
}

// GET /_matrix/federation/v1/hierarchy/{roomId}
func (a *API) hierarchy(r *httputil.Request) (any, error) {
	suggested, err := r.QueryBool("suggested_only")
	if err != nil {
		return nil, err
	}
	return a.Directory.FederationHierarchy(r.Context(), r.Origin, r.Var("roomId"), suggested)
}
