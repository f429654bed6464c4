package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// BenchmarkAppServiceTransactions measures how fast the queue of one
// application service drains: 2,000 messages wait while the service
// holds its first transaction, then the time until all have arrived is
// taken: events/s, and the CPU time per event of the process and of
// PostgreSQL (LUXCHAT_BENCH_POSTGRES=1 with LUXCHAT_TEST_POSTGRES).
func BenchmarkAppServiceTransactions(b *testing.B) {
	const n = 2000
	var got atomic.Int64
	release := make(chan struct{})
	var held atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if held.CompareAndSwap(false, true) {
			<-release
		}
		var txn struct {
			Events []json.RawMessage `json:"events"`
		}
		_ = json.NewDecoder(r.Body).Decode(&txn)
		got.Add(int64(len(txn.Events)))
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	file := filepath.Join(b.TempDir(), "bench.yaml")
	reg := fmt.Sprintf("id: bench\nurl: %s\nas_token: bench-as\nhs_token: bench-hs\nsender_localpart: _bench_bot\nnamespaces:\n  users: [{exclusive: true, regex: \"@_bench_.*\"}]\n", srv.URL)
	if err := os.WriteFile(file, []byte(reg), 0o600); err != nil {
		b.Fatal(err)
	}
	opts := []ts.Option{ts.WithConfig(func(c *config.Config) { c.AppServices.ConfigFiles = []string{file} })}
	if os.Getenv("LUXCHAT_BENCH_POSTGRES") != "" {
		opts = append(opts, ts.WithPostgres(b))
	}
	s := ts.New(b, opts...)
	bot := s.Anonymous(b)
	bot.Token = "bench-as"
	var room struct {
		RoomID string `json:"room_id"`
	}
	bot.MustDo("POST", "/_matrix/client/v3/createRoom", map[string]any{}, &room)
	for i := range n {
		bot.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/t%d", esc(room.RoomID), i), map[string]string{"msgtype": "m.text", "body": "hello"}, nil)
	}
	for !held.Load() {
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	cpu := serverCPU(b, s)
	start := time.Now()
	close(release)
	for got.Load() < n {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	end := serverCPU(b, s)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	// CPU per event of the whole process (the pusher, the store's reads,
	// the test's receiving service), and of PostgreSQL's backends.
	b.ReportMetric(float64((end.self-cpu.self).Microseconds())/n, "cpu-µs/event")
	var pg time.Duration
	for pid, c := range end.pg {
		pg += c - cpu.pg[pid]
	}
	if len(end.pg) > 0 {
		b.ReportMetric(float64(pg.Microseconds())/n, "pg-cpu-µs/event")
	}
}
