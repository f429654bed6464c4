package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// bench is one engine's measured part: the sector built at setup, served
// by a separate luxchat process that the phases reach over HTTP.
type bench struct {
	opts    options
	engine  string
	sec     *sector
	c       *client
	m       *meter
	dataDir string
	metrics string  // the server's metrics listener, http://host:port
	admin   *sql.DB // PostgreSQL only: the server's administration database
	dbName  string  // PostgreSQL only: the sector's database
	dsn     string  // PostgreSQL only: the sector's database
	hashMem uint32  // the server's argon2id costs
	hashT   uint32
	tr      *tracker
	ps      *pollers // started by the first phase that needs them
	rows    []row
	logf    func(string, ...any)
}

// row is one line of the final table.
type row struct{ phase, figure, target, value string }

func (b *bench) add(phase, figure, target, value string) {
	b.rows = append(b.rows, row{phase, figure, target, value})
	b.logf("  %s | %s | %s", phase, figure, value)
}

// phase is one measured part, named for -phases.
type phase struct {
	name    string
	run     func(*bench, context.Context) error
	offline bool // nobody long-polls: their CPU would blur its figures
	extra   bool // not in "all": asked for by name
}

// The phases in the order they run: the heavy user's initial syncs come
// first, on a server that has not served them yet ("first sync"); the
// connected phase measures the server before the online users start
// polling; they start polling in the first phase that needs them, and
// stop before the first offline one (storage is last).
var phaseOrder = []phase{
	{name: "sync", run: (*bench).phaseSync},
	{name: "sliding", run: (*bench).phaseSliding},
	{name: "login", run: (*bench).phaseLogin},
	{name: "join", run: (*bench).phaseJoin},
	{name: "connected", run: (*bench).phaseConnected},
	{name: "message", run: (*bench).phaseMessage},
	{name: "idle", run: (*bench).phaseIdle},
	{name: "steady", run: (*bench).phaseSteady},
	{name: "sliding-idle", run: (*bench).phaseSlidingIdle, offline: true, extra: true},
	{name: "storage", run: (*bench).phaseStorage, offline: true},
}

// phaseSync: initial syncs of a user in 1,000 rooms (unfiltered, the
// first and five more), a lazy-loading initial sync limited to the
// all-staff room, and that room's /members; each series within
// -sync-budget.
func (b *bench) phaseSync(ctx context.Context) error {
	sec := b.sec
	heavy := sec.users[sec.plan.heavyUser(0)]
	rooms := sec.plan.heavyRoom / 2 * 2
	label := "initial sync, user in " + thousands(int64(rooms)) + " rooms"
	// -sync-cpuprofile: the server's profile over the first sync, taken
	// for a fixed time (the metrics listener's profile cannot be stopped);
	// the next syncs wait for it.
	profiled := b.profileServer(ctx, b.opts.syncProfile, b.opts.syncProfileFor)
	if b.opts.syncProfile != "" {
		time.Sleep(200 * time.Millisecond) // the profile under way before the sync
	}
	uses, size, cut, err := b.seriesThen(ctx, 6, func(ctx context.Context) (int, error) {
		var ans syncAnswer
		n, err := b.c.do(ctx, http.MethodGet, "/_matrix/client/v3/sync?timeout=0", heavy.token, nil, &ans)
		if err == nil && len(ans.Rooms.Join) != rooms {
			err = fmt.Errorf("initial sync of %s: %d rooms, want %d", heavy.id, len(ans.Rooms.Join), rooms)
		}
		return n, err
	}, func(done int) {
		if done == 1 {
			if err := <-profiled; err != nil {
				b.logf("first sync profile: %v", err)
			}
		}
	})
	if err != nil {
		return err
	}
	first, next := b.cutNote(cut, 0), b.cutNote(cut, 0)
	if len(uses) > 0 {
		first = fmt.Sprintf("%s; %s (%s)", ms(uses[0].wall), uses[0].per(1), mib(int64(size)))
	}
	perRoom := next
	if len(uses) > 1 {
		med := medianUse(uses[1:])
		next = fmt.Sprintf("%s; %s%s", ms(med.wall), med.per(1), b.cutNote(cut, len(uses)-1))
		perRoom = med.per(rooms)
	}
	b.add(label, "first: wall; server CPU", "≤ 200 ms, first ≤ next", first)
	b.add(label, "next 5, median: wall; server CPU", "≤ 200 ms", next)
	b.add(label, "server CPU per room (next 5, median)", "≤ 0.2 ms", perRoom)

	big := sec.big[2]
	member := sec.users[sec.plan.pollers] // in all staff, in no other big room
	lazy, _ := json.Marshal(map[string]any{"room": map[string]any{"rooms": []string{big.id},
		"state": map[string]any{"lazy_load_members": true}, "timeline": map[string]any{"limit": 20}}})
	label = "all-staff room (" + thousands(int64(big.size())) + " members)"
	if err := b.repeat(ctx, label, "lazy-loaded initial sync: first; median of next 4", "≤ 30 ms", func(ctx context.Context) (int, error) {
		return b.c.do(ctx, http.MethodGet, "/_matrix/client/v3/sync?timeout=0&filter="+url.QueryEscape(string(lazy)), member.token, nil, nil)
	}); err != nil {
		return err
	}
	return b.repeat(ctx, label, "GET /members: first; median of next 4", "≤ 100 ms", func(ctx context.Context) (int, error) {
		return b.c.do(ctx, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(big.id)+"/members", member.token, nil, nil)
	})
}

