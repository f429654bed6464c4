package clientapi

import "luxchat/internal/httpapi/httputil"

// routes is the map of the Client-Server API.
func (a *API) routes(rt *httputil.Router) {
	a.accountRoutes(rt)
}
