package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib" // also registers "pgx"
	_ "modernc.org/sqlite"           // registers "sqlite"
)

// Engine names a database engine.
type Engine string

const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("not found")

// Store is the database of one server. It is safe for concurrent use.
//
// Writes go through w and reads through r: on SQLite a single connection
// and a pool of read-only ones, on PostgreSQL two small pools.
type Store struct {
	Engine Engine
	w      *sql.DB
	r      *sql.DB
	wc, rc *stmtCache

	// Streams hands out positions of the sync streams.
	Streams *Streams

	group grouper // see InTxGrouped

	migrateUpTo int // see Options
}

// Options configures Open.
type Options struct {
	// DataDir holds luxchat.db for SQLite.
	DataDir string
	// PostgresDSN selects PostgreSQL when non-empty.
	PostgresDSN string

	// migrateUpTo, when set, stops the migrations after that version
	// (tests of a migration: data in the schema before it).
	migrateUpTo int
}

// Open connects, runs pending migrations and loads stream positions.
func Open(ctx context.Context, o Options) (*Store, error) {
	s := &Store{migrateUpTo: o.migrateUpTo}
	if o.PostgresDSN != "" {
		// Two warm pools, as on SQLite: writes and reads never wait for
		// each other's connections (a write transaction may read through
		// the reader pool), and both are small. Every connection prepares
		// and plans its statements afresh and adds a backend process, so
		// connections beyond a few per core cost more than they bring.
		// JIT compilation is off unless the DSN asks for it: it pays for
		// itself on long analytic queries, and a server's statements are
		// short. A set-based statement over a thousand rooms crosses
		// its cost threshold and spent more time compiling than running.
		open := func(n int, params map[string]string) (*sql.DB, error) {
			cfg, err := pgx.ParseConfig(o.PostgresDSN)
			if err != nil {
				return nil, fmt.Errorf("open postgres: %w", err)
			}
			if _, set := cfg.RuntimeParams["jit"]; !set {
				cfg.RuntimeParams["jit"] = "off"
			}
			for k, v := range params {
				if _, set := cfg.RuntimeParams[k]; !set {
					cfg.RuntimeParams[k] = v
				}
			}
			db := stdlib.OpenDB(*cfg)
			db.SetMaxOpenConns(n)
			db.SetMaxIdleConns(n)
			db.SetConnMaxIdleTime(0)
			db.SetConnMaxLifetime(0)
			return db, nil
		}
		procs := runtime.GOMAXPROCS(0)
		// The writers' statements are looked up by key, and written to be
		// planned once for any arguments (see chainSincePG): a generic
		// plan from the first run spares each of them a custom plan per
		// run, which PostgreSQL went on making for some (0.1–0.3 ms each
		// for the joiner's push rules, the state chain and the previous
		// membership of a join). Readers keep the default: some of their
		// plans depend on the arguments (a big room's timeline).
		w, err := open(max(3, procs+1), map[string]string{"plan_cache_mode": "force_generic_plan"})
		if err != nil {
			return nil, err
		}
		r, err := open(max(4, 2*procs), nil)
		if err != nil {
			w.Close()
			return nil, err
		}
		s.Engine, s.w, s.r = Postgres, w, r
	} else {
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		path := filepath.Join(o.DataDir, "luxchat.db")
		// synchronous=NORMAL in WAL mode survives a process crash (kill -9):
		// committed transactions are in the WAL file before COMMIT returns.
		// Page caches are per connection and outside Go's heap: the
		// writer's 4 MB, each of the four readers' 2 MB (16 MB in all
		// when full, of a server's ~300 MiB with 10,000 clients); the
		// file's pages are in the system's cache, a miss costs a read.
		pragmas := "_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(on)"
		w, err := sql.Open("sqlite", sqliteURI(path)+"?"+pragmas+"&_pragma=cache_size(-4000)&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		w.SetMaxOpenConns(1)
		w.SetConnMaxIdleTime(0)
		r, err := sql.Open("sqlite", sqliteURI(path)+"?"+pragmas+"&_pragma=cache_size(-2000)&_pragma=query_only(1)")
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		r.SetMaxOpenConns(4)
		r.SetMaxIdleConns(4)
		r.SetConnMaxIdleTime(0)
		s.Engine, s.w, s.r = SQLite, w, r
	}
	if err := s.w.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("connect %s: %w", s.Engine, err)
	}
	s.wc = newStmtCache(s.w, s.Engine == SQLite)
	s.rc = s.wc
	if s.r != s.w {
		s.rc = newStmtCache(s.r, s.Engine == SQLite)
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	streams, err := loadStreams(ctx, s)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Streams = streams
	return s, nil
}

// sqliteURI is the file: URI of the database at path. SQLite ends a URI's
// path at '?' or '#' and decodes %HH escapes, so these three are escaped:
// unescaped, a data directory "/srv/lux#2" put the database in "/srv/lux".
func sqliteURI(path string) string {
	return "file:" + uriPathEscaper.Replace(path)
}

var uriPathEscaper = strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23")

// Close closes the connections.
func (s *Store) Close() error {
	s.group.closeConn()
	if s.wc != nil {
		s.wc.close()
		s.rc.close()
	}
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// Backend is a PostgreSQL server process working on this store's
// database: a connection's ("client backend") or another (autovacuum).
type Backend struct {
	PID  int
	Type string
}

// Backends lists the PostgreSQL processes working on this store's
// database (none on SQLite), so that a benchmark can count the database's
// CPU as the server's.
func (s *Store) Backends(ctx context.Context) ([]Backend, error) {
	if s.Engine != Postgres {
		return nil, nil
	}
	rows, err := s.reader().QueryContext(ctx, `SELECT pid, COALESCE(backend_type, '') FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Backend
	for rows.Next() {
		var b Backend
		if err := rows.Scan(&b.PID, &b.Type); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Tx is a write transaction. Its methods are the store's write queries.
type Tx struct {
	q         querier
	pg        *pgTx // on PostgreSQL, the same as q (see deferred.go)
	s         *Store
	committed []func()
	after     []func()
	finally   []func()
}

// OnCommitted registers f to run right after a successful commit, before
// the transaction's stream positions become visible to readers: the place
// to invalidate caches that readers consult together with those positions.
func (tx *Tx) OnCommitted(f func()) { tx.committed = append(tx.committed, f) }

// OnCommit registers f to run after a successful commit, for side effects
// such as waking up syncs. Side effects never run inside the transaction.
func (tx *Tx) OnCommit(f func()) { tx.after = append(tx.after, f) }

// Alloc takes the next position of a stream for a row this transaction
// writes. The position becomes visible to readers (Stream.Current) once the
// transaction has ended, committed or not.
func (tx *Tx) Alloc(st *Stream) int64 {
	p := st.alloc()
	tx.finally = append(tx.finally, func() { st.done(p) })
	return p
}

// InTx runs f in a write transaction and commits it when f returns nil.
func (s *Store) InTx(ctx context.Context, f func(tx *Tx) error) error {
	return s.runTx(ctx, nil, f)
}

// runTx runs fs one after the other in one write transaction, each with its
// own Tx (its own callbacks), and commits when all return nil. After a
// commit it runs every OnCommitted callback, then releases the stream
// positions, then runs the OnCommit callbacks; after a rollback only the
// positions are released. On PostgreSQL it runs on conn, or on a
// connection of the pool when conn is nil.
func (s *Store) runTx(ctx context.Context, conn *sql.Conn, fs ...func(tx *Tx) error) error {
	var (
		txs    []*Tx
		commit func() error
		undo   func()
		after  func()
	)
	if s.Engine == Postgres {
		if conn == nil {
			c, err := s.w.Conn(ctx)
			if err != nil {
				return fmt.Errorf("begin: %w", err)
			}
			defer c.Close()
			conn = c
		}
		p := &pgTx{conn: conn}
		for range fs {
			txs = append(txs, &Tx{q: p, pg: p, s: s})
		}
		commit = func() error { return p.commit(ctx) }
		undo, after = p.rollback, func() {}
	} else {
		sqlTx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		ctq := cachedTx{tx: sqlTx, c: s.wc, missing: new([]string)}
		for range fs {
			txs = append(txs, &Tx{q: ctq, s: s})
		}
		commit = func() error {
			if err := sqlTx.Commit(); err != nil {
				return fmt.Errorf("commit: %w", err)
			}
			return nil
		}
		undo = func() { _ = sqlTx.Rollback() }
		after = func() { ctq.prepareMissing(ctx) }
	}
	var err error
	for i, f := range fs {
		if err = f(txs[i]); err != nil {
			break
		}
	}
	if err == nil {
		err = commit()
	} else {
		undo()
	}
	if err == nil {
		for _, tx := range txs {
			for _, f := range tx.committed {
				f()
			}
		}
	}
	for _, tx := range txs {
		for _, f := range tx.finally {
			f()
		}
	}
	after()
	if err != nil {
		return err
	}
	for _, tx := range txs {
		for _, f := range tx.after {
			f()
		}
	}
	return nil
}

// execOnce runs a statement that runs once (a migration's), past the
// statement cache.
func (tx *Tx) execOnce(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if ct, ok := tx.q.(cachedTx); ok {
		return ct.tx.ExecContext(ctx, query, args...)
	}
	return tx.q.ExecContext(ctx, query, args...)
}

// Reader returns a handle for read-only queries outside a transaction.
func (s *Store) reader() querier { return cachedDB{s.rc} }

// writer returns the write handle for single-statement writes.
func (s *Store) writer() querier { return cachedDB{s.wc} }

//go:embed schema/*.sql
var schemaFS embed.FS

var onlyLine = regexp.MustCompile(`--\s*only:\s*(postgres|sqlite)\s*$`)

// migrationSQL returns the statements of one migration file for engine e.
func migrationSQL(text string, e Engine) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if m := onlyLine.FindStringSubmatch(line); m != nil && Engine(m[1]) != e {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// migrationSteps are the parts of migrations written in Go (data the SQL
// cannot convert), run in the migration's transaction where its file has a
// line "-- go: <name>".
var migrationSteps = map[string]func(ctx context.Context, tx *Tx) error{
	"encode events": encodeEvents,
}

var goStepLine = regexp.MustCompile(`(?m)^--\s*go:\s*(.+?)\s*$`)

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ts BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := fs.Glob(schemaFS, "schema/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		var version int
		if _, err := fmt.Sscanf(filepath.Base(name), "%04d_", &version); err != nil {
			return fmt.Errorf("migration %s: bad name", name)
		}
		if s.migrateUpTo > 0 && version > s.migrateUpTo {
			break
		}
		var n int
		if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		if n > 0 {
			continue
		}
		text, _ := schemaFS.ReadFile(name)
		err := s.InTx(ctx, func(tx *Tx) error {
			if err := runMigration(ctx, tx, migrationSQL(string(text), s.Engine)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_, err := tx.execOnce(ctx, `INSERT INTO schema_migrations (version, applied_ts) VALUES ($1, $2)`, version, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

// runMigration runs the statements of a migration and its Go steps in
// their order.
func runMigration(ctx context.Context, tx *Tx, text string) error {
	steps := goStepLine.FindAllStringSubmatch(text, -1)
	for i, part := range goStepLine.Split(text, -1) {
		for _, stmt := range splitStatements(part) {
			if _, err := tx.execOnce(ctx, stmt); err != nil {
				return fmt.Errorf("%w\n%s", err, stmt)
			}
		}
		if i == len(steps) {
			break
		}
		step := migrationSteps[steps[i][1]]
		if step == nil {
			return fmt.Errorf("no step %q", steps[i][1])
		}
		if err := step(ctx, tx); err != nil {
			return fmt.Errorf("step %q: %w", steps[i][1], err)
		}
	}
	return nil
}

// splitStatements splits a migration on semicolons at line ends, dropping
// comment-only statements.
func splitStatements(text string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || trimmed == "" {
			continue
		}
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

func now() int64 { return time.Now().UnixMilli() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.w.PingContext(ctx) }
