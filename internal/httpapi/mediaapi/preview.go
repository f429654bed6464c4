package mediaapi

import (
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// previewURL is GET /_matrix/client/v1/media/preview_url (and the
// deprecated /_matrix/media/v3/preview_url). The ts parameter is accepted
// and ignored: the spec lets the server answer with a newer preview.
func (a *API) previewURL(r *httputil.Request) (any, error) {
	if a.Preview == nil {
		return nil, errcode.Unrecognized("URL previews are disabled on this server")
	}
	u := r.Query("url")
	if u == "" {
		return nil, errcode.MissingParam("missing url parameter")
	}
	if _, err := r.QueryInt("ts", 0); err != nil {
		return nil, err
	}
	return a.Preview.Preview(r.Context(), r.Session.UserID, u)
}
