package integration

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"luxchat/internal/slidingsync"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// BenchmarkSlidingSyncWindow measures simplified sliding sync for a user
// in LUXCHAT_BENCH_ROOMS (default 1,000) rooms shaped like a sector's
// (seedManyRooms) asking for the 20 most recent, as Element X starts:
// timeline_limit 1, the create, name, avatar and encryption events and
// lazy members. The first request after a restart is logged; "new" is
// a connection's first request on a server that has served one; "woken" the
// request after one new message in a room of the window. Each reports the
// process CPU and the database statements per request; their cost must
// follow the window, not the user's room count.
func BenchmarkSlidingSyncWindow(b *testing.B) {
	var opts []ts.Option
	if os.Getenv("LUXCHAT_BENCH_POSTGRES") != "" {
		opts = append(opts, ts.WithPostgres(b))
	}
	s := ts.New(b, opts...)
	alice := s.Register(b, "alice")
	n := 1000
	if v, err := fmt.Sscan(os.Getenv("LUXCHAT_BENCH_ROOMS"), &n); err != nil || v != 1 {
		n = 1000
	}
	seedManyRooms(b, s, alice.UserID, n)
	s = s.Restart(b) // the first request below meets cold caches
	body := (`{"lists": {"all": {"ranges": [[0, 19]], "timeline_limit": 1, "required_state": [
		["m.room.create", ""], ["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"]]}},
		"extensions": {"to_device": {"enabled": true}, "e2ee": {"enabled": true}}}`)
	req, err := slidingsync.DecodeRequest([]byte(body), "", "")
	if err != nil {
		b.Fatal(err)
	}
	req.UserID, req.DeviceID, req.SetPresence = alice.UserID, alice.DeviceID, "offline"
	run := func(b *testing.B, ctx context.Context, r slidingsync.Request) *slidingsync.Response {
		resp, err := s.SlidingSync.Sync(ctx, r)
		if err != nil {
			b.Fatal(err)
		}
		return resp
	}
	report := func(b *testing.B, cpu time.Duration, stmts int64) {
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
		b.ReportMetric(float64(stmts)/float64(b.N), "stmts/op")
	}
	// The first request after a restart: the window's rooms are read
	// (state, summaries, timelines) and the others' newest positions.
	ctx, count := store.CountStatements(context.Background())
	if prof := os.Getenv("LUXCHAT_BENCH_SYNC_PROFILE"); prof != "" { // a CPU profile of that request alone
		f, err := os.Create(prof)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	c0 := processCPU()
	run(b, ctx, req)
	pprof.StopCPUProfile()
	b.Logf("first request after a restart: %v CPU, %d statements", processCPU()-c0, count.Load())
	b.Run("new", func(b *testing.B) {
		var cpu time.Duration
		var stmts int64
		for i := 0; i < b.N; i++ {
			ctx, count := store.CountStatements(context.Background())
			c0 := processCPU()
			resp := run(b, ctx, req)
			cpu += processCPU() - c0
			stmts += count.Load()
			if len(resp.Rooms) != 20 || resp.Lists["all"].Count != n {
				b.Fatalf("%d rooms of %d", len(resp.Rooms), resp.Lists["all"].Count)
			}
		}
		report(b, cpu, stmts)
	})
	b.Run("woken", func(b *testing.B) {
		first := run(b, context.Background(), req)
		var room string
		for id := range first.Rooms {
			room = id
			break
		}
		pos := first.Pos
		var cpu time.Duration
		var stmts int64
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			alice.SendText(room, fmt.Sprint("news ", i))
			b.StartTimer()
			r := req
			r.Pos = pos
			ctx, count := store.CountStatements(context.Background())
			c0 := processCPU()
			resp := run(b, ctx, r)
			cpu += processCPU() - c0
			stmts += count.Load()
			if len(resp.Rooms) != 1 || len(resp.Rooms[room].Timeline) != 1 {
				b.Fatalf("woken: %d rooms", len(resp.Rooms))
			}
			pos = resp.Pos
		}
		report(b, cpu, stmts)
	})
}
