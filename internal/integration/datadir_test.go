package integration

import (
	"testing"

	ts "luxchat/internal/testserver"
)

// Each test server keeps its own database, also when its temp dir holds
// characters a SQLite URI reads as syntax: same-named subtests (as when a
// test calls forEachEngine twice) get temp dirs ending in "#01", "#02", …,
// which once cut the database path at '#', so those servers shared one
// file in /tmp, across tests and runs, and a first registration could find
// its user id taken.
func TestSameNamedSubtestServersHaveTheirOwnDatabase(t *testing.T) {
	for range 3 {
		t.Run("sqlite", func(t *testing.T) {
			c := ts.New(t).Anonymous(t)
			c.MustDo("POST", "/_matrix/client/v3/register", map[string]any{
				"username": "same", "password": "correct horse battery",
				"auth": map[string]string{"type": "m.login.dummy"},
			}, nil)
		})
	}
}
