package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// Deferred writes are seen by the transaction's later statements, commit
// with it, and fail it when they fail.
func TestDeferredWrites(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		err := s.InTx(ctx, func(tx *Tx) error {
			if err := tx.MarkSent(ctx, "@a:hs", "!r:hs", "main", 5); err != nil {
				return err
			}
			if err := tx.StagePush(ctx, StagedPush{Pos: 5, RoomID: "!r:hs", EventID: "$e", ThreadID: "main", TS: 1}); err != nil {
				return err
			}
			var n int
			if err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_read WHERE user_id = $1`, "@a:hs").Scan(&n); err != nil || n != 1 {
				t.Errorf("own write not seen in the transaction: %d %v", n, err)
			}
			// Two upserts of one row in one transaction.
			if err := tx.MarkSent(ctx, "@a:hs", "!r:hs", "main", 6); err != nil {
				return err
			}
			return tx.MarkSent(ctx, "@a:hs", "!r:hs", "main", 7)
		})
		if err != nil {
			t.Fatal(err)
		}
		var pos int64
		if err := s.reader().QueryRowContext(ctx, `SELECT stream_pos FROM push_read WHERE user_id = $1`, "@a:hs").Scan(&pos); err != nil || pos != 7 {
			t.Fatalf("committed read mark: %d %v", pos, err)
		}
		// A failing deferred write (a duplicate key) fails its transaction,
		// and the transaction's other writes are rolled back.
		err = s.InTx(ctx, func(tx *Tx) error {
			if err := tx.MarkSent(ctx, "@b:hs", "!r:hs", "main", 9); err != nil {
				return err
			}
			return tx.StagePush(ctx, StagedPush{Pos: 5, RoomID: "!r:hs", EventID: "$dup", ThreadID: "main", TS: 1})
		})
		if err == nil {
			t.Fatal("duplicate staged push committed")
		}
		var n int
		if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM push_read WHERE user_id = $1`, "@b:hs").Scan(&n); err != nil || n != 0 {
			t.Fatalf("rolled-back write present: %d %v", n, err)
		}
	})
}

// A second event of one client transaction is ErrExists, whether its write
// went alone, with a begun transaction, or in a group with other rooms'
// commits; nothing of the failed transaction stays.
func TestDeferredEventTxn(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		row := func(pos int64, id string) *EventRow {
			r := &EventRow{Pos: pos, EventID: id, RoomID: "!r:hs", Type: "m.room.message", Sender: "@a:hs", PDU: []byte(`{}`), Unsigned: []byte(`{}`)}
			r.TxnDevice.String, r.TxnDevice.Valid = "DEV", true
			r.TxnID.String, r.TxnID.Valid = "t1", true
			r.TxnKey.String, r.TxnKey.Valid = "k1", true
			return r
		}
		if err := s.InTx(ctx, func(tx *Tx) error { return tx.InsertEvent(ctx, row(1, "$one")) }); err != nil {
			t.Fatal(err)
		}
		err := s.InTx(ctx, func(tx *Tx) error {
			if err := tx.InsertEvent(ctx, row(2, "$two")); err != nil {
				return err
			}
			return tx.MarkSent(ctx, "@c:hs", "!r:hs", "main", 2)
		})
		if !errors.Is(err, ErrExists) {
			t.Fatalf("second event of a transaction, alone: %v", err)
		}
		err = s.InTx(ctx, func(tx *Tx) error {
			if err := tx.MarkSent(ctx, "@c:hs", "!r:hs", "main", 3); err != nil {
				return err
			}
			if _, err := tx.GetEvent(ctx, "$one"); err != nil { // begins the transaction
				return err
			}
			return tx.InsertEvent(ctx, row(3, "$three"))
		})
		if !errors.Is(err, ErrExists) {
			t.Fatalf("second event of a transaction, begun: %v", err)
		}
		var n int
		if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM push_read WHERE user_id = $1`, "@c:hs").Scan(&n); err != nil || n != 0 {
			t.Fatalf("writes of failed transactions committed: %d %v", n, err)
		}

		// Concurrent commits, one of them a duplicate.
		errs := make([]error, 8)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() {
				r := row(int64(10+i), fmt.Sprintf("$g%d", i))
				if i > 0 {
					r.TxnKey.String = fmt.Sprintf("g%d", i)
				}
				errs[i] = s.InTxGrouped(ctx, func(tx *Tx) error { return tx.InsertEvent(ctx, r) })
			})
		}
		wg.Wait()
		for i, err := range errs {
			if i == 0 && !errors.Is(err, ErrExists) || i > 0 && err != nil {
				t.Errorf("grouped commit %d: %v", i, err)
			}
		}
		if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM events`).Scan(&n); err != nil || n != 8 {
			t.Fatalf("events stored: %d %v", n, err)
		}
	})
}

// A query that rides with the writes waiting before it (queryEach) sees
// them, before and after the transaction began, runs alone when nothing
// waits, and fails the transaction when a waiting write fails; an error
// of its own callback leaves the transaction usable.
func TestQueryEachWithWaitingWrites(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		count := func(tx *Tx, user string) int {
			n := -1
			err := tx.queryEach(ctx, func(scan func(...any) error) error { return scan(&n) },
				`SELECT COUNT(*) FROM push_read WHERE user_id = $1`, user)
			if err != nil {
				t.Errorf("count %s: %v", user, err)
			}
			return n
		}
		err := s.InTx(ctx, func(tx *Tx) error {
			if err := tx.MarkSent(ctx, "@a:hs", "!r:hs", "main", 5); err != nil {
				return err
			}
			if n := count(tx, "@a:hs"); n != 1 { // not begun: BEGIN, the write, the query
				t.Errorf("first query: %d rows, want 1", n)
			}
			if n := count(tx, "@a:hs"); n != 1 { // nothing waits
				t.Errorf("second query: %d rows, want 1", n)
			}
			if err := tx.MarkSent(ctx, "@a:hs", "!s:hs", "main", 6); err != nil {
				return err
			}
			if n := count(tx, "@a:hs"); n != 2 { // begun, a write waits
				t.Errorf("third query: %d rows, want 2", n)
			}
			mine := errors.New("mine")
			if err := tx.queryEach(ctx, func(func(...any) error) error { return mine },
				`SELECT user_id FROM push_read WHERE user_id = $1`, "@a:hs"); !errors.Is(err, mine) {
				t.Errorf("callback error: %v", err)
			}
			return tx.MarkSent(ctx, "@a:hs", "!t:hs", "main", 7)
		})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM push_read WHERE user_id = $1`, "@a:hs").Scan(&n); err != nil || n != 3 {
			t.Fatalf("committed rows: %d %v, want 3", n, err)
		}
		// A failing waiting write (a duplicate staged push) fails the query
		// and the transaction.
		if err := s.InTx(ctx, func(tx *Tx) error {
			return tx.StagePush(ctx, StagedPush{Pos: 9, RoomID: "!r:hs", EventID: "$e", ThreadID: "main", TS: 1})
		}); err != nil {
			t.Fatal(err)
		}
		err = s.InTx(ctx, func(tx *Tx) error {
			if err := tx.StagePush(ctx, StagedPush{Pos: 9, RoomID: "!r:hs", EventID: "$dup", ThreadID: "main", TS: 1}); err != nil {
				return err
			}
			n := 0
			return tx.queryEach(ctx, func(scan func(...any) error) error { return scan(&n) }, `SELECT COUNT(*) FROM push_staging WHERE stream_pos > $1`, 0)
		})
		if err == nil {
			t.Fatal("a failed waiting write went unnoticed")
		}
	})
}
