package integration

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"luxchat/internal/filter"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	lxsync "luxchat/internal/sync"
	ts "luxchat/internal/testserver"
)

// bigRoomMembers is the size the big-room benchmarks grow a room to
// (LUXCHAT_BENCH_MEMBERS, default 2,000).
func bigRoomMembers() int {
	if n, err := strconv.Atoi(os.Getenv("LUXCHAT_BENCH_MEMBERS")); err == nil && n > 0 {
		return n
	}
	return 2000
}

// bigRoomServer starts the server of a big-room benchmark: on SQLite, or
// on PostgreSQL when LUXCHAT_BENCH_ENGINE=postgres.
func bigRoomServer(b *testing.B) *ts.Server {
	switch e := os.Getenv("LUXCHAT_BENCH_ENGINE"); e {
	case "", "sqlite":
		return ts.New(b)
	case "postgres":
		return ts.New(b, ts.WithPostgres(b))
	default:
		b.Fatalf("LUXCHAT_BENCH_ENGINE=%q: sqlite or postgres", e)
		return nil
	}
}

// cpuSample is the CPU the benchmark's process has used so far and, on
// PostgreSQL, that of each process working on the server's database: the
// database's work is the server's too.
type cpuSample struct {
	self time.Duration
	pg   map[int]time.Duration // backend pid → CPU
	bg   map[int]bool          // the backends that are not connections (autovacuum)
}

func serverCPU(b *testing.B, s *ts.Server) cpuSample { return serverCPUT(b, s) }

func serverCPUT(b testing.TB, s *ts.Server) cpuSample {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	c := cpuSample{self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), pg: map[int]time.Duration{}, bg: map[int]bool{}}
	backends, err := s.Store.Backends(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range backends {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(be.PID) + "/schedstat")
		if err != nil {
			continue // not on this machine, or it ended
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			c.pg[be.PID] = time.Duration(ns)
			c.bg[be.PID] = be.Type != "client backend"
		}
	}
	return c
}

