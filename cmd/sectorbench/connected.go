package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// phaseConnected: what connected clients cost the server in memory and
// idle CPU. It measures the server with nobody long-polling (when no
// phase before started the online users), with the online users
// (1,000 at scale 1), and with -connected clients (10,000 at scale 1):
// the online users and more, each a keep-alive connection long-polling
// /sync with its own since token and the online users' filter, as
// Element does. The extra clients are other accounts of the sector
// (several connections per account when the sector has too few, as
// several devices of one user would be); they disconnect at the end of
// the phase. Each level is measured after one idle window: RSS, where
// Go's memory goes (the metrics listener's runtime memory classes) and
// the server's CPU.
func (b *bench) phaseConnected(ctx context.Context) error {
	p := b.sec.plan
	n := b.opts.connected
	if n == 0 {
		n = p.connected
	}
	if n < p.pollers {
		return fmt.Errorf("-connected %d: fewer than the %d online users", n, p.pollers)
	}
	if lim, err := openFileLimit(b.m.pid); err == nil && lim < int64(n)+1000 {
		return fmt.Errorf("luxchat may open %d files, too few for %d connections (raise the hard limit: ulimit -Hn)", lim, n)
	}
	label := func(k int) string { return "connected clients: " + thousands(int64(k)) }
	if b.ps == nil {
		b.settle(30 * time.Second)
		if err := b.measureConnected(ctx, label(0)); err != nil {
			return err
		}
		if err := b.startPollers(ctx); err != nil {
			return err
		}
	}
	b.ps.quiet(10 * time.Second)
	before, err := b.memory(ctx)
	if err != nil {
		return err
	}
	if err := b.measureConnected(ctx, label(p.pollers), b.ps); err != nil {
		return err
	}
	extra, err := b.connectMore(ctx, n-p.pollers)
	if extra != nil {
		defer extra.stop()
	}
	if err != nil {
		return err
	}
	if err := b.measureConnected(ctx, label(n), b.ps, extra); err != nil {
		return err
	}
	after, err := b.memory(ctx)
	if err != nil {
		return err
	}
	if n > p.pollers {
		per := (after.rss - before.rss) / int64(n-p.pollers)
		perGo := (after.goMapped() - before.goMapped()) / float64(n-p.pollers)
		b.add("connected clients", fmt.Sprintf("RSS per client beyond the first %s (Go's share)", thousands(int64(p.pollers))), "—",
			fmt.Sprintf("%s (%s); %d → %d goroutines", mib(per), mib(int64(perGo)), before.goroutines, after.goroutines))
	}
	return nil
}

// measureConnected waits for every client of sets to have had a poll
// answered (a client's first poll is not its usual one: it comes online)
// and to be waiting on the next, lets one idle window pass and adds the
// level's rows.
func (b *bench) measureConnected(ctx context.Context, label string, sets ...*pollers) error {
	want := 0
	for _, ps := range sets {
		want += len(ps.since)
	}
	// Thousands of clients coming online at once queue for the
	// database (each sets its presence and wakes its roommates): the
	// level is measured once they are all online and waiting, within
	// what the phase's budget leaves for the window.
	t0 := time.Now()
	arrival := b.m.sample()
	deadline := t0.Add(b.opts.pollTimeout + 2*time.Minute)
	if d, ok := ctx.Deadline(); ok && d.Add(-2*time.Minute-b.opts.idle).After(deadline) {
		deadline = d.Add(-2*time.Minute - b.opts.idle)
	}
	for (online(sets) < want || waiting(sets) < want) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	b.logf("  %s: %d of %d online, %d waiting, after %s", label, online(sets), want, waiting(sets), time.Since(t0).Round(time.Second))
	if want > 0 {
		failed := int64(0)
		for _, ps := range sets {
			failed += ps.errs.Load()
		}
		use := b.m.since(arrival)
		b.add(label, "coming online: time until all are online and waiting; server CPU; long polls failed so far", "—",
			fmt.Sprintf("%s (%d of %d); %s; %d", time.Since(t0).Round(time.Second), online(sets), want, use.per(1), failed))
	}
	// The first polls of thousands of clients coming online set their
	// presence; what that wakes settles before the idle window.
	b.settle(time.Minute)
	answers := answered(sets)
	mem0, err := b.memory(ctx)
	if err != nil {
		return err
	}
	s0 := b.m.sample()
	select {
	case <-time.After(b.opts.idle):
	case <-ctx.Done():
		return ctx.Err()
	}
	use := b.m.since(s0)
	mem, err := b.memory(ctx)
	if err != nil {
		return err
	}
	value := fmt.Sprintf("%.2f %% (GC %.2f %%)", 100*use.total().Seconds()/use.wall.Seconds(), 100*(mem.gcCPU-mem0.gcCPU)/use.wall.Seconds())
	if use.withPG {
		value += fmt.Sprintf(" (PG %.2f %%)", 100*use.pg.Seconds()/use.wall.Seconds())
	}
	b.add(label, "luxchat RSS; server CPU over "+b.opts.idle.String()+", % of one core (the collector's)", "10,000 clients ≤ 300 MiB",
		fmt.Sprintf("%s; %s, %d polls answered", mib(mem.rss), value, answered(sets)-answers))
	b.add(label, "Go: live heap; heap in use / free kept / returned; stacks; runtime; outside Go", "—", mem.String())
	return nil
}

