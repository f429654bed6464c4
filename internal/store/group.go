package store

import (
	"context"
	"errors"
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
// fails, and answers each job.
func (s *Store) runGroup(batch []*groupJob) {
	if len(batch) == 1 {
		j := batch[0]
		j.done <- s.InTx(j.ctx, j.f)
		return
	}
	if err := s.inGroupTx(batch); err == nil {
		for _, j := range batch {
			j.done <- nil
		}
		return
	}
	for _, j := range batch {
		j.done <- s.InTx(j.ctx, j.f)
	}
}

// inGroupTx runs every job in one transaction (see runTx).
func (s *Store) inGroupTx(batch []*groupJob) error {
	fs := make([]func(*Tx) error, len(batch))
	for i, j := range batch {
		fs[i] = j.f
	}
	// The group outlives any one caller's cancellation: a cancelled caller
	// only costs the group a retry alone.
	return s.runTx(context.WithoutCancel(batch[0].ctx), fs...)
}
