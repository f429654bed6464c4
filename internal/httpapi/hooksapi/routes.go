package hooksapi

import (
	"net/http"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/webhooks"
)

// API serves the hooks.
type API struct {
	Webhooks *webhooks.Service
	// MaxBody bounds a notification's body (webhooks.max_body_bytes).
	MaxBody int64
}

// Register adds the hooks' route to rt. The token in the path names the
// hook and carries its secret: the route takes no access token.
func Register(rt *httputil.Router, a *API) {
	rt.Handle("POST "+webhooks.PathPrefix+"{token}", httputil.AuthNone, a.post, httputil.BodyLimit(a.MaxBody))
}

// POST /_luxchat/hooks/{token}: a notification of Alertmanager, Grafana
// or anyone with {"text", "html"}. An unknown, revoked or wrong token is
// 404 alike; a hook over its rate 429; the body is read only after both.
func (a *API) post(r *httputil.Request) (any, error) {
	w, err := a.Webhooks.Authenticate(r.Context(), r.Var("token"))
	if err != nil {
		return nil, unavailable(err)
	}
	if wait := a.Webhooks.Take(w.ID); wait > 0 {
		return nil, errcode.LimitExceeded(wait.Milliseconds() + 1)
	}
	body, err := r.Body()
	if err != nil {
		return nil, err
	}
	res, err := a.Webhooks.Deliver(r.Context(), w, body)
	if err != nil {
		return nil, unavailable(err)
	}
	return res, nil
}

// unavailable answers a failure of ours (the database) with a 503, which
// senders retry, rather than a 500.
func unavailable(err error) error {
	if _, ok := errcode.As(err); ok {
		return err
	}
	return (&errcode.Error{Code: "M_UNKNOWN", Status: http.StatusServiceUnavailable, Message: "the hook could not be served; try again"}).Wrap(err)
}
