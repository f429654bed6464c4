package adminapi

import (
	"net/http"
	"strings"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// POST /_luxchat/admin/v1/users/{userId}/export
//
// The GDPR export of a local user (article 15): the zip archive that
// `luxchat user export` writes (see package gdpr), streamed as it is
// made. The user is checked before anything is sent: 400 M_INVALID_PARAM
// for a malformed or remote id, 404 M_NOT_FOUND for no such account. An
// error once the archive has started cuts the response short, which
// leaves a zip without its central directory: no reader accepts it.
func (a *API) exportUser(r *httputil.Request) (any, error) {
	if a.GDPR == nil {
		return nil, errcode.Unrecognized("exports are not available")
	}
	userID := r.Var("userId")
	if _, err := a.GDPR.CheckUser(r.Context(), userID); err != nil {
		return nil, err
	}
	name := "luxchat-export-" + safeFileName(strings.TrimPrefix(userID, "@")) + ".zip"
	return httputil.Stream(func(w http.ResponseWriter) {
		h := w.Header()
		h.Set("Content-Type", "application/zip")
		h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		if _, err := a.GDPR.Export(r.Context(), userID, w, nil); err != nil && r.Context().Err() == nil {
			httputil.Logger(r.Context()).Error("user export failed: response cut short", "user_id", userID, "err", err)
		}
	}), nil
}

// safeFileName keeps letters, digits, '.', '-' and '_' of s, others as '_'.
func safeFileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
