package store

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
)

// stmtCache keeps prepared statements per query text: SQLite spends a good
// part of a short query parsing SQL, so each text is prepared once.
// database/sql re-prepares a Stmt on each connection as needed.
type stmtCache struct {
	db *sql.DB
	// positional: prepare "$1, $2, …" in order as "?, ?, …" (SQLite, see
	// positionalParams).
	positional bool
	mu         sync.RWMutex
	m          map[string]*sql.Stmt
}

// maxCachedStmts bounds the cache; queries with generated IN lists vary.
const maxCachedStmts = 512

func newStmtCache(db *sql.DB, positional bool) *stmtCache {
	return &stmtCache{db: db, positional: positional, m: map[string]*sql.Stmt{}}
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.RLock()
	st := c.m[query]
	c.mu.RUnlock()
	if st != nil {
		return st, nil
	}
	text := query
	if c.positional {
		text = positionalParams(query)
	}
	st, err := c.db.PrepareContext(ctx, text)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[query]; old != nil {
		st.Close()
		return old, nil
	}
	if len(c.m) < maxCachedStmts {
		c.m[query] = st
	}
	return st, nil
}

// positionalParams is query with its parameters written "?" when they
// are "$1", "$2", … each once and in that order outside quotes (as the
// statements built with query and inList are), and query itself
// otherwise. SQLite numbers "?" in order of appearance, so the statement
// is the same; but the SQLite driver looks up each parameter's name, a
// walk over all names that made binding a statement of n named
// parameters cost n² steps (about 20 ms of the unread counts of a user
// in 1,000 rooms, 100 rooms of 13 parameters each to a statement).
func positionalParams(query string) string {
	if strings.IndexByte(query, '?') >= 0 || strings.IndexByte(query, '$') < 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query))
	next, quoted := 1, byte(0)
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quoted != 0:
			if c == quoted {
				quoted = 0
			}
		case c == '\'' || c == '"':
			quoted = c
		case c == '$':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			if n, err := strconv.Atoi(query[i+1 : j]); err != nil || n != next {
				return query
			}
			next++
			b.WriteByte('?')
			i = j - 1
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = map[string]*sql.Stmt{}
}

// cachedDB is a querier that runs statements through the cache.
type cachedDB struct{ c *stmtCache }

func (q cachedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	countStatement(ctx)
	st, err := q.c.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (q cachedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	countStatement(ctx)
	st, err := q.c.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (q cachedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	countStatement(ctx)
	st, err := q.c.get(ctx, query)
	if err != nil {
		// Let the error surface through Scan, as database/sql does.
		return q.c.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// cachedTx runs a transaction's statements through the writer's cache.
// A query not prepared yet runs unprepared and is prepared after the
// transaction: preparing on the pool inside a transaction would wait for a
// second connection, which the SQLite writer (one connection) never has.
type cachedTx struct {
	tx      *sql.Tx
	c       *stmtCache
	missing *[]string
}

func (q cachedTx) cached(query string) *sql.Stmt {
	q.c.mu.RLock()
	st := q.c.m[query]
	q.c.mu.RUnlock()
	if st == nil {
		*q.missing = append(*q.missing, query)
	}
	return st
}

// prepareMissing prepares the queries a finished transaction ran unprepared.
func (q cachedTx) prepareMissing(ctx context.Context) {
	for _, query := range *q.missing {
		_, _ = q.c.get(ctx, query)
	}
	*q.missing = nil
}

func (q cachedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	countStatement(ctx)
	if st := q.cached(query); st != nil {
		return q.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return q.tx.ExecContext(ctx, query, args...)
}

func (q cachedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	countStatement(ctx)
	if st := q.cached(query); st != nil {
		return q.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return q.tx.QueryContext(ctx, query, args...)
}

func (q cachedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	countStatement(ctx)
	if st := q.cached(query); st != nil {
		return q.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return q.tx.QueryRowContext(ctx, query, args...)
}
