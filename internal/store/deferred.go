package store

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Deferred writes.
//
// On PostgreSQL each statement of a transaction costs a round trip, and a
// message's transaction carries several small writes whose results nobody
// reads (its search document, its staged notifications, the sender's read
// mark, its federation fan-out row). Those are written with execLater: they
// wait for the transaction's next statement or its end, and then go to the
// server together as one statement, the first ones as data-modifying WITH
// clauses of the last. Any other statement of the transaction sends what
// waits first, so every statement sees the writes before it. On SQLite,
// which has no round trips, execLater writes at once.

// pendingWrite is a write waiting in a transaction.
type pendingWrite struct {
	query string
	args  []any
}

// execLater runs a write whose result is not needed, possibly later in
// the transaction (see above).
func (tx *Tx) execLater(ctx context.Context, query string, args ...any) error {
	if tx.s.Engine != Postgres {
		_, err := tx.raw.ExecContext(ctx, query, args...)
		return err
	}
	// One statement may not update the same row twice: an upsert already
	// waiting with the same text goes first.
	if strings.Contains(query, "DO UPDATE") {
		for _, p := range tx.pending {
			if p.query == query {
				if err := tx.flush(ctx); err != nil {
					return err
				}
				break
			}
		}
	}
	tx.pending = append(tx.pending, pendingWrite{query: query, args: args})
	return nil
}

// flush sends the waiting writes.
func (tx *Tx) flush(ctx context.Context) error {
	if tx.flushErr != nil {
		return tx.flushErr
	}
	if len(tx.pending) == 0 {
		return nil
	}
	query, args := mergeWrites(tx.pending)
	tx.pending = tx.pending[:0]
	if _, err := tx.raw.ExecContext(ctx, query, args...); err != nil {
		tx.flushErr = fmt.Errorf("deferred writes: %w", err)
		return tx.flushErr
	}
	return nil
}

var placeholder = regexp.MustCompile(`\$([0-9]+)`)

// mergeWrites makes one statement of writes: all but the last as WITH
// clauses, their placeholders renumbered after the ones before them.
func mergeWrites(ws []pendingWrite) (string, []any) {
	if len(ws) == 1 {
		return ws[0].query, ws[0].args
	}
	var b strings.Builder
	var args []any
	renumber := func(q string) string {
		offset := len(args)
		return placeholder.ReplaceAllStringFunc(q, func(m string) string {
			n, _ := strconv.Atoi(m[1:])
			return "$" + strconv.Itoa(n+offset)
		})
	}
	b.WriteString("WITH ")
	for i, w := range ws[:len(ws)-1] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "w%d AS (%s)", i, renumber(w.query))
		args = append(args, w.args...)
	}
	last := ws[len(ws)-1]
	b.WriteByte(' ')
	b.WriteString(renumber(last.query))
	args = append(args, last.args...)
	return b.String(), args
}

// flushingQ is a transaction's querier: it sends the waiting writes before
// any other statement.
type flushingQ struct {
	tx *Tx
}

func (f flushingQ) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := f.tx.flush(ctx); err != nil {
		return nil, err
	}
	return f.tx.raw.ExecContext(ctx, query, args...)
}

func (f flushingQ) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := f.tx.flush(ctx); err != nil {
		return nil, err
	}
	return f.tx.raw.QueryContext(ctx, query, args...)
}

// QueryRowContext cannot return a flush error; the transaction fails with
// it at its end (see InTx).
func (f flushingQ) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	_ = f.tx.flush(ctx)
	return f.tx.raw.QueryRowContext(ctx, query, args...)
}

// newTx makes a transaction handle over q.
func (s *Store) newTx(q querier) *Tx {
	tx := &Tx{raw: q, s: s}
	tx.q = flushingQ{tx}
	return tx
}

// finish sends the waiting writes at the end of a transaction's work.
func (tx *Tx) finish(ctx context.Context) error { return tx.flush(ctx) }
