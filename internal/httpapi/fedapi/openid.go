package fedapi

import "luxchat/internal/httpapi/httputil"

// GET /_matrix/federation/v1/openid/userinfo (no server signature: the
// token is the credential)
func (a *API) openIDUserInfo(r *httputil.Request) (any, error) {
	u, err := a.Accounts.OpenIDUser(r.Context(), r.URL.Query().Get("access_token"))
	if err != nil {
		return nil, err
	}
	return map[string]string{"sub": u}, nil
}
