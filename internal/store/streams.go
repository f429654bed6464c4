package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Stream hands out increasing positions for rows of one sync stream and
// tracks which of them readers may see.
//
// Positions are allocated in process before the row is written; concurrent
// transactions may commit out of order, so Current is the highest position
// below which every allocated position has finished (committed or rolled
// back). A sync that reads up to Current can never miss a row that commits
// later with a smaller position. This holds for one process; several
// processes would need a shared allocator (see docs/architecture.md).
type Stream struct {
	mu        sync.Mutex
	next      int64
	pending   []int64 // allocated, not finished, ascending
	onAdvance func()
}

// OnAdvance sets a function called (outside the stream's lock) whenever
// Current moves forward. Set it before the stream is used.
func (st *Stream) OnAdvance(f func()) { st.onAdvance = f }

// Hidden reports whether some finished positions are not visible yet
// because an earlier one is still pending.
func (st *Stream) Hidden() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	// Positions from the lowest pending one on are all pending unless some
	// finished early.
	return len(st.pending) > 0 && st.next-st.pending[0] > int64(len(st.pending))
}

func newStream(last int64) *Stream {
	return &Stream{next: last + 1}
}

func (st *Stream) alloc() int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	p := st.next
	st.next++
	st.pending = append(st.pending, p)
	return p
}

func (st *Stream) done(p int64) {
	st.mu.Lock()
	advanced := len(st.pending) > 0 && st.pending[0] == p
	if i := slices.Index(st.pending, p); i >= 0 {
		st.pending = slices.Delete(st.pending, i, i+1)
	}
	st.mu.Unlock()
	if advanced && st.onAdvance != nil {
		st.onAdvance()
	}
}

// Current is the highest position whose row, and every row before it, is
// committed or abandoned.
func (st *Stream) Current() int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.pending) > 0 {
		return st.pending[0] - 1
	}
	return st.next - 1
}

// Streams are the store's positions, one per sync stream, plus id
// allocators that need no visibility tracking.
type Streams struct {
	Events      *Stream
	AccountData *Stream
	Receipts    *Stream
	Presence    *Stream
	ToDevice    *Stream
	DeviceLists *Stream
	StateGroups *Stream
}

// Sync returns the streams that sync tokens carry.
func (s *Streams) Sync() []*Stream {
	return []*Stream{s.Events, s.AccountData, s.Receipts, s.Presence, s.ToDevice, s.DeviceLists}
}

func loadStreams(ctx context.Context, s *Store) (*Streams, error) {
	max := func(table, col string) (int64, error) {
		var v int64
		err := s.w.QueryRowContext(ctx, "SELECT COALESCE(MAX("+col+"), 0) FROM "+table).Scan(&v)
		if err != nil {
			return 0, fmt.Errorf("load stream %s: %w", table, err)
		}
		return v, nil
	}
	st := &Streams{}
	for _, x := range []struct {
		dst        **Stream
		table, col string
	}{
		{&st.Events, "events", "stream_pos"},
		{&st.AccountData, "account_data", "stream_pos"},
		{&st.Receipts, "receipts", "stream_pos"},
		{&st.Presence, "presence", "stream_pos"},
		{&st.ToDevice, "to_device", "stream_pos"},
		{&st.DeviceLists, "device_list_changes", "stream_pos"},
		{&st.StateGroups, "state_groups", "group_id"},
	} {
		v, err := max(x.table, x.col)
		if err != nil {
			return nil, err
		}
		if x.dst != &st.StateGroups {
			v += RestartGap
		}
		if x.dst == &st.AccountData {
			// Thread subscriptions (MSC4306) take their positions from
			// the account data stream too.
			// (A test's schema may stop before the table: migrateUpTo.)
			subs, err := max("thread_subscriptions", "stream_pos")
			if err != nil && s.migrateUpTo == 0 {
				return nil, err
			}
			if subs+RestartGap > v {
				v = subs + RestartGap
			}
		}
		*x.dst = newStream(v)
	}
	return st, nil
}

// RestartGap is how far each sync stream jumps at start. A position
// handed out to a transaction that then rolled back is in no table, yet
// clients may hold tokens past it; starting above them keeps every
// issued token behind the new events (a position is never handed out
// twice), and a token ahead of the server can only be forged.
const RestartGap = 10000
