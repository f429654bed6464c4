package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"luxchat/internal/procstat"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// buildLuxchat builds the server binary as `make build` does.
func buildLuxchat(dir string) (string, error) {
	bin := filepath.Join(dir, "luxchat")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "luxchat/cmd/luxchat")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build luxchat (run from the repository): %w", err)
	}
	return bin, nil
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// serverProc is the luxchat process under measurement.
type serverProc struct {
	cmd  *exec.Cmd
	base string
	done chan error
}

// startWait bounds a start of the server under test.
const startWait = 15 * time.Minute

// startServer runs `luxchat serve` on cfgPath and waits until /health
// answers (a start over a fresh sector fills the user directory first:
// on PostgreSQL, 40,000 accounts take minutes, a few round trips each).
func startServer(bin, cfgPath, addr, logPath string) (*serverProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &serverProc{cmd: cmd, base: "http://" + addr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(startWait)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("luxchat exited at start (%v); see %s", err, logPath)
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(p.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
	}
	p.stop()
	return nil, fmt.Errorf("luxchat did not answer /health within %s", startWait)
}

// stop asks for a graceful shutdown and waits for it.
func (p *serverProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		return errors.New("luxchat did not stop within 30 s")
	}
}

func (p *serverProc) pid() int { return p.cmd.Process.Pid }

// procCPU is the CPU time a process used so far (procstat.CPU).
func procCPU(pid int) (time.Duration, error) { return procstat.CPU(pid) }

// procRSS is a process's resident set size in bytes.
func procRSS(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// meter samples the server's CPU: the luxchat process and, on
// PostgreSQL, the backends serving its database (the database's work is
// the server's too).
type meter struct {
	pid    int
	admin  *sql.DB // nil on SQLite
	dbName string
}

type cpuSample struct {
	lux time.Duration
	pg  map[int]time.Duration // backend pid → CPU
	at  time.Time
}

func (m *meter) sample() cpuSample {
	s := cpuSample{at: time.Now()}
	s.lux, _ = procCPU(m.pid)
	if m.admin == nil {
		return s
	}
	s.pg = map[int]time.Duration{}
	rows, err := m.admin.Query(`SELECT pid FROM pg_stat_activity WHERE datname = $1`, m.dbName)
	if err != nil {
		return s
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			if c, err := procCPU(pid); err == nil {
				s.pg[pid] = c
			}
		}
	}
	return s
}

// cpuUse is the CPU used between two samples.
type cpuUse struct {
	lux, pg time.Duration
	wall    time.Duration
	withPG  bool
}

func (m *meter) since(a cpuSample) cpuUse {
	b := m.sample()
	u := cpuUse{lux: b.lux - a.lux, wall: b.at.Sub(a.at), withPG: m.admin != nil}
	for pid, c := range b.pg {
		u.pg += c - a.pg[pid] // a backend started meanwhile counts whole
	}
	return u
}

func (u cpuUse) total() time.Duration { return u.lux + u.pg }

// per formats the CPU per unit of work, naming PostgreSQL's share.
func (u cpuUse) per(n int) string {
	if n == 0 {
		return "n/a"
	}
	s := ms(u.lux / time.Duration(n))
	if u.withPG {
		s += " + " + ms(u.pg/time.Duration(n)) + " PG"
	}
	return s
}

// createDatabase makes a throw-away database on the PostgreSQL server of
// adminDSN and returns its DSN.
func createDatabase(adminDSN, name string) (string, error) {
	db, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(adminDSN)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

func dropDatabase(adminDSN, name string) error {
	db, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	return err
}

// dbSize is the space the database takes, in all and per table or
// index. SQLite: the pages in use as a reader sees them (WAL included,
// free pages left out; dbstat per table), so no checkpoint is needed.
// PostgreSQL: pg_database_size after a CHECKPOINT, pg_relation_size per
// relation (toast tables under their own names).
func dbSize(ctx context.Context, engine, dataDir, dsn string, admin *sql.DB, dbName string) (int64, map[string]int64, error) {
	if engine == "postgres" {
		if _, err := admin.ExecContext(ctx, "CHECKPOINT"); err != nil {
			return 0, nil, err
		}
		var n int64
		if err := admin.QueryRowContext(ctx, "SELECT pg_database_size($1)", dbName).Scan(&n); err != nil {
			return 0, nil, err
		}
		rels, err := relationSizes(ctx, "pgx", dsn, `SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c
			JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 'i', 't', 'm')`)
		return n, rels, err
	}
	dsn = "file:" + filepath.Join(dataDir, "luxchat.db") + "?mode=ro"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return 0, nil, err
	}
	defer db.Close()
	var pages, free, size int64
	for q, v := range map[string]*int64{"PRAGMA page_count": &pages, "PRAGMA freelist_count": &free, "PRAGMA page_size": &size} {
		if err := db.QueryRowContext(ctx, q).Scan(v); err != nil {
			return 0, nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	rels, err := relationSizes(ctx, "sqlite", dsn, `SELECT name, pgsize FROM dbstat WHERE aggregate = TRUE`)
	return (pages - free) * size, rels, err
}

// execDSN runs one statement on the database of dsn.
func execDSN(ctx context.Context, dsn, stmt string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, stmt)
	return err
}

func relationSizes(ctx context.Context, driver, dsn, query string) (map[string]int64, error) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("relation sizes: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		out[name] = n
	}
	return out, rows.Err()
}

func ms(d time.Duration) string {
	f := float64(d.Microseconds()) / 1000
	switch {
	case f >= 100:
		return fmt.Sprintf("%s ms", thousands(int64(f+0.5)))
	case f >= 10:
		return fmt.Sprintf("%.1f ms", f)
	}
	return fmt.Sprintf("%.2f ms", f)
}

// thousands writes n with comma separators, as the project's docs do.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// analyzeWhile refreshes the planner statistics of a PostgreSQL database
// every interval until stop is closed, and once more then. Setup grows
// tables from nothing to millions of rows in minutes; where autovacuum is
// off (as on the machine this was written on), plans made on the empty
// tables kept scanning them whole and setup slowed threefold as it went.
// A server in service has autovacuum do this.
func analyzeWhile(dsn string, interval time.Duration, stop <-chan struct{}, logf func(string, ...any)) (done <-chan struct{}) {
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			logf("analyze: %v", err)
			return
		}
		defer db.Close()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				if _, err := db.Exec("ANALYZE"); err != nil {
					logf("analyze: %v", err)
				}
				return
			case <-t.C:
				if _, err := db.Exec("ANALYZE"); err != nil {
					logf("analyze: %v", err)
				}
			}
		}
	}()
	return finished
}