// series times up to n requests one after the other within -sync-budget.
// A request the budget cuts off ends the series (cut), without error.
func (b *bench) series(ctx context.Context, n int, f func(ctx context.Context) (int, error)) (uses []cpuUse, size int, cut bool, err error) {
	return b.seriesThen(ctx, n, f, nil)
}

// seriesThen is series calling after (when not nil) between the requests,
// outside what they measure, with the number of requests done.
func (b *bench) seriesThen(ctx context.Context, n int, f func(ctx context.Context) (int, error), after func(done int)) (uses []cpuUse, size int, cut bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.syncBudget)
	defer cancel()
	for i := range n {
		s0 := b.m.sample()
		sz, err := f(ctx)
		if err != nil {
			return uses, size, ctx.Err() != nil, ignoreCut(ctx, err)
		}
		uses = append(uses, b.m.since(s0))
		size = sz
		if after != nil {
			after(i + 1)
		}
	}
	return uses, size, false, nil
}

// ignoreCut drops the error of a request that ctx's deadline cut off:
// the phase reports what it measured before.
func ignoreCut(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// cutNote says that a budget cut a series short after done requests.
func (b *bench) cutNote(cut bool, done int) string {
	switch {
	case !cut:
		return ""
	case done == 0:
		return fmt.Sprintf("no answer within %s (budget)", b.opts.syncBudget)
	}
	return fmt.Sprintf(" (%d done within the budget of %s)", done, b.opts.syncBudget)
}

// repeat times five requests and adds a row with the first and the
// median of the others: wall time, server CPU and size.
func (b *bench) repeat(ctx context.Context, phase, figure, target string, f func(ctx context.Context) (int, error)) error {
	uses, size, cut, err := b.series(ctx, 5, f)
	if err != nil {
		return err
	}
	v := b.cutNote(cut, 0)
	switch {
	case len(uses) == 1:
		v = ms(uses[0].wall) + b.cutNote(cut, 1)
	case len(uses) > 1:
		med := medianUse(uses[1:])
		v = fmt.Sprintf("%s; %s (CPU %s; %s)%s", ms(uses[0].wall), ms(med.wall), med.per(1), mib(int64(size)), b.cutNote(cut, len(uses)))
	}
	b.add(phase, figure, target, v)
	return nil
}

// medianUse is the median of each part of several measurements.
func medianUse(us []cpuUse) cpuUse {
	var lux, pg, wall []time.Duration
	for _, u := range us {
		lux, pg, wall = append(lux, u.lux), append(pg, u.pg), append(wall, u.wall)
	}
	return cpuUse{lux: median(lux), pg: median(pg), wall: median(wall), withPG: len(us) > 0 && us[0].withPG}
}

// phaseLogin: password logins with the server's default argon2id costs
// from several clients at once, against cores ÷ the time of one hash.
func (b *bench) phaseLogin(ctx context.Context) error {
	const clients = 12
	logins := b.sec.plan.loginCount
	hash := b.hashTime()
	target := float64(runtime.NumCPU()) / hash.Seconds()
	var next atomic.Int64
	lat := make([]time.Duration, logins)
	errs := make(chan error, clients)
	s0 := b.m.sample()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= logins {
					return
				}
				user := localpart(b.sec.plan.loginUser(i % b.sec.plan.loginUsers))
				body := map[string]any{"type": "m.login.password", "password": benchPassword,
					"identifier": map[string]string{"type": "m.id.user", "user": user}}
				t0 := time.Now()
				if err := discard(b.c.do(ctx, http.MethodPost, "/_matrix/client/v3/login", "", body, nil)); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	u := b.m.since(s0)
	select {
	case err := <-errs:
		return err
	default:
	}
	slices.Sort(lat)
	rate := float64(logins) / u.wall.Seconds()
	// What the cores allow at the CPU a login cost: the rate on an idle
	// machine, beside the rate measured on this one.
	capacity := float64(runtime.NumCPU()) / ((u.lux + u.pg) / time.Duration(logins)).Seconds()
	b.add("login ("+strconv.Itoa(logins)+", "+strconv.Itoa(clients)+" clients)", "logins/s (cores ÷ CPU per login); p50 / p99", fmt.Sprintf("≥ %.0f /s (%d cores ÷ %s CPU per hash)", target, runtime.NumCPU(), ms(hash)),
		fmt.Sprintf("%.1f /s (%.1f /s); %s / %s (CPU %s per login)", rate, capacity, ms(pct(lat, 50)), ms(pct(lat, 99)), u.per(logins)))
	return nil
}

// hashTime is the median CPU time of one argon2id hash at the server's
// costs, here in this process (argon2 hashes on goroutines of its own, so
// the process's CPU, measured while this process does nothing else): CPU,
// not wall time, so that other work on the machine does not move the
// target.
func (b *bench) hashTime() time.Duration {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	self := os.Getpid()
	var ds []time.Duration
	for range 5 {
		t0, _ := procCPU(self)
		argon2.IDKey([]byte(benchPassword), salt, b.hashT, b.hashMem, 1, 32)
		t1, _ := procCPU(self)
		ds = append(ds, t1-t0)
	}
	return median(ds)
}

// phaseJoin: new members join each big room over HTTP one after the
// other, nobody long-polling yet. The first joiner of each room joins
// unmeasured: a room's state is read and parsed on its first use after a
// start (about a second for 10,000 members), once, not per join; then
// the server settles, so that work the start left (notifications staged
// at setup being compacted) does not count either.
func (b *bench) phaseJoin(ctx context.Context) error {
	p := b.sec.plan
	for i, r := range b.sec.big {
		var lat []time.Duration
		jctx, cancel := context.WithTimeout(ctx, b.opts.joinBudget)
		warm := b.sec.users[p.joinerBase()+i*p.joiners]
		if err := discard(b.c.do(jctx, http.MethodPost, "/_matrix/client/v3/join/"+url.PathEscape(r.id), warm.token, map[string]any{}, nil)); err != nil {
			if err := ignoreCut(jctx, err); err != nil {
				cancel()
				return err
			}
		} else {
			r.joinedLater++
		}
		b.settle(10 * time.Second)
		s0 := b.m.sample()
		for j := 1; j < p.joiners; j++ {
			u := b.sec.users[p.joinerBase()+i*p.joiners+j]
			t0 := time.Now()
			err := discard(b.c.do(jctx, http.MethodPost, "/_matrix/client/v3/join/"+url.PathEscape(r.id), u.token, map[string]any{}, nil))
			if err != nil {
				if err := ignoreCut(jctx, err); err != nil {
					cancel()
					return err
				}
				break
			}
			lat = append(lat, time.Since(t0))
		}
		cancel()
		use := b.m.since(s0)
		slices.Sort(lat)
		note := ""
		if len(lat) < p.joiners-1 {
			note = fmt.Sprintf(" (%d of %d joins: budget %s reached)", len(lat), p.joiners-1, b.opts.joinBudget)
		}
		b.add(fmt.Sprintf("join, room of %s", thousands(int64(r.size()))), "server CPU per join; latency p50 / p99", "≤ 3 ms CPU",
			fmt.Sprintf("%s; %s / %s%s", use.per(len(lat)), ms(pct(lat, 50)), ms(pct(lat, 99)), note))
		r.joinedLater += len(lat)
	}
	return nil
}

// pollerFilter is what the online users sync with: lazy-loaded members
// and a timeline of 20, as Element asks; presence left out, as in the
// issue's measurements (clients that show no presence).
const pollerFilter = `{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":20}},"presence":{"not_types":["*"]}}`

// startPollers brings the online users online: each uploads its filter
// and makes a first (initial) sync with it, a few at a time within the
// poller budget; those left get a since token from a sync of no room.
// Then all of them long-poll.
func (b *bench) startPollers(ctx context.Context) error {
	if b.ps != nil {
		return nil
	}
	p := b.sec.plan
	ps := &pollers{c: b.c, tr: b.tr, timeout: b.opts.pollTimeout, filter: map[int]string{}, since: map[int]string{}}
	users := make([]int, p.pollers)
	for i := range users {
		users[i] = i
	}
	var mu sync.Mutex
	err := parallel(ctx, len(users), 16, func(i int) error {
		u := b.sec.users[users[i]]
		var ans struct {
			FilterID string `json:"filter_id"`
		}
		err := discard(b.c.do(ctx, http.MethodPost, "/_matrix/client/v3/user/"+url.PathEscape(u.id)+"/filter", u.token, json.RawMessage(pollerFilter), &ans))
		mu.Lock()
		ps.filter[users[i]] = ans.FilterID
		mu.Unlock()
		return err
	})
	if err != nil {
		return err
	}
	// Requests still running at the budget's end are cut off.
	bctx, cancel := context.WithTimeout(ctx, b.opts.pollerBudget)
	defer cancel()
	var lat []time.Duration
	s0 := b.m.sample()
	err = ignoreCut(bctx, parallel(bctx, len(users), 8, func(i int) error {
		u := b.sec.users[users[i]]
		var ans syncAnswer
		t0 := time.Now()
		if err := discard(b.c.do(bctx, http.MethodGet, "/_matrix/client/v3/sync?timeout=0&filter="+ps.filter[users[i]], u.token, nil, &ans)); err != nil {
			return ignoreCut(bctx, err)
		}
		mu.Lock()
		defer mu.Unlock()
		lat = append(lat, time.Since(t0))
		ps.since[users[i]] = ans.NextBatch
		return nil
	}))
	if err != nil {
		return err
	}
	use := b.m.since(s0)
	slices.Sort(lat)
	note := ""
	if len(lat) < len(users) {
		note = fmt.Sprintf(" (%d of %d within the budget of %s)", len(lat), len(users), b.opts.pollerBudget)
	}
	b.add(fmt.Sprintf("online users' first syncs (%s, 8 at a time)", thousands(int64(len(users)))), "lazy-loaded initial sync p50 / p99; server CPU each", "—",
		fmt.Sprintf("%s / %s; %s%s", ms(pct(lat, 50)), ms(pct(lat, 99)), use.per(len(lat)), note))
	// The others start from now, as a client that synced before would.
	noRooms := url.QueryEscape(`{"room":{"rooms":[]},"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]}}`)
	err = parallel(ctx, len(users), 16, func(i int) error {
		if ps.since[users[i]] != "" {
			return nil
		}
		var ans syncAnswer
		err := discard(b.c.do(ctx, http.MethodGet, "/_matrix/client/v3/sync?timeout=0&filter="+noRooms, b.sec.users[users[i]].token, nil, &ans))
		mu.Lock()
		ps.since[users[i]] = ans.NextBatch
		mu.Unlock()
		return err
	})
	if err != nil {
		return err
	}
	ps.lastAns.Store(time.Now().UnixNano())
	ps.start(b.sec, users)
	b.ps = ps
	ps.quiet(30 * time.Second)
	return nil
}

// phaseMessage: messages into the all-staff room, one every interval,
// while the online users long-poll: server CPU per message, delivery
// delay from the start of the send to each poller's answer, and losses
// (not seen within 10 s).
func (b *bench) phaseMessage(ctx context.Context) error {
	if err := b.startPollers(ctx); err != nil {
		return err
	}
	p := b.sec.plan
	big := b.sec.big[2]
	sender := b.sec.users[p.pollers+1] // a member who is not online
	pollers := make([]int, p.pollers)
	for i := range pollers {
		pollers[i] = i
	}
	// The room's first message since the server started loads the room
	// (its current state parsed for the send's checks: 10,000 member
	// events), once per process, or after the room sat unused long
	// enough to be trimmed; a lazy-loading sync does not load it. It is
	// reported apart, so that the rows below are the messages of a room
	// in use.
	first := b.tr.expect("big-first", pollers)
	typ, content := messageContent("big", marker(first)+" all staff", 100)
	f0, t0 := b.m.sample(), time.Now()
	if err := b.c.send(ctx, sender.token, big.id, typ, "big"+strconv.Itoa(first), content); err != nil {
		return err
	}
	firstSend := time.Since(t0)
	b.tr.waitDelivered(ctx, "big-first", lostAfter)
	time.Sleep(200 * time.Millisecond) // the pollers' next requests
	firstUse := b.m.since(f0)
	firstDelays, _ := b.tr.delivery("big-first")
	time.Sleep(b.opts.interval)

	var sends []time.Duration
	b.logf("sending %d messages into the all-staff room, one every %s", b.opts.messages, b.opts.interval)
	profiled := b.profileServer(ctx, b.opts.msgProfile, time.Duration(b.opts.messages)*b.opts.interval+time.Second)
	b.saveAllocs(ctx, b.opts.msgProfile, ".allocs.start")
	s0 := b.m.sample()
	for i := range b.opts.messages {
		n := b.tr.expect("big", pollers)
		typ, content := messageContent("big", marker(n)+" all staff", 100)
		t0 := time.Now()
		if err := b.c.send(ctx, sender.token, big.id, typ, "big"+strconv.Itoa(n), content); err != nil {
			return err
		}
		sends = append(sends, time.Since(t0))
		if i < b.opts.messages-1 {
			time.Sleep(b.opts.interval - time.Since(t0))
		}
	}
	b.tr.waitDelivered(ctx, "big", lostAfter)
	time.Sleep(200 * time.Millisecond) // the pollers' next requests
	use := b.m.since(s0)
	b.saveAllocs(ctx, b.opts.msgProfile, ".allocs.end")
	if err := <-profiled; err != nil {
		b.logf("message phase profile: %v", err)
	}
	delays, lost := b.tr.delivery("big")
	slices.Sort(sends)
	phase := fmt.Sprintf("message into the all-staff room (%s members, %s polling)", thousands(int64(big.size())), thousands(int64(p.pollers)))
	b.add(phase, "the room's first message since the start (loads the room): send; delivery p50 / p99; server CPU", "—", fmt.Sprintf("%s; %s / %s; %s",
		ms(firstSend), ms(pct(firstDelays, 50)), ms(pct(firstDelays, 99)), firstUse.per(1)))
	b.add(phase, "server CPU per message", "≤ 50 ms", use.per(b.opts.messages))
	b.add(phase, "delivery p50 / p99 / max; send p50", "p99 ≤ 100 ms", fmt.Sprintf("%s / %s / %s; %s",
		ms(pct(delays, 50)), ms(pct(delays, 99)), ms(pct(delays, 100)), ms(pct(sends, 50))))
	b.add(phase, "lost (not seen within 10 s)", "0", fmt.Sprintf("%d of %d", lost, b.opts.messages*p.pollers))
	return nil
}

// saveAllocs writes the server's allocation profile (all allocations since
// it started) to path+suffix, when path is set; two of them read with
// pprof -diff_base show what a phase allocated.
func (b *bench) saveAllocs(ctx context.Context, path, suffix string) {
	if path == "" {
		return
	}
	err := b.fetchProfile(ctx, "/debug/pprof/allocs", path+suffix)
	if err != nil {
		b.logf("allocation profile: %v", err)
	}
}

// profileServer writes a CPU profile of the server, taken over its
// metrics listener for d from now, to path (nothing when path is empty);
// the channel answers when it is written.
func (b *bench) profileServer(ctx context.Context, path string, d time.Duration) <-chan error {
	done := make(chan error, 1)
	if path == "" {
		done <- nil
		return done
	}
	go func() {
		secs := int((d + time.Second - 1) / time.Second)
		done <- b.fetchProfile(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), path)
	}()
	return done
}

