package store

import (
	"reflect"
	"testing"
)

func TestMergeWrites(t *testing.T) {
	q, args := mergeWrites([]pendingWrite{
		{query: `INSERT INTO a (x, y) VALUES ($1, $2)`, args: []any{1, 2}},
		{query: `INSERT INTO b (z) VALUES ($1) ON CONFLICT DO NOTHING`, args: []any{3}},
		{query: `INSERT INTO c (u, v) VALUES ($1, $2)`, args: []any{4, 5}},
	})
	want := `WITH w0 AS (INSERT INTO a (x, y) VALUES ($1, $2)), w1 AS (INSERT INTO b (z) VALUES ($3) ON CONFLICT DO NOTHING) INSERT INTO c (u, v) VALUES ($4, $5)`
	if q != want || !reflect.DeepEqual(args, []any{1, 2, 3, 4, 5}) {
		t.Fatalf("merged:\n%s\n%v", q, args)
	}
	if q, args := mergeWrites([]pendingWrite{{query: `DELETE FROM a WHERE x = $1`, args: []any{1}}}); q != `DELETE FROM a WHERE x = $1` || len(args) != 1 {
		t.Fatalf("single: %s %v", q, args)
	}
}

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
