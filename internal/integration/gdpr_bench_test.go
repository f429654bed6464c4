package integration

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"luxchat/internal/store"
)

// BenchmarkGDPRExport measures the export of a user who sent
// LUXCHAT_BENCH_EVENTS (default 100,000) events — created through the
// store for the setup's speed, half of them m.room.encrypted — and
// uploaded 20 files of 1 MiB, into an archive that is counted and
// dropped: the server's CPU per export (cpu-ms/op, with the database's on
// PostgreSQL), the peak of the live heap during the export above what it
// was before (peak-heap-MiB) and the process's peak RSS during the
// export (peak-rss-MiB, from /proc after resetting it).
//
//	go test ./internal/integration -run '^$' -bench GDPRExport -benchtime 3x
//	LUXCHAT_BENCH_ENGINE=postgres go test ./internal/integration -run '^$' -bench GDPRExport -benchtime 3x
func BenchmarkGDPRExport(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("LUXCHAT_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	s := bigRoomServer(b)
	ctx := context.Background()
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	file := make([]byte, 1<<20) // 1 MiB, incompressible as most uploads are
	_, _ = rand.Read(file)
	for i := range 20 {
		upload(b, alice, "application/octet-stream", fmt.Sprintf("f%d.bin", i), file)
	}
	const batch = 5000
	ts0 := time.Now().UnixMilli()
	for start := 0; start < n; start += batch {
		err := s.Store.InTx(ctx, func(tx *store.Tx) error {
			for i := start; i < min(start+batch, n); i++ {
				typ, content := "m.room.message", fmt.Sprintf(`{"body":"message number %d of the benchmark, with some words","msgtype":"m.text"}`, i)
				if i%2 == 1 {
					typ, content = "m.room.encrypted", fmt.Sprintf(`{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"%s","device_id":"DEV","sender_key":"sXwYlEA4RsIYPThzQzqBx4H9I3pH3LhU0OyVb5cNZ0s","session_id":"s%d"}`,
						strings.Repeat("AwgAEnAwZfqKVqPRxcjYRb", 12), i/1000)
				}
				pdu := fmt.Sprintf(`{"auth_events":[],"content":%s,"depth":%d,"hashes":{"sha256":"x"},"origin_server_ts":%d,"prev_events":[],"room_id":"%s","sender":"%s","signatures":{},"type":"%s"}`,
					content, i+10, ts0+int64(i), room, alice.UserID, typ)
				row := &store.EventRow{Pos: tx.Alloc(s.Store.Streams.Events), EventID: fmt.Sprintf("$bench%07d", i), RoomID: room, Type: typ,
					Sender: alice.UserID, Depth: int64(i + 10), OriginTS: ts0 + int64(i), PDU: []byte(pdu), Unsigned: []byte("{}"), StateGroup: 1,
					TxnID: sql.NullString{}}
				if err := tx.InsertEvent(ctx, row); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	var size int64
	export := func() {
		cw := &countWriter{}
		m, err := s.GDPR.Export(ctx, alice.UserID, cw, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range m.Files {
			if f.Name == "events.jsonl" && f.Count < int64(n) {
				b.Fatalf("exported %d events of %d", f.Count, n)
			}
		}
		size = cw.n
	}
	export() // warm: the first read of the table from disk
	heap := newHeapPeak()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset VmHWM to the current RSS
	cpu := serverCPU(b, s)
	b.ResetTimer()
	for range b.N {
		export()
	}
	b.StopTimer()
	reportCPU(b, s, cpu)
	b.ReportMetric(float64(heap.stop())/(1<<20), "peak-heap-MiB")
	if hwm := vmHWM(); hwm > 0 {
		b.ReportMetric(float64(hwm)/(1<<20), "peak-rss-MiB")
	}
	b.ReportMetric(float64(size)/(1<<20), "archive-MiB")
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

// heapPeak samples the live heap every 5 ms until stop, which returns
// its peak above the heap when sampling began.
type heapPeak struct {
	base, peak uint64
	done       chan struct{}
	wg         sync.WaitGroup
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func newHeapPeak() *heapPeak {
	h := &heapPeak{base: heapBytes(), done: make(chan struct{})}
	h.peak = h.base
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-t.C:
				h.peak = max(h.peak, heapBytes())
			}
		}
	}()
	return h
}

func (h *heapPeak) stop() uint64 {
	close(h.done)
	h.wg.Wait()
	return h.peak - h.base
}

// vmHWM is the process's peak resident set size (0 when unknown).
func vmHWM() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
