package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/delayed"
	ts "luxchat/internal/testserver"
)

// Delayed events at scale: what 10,000 scheduled events cost the
// server's memory, and how long 1,000 events due at the same moment take
// to be sent.

func delayedBenchServer(b *testing.B, engine string) *ts.Server {
	opts := []ts.Option{ts.WithConfig(func(c *config.Config) { c.DelayedEvents.MaxPerUser = 100000 })}
	if engine == "postgres" {
		opts = append(opts, ts.WithPostgres(b))
	}
	return ts.New(b, opts...)
}

func forEachDelayedBenchEngine(b *testing.B, f func(b *testing.B, engine string)) {
	for _, e := range []string{"sqlite", "postgres"} {
		b.Run(e, func(b *testing.B) { f(b, e) })
	}
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDelayedPending schedules 10,000 delayed events (an hour away)
// per iteration and reports the live heap they add to the server.
func BenchmarkDelayedPending(b *testing.B) {
	forEachDelayedBenchEngine(b, func(b *testing.B, engine string) {
		s := delayedBenchServer(b, engine)
		alice := s.Register(b, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		ctx := context.Background()
		content := json.RawMessage(`{"application":"m.call","call_id":"","device_id":"DEVICE","expires":14400000}`)
		const pending = 10000
		var grew uint64
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			before := liveHeap()
			for j := range pending {
				key := fmt.Sprintf("_%s_DEVICE%d_%d", alice.UserID, i, j)
				if _, err := s.Delayed.Schedule(ctx, delayed.Request{UserID: alice.UserID, DeviceID: alice.DeviceID, RoomID: room,
					Type: "org.matrix.msc3401.call.member", StateKey: &key, Content: content, DelayMS: 3600_000}); err != nil {
					b.Fatal(err)
				}
			}
			if after := liveHeap(); after > before {
				grew += after - before
			}
		}
		b.ReportMetric(float64(grew)/float64(b.N)/(1<<20), "MiB-live/10k-pending")
	})
}

// BenchmarkDelayedFire schedules 1,000 events in 100 rooms (10 each) all
// due at the same millisecond, and reports how long after that moment
// the last was sent, and the process CPU time spent meanwhile.
func BenchmarkDelayedFire(b *testing.B) {
	forEachDelayedBenchEngine(b, func(b *testing.B, engine string) {
		s := delayedBenchServer(b, engine)
		ctx := context.Background()
		type member struct{ user, device, room string }
		var members []member
		for r := range 100 {
			c := s.Register(b, fmt.Sprint("caller", r))
			members = append(members, member{c.UserID, c.DeviceID, c.CreateRoom(map[string]any{"preset": "public_chat"})})
		}
		var late, cpu time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			lead := 5 * time.Second // to schedule them all (slower on PostgreSQL)
			if engine == "postgres" {
				lead = 20 * time.Second
			}
			due := time.Now().Add(lead)
			for j := range 1000 {
				m := members[j%len(members)]
				key := fmt.Sprintf("%s_%d_%d", m.device, i, j)
				delay := time.Until(due).Milliseconds()
				if _, err := s.Delayed.Schedule(ctx, delayed.Request{UserID: m.user, DeviceID: m.device, RoomID: m.room,
					Type: "org.matrix.msc3401.call.member", StateKey: &key, Content: json.RawMessage(`{}`), DelayMS: delay}); err != nil {
					b.Fatal(err)
				}
			}
			if time.Now().After(due) {
				b.Fatal("scheduling took longer than the delay")
			}
			time.Sleep(time.Until(due))
			cpu0 := cpuTime()
			for {
				_, ok, err := s.Store.NextDelayedDue(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if !ok {
					break
				}
				if time.Since(due) > 20*time.Second {
					rows, _ := s.Store.DueDelayedEvents(ctx, time.Now().UnixMilli(), 3)
					n, _, _ := s.Store.NextDelayedDue(ctx)
					b.Fatalf("not sent 20 s after due (%d): next due %d, due rows %+v", due.UnixMilli(), n, rows)
				}
				time.Sleep(2 * time.Millisecond)
			}
			late += time.Since(due)
			cpu += cpuTime() - cpu0
		}
		b.ReportMetric(float64(late.Milliseconds())/float64(b.N), "ms-to-send-1000")
		b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/1000")
	})
}
