package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	gosync "sync"
	"testing"
	"time"

	"luxchat/internal/store"
	"luxchat/internal/testutil/pgtest"
)

// openStores runs f on a store of each engine; reopen opens the same
// database again (a restart).
func forEachStore(t *testing.T, f func(t *testing.T, st *store.Store, reopen func() *store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		open := func() *store.Store {
			s, err := store.Open(context.Background(), store.Options{DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		f(t, open(), open)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		open := func() *store.Store {
			s, err := store.Open(context.Background(), store.Options{PostgresDSN: dsn})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		f(t, open(), open)
	})
}

// insertEvents stores n bare events and returns their ids.
func insertEvents(t *testing.T, st *store.Store, prefix string, n int) []string {
	t.Helper()
	var ids []string
	err := st.InTx(context.Background(), func(tx *store.Tx) error {
		ids = ids[:0]
		for i := range n {
			id := fmt.Sprintf("$%s%d", prefix, i)
			pdu := fmt.Sprintf(`{"type":"m.room.message","n":%d,"p":%q}`, i, prefix)
			if err := tx.InsertEvent(context.Background(), &store.EventRow{Pos: tx.Alloc(st.Streams.Events), EventID: id, RoomID: "!r:a.test",
				Type: "m.room.message", Sender: "@u:a.test", PDU: []byte(pdu), Unsigned: []byte(`{}`)}); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// recorder is a destination that records transactions and fails while
// down.
type recorder struct {
	mu     gosync.Mutex
	down   bool
	txns   []*Transaction
	ids    []string
	tries  []time.Time
	tryIDs []string
	got    chan struct{}
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 1000)} }

func (r *recorder) send(_ context.Context, dest, txnID string, txn *Transaction) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries = append(r.tries, time.Now())
	r.tryIDs = append(r.tryIDs, txnID)
	if r.down {
		return errors.New("connection refused")
	}
	// Copy: the queue may reuse nothing, but be safe.
	c := *txn
	r.txns = append(r.txns, &c)
	r.ids = append(r.ids, txnID)
	r.got <- struct{}{}
	return nil
}

func (r *recorder) setDown(v bool) {
	r.mu.Lock()
	r.down = v
	r.mu.Unlock()
}

// counts returns the PDUs (by their "n") and EDUs received.
func (r *recorder) counts() (pdus []string, edus int, txns int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.txns {
		for _, p := range t.PDUs {
			var v struct {
				N int    `json:"n"`
				P string `json:"p"`
			}
			_ = json.Unmarshal(p, &v)
			pdus = append(pdus, fmt.Sprintf("%s%d", v.P, v.N))
		}
		edus += len(t.EDUs)
	}
	return pdus, edus, len(r.txns)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testPolicy(t *testing.T, allowed ...string) *Policy {
	p, err := NewPolicy("self.test", allowed, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestQueueBatchesWithinLimits(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store.Store, _ func() *store.Store) {
		rec := newRecorder()
		rec.setDown(true) // let everything pile up first
		q := NewQueue("self.test", st, testPolicy(t), nil, nil, QueueOptions{RetryMin: time.Hour, Send: rec.send})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		ids := insertEvents(t, st, "b", 120)
		q.AddPDUs([]string{"b.test"}, ids)
		for i := range 230 {
			q.AddEDU([]string{"b.test"}, EDU{Type: "m.receipt", Content: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
		}
		waitFor(t, "first attempt", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.tries) > 0 })
		waitFor(t, "items persisted", func() bool { n, _ := st.OutboxDepth(context.Background(), "b.test"); return n == 350 })
		rec.setDown(false)
		q.Contacted("b.test")
		waitFor(t, "delivery", func() bool { p, e, _ := rec.counts(); return len(p) == 120 && e == 230 })
		rec.mu.Lock()
		seen := map[string]bool{}
		for i, txn := range rec.txns {
			if len(txn.PDUs) > MaxTxnPDUs || len(txn.EDUs) > MaxTxnEDUs {
				t.Errorf("transaction %d has %d PDUs and %d EDUs", i, len(txn.PDUs), len(txn.EDUs))
			}
			if seen[rec.ids[i]] {
				t.Errorf("transaction id %s used twice", rec.ids[i])
			}
			seen[rec.ids[i]] = true
			if txn.Origin != "self.test" {
				t.Errorf("origin %q", txn.Origin)
			}
		}
		if len(rec.txns) != 3 {
			t.Errorf("%d transactions, want 3 (50+100, 50+100, 20+30)", len(rec.txns))
		}
		rec.mu.Unlock()
		// In order, no duplicates.
		p, _, _ := rec.counts()
		want := make([]string, 120)
		for i := range want {
			want[i] = fmt.Sprintf("b%d", i)
		}
		if !slices.Equal(p, want) {
			t.Errorf("PDUs out of order or duplicated: %v", p)
		}
		waitFor(t, "acknowledged rows deleted", func() bool { n, _ := st.OutboxDepth(context.Background(), "b.test"); return n == 0 })
	})
}

func TestQueueBackoffSchedule(t *testing.T) {
	q := NewQueue("self.test", nil, nil, nil, nil, QueueOptions{RetryMin: time.Second, RetryMax: 10 * time.Second})
	want := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for n, w := range want {
		if got := q.Backoff(n); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, w)
		}
	}
	if got := q.Backoff(1000); got != 10*time.Second {
		t.Errorf("Backoff(1000) = %s", got)
	}
}

func TestQueueRetriesWithBackoffAndResetsOnContact(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store.Store, _ func() *store.Store) {
		rec := newRecorder()
		rec.setDown(true)
		q := NewQueue("self.test", st, testPolicy(t), nil, nil, QueueOptions{RetryMin: 40 * time.Millisecond, RetryMax: 160 * time.Millisecond, Send: rec.send})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer func() { q.Close() }()
		q.AddEDU([]string{"c.test"}, EDU{Type: "m.receipt", Content: json.RawMessage(`{}`)})
		waitFor(t, "5 attempts", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.tries) >= 5 })
		rec.mu.Lock()
		tries := slices.Clone(rec.tries)
		rec.mu.Unlock()
		// Gaps grow: 40, 80, 160, 160 ms (each at least the back-off).
		for i, min := range []time.Duration{40, 80, 160, 160} {
			if gap := tries[i+1].Sub(tries[i]); gap < min*time.Millisecond {
				t.Errorf("gap %d = %s, want ≥ %dms", i, gap, min)
			}
		}
		// A long back-off is cut short when the destination contacts us.
		q.Close()
		q = NewQueue("self.test", st, testPolicy(t), nil, nil, QueueOptions{RetryMin: time.Hour, Send: rec.send})
		rec.mu.Lock()
		n := len(rec.tries)
		rec.mu.Unlock()
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "one more attempt", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.tries) > n })
		rec.setDown(false)
		// Once the failure is counted the sender waits out its hour: what
		// it sent before is all it sends until contacted.
		waitFor(t, "the failure counted", func() bool { return q.Failures("c.test") == 1 })
		if _, e, _ := rec.counts(); e != 0 {
			t.Fatal("sent during an hour of back-off")
		}
		q.Contacted("c.test")
		waitFor(t, "delivery after contact", func() bool { _, e, _ := rec.counts(); return e == 1 })
		// Every attempt of the same items used the same transaction id.
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, id := range rec.tryIDs[1:n] {
			if id != rec.tryIDs[0] {
				t.Fatalf("retries under different ids: %v", rec.tryIDs)
			}
		}
	})
}

