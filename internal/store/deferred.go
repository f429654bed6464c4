package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Deferred writes and lazy transactions on PostgreSQL.
//
// On PostgreSQL each statement costs a round trip, and so do BEGIN and
// COMMIT. Most of a message's transaction is writes whose results nobody
// reads: its event row, its search document, its staged notifications,
// the sender's read mark, its federation fan-out row. Those are written
// with execLater: they wait, and go to the server together as one pipeline
// (a pgx batch) when the transaction next needs an answer or ends.
//
// The transaction itself begins only when a statement needs an answer. A
// transaction of deferred writes alone, the common case of a message, is
// then a single pipeline with a single Sync, which PostgreSQL runs as one
// implicit transaction: one round trip, all or nothing. Otherwise BEGIN
// goes first, the waiting writes before each answered statement, and
// COMMIT with the last ones. Every statement still sees the writes queued
// before it. On SQLite, which has no round trips, execLater writes at once.

// pendingWrite is a write waiting in a transaction.
type pendingWrite struct {
	query string
	args  []any
	// mapErr, when set, translates the write's error (say a unique
	// violation into ErrExists).
	mapErr func(error) error
}

// execLater runs a write whose result is not needed, possibly later in
// the transaction (see above). mapErr, when not nil, translates its error.
func (tx *Tx) execLater(ctx context.Context, mapErr func(error) error, query string, args ...any) error {
	if tx.pg == nil {
		_, err := tx.q.ExecContext(ctx, query, args...)
		if err != nil && mapErr != nil {
			err = mapErr(err)
		}
		return err
	}
	tx.pg.pending = append(tx.pg.pending, pendingWrite{query: query, args: args, mapErr: mapErr})
	return nil
}

// pgTx is a PostgreSQL write transaction on one connection, begun lazily
// (see above). It is the querier of every Tx of a (grouped) transaction.
type pgTx struct {
	conn    *sql.Conn
	begun   bool
	pending []pendingWrite
	err     error // the first failure of a deferred write
}

// ready makes the transaction fit for a statement that needs an answer:
// begun, and with the waiting writes sent.
func (p *pgTx) ready(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	if !p.begun {
		p.begun = true
		if len(p.pending) == 0 {
			if _, err := p.conn.ExecContext(ctx, "BEGIN"); err != nil {
				p.err = fmt.Errorf("begin: %w", err)
			}
			return p.err
		}
		p.err = p.send(ctx, "BEGIN", "")
		return p.err
	}
	if len(p.pending) > 0 {
		p.err = p.send(ctx, "", "")
	}
	return p.err
}

// commit ends the transaction: the waiting writes and COMMIT in one round
// trip, or, when it never began, the writes alone as an implicit
// transaction.
func (p *pgTx) commit(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	switch {
	case !p.begun:
		p.err = p.send(ctx, "", "")
	case len(p.pending) == 0:
		if _, err := p.conn.ExecContext(ctx, "COMMIT"); err != nil {
			p.err = fmt.Errorf("commit: %w", err)
		}
	default:
		p.err = p.send(ctx, "", "COMMIT")
	}
	return p.err
}

// rollback ends a begun transaction without its writes.
func (p *pgTx) rollback() {
	if p.begun {
		// A connection left in a transaction is discarded by the pool.
		_, _ = p.conn.ExecContext(context.Background(), "ROLLBACK")
	}
	p.pending = nil
}

// send runs the waiting writes as one pipeline, after first and before
// last when they are not empty.
func (p *pgTx) send(ctx context.Context, first, last string) error {
	ws := p.pending
	p.pending = nil
	if len(ws) == 0 && first == "" && last == "" {
		return nil
	}
	return p.conn.Raw(func(dc any) error {
		conn := dc.(*stdlib.Conn).Conn()
		b := waitingBatch(first, ws)
		if last != "" {
			b.Queue(last)
		}
		br := conn.SendBatch(ctx, b)
		err := func() error {
			if err := execWaiting(br, first, ws); err != nil {
				return err
			}
			if last != "" {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("%s: %w", last, err)
				}
			}
			return nil
		}()
		if err != nil {
			br.Close()
			return err
		}
		return br.Close()
	})
}

func (p *pgTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := p.ready(ctx); err != nil {
		return nil, err
	}
	return p.conn.ExecContext(ctx, query, args...)
}

func (p *pgTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := p.ready(ctx); err != nil {
		return nil, err
	}
	return p.conn.QueryContext(ctx, query, args...)
}

// QueryRowContext cannot return the error of a deferred write; the
// transaction fails with it when it ends.
func (p *pgTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	_ = p.ready(ctx)
	return p.conn.QueryRowContext(ctx, query, args...)
}

// prepare prepares q on the transaction's connection.
func (p *pgTx) prepare(ctx context.Context, q string) (*sql.Stmt, error) {
	if err := p.ready(ctx); err != nil {
		return nil, err
	}
	return p.conn.PrepareContext(ctx, q)
}

// queryEach runs a query whose answer the transaction needs and calls f
// for each row with the row's Scan. On PostgreSQL the query goes in the
// same pipeline as the writes waiting before it (and BEGIN when the
// transaction has not begun): one round trip where ready and a separate
// query took two. A join's transaction has two such queries (the
// previous membership, the joiner's push rules).
func (tx *Tx) queryEach(ctx context.Context, f func(scan func(dest ...any) error) error, query string, args ...any) error {
	if tx.pg == nil || (tx.pg.begun && len(tx.pg.pending) == 0) {
		rows, err := tx.q.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := f(rows.Scan); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	return tx.pg.queryEach(ctx, f, query, args)
}

// waitingBatch is a pipeline of first (when not empty) and the waiting
// writes ws, for the caller to add its last statement to.
func waitingBatch(first string, ws []pendingWrite) *pgx.Batch {
	b := &pgx.Batch{}
	if first != "" {
		b.Queue(first)
	}
	for _, w := range ws {
		b.Queue(w.query, w.args...)
	}
	return b
}

// execWaiting reads the results of a waitingBatch's first and ws.
func execWaiting(br pgx.BatchResults, first string, ws []pendingWrite) error {
	if first != "" {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("%s: %w", first, err)
		}
	}
	for _, w := range ws {
		if _, err := br.Exec(); err != nil {
			if w.mapErr != nil {
				err = w.mapErr(err)
			}
			return fmt.Errorf("deferred write: %w", err)
		}
	}
	return nil
}

// queryEach is Tx.queryEach on a transaction that has writes waiting or
// has not begun.
func (p *pgTx) queryEach(ctx context.Context, f func(scan func(dest ...any) error) error, query string, args []any) error {
	if p.err != nil {
		return p.err
	}
	first := ""
	if !p.begun {
		p.begun, first = true, "BEGIN"
	}
	ws := p.pending
	p.pending = nil
	var ferr error // f's own error, which leaves the transaction usable
	err := p.conn.Raw(func(dc any) error {
		conn := dc.(*stdlib.Conn).Conn()
		b := waitingBatch(first, ws)
		b.Queue(query, args...)
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		if err := execWaiting(br, first, ws); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if ferr = f(rows.Scan); ferr != nil {
				return nil
			}
		}
		return rows.Err()
	})
	if err != nil {
		p.err = err
		return err
	}
	return ferr
}
