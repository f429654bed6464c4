// Package store is luxchat's one storage package: every SQL query is written
// once and runs on both engines, SQLite (embedded, default) and PostgreSQL.
// The engine is a value (Dialect), not a type. Migrations are embedded,
// numbered .sql files; lines ending in "-- only: postgres" or
// "-- only: sqlite" are kept for that engine alone.
//
// Placeholders are $1…$n in ascending order of first appearance in every
// query, because SQLite numbers them by appearance (store_test checks this).
//
// It imports internal/matrix packages and database drivers, never HTTP or
// domain packages.
package store
