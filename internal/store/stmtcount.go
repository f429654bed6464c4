package store

import (
	"context"
	"sync/atomic"
)

type statementCounterKey struct{}

// CountStatements returns a context under which the store counts the
// statements it runs for the caller (outside transactions and inside),
// so that a test can check that a path touches no database.
func CountStatements(ctx context.Context) (context.Context, *atomic.Int64) {
	n := new(atomic.Int64)
	return context.WithValue(ctx, statementCounterKey{}, n), n
}

func countStatement(ctx context.Context) {
	if n, ok := ctx.Value(statementCounterKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
}
