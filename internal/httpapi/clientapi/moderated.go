package clientapi

import (
	"crypto/rand"
	"encoding/base64"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// Account moderation as the client API's handlers see it: suspension and
// locking are the router's (route options in routes.go); shadow-banning
// is here, in the handlers of the routes that deliver something.

// shadowEventID is the answer to a shadow-banned user's send: an event id
// shaped like a real one, of an event that was never made, so that the
// client sees its send succeed and no one else sees anything.
func shadowEventID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "$" + base64.RawURLEncoding.EncodeToString(b)
}

// shadowBanned reports whether the caller's sends must go nowhere.
func shadowBanned(r *httputil.Request) bool {
	return r.Session != nil && r.Session.ShadowBanned
}

// shadowSent is the answer to a shadow-banned user's send.
func shadowSent() (any, error) {
	return map[string]string{"event_id": shadowEventID()}, nil
}

// checkSuspendedRedaction lets a suspended user redact their own events
// only, as the spec recommends.
func (a *API) checkSuspendedRedaction(r *httputil.Request, eventID string) error {
	if r.Session == nil || !r.Session.Suspended {
		return nil
	}
	ev, err := a.Rooms.Event(r.Context(), eventID)
	if err != nil || ev.Sender != r.Session.UserID {
		return errcode.UserSuspended("you cannot redact other users' events while suspended")
	}
	return nil
}
