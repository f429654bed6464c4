package store

import (
	"context"
	"database/sql"
	"fmt"
)

// RelationSize is the space one table or index takes on disk.
type RelationSize struct {
	Name  string // table or index name
	Table string // the table it belongs to (itself for a table)
	Bytes int64
}

// SpaceUsage returns the space each table and index of the database takes,
// in pages as the engine allocated them: on SQLite the b-tree pages of each
// (dbstat; the free list is nobody's), on PostgreSQL every fork of each
// relation, a table with its TOAST table, after a VACUUM so that dead rows
// waiting for autovacuum are not counted. It is meant for measuring
// (tests, benchmarks), not for serving: it reads every page on SQLite.
func (s *Store) SpaceUsage(ctx context.Context) ([]RelationSize, error) {
	if s.Engine == Postgres {
		return s.spacePostgres(ctx)
	}
	return s.spaceSQLite(ctx)
}

func (s *Store) spaceSQLite(ctx context.Context) ([]RelationSize, error) {
	// The shadow tables of a virtual table (FTS5's search_fts_data, …)
	// belong to it: they are named after it.
	rows, err := s.w.QueryContext(ctx, `SELECT d.name, COALESCE(v.name, m.tbl_name, d.name), SUM(d.pgsize)
		FROM dbstat AS d LEFT JOIN sqlite_schema AS m ON m.name = d.name
		LEFT JOIN sqlite_schema AS v ON v.sql LIKE 'CREATE VIRTUAL TABLE%' AND d.name LIKE v.name || '\_%' ESCAPE '\'
		GROUP BY d.name ORDER BY d.name`)
	if err != nil {
		return nil, fmt.Errorf("read dbstat: %w", err)
	}
	return scanSizes(rows)
}

func (s *Store) spacePostgres(ctx context.Context) ([]RelationSize, error) {
	if _, err := s.w.ExecContext(ctx, `VACUUM`); err != nil {
		return nil, fmt.Errorf("vacuum: %w", err)
	}
	// pg_table_size: the main, free-space and visibility forks and the
	// TOAST table with its index; an index's every fork.
	rows, err := s.w.QueryContext(ctx, `SELECT c.relname, c.relname, pg_table_size(c.oid) FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = current_schema() AND c.relkind = 'r'
		UNION ALL
		SELECT i.relname, t.relname, pg_total_relation_size(i.oid) FROM pg_index x
			JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
			JOIN pg_namespace n ON n.oid = t.relnamespace
			WHERE n.nspname = current_schema()
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("read relation sizes: %w", err)
	}
	return scanSizes(rows)
}

// scanSizes reads (name, table, bytes) rows.
func scanSizes(rows *sql.Rows) ([]RelationSize, error) {
	defer rows.Close()
	var out []RelationSize
	for rows.Next() {
		var r RelationSize
		if err := rows.Scan(&r.Name, &r.Table, &r.Bytes); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
