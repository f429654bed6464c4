// Command sectorbench builds a whole sector on one machine and measures
// what issue 13 asks of it: 40,000 accounts, 1,000 of them online and
// long-polling, DMs and small groups by the thousand, rooms of 1,000 to
// 10,000 members and people in 1,000 rooms.
//
// Setup runs in-process, straight through the store and the rooms
// service (no HTTP, one password hash in all), so that it takes minutes.
// The measured part speaks the public client API to a separate luxchat
// process over the same data, whose CPU and memory are read from /proc.
// It prints a markdown table of figures beside the targets.
//
//	go run ./cmd/sectorbench -engine both -out sector.md
//
// Run it from the repository: it builds ./cmd/luxchat unless -luxchat
// names a binary.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sectorbench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	engines        []string
	scale          float64
	keep           bool
	phases         []string
	out            string
	postgres       string
	luxchat        string
	pollTimeout    time.Duration
	idle           time.Duration
	steady         time.Duration
	messages       int
	interval       time.Duration
	setupBudget    time.Duration
	syncBudget     time.Duration
	pollerBudget   time.Duration
	joinBudget     time.Duration
	phaseBudget    time.Duration
	cpuProfile     string
	msgProfile     string
	syncProfile    string
	syncProfileFor time.Duration
	serverExtra    string
	connected      int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("sectorbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	engine := fs.String("engine", "sqlite", "sqlite, postgres or both")
	phases := fs.String("phases", "all", "comma-separated phases: "+phaseNames(true)+` ("all" leaves out sliding-idle)`)
	fs.Float64Var(&o.scale, "scale", 1, "size of the sector; 1 is the issue's (40,000 accounts, rooms of up to 10,000, 1,000 online)")
	fs.BoolVar(&o.keep, "keep", false, "keep the data directory and the PostgreSQL database")
	fs.StringVar(&o.out, "out", "", "also write the report to this file")
	fs.StringVar(&o.postgres, "postgres", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL DSN allowed to CREATE DATABASE")
	fs.StringVar(&o.luxchat, "luxchat", "", "luxchat binary to measure (default: build ./cmd/luxchat)")
	fs.DurationVar(&o.pollTimeout, "poll-timeout", 30*time.Second, "timeout of the online users' long polls")
	fs.DurationVar(&o.idle, "idle", 30*time.Second, "length of the idle window (one poll timeout counts every poller once)")
	fs.DurationVar(&o.steady, "steady", 10*time.Second, "length of the steady sending before the burst")
	fs.IntVar(&o.messages, "messages", 20, "messages into the all-staff room")
	fs.DurationVar(&o.interval, "interval", 500*time.Millisecond, "time between messages into the all-staff room")
	fs.DurationVar(&o.setupBudget, "setup-budget", 6*time.Minute, "time for the big rooms' joins at setup; past it they stay smaller")
	fs.DurationVar(&o.syncBudget, "sync-budget", 2*time.Minute, "time for each series of the sync phase (the heavy user's six initial syncs, five lazy-loaded syncs, five /members)")
	fs.DurationVar(&o.pollerBudget, "poller-budget", 3*time.Minute, "time for the online users' first syncs; past it the others start from a cheap sync")
	fs.DurationVar(&o.joinBudget, "join-budget", time.Minute, "time for the measured joins into each big room")
	fs.DurationVar(&o.phaseBudget, "phase-budget", 5*time.Minute, "time for any one phase; what it measured by then is reported")
	fs.IntVar(&o.connected, "connected", 0, "clients long-polling at the end of the connected phase (default 10,000 × scale)")
	fs.StringVar(&o.cpuProfile, "setup-cpuprofile", "", "write a CPU profile of the in-process setup to this file (the last engine's)")
	fs.StringVar(&o.serverExtra, "server-config", "", "YAML lines added to the measured server's configuration, e.g. 'limits: {park_long_polls: true}'")
	fs.StringVar(&o.syncProfile, "sync-cpuprofile", "", "write a CPU profile of the server from just before the sync phase's first initial sync (a server's first) to this file, taken for -sync-cpuprofile-for; the next syncs wait for it (the last engine's)")
	fs.DurationVar(&o.syncProfileFor, "sync-cpuprofile-for", 5*time.Second, "length of the -sync-cpuprofile profile (whole seconds)")
	fs.StringVar(&o.msgProfile, "message-cpuprofile", "", "write a CPU profile of the server over the message phase's sends to this file, and its allocation profiles at the phase's start and end to FILE.allocs.start and .end (the last engine's)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch *engine {
	case "sqlite", "postgres":
		o.engines = []string{*engine}
	case "both":
		o.engines = []string{"sqlite", "postgres"}
	default:
		return o, fmt.Errorf("-engine: %q is not sqlite, postgres or both", *engine)
	}
	if *phases == "all" {
		*phases = phaseNames(false)
	}
	for _, ph := range strings.Split(*phases, ",") {
		if !slices.ContainsFunc(phaseOrder, func(p phase) bool { return p.name == ph }) {
			return o, fmt.Errorf("-phases: unknown phase %q (known: %s)", ph, phaseNames(true))
		}
		o.phases = append(o.phases, ph)
	}
	return o, nil
}

// phaseNames lists the phases in their order; extras too when asked.
func phaseNames(extras bool) string {
	var names []string
	for _, p := range phaseOrder {
		if !p.extra || extras {
			names = append(names, p.name)
		}
	}
	return strings.Join(names, ",")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	start := time.Now()
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%7s  %s\n", time.Since(start).Round(100*time.Millisecond), fmt.Sprintf(format, a...))
	}
	work, err := os.MkdirTemp("", "sectorbench-")
	if err != nil {
		return err
	}
	bin := o.luxchat
	if bin == "" {
		logf("building luxchat")
		if bin, err = buildLuxchat(work); err != nil {
			return err
		}
	}
	rep := &report{opts: o, load: [2]string{loadAvg(), ""}}
	var failed error
	for _, engine := range o.engines {
		er, err := runEngine(ctx, o, engine, bin, filepath.Join(work, engine), logf)
		if err != nil {
			failed = errors.Join(failed, fmt.Errorf("%s: %w", engine, err))
		}
		if er != nil {
			rep.runs = append(rep.runs, er)
			if er.failed {
				failed = errors.Join(failed, fmt.Errorf("%s: a phase failed", engine))
			}
		}
	}
	rep.load[1] = loadAvg()
	text := rep.markdown()
	fmt.Fprint(stdout, text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return err
		}
	}
	if o.keep {
		logf("kept %s", work)
	} else {
		os.RemoveAll(work)
	}
	return failed
}

