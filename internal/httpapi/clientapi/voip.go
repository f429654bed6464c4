package clientapi

import "luxchat/internal/httpapi/httputil"

// GET /voip/turnServer. Without a TURN server the answer is an empty
// object, as Synapse and Dendrite answer and clients expect (they then
// call without relays), rather than an error.
func (a *API) turnServer(r *httputil.Request) (any, error) {
	if a.TURN == nil {
		return struct{}{}, nil
	}
	return a.TURN.Grant(r.Session.UserID), nil
}