// fetchProfile writes what the server's metrics listener answers at
// endpoint (a pprof profile) to path.
func (b *bench) fetchProfile(ctx context.Context, endpoint, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.metrics+endpoint, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", endpoint, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// phaseIdle: the online users long-poll and nothing happens. The window
// is one poll timeout long by default, so every poller's timeout and
// next request falls in it once.
func (b *bench) phaseIdle(ctx context.Context) error {
	if err := b.startPollers(ctx); err != nil {
		return err
	}
	b.ps.quiet(10 * time.Second)
	answers := b.ps.answers.Load()
	s0 := b.m.sample()
	select {
	case <-time.After(b.opts.idle):
	case <-ctx.Done():
		return ctx.Err()
	}
	use := b.m.since(s0)
	rss, _ := procRSS(b.m.pid)
	phase := fmt.Sprintf("idle long-pollers: %s for %s", thousands(int64(b.sec.plan.pollers)), b.opts.idle)
	pct := 100 * use.total().Seconds() / use.wall.Seconds()
	value := fmt.Sprintf("%.2f %%", pct)
	if use.withPG {
		value = fmt.Sprintf("%.2f %% (luxchat %.2f %%, PG %.2f %%)", pct, 100*use.lux.Seconds()/use.wall.Seconds(), 100*use.pg.Seconds()/use.wall.Seconds())
	}
	b.add(phase, "server CPU, % of one core", "≤ 1 %", fmt.Sprintf("%s; %d timeouts answered", value, b.ps.answers.Load()-answers))
	b.add(phase, "luxchat RSS", "(10,000 clients ≤ 300 MiB)", mib(rss))
	return nil
}

// phaseSteady: messages in DMs and groups at a steady rate, then a burst,
// then the steady rate again, while the online users long-poll;
// delivery to the online members of those rooms.
func (b *bench) phaseSteady(ctx context.Context) error {
	if err := b.startPollers(ctx); err != nil {
		return err
	}
	type target struct {
		r       *room
		sender  int
		pollers []int
	}
	var targets []target
	isPoller := func(u int) bool { return u < b.sec.plan.pollers }
	for _, r := range append(slices.Clone(b.sec.dms), b.sec.groups...) {
		sender := r.members[len(r.members)-1] // not the creator: in DMs, the invitee
		var ps []int
		for _, u := range r.members {
			if isPoller(u) && u != sender {
				ps = append(ps, u)
			}
		}
		if len(ps) > 0 {
			targets = append(targets, target{r, sender, ps})
		}
	}
	if len(targets) == 0 {
		return errors.New("no DM or group has an online member")
	}
	const rate = 50
	burst := b.sec.plan.burst
	rnd := mrand.New(mrand.NewPCG(7, 7))
	var wg sync.WaitGroup
	var sendErr atomic.Value
	var sent atomic.Int64
	fire := func(tag string) {
		t := targets[rnd.IntN(len(targets))]
		n := b.tr.expect(tag, t.pollers)
		typ, content := messageContent(t.r.kind, marker(n)+" steady", 100)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.c.send(ctx, b.sec.users[t.sender].token, t.r.id, typ, tag+strconv.Itoa(n), content); err != nil {
				sendErr.Store(err)
			}
			sent.Add(1)
		}()
	}
	// Open loop: a slow answer does not slow the senders down.
	paced := func(tag string, n int, over time.Duration) {
		tick := time.NewTicker(over / time.Duration(n))
		defer tick.Stop()
		for range n {
			<-tick.C
			fire(tag)
		}
	}
	s0 := b.m.sample()
	paced("steady", int(b.opts.steady.Seconds()*rate), b.opts.steady)
	paced("burst", burst, time.Second)
	paced("steady", int(b.opts.steady.Seconds()*rate/2), b.opts.steady/2)
	wg.Wait()
	b.tr.waitDelivered(ctx, "steady", lostAfter)
	b.tr.waitDelivered(ctx, "burst", lostAfter)
	use := b.m.since(s0)
	if err, _ := sendErr.Load().(error); err != nil {
		return err
	}
	phase := fmt.Sprintf("DMs and groups: %d msg/s, a burst of %d in 1 s", rate, burst)
	for _, tag := range []string{"steady", "burst"} {
		delays, lost := b.tr.delivery(tag)
		b.add(phase, tag+" delivery p50 / p99 / max; lost", "—",
			fmt.Sprintf("%s / %s / %s; %d of %d", ms(pct(delays, 50)), ms(pct(delays, 99)), ms(pct(delays, 100)), lost, len(delays)+lost))
	}
	b.add(phase, "server CPU per message", "—", use.per(int(sent.Load())))
	return nil
}

