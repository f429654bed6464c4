package store

import "testing"

func TestPositionalParams(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"SELECT a FROM t WHERE x = $1 AND y IN ($2, $3)", "SELECT a FROM t WHERE x = ? AND y IN (?, ?)"},
		{"SELECT $1, '$2 is text', $2", "SELECT ?, '$2 is text', ?"},
		{`SELECT "a$1" FROM t WHERE x = $1`, `SELECT "a$1" FROM t WHERE x = ?`},
		{"SELECT $10", "SELECT $10"},                         // not in order
		{"SELECT $1 WHERE a = $1", "SELECT $1 WHERE a = $1"}, // used twice
		{"SELECT $2, $1", "SELECT $2, $1"},
		{"SELECT $1, ?", "SELECT $1, ?"},
		{"SELECT $ FROM t", "SELECT $ FROM t"},
		{"SELECT 1", "SELECT 1"},
	} {
		if got := positionalParams(c.in); got != c.want {
			t.Errorf("positionalParams(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
