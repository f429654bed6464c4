package clientapi

import "luxchat/internal/httpapi/httputil"

// accountRoutes: registration, login, tokens, devices, profiles.
func (a *API) accountRoutes(rt *httputil.Router) {
}
