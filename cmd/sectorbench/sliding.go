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

// slidingPath is simplified sliding sync's endpoint (MSC4186).
const slidingPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

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
// with its pos; once all wait, one idle window.
func (b *bench) phaseSlidingIdle(ctx context.Context) error {
	n := b.sec.plan.pollers
	label := "sliding sync: " + thousands(int64(n)) + " idle connections"
	mem0, use0, err := b.idleWindow(ctx)
	if err != nil {
		return err
	}
	c := newClientFor(b.c.base, n+100)
	sc := &slidingConns{c: c, timeout: b.opts.pollTimeout}
	pos := make([]string, n)
	var lat []time.Duration
	var mu sync.Mutex
	s0 := b.m.sample()
	err = parallel(ctx, n, 8, func(i int) error {
		var ans struct {
			Pos string `json:"pos"`
		}
		t0 := time.Now()
		if err := discard(c.do(ctx, http.MethodPost, slidingPath+"?timeout=0", b.sec.users[i].token, slidingBody, &ans)); err != nil {
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
	b.add(label, "first requests (window 0–19, 8 at a time): p50; server CPU each", "—",
		fmt.Sprintf("%s; %s", ms(median(lat)), first.per(n)))
	for i := range n {
		sc.start(b.sec.users[i].token, pos[i])
	}
	defer sc.stop()
	deadline := time.Now().Add(time.Minute)
	for sc.waiting.Load() < int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	b.settle(30 * time.Second)
	answers := sc.answers.Load()
	mem1, use1, err := b.idleWindow(ctx)
	if err != nil {
		return err
	}
	pctOf := func(u cpuUse) string {
		v := fmt.Sprintf("%.2f %%", 100*u.total().Seconds()/u.wall.Seconds())
		if u.withPG {
			v += fmt.Sprintf(" (PG %.2f %%)", 100*u.pg.Seconds()/u.wall.Seconds())
		}
		return v
	}
	b.add(label, "server CPU over "+b.opts.idle.String()+", % of one core: none connected → connected", "no CPU",
		fmt.Sprintf("%s → %s; %d polls answered, %d failed", pctOf(use0), pctOf(use1), sc.answers.Load()-answers, sc.errs.Load()))
	b.add(label, "luxchat RSS: none connected → connected (extra)", "≤ 30 MiB extra",
		fmt.Sprintf("%s → %s (%s)", mib(mem0.rss), mib(mem1.rss), mib(mem1.rss-mem0.rss)))
	b.add(label, "Go: live heap; stacks; goroutines (none connected → connected)", "—",
		fmt.Sprintf("%s → %s; %s → %s; %d → %d", mib(int64(mem0.live)), mib(int64(mem1.live)), mib(int64(mem0.stacks)), mib(int64(mem1.stacks)), mem0.goroutines, mem1.goroutines))
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

func (sc *slidingConns) start(token, pos string) {
	sc.once.Do(func() { sc.ctx, sc.cancel = context.WithCancel(context.Background()) })
	sc.wg.Add(1)
	go func() {
		defer sc.wg.Done()
		sc.loop(sc.ctx, token, pos)
	}()
}

func (sc *slidingConns) loop(ctx context.Context, token, pos string) {
	q := slidingPath + "?timeout=" + strconv.Itoa(int(sc.timeout.Milliseconds())) + "&pos="
	for ctx.Err() == nil {
		var ans struct {
			Pos string `json:"pos"`
		}
		rctx, cancel := context.WithTimeout(ctx, sc.timeout+30*time.Second)
		sc.waiting.Add(1)
		_, err := sc.c.do(rctx, http.MethodPost, q+url.QueryEscape(pos), token, slidingBody, &ans)
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
