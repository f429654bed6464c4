package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// slidingBody is what each connection asks for, as Element X starts: the
// 20 most recently active rooms with their last event, the state that
// names them and lazy members; to-device and e2ee extensions on.
var slidingBody = json.RawMessage(`{"lists": {"all": {"ranges": [[0, 19]], "timeline_limit": 1, "required_state": [
	["m.room.create", ""], ["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"]]}},
	"extensions": {"to_device": {"enabled": true}, "e2ee": {"enabled": true}}}`)

// phaseSlidingIdle: what idle sliding sync connections cost (issue 14:
// 1,000 of them, no CPU and at most 30 MiB in all). Nobody else polls.
// The server is measured idle with no connection, then each online user
// opens one (its first request, for the window 0–19) and long-polls
// with its pos; once all wait, one idle window; then a second set the
// same way.
func (b *bench) phaseSlidingIdle(ctx context.Context) error {
	n := b.sec.plan.pollers
	label := "sliding sync: " + thousands(int64(n)) + " idle connections"
	mem0, use0, err := b.idleWindow(ctx)
	if err != nil {
		return err
	}
	c := newClientFor(b.c.base, 2*n+100)
	sc := &slidingConns{c: c, timeout: b.opts.pollTimeout}
	defer sc.stop()
	// The first set warms the server's caches (the rooms' views, forms,
	// parsed events: shared, bounded); a second set of as many, the same
	// users on other connections (conn_id), shows what connections cost
	// beyond them.
	mems, uses := []memStats{mem0}, []cpuUse{use0}
	for set, connID := range []string{"", "second"} {
		pos := make([]string, n)
		var lat []time.Duration
		var mu sync.Mutex
		body := slidingBody
		if connID != "" {
			body = json.RawMessage(`{"conn_id": "` + connID + `",` + string(slidingBody[1:]))
		}
		s0 := b.m.sample()
		err = parallel(ctx, n, 8, func(i int) error {
			var ans struct {
				Pos string `json:"pos"`
			}
			t0 := time.Now()
			if err := discard(c.do(ctx, http.MethodPost, slidingPath+"?timeout=0", b.sec.users[i].token, body, &ans)); err != nil {
				return err
			}
			mu.Lock()
			lat = append(lat, time.Since(t0))
			mu.Unlock()
			pos[i] = ans.Pos
			return nil
		})
		if err != nil {
			return err
		}
		first := b.m.since(s0)
		b.add(label, fmt.Sprintf("set %d: first requests (window 0–19, 8 at a time): p50; server CPU each", set+1), "—",
			fmt.Sprintf("%s; %s", ms(median(lat)), first.per(n)))
		for i := range n {
			sc.start(b.sec.users[i].token, pos[i], body)
		}
		deadline := time.Now().Add(time.Minute)
		for sc.waiting.Load() < int64((set+1)*n) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
		// The window measures polls in their steady state: each of this
		// set's first long polls (which look once as they start) has
		// timed out once and polls again.
		a0 := sc.answers.Load()
		deadline = time.Now().Add(sc.timeout + 30*time.Second)
		for sc.answers.Load()-a0 < int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
		b.settle(30 * time.Second)
		answers := sc.answers.Load()
		mem, use, err := b.idleWindow(ctx)
		if err != nil {
			return err
		}
		mems, uses = append(mems, mem), append(uses, use)
		answered := int(sc.answers.Load() - answers)
		b.add(label, fmt.Sprintf("set %d: polls answered in the window (timeouts); server CPU each (the answer and the next poll); failed so far", set+1), "—",
			fmt.Sprintf("%d; %s; %d", answered, use.per(answered), sc.errs.Load()))
	}
	pctOf := func(u cpuUse) string {
		v := fmt.Sprintf("%.2f %%", 100*u.total().Seconds()/u.wall.Seconds())
		if u.withPG {
			v += fmt.Sprintf(" (PG %.2f %%)", 100*u.pg.Seconds()/u.wall.Seconds())
		}
		return v
	}
	b.add(label, "server CPU over "+b.opts.idle.String()+", % of one core: none connected → 1 set → 2 sets", "no CPU",
		fmt.Sprintf("%s → %s → %s", pctOf(uses[0]), pctOf(uses[1]), pctOf(uses[2])))
	b.add(label, "luxchat RSS: none connected → 1 set (extra) → 2 sets (extra)", "≤ 30 MiB extra",
		fmt.Sprintf("%s → %s (%s) → %s (%s)", mib(mems[0].rss), mib(mems[1].rss), mib(mems[1].rss-mems[0].rss), mib(mems[2].rss), mib(mems[2].rss-mems[1].rss)))
	b.add(label, "Go: live heap; stacks; goroutines (none → 1 set → 2 sets)", "—",
		fmt.Sprintf("%s → %s → %s; %s → %s → %s; %d → %d → %d", mib(int64(mems[0].live)), mib(int64(mems[1].live)), mib(int64(mems[2].live)),
			mib(int64(mems[0].stacks)), mib(int64(mems[1].stacks)), mib(int64(mems[2].stacks)), mems[0].goroutines, mems[1].goroutines, mems[2].goroutines))
	return nil
}

// idleWindow lets one idle window pass and returns the server's memory at
// its end and the CPU it used.
func (b *bench) idleWindow(ctx context.Context) (memStats, cpuUse, error) {
	b.settle(time.Minute)
	s0 := b.m.sample()
	select {
	case <-time.After(b.opts.idle):
	case <-ctx.Done():
		return memStats{}, cpuUse{}, ctx.Err()
	}
	use := b.m.since(s0)
	mem, err := b.memory(ctx)
	return mem, use, err
}

// slidingConns long-poll sliding sync connections, each on its own
// keep-alive connection, and count what they are answered.
type slidingConns struct {
	c       *client
	timeout time.Duration
	answers atomic.Int64
	waiting atomic.Int64
	errs    atomic.Int64
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
}

func (sc *slidingConns) start(token, pos string, body json.RawMessage) {
	sc.once.Do(func() { sc.ctx, sc.cancel = context.WithCancel(context.Background()) })
	sc.wg.Add(1)
	go func() {
		defer sc.wg.Done()
		sc.loop(sc.ctx, token, pos, body)
	}()
}

func (sc *slidingConns) loop(ctx context.Context, token, pos string, body json.RawMessage) {
	q := slidingPath + "?timeout=" + strconv.Itoa(int(sc.timeout.Milliseconds())) + "&pos="
	for ctx.Err() == nil {
		var ans struct {
			Pos string `json:"pos"`
		}
		rctx, cancel := context.WithTimeout(ctx, sc.timeout+30*time.Second)
		sc.waiting.Add(1)
		_, err := sc.c.do(rctx, http.MethodPost, q+url.QueryEscape(pos), token, body, &ans)
		sc.waiting.Add(-1)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				sc.errs.Add(1)
				time.Sleep(time.Second)
			}
			continue
		}
		sc.answers.Add(1)
		pos = ans.Pos
	}
}

func (sc *slidingConns) stop() {
	if sc.cancel != nil {
		sc.cancel()
		sc.wg.Wait()
	}
}