func TestQueueSurvivesRestart(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store.Store, reopen func() *store.Store) {
		rec := newRecorder()
		rec.setDown(true)
		q := NewQueue("self.test", st, testPolicy(t), nil, nil, QueueOptions{RetryMin: time.Hour, Send: rec.send})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		ids := insertEvents(t, st, "r", 7)
		q.AddPDUs([]string{"d.test", "e.test"}, ids)
		q.AddEDU([]string{"d.test"}, EDU{Type: "m.direct_to_device", Content: json.RawMessage(`{"message_id":"m1"}`)})
		q.AddEphemeralEDU([]string{"d.test"}, EDU{Type: "m.typing", Content: json.RawMessage(`{}`)})
		q.Close() // items added before Close are persisted
		st.Close()

		st2 := reopen()
		rec2 := newRecorder()
		q2 := NewQueue("self.test", st2, testPolicy(t), nil, nil, QueueOptions{RetryMin: time.Hour, Send: rec2.send})
		if err := q2.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer q2.Close()
		waitFor(t, "redelivery", func() bool { p, e, _ := rec2.counts(); return len(p) == 14 && e == 1 })
		waitFor(t, "the queue idle", q2.Idle)
		p, e, _ := rec2.counts()
		if len(p) != 14 || e != 1 {
			t.Fatalf("after restart: %d PDUs, %d EDUs (typing must not survive, nothing twice)", len(p), e)
		}
		waitFor(t, "rows deleted", func() bool {
			d1, _ := st2.OutboxDepth(context.Background(), "d.test")
			d2, _ := st2.OutboxDepth(context.Background(), "e.test")
			return d1+d2 == 0
		})
	})
}

func TestQueueSkipsRefusedDestinations(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store.Store, _ func() *store.Store) {
		rec := newRecorder()
		q := NewQueue("self.test", st, testPolicy(t, "ok.test"), nil, nil, QueueOptions{Send: rec.send})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		q.AddEDU([]string{"evil.test", "self.test", "ok.test"}, EDU{Type: "m.receipt", Content: json.RawMessage(`{}`)})
		q.AddEphemeralEDU([]string{"evil.test"}, EDU{Type: "m.typing", Content: json.RawMessage(`{}`)})
		waitFor(t, "delivery", func() bool { _, e, _ := rec.counts(); return e == 1 })
		waitFor(t, "the queue idle", q.Idle)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.tries) != 1 {
			t.Fatalf("%d sends, want only ok.test's", len(rec.tries))
		}
		if n, _ := st.OutboxDepth(context.Background(), "evil.test"); n != 0 {
			t.Fatal("refused destination queued")
		}
	})
}

func TestQueueSlowDestinationDoesNotBlockOthers(t *testing.T) {
	forEachStore(t, func(t *testing.T, st *store.Store, _ func() *store.Store) {
		block := make(chan struct{})
		fast := newRecorder()
		send := func(ctx context.Context, dest, txnID string, txn *Transaction) error {
			if dest == "slow.test" {
				select {
				case <-block:
				case <-ctx.Done():
				}
				return errors.New("timeout")
			}
			return fast.send(ctx, dest, txnID, txn)
		}
		q := NewQueue("self.test", st, testPolicy(t), nil, nil, QueueOptions{Send: send})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		defer close(block)
		q.AddEDU([]string{"slow.test"}, EDU{Type: "m.receipt", Content: json.RawMessage(`{}`)})
		for range 5 {
			q.AddEDU([]string{"fast.test"}, EDU{Type: "m.receipt", Content: json.RawMessage(`{}`)})
		}
		waitFor(t, "fast destination served", func() bool { _, e, _ := fast.counts(); return e == 5 })
	})
}
