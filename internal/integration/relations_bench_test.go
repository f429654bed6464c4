package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/streamtoken"
	ts "luxchat/internal/testserver"
)

// BenchmarkMessagesRelations measures /messages (over HTTP) for a page of
// 50 messages that each have 10 edits and 20 reactions: without bundled
// aggregations, with them, and with them computed afresh (no cache).
func BenchmarkMessagesRelations(b *testing.B) {
	forEachBenchEngine(b, func(b *testing.B, opts ...ts.Option) {
		s, alice, path, _ := relationsBenchRoom(b, opts...)
		measureBundles(b, s, func() {
			if r := alice.Do("GET", path, nil); r.Status != 200 {
				b.Fatal(r.Status)
			}
		})
	})
}

// BenchmarkMessagesRelationsService is BenchmarkMessagesRelations without
// HTTP: the read side builds the page and its JSON.
func BenchmarkMessagesRelationsService(b *testing.B) {
	forEachBenchEngine(b, func(b *testing.B, opts ...ts.Option) {
		s, _, _, q := relationsBenchRoom(b, opts...)
		ctx := context.Background()
		measureBundles(b, s, func() {
			page, err := s.Read.Messages(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			_ = page.JSON()
		})
	})
}

func forEachBenchEngine(b *testing.B, f func(b *testing.B, opts ...ts.Option)) {
	b.Run("sqlite", func(b *testing.B) { f(b) })
	b.Run("postgres", func(b *testing.B) { f(b, ts.WithPostgres(b)) })
}

// relationsBenchRoom makes the room of the relations benchmarks and returns
// the /messages path (and query) of its page of 50 edited messages.
func relationsBenchRoom(b testing.TB, opts ...ts.Option) (*ts.Server, *ts.Client, string, roomread.MessagesRequest) {
	s := ts.New(b, opts...)
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	ctx := context.Background()
	n := 0
	send := func(typ string, content any) string {
		n++
		raw, _ := json.Marshal(content)
		id, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: typ, Sender: alice.UserID, Content: raw},
			&rooms.Txn{DeviceID: alice.DeviceID, ID: fmt.Sprint(n), Scope: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		return id
	}
	var parents []string
	for i := range 50 {
		parents = append(parents, send("m.room.message", map[string]any{"msgtype": "m.text", "body": fmt.Sprint("message ", i)}))
	}
	// Children come after all parents: the page read forwards from the
	// first parent is exactly the 50 parents.
	for _, p := range parents {
		for e := range 10 {
			send("m.room.message", map[string]any{"msgtype": "m.text", "body": fmt.Sprint("* edit ", e),
				"m.new_content": map[string]any{"msgtype": "m.text", "body": fmt.Sprint("edit ", e)},
				"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": p}})
		}
		for r := range 20 {
			send("m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": p, "key": fmt.Sprint("r", r)}})
		}
	}
	var first struct {
		Chunk []event `json:"chunk"`
	}
	row, err := s.Store.GetEvent(ctx, parents[0])
	if err != nil {
		b.Fatal(err)
	}
	from := streamtoken.Pagination(row.Pos - 1)
	path := "/_matrix/client/v3/rooms/" + esc(room) + "/messages?dir=f&limit=50&from=" + from
	alice.MustDo("GET", path, nil, &first)
	if len(first.Chunk) != 50 || first.Chunk[0].EventID != parents[0] || first.Chunk[49].EventID != parents[49] {
		b.Fatalf("page does not hold the 50 parents")
	}
	if bundle(first.Chunk[10], "m.replace") == nil {
		b.Fatalf("no m.replace bundle")
	}
	if strings.HasPrefix(s.Config.Database, "postgres") {
		// As autovacuum would have done by now on a server in use: without
		// statistics the planner takes the new tables for empty.
		db, err := sql.Open("pgx", s.Config.Database)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "ANALYZE"); err != nil {
			b.Fatal(err)
		}
	}
	return s, alice, path, roomread.MessagesRequest{RoomID: room, UserID: alice.UserID, DeviceID: alice.DeviceID, From: from, Limit: 50}
}

// measureBundles runs get without bundled aggregations, with them, and with
// them computed afresh, and reports the median time of each.
func measureBundles(b *testing.B, s *ts.Server, get func()) {
	// The three variants take turns within each iteration (in rotating
	// order) and the medians are reported, so that changes in the
	// machine's load affect them alike.
	var samples [3][]time.Duration // plain, bundled, uncached
	variants := [3]func(){
		func() { s.Read.SetBundleAggregations(false) },
		func() { s.Read.SetBundleAggregations(true) },
		// Computed from the database, as for a page whose children
		// changed since it was last read.
		func() { s.Read.SetBundleAggregations(true); s.Read.ForgetBundles() },
	}
	i := 0
	for b.Loop() {
		for k := range 3 {
			v := (i + k) % 3
			variants[v]()
			t0 := time.Now()
			get()
			samples[v] = append(samples[v], time.Since(t0))
		}
		i++
	}
	s.Read.SetBundleAggregations(true)
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Nanoseconds()) / 1000
	}
	plain, bundled, uncached := median(samples[0]), median(samples[1]), median(samples[2])
	b.ReportMetric(plain, "plain-µs")
	b.ReportMetric(bundled, "bundled-µs")
	b.ReportMetric(uncached, "uncached-µs")
	b.ReportMetric(100*(bundled/plain-1), "bundled-overhead-%")
	b.ReportMetric(100*(uncached/plain-1), "uncached-overhead-%")
}
