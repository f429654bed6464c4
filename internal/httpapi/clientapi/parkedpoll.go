package clientapi

import (
	"context"
	gosync "sync"
	"time"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/sync"
)

// coalesce is how long a woken poll lets a burst of news land before it
// looks (as sync.Service.Sync does).
const coalesce = 5 * time.Millisecond

// looker is what a parked long poll waits on and looks with: /sync's
// (syncLooker) and sliding sync's (slideLooker).
type looker interface {
	deadline() time.Time
	// wakeAfter has w woken once at the user's next news after the last
	// look; stopWake cancels it.
	wakeAfter(w sync.Waker) error
	stopWake(w sync.Waker)
	// look runs on the timer's goroutine: done reports that out (or
	// err) is the answer; when not, the poll waits again. late: the
	// deadline passed or the server stops, so it must answer.
	look(ctx context.Context, late bool) (out any, done bool, err error)
}

// parkedPoll is a long poll parked outside net/http (httputil.Park): it
// holds a waiter for its user's news and one timer, no goroutine. News
// sets the timer to fire a moment later (coalesce), the deadline fires
// it too; when it fires the poll looks, and answers what the look finds
// or waits again.
type parkedPoll struct {
	l     looker
	p     *httputil.Parked
	timer *time.Timer

	mu      gosync.Mutex
	state   parkState
	woken   bool // news came during a look
	hurried bool // the server stops: answer now
}

type parkState int8

const (
	parkWaiting parkState = iota // registered and the timer set
	parkLooking                  // the timer fired: one look runs
	parkDone                     // answered
)

// park parks a long poll that found nothing yet.
func park(r *httputil.Request, l looker) httputil.Stream {
	pp := &parkedPoll{l: l}
	return r.Park(pp.start)
}

func (pp *parkedPoll) start(p *httputil.Parked) (hurry func()) {
	pp.p = p
	pp.mu.Lock()
	pp.timer = time.AfterFunc(time.Until(pp.l.deadline()), pp.fire)
	pp.mu.Unlock()
	if err := pp.l.wakeAfter(pp); err != nil {
		pp.finish(nil, err)
	}
	return pp.hurry
}

// Wake is the user's news (sync.Waker): look soon.
func (pp *parkedPoll) Wake() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	switch pp.state {
	case parkWaiting:
		pp.timer.Reset(coalesce)
	case parkLooking:
		pp.woken = true
	}
}

func (pp *parkedPoll) hurry() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.hurried = true
	if pp.state == parkWaiting {
		pp.timer.Reset(0)
	}
}

// fire runs on the timer's goroutine: at the deadline, after news, or
// when hurried.
func (pp *parkedPoll) fire() {
	pp.mu.Lock()
	if pp.state != parkWaiting {
		pp.mu.Unlock()
		return
	}
	pp.state, pp.woken = parkLooking, false
	pp.mu.Unlock()
	defer pp.p.Recover()
	pp.l.stopWake(pp)
	pp.mu.Lock()
	hurried := pp.hurried
	pp.mu.Unlock()
	out, done, err := pp.l.look(pp.p.Context(), hurried || !time.Now().Before(pp.l.deadline()))
	if err != nil || done {
		pp.finish(out, err)
		return
	}
	pp.mu.Lock()
	pp.state = parkWaiting
	if pp.woken || pp.hurried {
		pp.timer.Reset(0)
	} else {
		pp.timer.Reset(time.Until(pp.l.deadline()))
	}
	pp.mu.Unlock()
	if err := pp.l.wakeAfter(pp); err != nil {
		pp.finish(nil, err)
	}
}

func (pp *parkedPoll) finish(out any, err error) {
	pp.mu.Lock()
	pp.state = parkDone
	pp.timer.Stop()
	pp.mu.Unlock()
	pp.l.stopWake(pp)
	pp.p.AnswerHere(out, err) // on the timer's goroutine, or in start
}
