package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"luxchat/internal/rooms"
	ts "luxchat/internal/testserver"
)

// BenchmarkRetentionPurge fills a room on SQLite with 200,000 messages
// (LUXCHAT_RETENTION_BENCH_EVENTS) sent through the pipeline two days
// ago (rooms.Proto.OriginTS), gives it a one-day policy, and runs the
// purge job while a member keeps sending in the room. It reports the
// purge's events per second, the process CPU time per purged event,
// the longest the room's writer lock was held at once, and the p99 of
// the sends before and during the purge.
func BenchmarkRetentionPurge(b *testing.B) {
	n := 200000
	if v, err := strconv.Atoi(os.Getenv("LUXCHAT_RETENTION_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	for i := 0; i < b.N; i++ {
		s := ts.New(b, withRetention(nil))
		alice := s.Register(b, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.retention/", map[string]any{"max_lifetime": day.Milliseconds()}, nil)
		ctx := context.Background()
		old := time.Now().Add(-2 * day).UnixMilli()
		for j := range n {
			content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": fmt.Sprintf("old message number %d with some words to index", j)})
			if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: alice.UserID, Content: content, OriginTS: old + int64(j)}, nil); err != nil {
				b.Fatal(err)
			}
		}
		send := func() time.Duration {
			t0 := time.Now()
			if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: alice.UserID,
				Content: json.RawMessage(`{"msgtype":"m.text","body":"new"}`)}, nil); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0)
		}
		var before []time.Duration
		for range 500 {
			before = append(before, send())
		}
		var during []time.Duration
		var mu sync.Mutex
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				d := send()
				mu.Lock()
				during = append(during, d)
				mu.Unlock()
			}
		}()
		if os.Getenv("LUXCHAT_RETENTION_BENCH_LOG") != "" {
			s.Retention.SetAfterBatch(func(_ string, hb rooms.HistoryBatch) error {
				fmt.Fprintf(os.Stderr, "batch: scanned %d purged %d held %v\n", hb.Scanned, hb.Purged, hb.Held)
				return nil
			})
		}
		pages0, err := s.Store.SearchIndexPages(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		cpu0, t0 := cpuTime(), time.Now()
		rep, err := s.Retention.RunOnce(ctx)
		wall, cpu := time.Since(t0), cpuTime()-cpu0
		b.StopTimer()
		close(stop)
		<-done
		if err != nil || rep.Events != int64(n) {
			b.Fatalf("purged %d of %d: %v", rep.Events, n, err)
		}
		b.ReportMetric(float64(rep.Events)/wall.Seconds(), "events/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(rep.Events), "cpu-µs/event")
		b.ReportMetric(cpu.Seconds(), "cpu-s")
		b.ReportMetric(float64(rep.MaxHold.Microseconds())/1000, "max-hold-ms")
		pages1, err := s.Store.SearchIndexPages(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(pages0), "index-pages-before")
		b.ReportMetric(float64(pages1), "index-pages-after")
		b.ReportMetric(float64(rep.MaxMerge.Microseconds())/1000, "max-merge-ms")
		b.ReportMetric(p99(before), "send-p99-ms-before")
		b.ReportMetric(p99(during), "send-p99-ms-during")
		b.ReportMetric(float64(len(during)), "sends-during")
		s.Stop()
	}
}

func p99(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return float64(ds[len(ds)*99/100].Microseconds()) / 1000
}
