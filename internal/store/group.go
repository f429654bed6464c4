package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// Grouped commits.
//
// On PostgreSQL every transaction pays a BEGIN and a COMMIT round trip and
// a WAL flush. When several rooms commit at the same moment, InTxGrouped
// runs their work in one transaction instead: one BEGIN, one COMMIT, one
// flush for all of them. The first caller to find no commit in progress
// leads: it runs every job queued so far as one group, then hands the lead
// to the first job queued meanwhile, so no caller waits for more than the
// group before its own.
//
// A group is all or nothing. When one job fails, or the commit does, the
// group is rolled back and each job runs again alone, so each gets its
// own answer. Jobs must therefore be safe to run twice: they write only
// through the transaction, or undo their own effects when they start again.

// maxGroup bounds a group, so one slow group cannot hold many callers.
const maxGroup = 32

type groupJob struct {
	ctx  context.Context
	f    func(*Tx) error
	done chan error // receives the job's result, or errLead
}

// errLead tells a waiting job that it now leads the next group.
var errLead = errors.New("lead the next group")

type grouper struct {
	mu      sync.Mutex
	queue   []*groupJob
	leading bool
	// conn is the leader's connection, kept from group to group so that
	// room commits always find their statements prepared and the server's
	// caches warm; dropped after any failure.
	conn *sql.Conn
}

// InTxGrouped is InTx for commits that may share a transaction with
// concurrent ones (see above); f may run more than once. On SQLite, whose
// single writer connection serialises transactions anyway, it is InTx.
func (s *Store) InTxGrouped(ctx context.Context, f func(tx *Tx) error) error {
	if s.Engine != Postgres {
		return s.InTx(ctx, f)
	}
	g := &s.group
	j := &groupJob{ctx: ctx, f: f, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, j)
	if g.leading {
		g.mu.Unlock()
		if err := <-j.done; err != errLead {
			return err
		}
	} else {
		g.leading = true
		g.mu.Unlock()
	}
	// Leading: run what is queued (this job included) as one group.
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()
	s.runGroup(batch)
	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- errLead
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	return <-j.done
}

// runGroup commits the jobs in one transaction, or each alone when that
// fails, and answers each job. Only the leader calls it.
func (s *Store) runGroup(batch []*groupJob) {
	if len(batch) == 1 {
		j := batch[0]
		j.done <- s.inGroupTx(j.ctx, batch)
		return
	}
	// The group outlives any one caller's cancellation: a cancelled caller
	// only costs the group a retry alone.
	if err := s.inGroupTx(context.WithoutCancel(batch[0].ctx), batch); err == nil {
		for _, j := range batch {
			j.done <- nil
		}
		return
	}
	for _, j := range batch {
		j.done <- s.inGroupTx(j.ctx, []*groupJob{j})
	}
}

// inGroupTx runs jobs in one transaction (see runTx) on the leader's
// connection.
func (s *Store) inGroupTx(ctx context.Context, jobs []*groupJob) error {
	g := &s.group
	if g.conn == nil {
		conn, err := s.w.Conn(ctx)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		g.conn = conn
	}
	fs := make([]func(*Tx) error, len(jobs))
	for i, j := range jobs {
		fs[i] = j.f
	}
	err := s.runTx(ctx, g.conn, fs...)
	if err != nil {
		g.conn.Close()
		g.conn = nil
	}
	return err
}

// closeConn returns the leader's connection to the pool.
func (g *grouper) closeConn() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn != nil && !g.leading {
		g.conn.Close()
		g.conn = nil
	}
}