// reportCPU reports the server CPU per operation since start: the
// process's (cpu-ms/op) and on PostgreSQL its connections' backends'
// (pg-cpu-ms/op) and the database's other processes' (pg-bg-cpu-ms/op,
// autovacuum; one that started meanwhile counts whole).
func reportCPU(b *testing.B, s *ts.Server, start cpuSample) {
	end := serverCPU(b, s)
	b.ReportMetric(float64((end.self-start.self).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	if s.Store.Engine != store.Postgres {
		return
	}
	var pg, bg time.Duration
	for pid, c := range end.pg {
		if end.bg[pid] {
			bg += c - start.pg[pid]
		} else {
			pg += c - start.pg[pid]
		}
	}
	b.ReportMetric(float64(pg.Microseconds())/1000/float64(b.N), "pg-cpu-ms/op")
	b.ReportMetric(float64(bg.Microseconds())/1000/float64(b.N), "pg-bg-cpu-ms/op")
}

// seedAccounts creates n accounts through the store (no password hashing).
func seedAccounts(b testing.TB, s *ts.Server, prefix string, n int) []string {
	ids := make([]string, n)
	err := s.Store.InTx(context.Background(), func(tx *store.Tx) error {
		for i := range n {
			ids[i] = fmt.Sprintf("@%s%d:%s", prefix, i, s.Config.ServerName)
			if err := tx.CreateUser(context.Background(), store.User{UserID: ids[i], DisplayName: sql.NullString{String: fmt.Sprint(prefix, " ", i), Valid: true}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

func joinAll(b testing.TB, s *ts.Server, room string, users []string) {
	ctx := context.Background()
	for _, u := range users {
		if _, err := s.Rooms.ChangeMembership(ctx, rooms.MemberChange{RoomID: room, Sender: u, Target: u, Membership: "join"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJoinBigRoom measures one join into a public room that already
// has bigRoomMembers() members, with the server's CPU per join
// (cpu-ms/op; on PostgreSQL, see bigRoomServer, also the database's:
// pg-cpu-ms/op and pg-bg-cpu-ms/op, see reportCPU).
//
//	LUXCHAT_BENCH_MEMBERS=10000 go test ./internal/integration -run '^$' -bench JoinBigRoom -benchtime 200x
func BenchmarkJoinBigRoom(b *testing.B) {
	s := bigRoomServer(b)
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	n := bigRoomMembers()
	start := time.Now()
	joinAll(b, s, room, seedAccounts(b, s, "m", n))
	b.Logf("%d joins in %v", n, time.Since(start))
	extra := seedAccounts(b, s, "x", b.N)
	b.ResetTimer()
	cpu := serverCPU(b, s)
	stop := profileTimed(b)
	joinAll(b, s, room, extra)
	stop()
	reportCPU(b, s, cpu)
}

// BenchmarkSendBigRoom measures one message into a public room of
// bigRoomMembers() members.
func BenchmarkSendBigRoom(b *testing.B) {
	s := bigRoomServer(b)
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	joinAll(b, s, room, seedAccounts(b, s, "m", bigRoomMembers()))
	ctx := context.Background()
	content := json.RawMessage(`{"msgtype":"m.text","body":"hello everyone"}`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: alice.UserID, Content: content},
			&rooms.Txn{DeviceID: alice.DeviceID, ID: fmt.Sprint(i), Scope: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

// profileTimed writes a CPU profile of a benchmark's timed part to the
// file LUXCHAT_BENCH_CPUPROFILE names (go test's -cpuprofile also
// covers the setup, which dwarfs it in the big-room benchmarks).
// LUXCHAT_BENCH_MEMPROFILE names a file prefix for the allocation
// profiles at its start and end (read the difference with pprof's
// -diff_base).
func profileTimed(b *testing.B) (stop func()) {
	writeAllocs := func(suffix string) {
		if prefix := os.Getenv("LUXCHAT_BENCH_MEMPROFILE"); prefix != "" {
			f, err := os.Create(prefix + suffix)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	writeAllocs(".start")
	path := os.Getenv("LUXCHAT_BENCH_CPUPROFILE")
	if path == "" {
		return func() { writeAllocs(".end") }
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		writeAllocs(".end")
	}
}

// seedSessions gives users a device and an access token each, through the
// store.
func seedSessions(b testing.TB, s *ts.Server, users []string) []*ts.Client {
	clients := make([]*ts.Client, len(users))
	err := s.Store.InTx(context.Background(), func(tx *store.Tx) error {
		for i, u := range users {
			token := fmt.Sprintf("bench_%d_%s", i, u)
			sum := sha256.Sum256([]byte(token))
			if err := tx.UpsertDevice(context.Background(), store.Device{UserID: u, DeviceID: "BENCH"}); err != nil {
				return err
			}
			if err := tx.InsertAccessToken(context.Background(), hex.EncodeToString(sum[:]), u, "BENCH", 0); err != nil {
				return err
			}
			c := s.Anonymous(b)
			c.UserID, c.DeviceID, c.Token = u, "BENCH", token
			clients[i] = c
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return clients
}

// BenchmarkFanoutBigRoom measures one message into a public room of
// bigRoomMembers() members while LUXCHAT_BENCH_POLLERS (default 200) of
// them long-poll /sync over HTTP with a lazy-loading filter, until every
// poller has it. It reports delivery percentiles and the CPU per message
// (see reportCPU; the process's includes the pollers' own client work).
func BenchmarkFanoutBigRoom(b *testing.B) {
	s := bigRoomServer(b)
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	members := seedAccounts(b, s, "m", bigRoomMembers())
	joinAll(b, s, room, members)
	pollers := 200
	if n, err := strconv.Atoi(os.Getenv("LUXCHAT_BENCH_POLLERS")); err == nil && n > 0 {
		pollers = min(n, len(members))
	}
	clients := seedSessions(b, s, members[:pollers])
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":true}}}`)
	type syncResp struct {
		NextBatch string `json:"next_batch"`
		Rooms     struct {
			Join map[string]struct {
				Timeline struct {
					Events []struct {
						Content map[string]any `json:"content"`
					} `json:"events"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	var mu gosync.Mutex
	var latencies []time.Duration
	sent := map[string]time.Time{}
	got := make(chan struct{}, pollers*4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg gosync.WaitGroup
	// Every poller's first sync before any long-polls: each marks its
	// user online, which would wake every poller already waiting.
	firsts := make([]string, len(clients))
	for i, c := range clients {
		var first syncResp
		c.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter, nil, &first)
		firsts[i] = first.NextBatch
	}
	for i, c := range clients { // past the others' going online
		var caught syncResp
		c.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter+"&since="+firsts[i], nil, &caught)
		firsts[i] = caught.NextBatch
	}
	for i, c := range clients {
		wg.Add(1)
		go func(c *ts.Client, since string) {
			defer wg.Done()
			for ctx.Err() == nil {
				r := c.Do("GET", "/_matrix/client/v3/sync?timeout=2000&filter="+filter+"&since="+since, nil)
				if ctx.Err() != nil {
					return
				}
				var resp syncResp
				if r.Status != 200 || r.JSON(&resp) != nil {
					b.Errorf("sync: %d %s", r.Status, r.Body)
					return
				}
				now := time.Now()
				for _, ev := range resp.Rooms.Join[room].Timeline.Events {
					if body, ok := ev.Content["body"].(string); ok {
						mu.Lock()
						if t0, ok := sent[body]; ok {
							latencies = append(latencies, now.Sub(t0))
							got <- struct{}{}
						}
						mu.Unlock()
					}
				}
				since = resp.NextBatch
			}
		}(c, firsts[i])
	}
	time.Sleep(200 * time.Millisecond) // let every poller wait
	stopProfile := profileTimed(b)
	b.ResetTimer()
	cpu := serverCPU(b, s)
	for i := 0; i < b.N; i++ {
		body := fmt.Sprint("message ", i)
		mu.Lock()
		sent[body] = time.Now()
		mu.Unlock()
		if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: alice.UserID, Content: json.RawMessage(`{"msgtype":"m.text","body":"` + body + `"}`)},
			&rooms.Txn{DeviceID: alice.DeviceID, ID: body, Scope: "bench"}); err != nil {
			b.Fatal(err)
		}
		for range pollers {
			select {
			case <-got:
			case <-time.After(10 * time.Second):
				b.Fatalf("message %d: not every poller got it", i)
			}
		}
	}
	b.StopTimer()
	reportCPU(b, s, cpu)
	stopProfile()
	cancel()
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		b.ReportMetric(float64(latencies[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(latencies[n*99/100].Microseconds())/1000, "p99-ms")
	}
	wg.Wait() // each poller returns after its current poll
}

// BenchmarkWokenSync measures, in process and without HTTP, the syncs a
// message wakes: 100 members of a public room of bigRoomMembers() members,
// with a lazy-loading filter, each ask again with the token of their
// previous answer after each message (the send is outside the timer), and
// the answers are rendered. It reports allocations and the time per sync:
// what a woken long poll costs besides net/http.
//
//	go test ./internal/integration -run '^$' -bench WokenSync -benchtime 5000x
func BenchmarkWokenSync(b *testing.B) {
	s := bigRoomServer(b)
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	members := seedAccounts(b, s, "m", bigRoomMembers())
	joinAll(b, s, room, members)
	const readers = 100
	clients := seedSessions(b, s, members[:readers])
	f, err := filter.Parse([]byte(`{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":true}},"presence":{"not_types":["*"]}}`))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	reqs := make([]lxsync.Request, readers)
	for i, c := range clients {
		reqs[i] = lxsync.Request{UserID: c.UserID, DeviceID: c.DeviceID, Filter: f}
		resp, err := s.Sync.Sync(ctx, reqs[i])
		if err != nil {
			b.Fatal(err)
		}
		reqs[i].Since = resp.NextBatch
	}
	b.ReportAllocs()
	b.ResetTimer()
	var body string
	for i := 0; i < b.N; i++ {
		k := i % readers
		if k == 0 {
			b.StopTimer()
			body = fmt.Sprint("message ", i)
			if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: alice.UserID, Content: json.RawMessage(`{"msgtype":"m.text","body":"` + body + `"}`)},
				&rooms.Txn{DeviceID: alice.DeviceID, ID: body, Scope: "bench"}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		resp, err := s.Sync.Sync(ctx, reqs[k])
		if err != nil {
			b.Fatal(err)
		}
		out := resp.JSON()
		if !strings.Contains(string(out), body) {
			b.Fatalf("message %d not in the woken sync: %s", i, out)
		}
		reqs[k].Since = resp.NextBatch
	}
}

// BenchmarkInitialSyncManyRooms measures the unfiltered initial sync of a
// user in LUXCHAT_BENCH_ROOMS (default 1,000) rooms shaped like a sector's:
// half direct chats (encrypted, invited then joined), half named private
// groups of 3–30 members, three messages each. The first sync runs on a
// server just restarted (cold caches) and is logged apart; the timed ones
// repeat it. It reports the process CPU per sync and per room. It runs on
// PostgreSQL when LUXCHAT_BENCH_POSTGRES is set.
func BenchmarkInitialSyncManyRooms(b *testing.B) {
	var opts []ts.Option
	if os.Getenv("LUXCHAT_BENCH_POSTGRES") != "" {
		opts = append(opts, ts.WithPostgres(b))
	}
	s := ts.New(b, opts...)
	alice := s.Register(b, "alice")
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("LUXCHAT_BENCH_ROOMS")); err == nil && v > 0 {
		n = v
	}
	start := time.Now()
	seedManyRooms(b, s, alice.UserID, n)
	b.Logf("%d rooms in %v", n, time.Since(start))
	// What the server does every few seconds, and at shutdown: the rooms'
	// stored views, all made again here (what each busy room costs; the
	// server made most of them in the background while they were seeded).
	ms, err := s.Rooms.Memberships(context.Background(), alice.UserID)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.RoomID
	}
	s.Rooms.WantViews(ids)
	start, cpu0 := time.Now(), processCPU()
	if err := s.Rooms.PersistViews(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Logf("stored views of %d rooms made: %v wall, %v CPU", len(ids), time.Since(start), processCPU()-cpu0)
	s = s.Restart(b) // the clients keep their address
	// The first answer is decoded and checked, outside the CPU measured;
	// later ones only by size (decoding megabytes is the client's work,
	// and the process's CPU is the server's and the client's).
	var size int
	sync := func() time.Duration {
		cpu0 := processCPU()
		r := alice.Do("GET", "/_matrix/client/v3/sync?timeout=0", nil)
		cpu := processCPU() - cpu0
		if r.Status != 200 {
			b.Fatalf("sync: %d %s", r.Status, r.Body)
		}
		if size > 0 && len(r.Body) > size/2 {
			return cpu // the same rooms as the first answer, give or take ages
		}
		size = len(r.Body)
		var resp struct {
			Rooms struct {
				Join map[string]json.RawMessage `json:"join"`
			} `json:"rooms"`
		}
		if err := r.JSON(&resp); err != nil || len(resp.Rooms.Join) != n {
			b.Fatalf("%d rooms (%v)", len(resp.Rooms.Join), err)
		}
		return cpu
	}
	// LUXCHAT_BENCH_SYNC_PROFILE names files for CPU profiles of the first
	// sync (name.cold) and of the repeated ones (name.warm): -cpuprofile
	// mixes in the setup.
	prof := os.Getenv("LUXCHAT_BENCH_SYNC_PROFILE")
	profile := func(suffix string) func() {
		if prof == "" {
			return func() {}
		}
		f, err := os.Create(prof + suffix)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		return func() { pprof.StopCPUProfile(); f.Close() }
	}
	// pgCPU is what PostgreSQL's connection backends spent since a sample.
	pgCPU := func(a cpuSample) time.Duration {
		var pg time.Duration
		for pid, c := range serverCPU(b, s).pg {
			if !a.bg[pid] {
				pg += c - a.pg[pid]
			}
		}
		return pg
	}
	// LUXCHAT_BENCH_COLD_RUNS restarts the server that many times, each
	// first sync measured (profiles name.cold, name.cold2…).
	colds := 1
	if v, err := strconv.Atoi(os.Getenv("LUXCHAT_BENCH_COLD_RUNS")); err == nil && v > 1 {
		colds = v
	}
	for i := range colds {
		if i > 0 {
			s = s.Restart(b)
		}
		suffix := ".cold"
		if i > 0 {
			suffix += strconv.Itoa(i + 1)
		}
		stop := profile(suffix)
		t0 := time.Now()
		pg0 := serverCPU(b, s)
		cold := sync()
		coldPG := pgCPU(pg0)
		stop()
		b.Logf("first sync after a restart: %v wall, %v CPU (%.3f ms per room) + %v PostgreSQL, %d KiB", time.Since(t0), cold, float64(cold.Microseconds())/1000/float64(n), coldPG, size/1024)
	}
	var total time.Duration
	stop := profile(".warm")
	pg0 := serverCPU(b, s)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		total += sync()
	}
	b.StopTimer()
	stop()
	if s.Store.Engine == store.Postgres {
		b.ReportMetric(float64(pgCPU(pg0).Microseconds())/1000/float64(b.N), "pg-cpu-ms/sync")
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "cpu-ms/sync")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N)/float64(n), "cpu-ms/room")
}

// seedManyRooms puts user in n rooms through the rooms service: half
// direct chats with one other user, half named groups of 3–30 members
// (every member invited, then joining), with three messages each.
func seedManyRooms(b *testing.B, s *ts.Server, user string, n int) {
	ctx := context.Background()
	pool := seedAccounts(b, s, "o", 500)
	enc := json.RawMessage(`{"algorithm":"m.megolm.v1.aes-sha2"}`)
	for i := range n {
		var room string
		var members []string
		var err error
		if i%2 == 0 {
			other := pool[i%len(pool)]
			members = []string{other, user}
			room, err = s.Rooms.CreateRoom(ctx, other, rooms.CreateRequest{Preset: "trusted_private_chat", IsDirect: true,
				Invite: []string{user}, InitialState: []rooms.StateEvent{{Type: "m.room.encryption", Content: enc}}})
		} else {
			size := 3 + (i*7)%28
			members = []string{pool[i%len(pool)], user}
			for k := 1; len(members) < size; k++ {
				members = append(members, pool[(i+k*13)%len(pool)])
			}
			name := fmt.Sprint("Group ", i)
			room, err = s.Rooms.CreateRoom(ctx, members[0], rooms.CreateRequest{Preset: "private_chat", Name: &name, Invite: members[1:]})
		}
		if err != nil {
			b.Fatal(err)
		}
		joinAll(b, s, room, members[1:])
		for j := range 3 {
			if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: members[j%len(members)],
				Content: json.RawMessage(`{"msgtype":"m.text","body":"a message of about the length people write in a chat"}`)}, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}
