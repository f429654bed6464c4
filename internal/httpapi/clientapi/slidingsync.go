package clientapi

import (
	"context"
	"time"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/slidingsync"
	"luxchat/internal/sync"
)

// slidingSyncPrefix is simplified sliding sync's unstable prefix (MSC4186).
const slidingSyncPrefix = "/_matrix/client/unstable/org.matrix.simplified_msc3575"

// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync
//
// A long poll with nothing to send is parked as /sync's are (parkedPoll):
// it holds a waiter for its user's news and a timer, no goroutine.
func (a *API) slidingSync(r *httputil.Request) (any, error) {
	body, err := r.Body()
	if err != nil {
		return nil, err
	}
	req, err := slidingsync.DecodeRequest(body, r.Query("pos"), r.Query("timeout"))
	if err != nil {
		return nil, err
	}
	if p := r.Query("set_presence"); p != "" {
		req.SetPresence = p
	}
	req.UserID, req.DeviceID = r.Session.UserID, r.Session.DeviceID
	if !r.CanPark() {
		return a.SlidingSync.Sync(r.Context(), req)
	}
	poll, err := a.SlidingSync.Begin(r.Context(), req)
	if err != nil {
		return nil, err
	}
	resp, done, err := poll.Look(r.Context(), false)
	if err != nil || done {
		return resp, err
	}
	poll.Compact()
	return park(r, slideLooker{poll}), nil
}

// slideLooker is a parked sliding sync poll's side (parkedPoll).
type slideLooker struct{ poll *slidingsync.Poll }

func (sl slideLooker) deadline() time.Time { return sl.poll.Deadline() }

func (sl slideLooker) wakeAfter(w sync.Waker) error { return sl.poll.WakeAfter(w) }

func (sl slideLooker) stopWake(w sync.Waker) { sl.poll.StopWake(w) }

func (sl slideLooker) look(ctx context.Context, late bool) (any, bool, error) {
	resp, done, err := sl.poll.Look(ctx, late)
	switch {
	case err != nil:
		return nil, true, err
	case !done:
		return nil, false, nil
	}
	return resp, true, nil
}
