// Package integration holds black-box tests of the client API: a real
// server over HTTP on SQLite and on PostgreSQL.
package integration