// phaseStorage: text messages (2,000 at scale 1) of about 100 bytes
// into groups over HTTP; what the database grew by, per message, and
// which tables and indexes grew most.
func (b *bench) phaseStorage(ctx context.Context) error {
	n := b.sec.plan.storageMsgs
	if b.engine == "postgres" {
		// The staged-notification queue's dead rows of setup (megabytes)
		// are truncated by the server's first VACUUM of it after a
		// compaction, which fell inside the phase and made its growth
		// negative: start from the size the server keeps it at.
		if err := execDSN(ctx, b.dsn, `VACUUM push_staging`); err != nil {
			return err
		}
	}
	before, relsBefore, err := dbSize(ctx, b.engine, b.dataDir, b.dsn, b.admin, b.dbName)
	if err != nil {
		return err
	}
	rnd := mrand.New(mrand.NewPCG(9, 9))
	type job struct {
		r      *room
		sender int
	}
	jobs := make([]job, n)
	for i := range jobs {
		r := b.sec.groups[rnd.IntN(len(b.sec.groups))]
		jobs[i] = job{r, r.members[rnd.IntN(len(r.members))]}
	}
	s0 := b.m.sample()
	err = parallel(ctx, n, 8, func(i int) error {
		j := jobs[i]
		typ, content := messageContent("group", "storage message "+strconv.Itoa(i), 100)
		return b.c.send(ctx, b.sec.users[j.sender].token, j.r.id, typ, "st"+strconv.Itoa(i), content)
	})
	if err != nil {
		return err
	}
	use := b.m.since(s0)
	time.Sleep(time.Second) // writes queued after the commits (push actions)
	after, relsAfter, err := dbSize(ctx, b.engine, b.dataDir, b.dsn, b.admin, b.dbName)
	if err != nil {
		return err
	}
	target := "≤ 1,200 B on SQLite, ≤ 1,600 B on PostgreSQL"
	b.add(fmt.Sprintf("storage, %s text messages of ~100 bytes", thousands(int64(n))), "bytes per message (database growth); server CPU per send", target,
		fmt.Sprintf("%s B (%s in all); %s", thousands((after-before)/int64(n)), mib(after-before), use.per(n)))
	b.add(fmt.Sprintf("storage, %s text messages of ~100 bytes", thousands(int64(n))), "largest growth per message (table or index)", "—",
		largestGrowth(relsBefore, relsAfter, n, 5))
	return nil
}