// engineRun is one engine's results.
type engineRun struct {
	engine  string
	setup   []timing
	rows    []row
	notes   []string
	runtime time.Duration
	failed  bool
}

// runEngine builds the sector on one engine and measures it.
func runEngine(ctx context.Context, o options, engine, bin, dataDir string, logf func(string, ...any)) (*engineRun, error) {
	t0 := time.Now()
	er := &engineRun{engine: engine}
	elog := func(format string, a ...any) { logf("[%s] "+format, append([]any{engine}, a...)...) }
	database, dbName := "sqlite", ""
	if engine == "postgres" {
		dbName = fmt.Sprintf("sectorbench_%d", os.Getpid())
		dsn, err := createDatabase(o.postgres, dbName)
		if err != nil {
			return nil, err
		}
		database = dsn
		if !o.keep {
			defer func() {
				if err := dropDatabase(o.postgres, dbName); err != nil {
					elog("drop database %s: %v", dbName, err)
				}
			}()
		} else {
			elog("keeping database %s", dbName)
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	metrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	yaml := serverConfig(dataDir, database, addr, metrics) + o.serverExtra + "\n"
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		return nil, fmt.Errorf("server config: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dataDir, "luxchat.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return nil, err
	}

	p := newPlan(o.scale)
	if slices.Contains(o.phases, "sliding") {
		p = p.withSliders(o.scale)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("-scale %g: %w", o.scale, err)
	}
	elog("setup: %d accounts, rooms of %d/%d/%d, %d DMs, %d groups, %d online", p.users, p.bigSizes[0], p.bigSizes[1], p.bigSizes[2], p.dms, p.groups, p.pollers)
	var analyzed <-chan struct{}
	setupDone := make(chan struct{})
	if engine == "postgres" {
		analyzed = analyzeWhile(database, 20*time.Second, setupDone, elog)
	}
	sec, err := setup(ctx, cfg, p, o.setupBudget, o.cpuProfile, elog)
	close(setupDone)
	if analyzed != nil {
		<-analyzed
	}
	if err != nil {
		return nil, err
	}
	er.setup, er.notes = sec.setup, sec.bigNotes

	t1 := time.Now()
	proc, err := startServer(bin, cfgPath, addr, filepath.Join(dataDir, "luxchat.log"))
	if err != nil {
		return nil, err
	}
	er.setup = append(er.setup, timing{"luxchat start (fills the user directory)", time.Since(t1), ""})
	elog("luxchat started in %s (pid %d); to profile a phase: go tool pprof -seconds 30 http://%s/debug/pprof/profile",
		time.Since(t1).Round(time.Millisecond), proc.pid(), metrics)
	b := &bench{opts: o, engine: engine, sec: sec, c: newClient(proc.base), m: &meter{pid: proc.pid()}, dataDir: dataDir, metrics: "http://" + metrics,
		hashMem: cfg.Auth.PasswordHashMemoryKiB, hashT: cfg.Auth.PasswordHashTime, tr: newTracker(), logf: elog}
	if engine == "postgres" {
		admin, err := sql.Open("pgx", o.postgres)
		if err != nil {
			proc.stop()
			return nil, err
		}
		defer admin.Close()
		b.admin, b.dbName, b.dsn = admin, dbName, database
		b.m.admin, b.m.dbName = admin, dbName
	}
	for _, ph := range phaseOrder {
		if !slices.Contains(o.phases, ph.name) || ctx.Err() != nil {
			continue
		}
		if ph.offline && b.ps != nil {
			b.ps.stop()
		}
		if busy, ok := b.settle(time.Minute); !ok {
			er.notes = append(er.notes, fmt.Sprintf("luxchat was still busy (%.0f %% of a core) a minute after the phase before %s", busy, ph.name))
		}
		elog("phase %s", ph.name)
		budget := o.phaseBudget
		if ph.name == "connected" {
			budget += o.pollerBudget // it brings the online users online, with their first syncs
		}
		pctx, cancel := context.WithTimeout(ctx, budget)
		err := ph.run(b, pctx)
		cancel()
		if err != nil {
			elog("phase %s failed: %v", ph.name, err)
			b.add(ph.name, "failed", "", "error: "+err.Error())
			er.failed = true
		}
	}
	if b.ps != nil {
		if n := b.ps.errs.Load(); n > 0 {
			er.notes = append(er.notes, fmt.Sprintf("%d long polls failed; last: %v", n, b.ps.lastErr.Load()))
		}
		b.ps.stop()
	}
	if err := proc.stop(); err != nil {
		er.notes = append(er.notes, "luxchat stop: "+err.Error())
	}
	er.rows = b.rows
	er.runtime = time.Since(t0)
	elog("done in %s", er.runtime.Round(time.Second))
	return er, ctx.Err()
}

// serverConfig is the configuration of both the in-process setup and the
// measured process. Rate limits off (a thousand clients from one
// address), no federation, warnings only, and the metrics listener on
// (its profiles show where a slow phase spends its time). New rooms are not encrypted by
// default: groups and big rooms carry plain text (full push and search
// work for the server); DMs ask for encryption themselves.
func serverConfig(dataDir, database, addr, metrics string) string {
	return fmt.Sprintf(`server_name: sector.test
data_dir: %q
database: %q
listen: {client: %q, metrics: %q}
federation: {enabled: false}
rate_limits: {enabled: false}
encryption: {default: false}
log: {level: warn}
`, dataDir, database, addr, metrics)
}

// setup builds the sector with an in-process server, then closes it.
func setup(ctx context.Context, cfg *config.Config, p plan, budget time.Duration, profile string, logf func(string, ...any)) (*sector, error) {
	if profile != "" {
		// The setup's big-room joins are the server's join path without
		// HTTP: their profile shows what a join costs.
		f, err := os.Create(profile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := server.New(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	sec, err := build(ctx, s, p, budget, logf)
	if err == nil {
		// What a running server does every few seconds: store the views of
		// the rooms with events since (rooms.PersistViews).
		t := time.Now()
		err = s.Rooms.PersistViews(ctx)
		sec.setup = append(sec.setup, timing{"store the rooms' views", time.Since(t), ""})
	}
	return sec, errors.Join(err, s.Store.Close())
}

// loadAvg is /proc/loadavg's first three figures: the machine is shared.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