func waiting(sets []*pollers) int {
	n := 0
	for _, ps := range sets {
		n += int(ps.waiting.Load())
	}
	return n
}

func online(sets []*pollers) int {
	n := 0
	for _, ps := range sets {
		n += int(ps.online.Load())
	}
	return n
}

func answered(sets []*pollers) int64 {
	var n int64
	for _, ps := range sets {
		n += ps.answers.Load()
	}
	return n
}

// connectMore brings n more clients online, each long-polling on its
// own connection with the online users' filter, given inline (parsed
// once by the server, as an uploaded one would be), from a since token
// of now: a token is stream positions, the same for every user that
// synced before and saw nothing since, so one sync gives it to all.
func (b *bench) connectMore(ctx context.Context, n int) (*pollers, error) {
	if n <= 0 {
		return nil, nil
	}
	p := b.sec.plan
	lo, hi := p.pollers+2, p.ordinary() // not online yet, not a heavy user
	span := hi - lo
	noRooms := url.QueryEscape(`{"room":{"rooms":[]},"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]}}`)
	var ans syncAnswer
	if err := discard(b.c.do(ctx, http.MethodGet, "/_matrix/client/v3/sync?timeout=0&filter="+noRooms, b.sec.users[lo].token, nil, &ans)); err != nil {
		return nil, err
	}
	ps := &pollers{c: newClientFor(b.c.base, n+100), tr: b.tr, timeout: b.opts.pollTimeout, filter: map[int]string{}, since: map[int]string{}}
	keys := make([]int, n)
	tokens := make([]string, n)
	for i := range n {
		u := lo + i%span // several connections per account when the sector has too few
		if n <= span {
			u = lo + i*span/n // else spread over the sector
		}
		key := -1 - i // apart from the online users' keys: the tracker expects none of these
		ps.since[key], ps.filter[key] = ans.NextBatch, pollerFilter
		keys[i], tokens[i] = key, b.sec.users[u].token
	}
	ps.startKeys(keys, tokens)
	b.logf("  %d more clients long-polling", n)
	return ps, nil
}

// memStats is the server's memory as its runtime sees it.
type memStats struct {
	rss        int64
	live       float64 // live heap at the last collection
	objects    float64 // heap in objects (live or not yet collected)
	unused     float64 // heap spans in use, unused space within
	free       float64 // free heap kept, not returned to the OS
	released   float64 // free heap returned to the OS
	stacks     float64 // goroutine and OS thread stacks
	runtime    float64 // metadata, profiling buckets, other
	total      float64 // all Go mapped
	limit      float64
	goroutines int
	gcCPU      float64 // CPU seconds the collector used so far (estimated by the runtime)
}

// goMapped is what of Go's memory may be resident: all it mapped but
// what it returned.
func (m memStats) goMapped() float64 { return m.total - m.released }

func (m memStats) String() string {
	f := func(v float64) string { return mib(int64(v)) }
	return fmt.Sprintf("%s; %s / %s / %s; %s; %s; %s (RSS − Go's); limit %s; %d goroutines",
		f(m.live), f(m.objects+m.unused), f(m.free), f(m.released), f(m.stacks), f(m.runtime),
		mib(m.rss-int64(m.goMapped())), f(m.limit), m.goroutines)
}

// memory reads the server's RSS and its runtime's memory classes from
// the metrics listener.
func (b *bench) memory(ctx context.Context) (memStats, error) {
	var m memStats
	var err error
	if m.rss, err = procRSS(b.m.pid); err != nil {
		return m, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.metrics+"/metrics", nil)
	if err != nil {
		return m, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	v := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err == nil {
			v[name] = f
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	const c = "go_memory_classes_"
	if _, ok := v[c+"total_bytes"]; !ok {
		return m, fmt.Errorf("%s/metrics has no %stotal_bytes", b.metrics, c)
	}
	m.live = v["go_gc_heap_live_bytes"]
	m.objects = v[c+"heap_objects_bytes"]
	m.unused = v[c+"heap_unused_bytes"]
	m.free = v[c+"heap_free_bytes"]
	m.released = v[c+"heap_released_bytes"]
	m.stacks = v[c+"heap_stacks_bytes"] + v[c+"os_stacks_bytes"]
	m.total = v[c+"total_bytes"]
	m.runtime = m.total - m.objects - m.unused - m.free - m.released - m.stacks
	m.limit = v["go_gc_gomemlimit_bytes"]
	m.goroutines = int(v["go_goroutines"])
	m.gcCPU = v["go_cpu_classes_gc_total_cpu_seconds_total"]
	return m, nil
}

// openFileLimit is a process's soft limit of open files.
func openFileLimit(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no open file limit for pid %d", pid)
}
