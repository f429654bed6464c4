// Package pgtest creates throw-away PostgreSQL databases for tests.
//
// The server to use comes from LUXCHAT_TEST_POSTGRES (a DSN with a database
// the tests may connect to for CREATE DATABASE, e.g.
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable). When it is
// missing, tests that need PostgreSQL fail under CI and are skipped loudly
// elsewhere. Under go test -short they are skipped: the SQLite half of a
// test runs, the PostgreSQL half waits for the full suite.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// EnvVar names the variable holding the admin DSN.
const EnvVar = "LUXCHAT_TEST_POSTGRES"

// NewDatabase creates an empty database, drops it when the test ends, and
// returns its DSN.
func NewDatabase(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("PostgreSQL: not under -short")
	}
	admin := os.Getenv(EnvVar)
	if admin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: PostgreSQL tests cannot run", EnvVar)
		}
		t.Skipf("!!! %s is not set: SKIPPING the PostgreSQL half of this test !!!", EnvVar)
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "luxchat_test_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", admin)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
