package clientapi

import (
	gosync "sync"
	"time"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/slidingsync"
)

// slidingSyncPrefix is simplified sliding sync's unstable prefix (MSC4186).
const slidingSyncPrefix = "/_matrix/client/unstable/org.matrix.simplified_msc3575"

// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync
//
// A long poll with nothing to send is parked as /sync's are (parkedSync):
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
	ps := &parkedSlide{poll: poll}
	return r.Park(ps.start), nil
}

// parkedSlide is a sliding sync long poll parked outside net/http: the
// same life as parkedSync's (news resets its timer to fire a moment
// later, the deadline fires it too, a look answers or waits again).
type parkedSlide struct {
	poll  *slidingsync.Poll
	p     *httputil.Parked
	timer *time.Timer

	mu      gosync.Mutex
	state   parkState
	woken   bool
	hurried bool
}

func (ps *parkedSlide) start(p *httputil.Parked) (hurry func()) {
	ps.p = p
	ps.mu.Lock()
	ps.timer = time.AfterFunc(time.Until(ps.poll.Deadline()), ps.fire)
	ps.mu.Unlock()
	if err := ps.poll.WakeAfter(ps); err != nil {
		ps.finish(nil, err)
	}
	return ps.hurry
}

// Wake is the user's news (sync.Waker): look soon.
func (ps *parkedSlide) Wake() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch ps.state {
	case parkWaiting:
		ps.timer.Reset(coalesce)
	case parkLooking:
		ps.woken = true
	}
}

func (ps *parkedSlide) hurry() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.hurried = true
	if ps.state == parkWaiting {
		ps.timer.Reset(0)
	}
}

// fire runs on the timer's goroutine: at the deadline, after news, or
// when hurried.
func (ps *parkedSlide) fire() {
	ps.mu.Lock()
	if ps.state != parkWaiting {
		ps.mu.Unlock()
		return
	}
	ps.state, ps.woken = parkLooking, false
	hurried := ps.hurried
	ps.mu.Unlock()
	defer ps.p.Recover()
	ps.poll.StopWake(ps)
	resp, done, err := ps.poll.Look(ps.p.Context(), hurried)
	if err != nil || done {
		ps.finish(resp, err)
		return
	}
	ps.mu.Lock()
	ps.state = parkWaiting
	if ps.woken || ps.hurried {
		ps.timer.Reset(0)
	} else {
		ps.timer.Reset(time.Until(ps.poll.Deadline()))
	}
	ps.mu.Unlock()
	if err := ps.poll.WakeAfter(ps); err != nil {
		ps.finish(nil, err)
	}
}

func (ps *parkedSlide) finish(resp *slidingsync.Response, err error) {
	ps.mu.Lock()
	ps.state = parkDone
	ps.timer.Stop()
	ps.mu.Unlock()
	ps.poll.StopWake(ps)
	if err != nil {
		ps.p.Answer(nil, err)
		return
	}
	ps.p.Answer(resp, nil)
}
