package clientapi

import (
	"encoding/json"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/streamtoken"
	"luxchat/internal/threadsubs"
)

// Thread subscriptions (MSC4306) and the paging of their changes
// (MSC4308), under their unstable prefixes.
const (
	msc4306 = "/_matrix/client/unstable/io.element.msc4306"
	msc4308 = "/_matrix/client/unstable/io.element.msc4308"
)

// threadPath checks the ids of a thread subscription path: an ill-formed
// event id names no thread (M_NOT_FOUND, as for any thread the user
// cannot see).
func threadPath(r *httputil.Request) (roomID, rootID string, err error) {
	if err := eventIDToRead(r.Var("threadRootId")); err != nil {
		return "", "", err
	}
	return r.Var("roomId"), r.Var("threadRootId"), nil
}

// PUT .../rooms/{roomId}/thread/{threadRootId}/subscription
func (a *API) putThreadSubscription(r *httputil.Request) (any, error) {
	roomID, rootID, err := threadPath(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Automatic json.RawMessage `json:"automatic"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	// automatic is the id of the event that caused the subscription;
	// absent, null or false is a manual subscription. (true, from an
	// early draft, names no cause the server could order.)
	cause := ""
	switch s := string(body.Automatic); {
	case s == "" || s == "null" || s == "false":
	case json.Unmarshal(body.Automatic, &cause) != nil:
		return nil, errcode.BadJSON("automatic must be the id of the event that caused the subscription")
	case !validEventID(cause):
		return nil, errcode.InvalidParam("automatic is not an event id")
	}
	if err := a.ThreadSubs.Subscribe(r.Context(), r.Session.UserID, roomID, rootID, cause); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// GET .../rooms/{roomId}/thread/{threadRootId}/subscription
func (a *API) getThreadSubscription(r *httputil.Request) (any, error) {
	roomID, rootID, err := threadPath(r)
	if err != nil {
		return nil, err
	}
	return a.ThreadSubs.Get(r.Context(), r.Session.UserID, roomID, rootID)
}

// DELETE .../rooms/{roomId}/thread/{threadRootId}/subscription
func (a *API) deleteThreadSubscription(r *httputil.Request) (any, error) {
	roomID, rootID, err := threadPath(r)
	if err != nil {
		return nil, err
	}
	if err := a.ThreadSubs.Unsubscribe(r.Context(), r.Session.UserID, roomID, rootID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// threadSubsPage is the companion endpoint's answer: end pages further
// back (with the same to).
type threadSubsPage struct {
	Subscribed   map[string]map[string]threadsubs.Subscribed   `json:"subscribed"`
	Unsubscribed map[string]map[string]threadsubs.Unsubscribed `json:"unsubscribed"`
	End          string                                        `json:"end,omitempty"`
}

// GET /_matrix/client/unstable/io.element.msc4308/thread_subscriptions
// pages back through the caller's subscription changes: from a token of
// this endpoint or a sliding sync prev_batch (default: now), down to to,
// a token or the pos of one of the device's sliding sync connections
// (default: the start).
func (a *API) threadSubscriptions(r *httputil.Request) (any, error) {
	switch r.Query("dir") {
	case "b":
	case "":
		return nil, errcode.MissingParam("dir is required (b)")
	default:
		return nil, errcode.InvalidParam("dir must be b")
	}
	limit, err := pageLimit(r, 100)
	if err != nil {
		return nil, err
	}
	upTo := a.Sync.Current().AccountData
	if from := r.Query("from"); from != "" {
		pos, ok := threadsubs.ParseToken(from)
		if !ok {
			return nil, errcode.InvalidParam("from is not a token of this endpoint")
		}
		upTo = min(upTo, pos)
	}
	after := int64(0)
	if to := r.Query("to"); to != "" {
		pos, ok := threadsubs.ParseToken(to)
		if !ok && a.SlidingSync != nil {
			var t streamtoken.Token
			t, ok = a.SlidingSync.PosToken(r.Session.UserID, r.Session.DeviceID, to)
			pos = t.AccountData
		}
		if !ok {
			return nil, errcode.InvalidParam("to is neither a token of this endpoint nor a live sliding sync pos of this device")
		}
		after = pos
	}
	page, end, err := a.ThreadSubs.Changes(r.Context(), r.Session.UserID, after, upTo, limit)
	if err != nil {
		return nil, err
	}
	out := threadSubsPage{Subscribed: page.Subscribed, Unsubscribed: page.Unsubscribed, End: end}
	if out.Subscribed == nil {
		out.Subscribed = map[string]map[string]threadsubs.Subscribed{}
	}
	if out.Unsubscribed == nil {
		out.Unsubscribed = map[string]map[string]threadsubs.Unsubscribed{}
	}
	return out, nil
}
