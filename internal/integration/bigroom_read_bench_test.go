package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"luxchat/internal/rooms"
	ts "luxchat/internal/testserver"
)

// processCPU is the CPU time this process has used (user and system): the
// server runs in it, so this is the server's CPU plus the client's small
// share.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBigRoomReads measures what a member reads of a room of
// bigRoomMembers() members with a short timeline: GET /members and an
// initial sync limited to the room with lazy-loaded members (as
// cmd/sectorbench's sync phase does). The server is restarted after the
// setup so that the first request of each meets cold caches; those are
// logged, the rest reported per operation with the process's CPU time.
// LUXCHAT_BENCH_ENGINE=postgres runs it on PostgreSQL.
//
//	LUXCHAT_BENCH_MEMBERS=10000 go test ./internal/integration -run '^$' -bench BigRoomReads -benchtime 5x
func BenchmarkBigRoomReads(b *testing.B) {
	var opts []ts.Option
	if os.Getenv("LUXCHAT_BENCH_ENGINE") == "postgres" {
		opts = append(opts, ts.WithPostgres(b))
	}
	s := ts.New(b, opts...)
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	n := bigRoomMembers()
	members := seedAccounts(b, s, "m", n)
	start := time.Now()
	joinAll(b, s, room, members)
	b.Logf("%d joins in %v", n, time.Since(start))
	ctx := context.Background()
	for i := range 30 { // a timeline of many senders, as in a busy room
		if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: members[i*(n/30)], Content: json.RawMessage(`{"msgtype":"m.text","body":"hello"}`)}, nil); err != nil {
			b.Fatal(err)
		}
	}
	s = s.Restart(b)
	reader := s.Anonymous(b)
	reader.UserID, reader.DeviceID, reader.Token = alice.UserID, alice.DeviceID, alice.Token
	alice = reader
	filter := url.QueryEscape(fmt.Sprintf(`{"room":{"rooms":[%q],"state":{"lazy_load_members":true},"timeline":{"limit":20}}}`, room))
	lazySync := func() int {
		r := alice.Do("GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter, nil)
		if r.Status != 200 {
			b.Fatalf("sync: %d %s", r.Status, r.Body)
		}
		return len(r.Body)
	}
	members_ := func() int {
		r := alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/members", nil)
		if r.Status != 200 {
			b.Fatalf("members: %d %s", r.Status, r.Body)
		}
		return len(r.Body)
	}
	first := func(name string, f func() int) {
		c0, t0 := processCPU(), time.Now()
		size := f()
		b.Logf("first %s: %v wall, %v CPU, %d bytes", name, time.Since(t0).Round(time.Microsecond), (processCPU() - c0).Round(time.Microsecond), size)
	}
	stop := profile(b, "first")
	first("lazy-loaded sync", lazySync)
	first("members", members_)
	stop()
	each := func(name string, f func() int) func(b *testing.B) {
		return func(b *testing.B) {
			defer profile(b, name)()
			c0 := processCPU()
			size := 0
			b.ResetTimer()
			for range b.N {
				size = f()
			}
			b.ReportMetric(float64((processCPU()-c0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(size), "bytes")
		}
	}
	b.Run("lazysync", each("lazysync", lazySync))
	b.Run("members", each("members", members_))
}

// profile writes a CPU profile to $LUXCHAT_BENCH_PROFILE/name.pprof until
// the returned function is called (nothing when the variable is unset):
// the measured part alone, without the setup -cpuprofile would include.
func profile(b *testing.B, name string) func() {
	dir := os.Getenv("LUXCHAT_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name+".pprof"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
