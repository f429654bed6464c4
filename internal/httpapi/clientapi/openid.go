package clientapi

import "luxchat/internal/httpapi/httputil"

// POST /user/{userId}/openid/request_token
func (a *API) openIDRequestToken(r *httputil.Request) (any, error) {
	var body struct{}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	return a.Accounts.RequestOpenIDToken(r.Context(), r.Session.UserID, r.Var("userId"))
}