// largestGrowth names the k relations that grew most, in bytes per
// message.
func largestGrowth(before, after map[string]int64, n, k int) string {
	type growth struct {
		name string
		d    int64
	}
	var gs []growth
	for name, size := range after {
		if d := size - before[name]; d > 0 {
			gs = append(gs, growth{name, d})
		}
	}
	slices.SortFunc(gs, func(a, b growth) int { return int(b.d - a.d) })
	var parts []string
	for _, g := range gs[:min(k, len(gs))] {
		parts = append(parts, fmt.Sprintf("%s %s", g.name, thousands(g.d/int64(n))))
	}
	if len(parts) == 0 {
		return "0 (nothing grew)"
	}
	return strings.Join(parts, ", ")
}

// parallel runs f(0..n-1) on workers goroutines and returns the
// first error (the others stop taking work then).
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		return ctx.Err()
	}
	return first
}

// settle waits until the server is quiet (under 20 % of a core over
// half a second), at most max, so that what a phase left running (a request
// cut off by a budget) does not count in the next one.
func (b *bench) settle(max time.Duration) (busy float64, ok bool) {
	deadline := time.Now().Add(max)
	for {
		s0 := b.m.sample()
		time.Sleep(500 * time.Millisecond)
		u := b.m.since(s0)
		busy = 100 * u.total().Seconds() / u.wall.Seconds()
		if busy < 20 {
			return busy, true
		}
		if time.Now().After(deadline) {
			return busy, false
		}
	}
}

// pct is the p-th percentile of sorted durations (0 when empty).
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return pct(s, 50)
}

func mib(n int64) string {
	if n < 0 { // a difference: the collector returned memory meanwhile
		return "−" + mib(-n)
	}
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
