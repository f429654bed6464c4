package clientapi

import (
	"context"
	"runtime"
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
// queues it for a look a moment later (coalesce) on one of a few
// long-lived goroutines (wokenLooks); the deadline fires its timer; either
// way the poll looks, and answers what the look finds or waits again.
type parkedPoll struct {
	l     looker
	p     *httputil.Parked
	timer *time.Timer

	mu      gosync.Mutex
	state   parkState
	woken   bool // news came during a look
	hurried bool // the server stops: answer now
	queued  bool // in wokenLooks, for a look
	// registered: its waiter is with the notifier (wakeAfter), which
	// drops it before it calls Wake; stopWake (a lock of the notifier
	// every user's news takes) only when so.
	registered bool
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
	pp.timer = time.AfterFunc(time.Until(pp.l.deadline()), pp.fireTimer)
	pp.mu.Unlock()
	if err := pp.wakeAfter(); err != nil {
		pp.finish(nil, err, true)
	}
	return pp.hurry
}

// Wake is the user's news (sync.Waker): look soon.
func (pp *parkedPoll) Wake() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.registered = false
	switch pp.state {
	case parkWaiting:
		if !pp.queued {
			pp.queued = true
			wokenLooks.add(pp)
		}
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

// fireTimer runs on the timer's goroutine: at the deadline, or when
// hurried or woken during a look.
func (pp *parkedPoll) fireTimer() { pp.fire(true) }

// fire looks, and answers or waits again; here: on a goroutine that has
// nothing left to do (a timer's), which goes on to read the connection's
// next request (httputil.Parked.AnswerHere).
func (pp *parkedPoll) fire(here bool) {
	pp.mu.Lock()
	if !here {
		pp.queued = false
	}
	if pp.state != parkWaiting {
		pp.mu.Unlock()
		return
	}
	pp.state, pp.woken = parkLooking, false
	pp.mu.Unlock()
	defer pp.p.Recover()
	pp.stopWake()
	pp.mu.Lock()
	hurried := pp.hurried
	pp.mu.Unlock()
	out, done, err := pp.l.look(pp.p.Context(), hurried || !time.Now().Before(pp.l.deadline()))
	if err != nil || done {
		pp.finish(out, err, here)
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
	if err := pp.wakeAfter(); err != nil {
		pp.finish(nil, err, here)
	}
}

// wakeAfter registers the poll's waiter with the notifier.
func (pp *parkedPoll) wakeAfter() error {
	pp.mu.Lock()
	pp.registered = true // before: the notifier may call Wake at once
	pp.mu.Unlock()
	err := pp.l.wakeAfter(pp)
	if err != nil {
		pp.mu.Lock()
		pp.registered = false
		pp.mu.Unlock()
	}
	return err
}

// stopWake cancels the poll's waiter, when the notifier still holds it.
func (pp *parkedPoll) stopWake() {
	pp.mu.Lock()
	registered := pp.registered
	pp.registered = false
	pp.mu.Unlock()
	if registered {
		pp.l.stopWake(pp)
	}
}

func (pp *parkedPoll) finish(out any, err error, here bool) {
	pp.mu.Lock()
	pp.state = parkDone
	pp.timer.Stop()
	pp.mu.Unlock()
	pp.stopWake()
	if here {
		pp.p.AnswerHere(out, err) // on the timer's goroutine, or in start
	} else {
		pp.p.Answer(out, err) // a look's worker: the connection is read on a goroutine of its own
	}
}

// wokenLooks runs the looks of woken parked polls. A message into a big
// room wakes a thousand polls at once; each look on a goroutine of its
// own (a timer's) would start on a small stack and grow it, copying,
// through the sync's build (~10 µs a poll). A few long-lived goroutines
// keep their grown stacks, and one timer per burst of news (coalesce)
// stands for a timer reset per poll.
var wokenLooks = &lookQueue{}

// lookQueue is the polls woken in the current burst, and the goroutines
// that look for them.
type lookQueue struct {
	mu      gosync.Mutex
	pending []*parkedPoll
	once    gosync.Once
	work    chan *parkedPoll
}

// add queues a woken poll; the first of a burst sets the timer that
// hands the burst to the workers. Called with pp.mu held (and the
// notifier's lock): it returns at once.
func (q *lookQueue) add(pp *parkedPoll) {
	q.once.Do(q.start)
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		time.AfterFunc(coalesce, q.flush)
	}
	q.pending = append(q.pending, pp)
}

// lookWorkers is how many goroutines look: more than the cores, as a
// look may wait on the database, and few enough that their stacks stay
// grown between bursts.
func lookWorkers() int { return max(16, 4*runtime.GOMAXPROCS(0)) }

func (q *lookQueue) start() {
	n := lookWorkers()
	q.work = make(chan *parkedPoll, 4*n)
	for range n {
		go func() {
			for pp := range q.work {
				pp.fire(false)
			}
		}()
	}
}

// flush hands the burst's polls to the workers, in the order they were
// woken.
func (q *lookQueue) flush() {
	q.mu.Lock()
	burst := q.pending
	q.pending = nil
	q.mu.Unlock()
	for _, pp := range burst {
		q.work <- pp
	}
}
