// Command luxchat is the luxchat homeserver and its administration tool.
//
//	luxchat serve [--config luxchat.yaml]
//	luxchat generate-config
//	luxchat user add NAME [--admin] [--config …]   (password from stdin or prompt)
//	luxchat token create [--uses N] [--expires 24h] [--config …]
//	luxchat token list | token revoke TOKEN
//	luxchat media rotate-key | media purge --older-than 90d
//	luxchat reports list [--json]
//	luxchat notice send USER_ID MESSAGE [--token T]   (through the running server)
//	luxchat webhook create --room ROOM [--name N] | list | rotate ID | revoke ID   (likewise)
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/term"

	"luxchat/internal/config"
	"luxchat/internal/media"
	"luxchat/internal/server"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "luxchat:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  luxchat serve [--config FILE]
  luxchat generate-config
  luxchat user add NAME [--admin] [--config FILE]
  luxchat token create [--uses N] [--expires DURATION] [--config FILE]
  luxchat token list [--config FILE]
  luxchat token revoke TOKEN [--config FILE]
  luxchat media rotate-key [--config FILE]
  luxchat media purge [--older-than 90d] [--config FILE]
  luxchat reports list [--json] [--config FILE]
  luxchat notice send USER_ID MESSAGE [--token TOKEN] [--url URL] [--config FILE]
  luxchat webhook create --room ROOM [--name NAME] [--token TOKEN] [--url URL] [--config FILE]
  luxchat webhook list | rotate ID | revoke ID [--token TOKEN] [--url URL] [--config FILE]`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "generate-config":
		_, err := io.WriteString(stdout, config.Template)
		return err
	case "user":
		if len(args) < 2 || args[1] != "add" {
			return errors.New(usage)
		}
		return userAdd(args[2:], stdin, stdout, stderr)
	case "token":
		if len(args) < 2 {
			return errors.New(usage)
		}
		return token(args[1], args[2:], stdout, stderr)
	case "media":
		if len(args) < 2 {
			return errors.New(usage)
		}
		return mediaCmd(args[1], args[2:], stdout)
	case "reports":
		if len(args) < 2 {
			return errors.New(usage)
		}
		return reportsCmd(args[1], args[2:], stdout)
	case "notice":
		if len(args) < 2 {
			return errors.New(usage)
		}
		return noticeCmd(args[1], args[2:], stdout)
	case "webhook":
		if len(args) < 2 {
			return errors.New(webhookUsage)
		}
		return webhookCmd(args[1], args[2:], stdout)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if os.Getenv("GOMEMLIMIT") == "" {
		followHeap(ctx, os.Getenv("GOGC") == "")
	}
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}

// open starts the server's services without listening, for CLI commands.
func open(cfgPath string) (*server.Server, error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	return server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// splitArgs lets flags follow positional arguments ("user add bob --admin").
func splitArgs(args []string) (pos, flags []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && a != "--admin" && a != "-admin" && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return pos, flags
}

func userAdd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	pos, flags := splitArgs(args)
	fs := flag.NewFlagSet("user add", flag.ContinueOnError)
	admin := fs.Bool("admin", false, "make the user a server administrator")
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(flags); err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: luxchat user add NAME [--admin] [--config FILE]")
	}
	password, err := readPassword(stdin, stderr)
	if err != nil {
		return err
	}
	srv, err := open(*cfgPath)
	if err != nil {
		return err
	}
	defer srv.Store.Close()
	id, err := srv.Accounts.CreateUser(context.Background(), pos[0], password, *admin)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}

// readPassword prompts twice on a terminal, or reads one line from a pipe.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if string(p1) != string(p2) {
			return "", errors.New("passwords differ")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	p := strings.TrimRight(line, "\r\n")
	if p == "" {
		return "", errors.New("empty password on standard input")
	}
	return p, nil
}

func token(cmd string, args []string, stdout, stderr io.Writer) error {
	pos, flags := splitArgs(args)
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	uses := fs.Int64("uses", 0, "number of registrations allowed (0: unlimited)")
	expires := fs.Duration("expires", 0, "validity (0: never expires)")
	if err := fs.Parse(flags); err != nil {
		return err
	}
	srv, err := open(*cfgPath)
	if err != nil {
		return err
	}
	defer srv.Store.Close()
	ctx := context.Background()
	switch cmd {
	case "create":
		var usesPtr *int64
		if *uses > 0 {
			usesPtr = uses
		}
		var exp *time.Time
		if *expires > 0 {
			t := time.Now().Add(*expires)
			exp = &t
		}
		name := ""
		if len(pos) > 0 {
			name = pos[0]
		}
		t, err := srv.Accounts.CreateRegistrationToken(ctx, name, usesPtr, exp)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, t)
		return nil
	case "list":
		ts, err := srv.Store.RegistrationTokens(ctx)
		if err != nil {
			return err
		}
		for _, t := range ts {
			uses := "unlimited"
			if t.UsesAllowed.Valid {
				uses = fmt.Sprint(t.UsesAllowed.Int64)
			}
			exp := "never"
			if t.ExpiryTS.Valid {
				exp = time.UnixMilli(t.ExpiryTS.Int64).UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%s\tuses=%d/%s\texpires=%s\n", t.Token, t.Completed, uses, exp)
		}
		return nil
	case "revoke":
		if len(pos) != 1 {
			return errors.New("usage: luxchat token revoke TOKEN")
		}
		return srv.Accounts.RevokeRegistrationToken(ctx, pos[0])
	}
	return fmt.Errorf("unknown token command %q", cmd)
}

// mediaCmd runs the media repository's maintenance commands.
func mediaCmd(cmd string, args []string, stdout io.Writer) error {
	pos, flags := splitArgs(args)
	fs := flag.NewFlagSet("media", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	olderThan := fs.String("older-than", "90d", "purge: age of expired reservations and cached remote media to delete (e.g. 90d, 12h)")
	if err := fs.Parse(flags); err != nil {
		return err
	}
	if len(pos) != 0 {
		return errors.New(usage)
	}
	srv, err := open(*cfgPath)
	if err != nil {
		return err
	}
	defer srv.Store.Close()
	ctx := context.Background()
	switch cmd {
	case "rotate-key":
		fromEnv := os.Getenv(media.KeyEnv) != ""
		res, err := media.RotateKey(ctx, srv.Store, srv.Media.Keyring(), func(n int) {
			fmt.Fprintf(stdout, "re-wrapped %d file keys\n", n)
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "media master key is now %s (%d file keys re-wrapped, %d damaged and skipped)\n", res.KeyID, res.Rewrapped, res.Failed)
		if fromEnv {
			fmt.Fprintf(stdout, "set %s=%s for the server before starting it again\n", media.KeyEnv, res.NewKey)
		}
		return nil
	case "purge":
		age, err := parseAge(*olderThan)
		if err != nil {
			return err
		}
		n, err := srv.Media.PurgeReservations(ctx, time.Now().Add(-age), func(total int64) {
			fmt.Fprintf(stdout, "deleted %d expired upload reservations\n", total)
		})
		if err != nil {
			return err
		}
		r, err := srv.Media.PurgeRemote(ctx, time.Now().Add(-age), func(total int64) {
			fmt.Fprintf(stdout, "deleted %d cached remote media\n", total)
		})
		if err != nil {
			return err
		}
		u, err := srv.Media.PurgeUnreferenced(ctx, time.Now().Add(-age), func(total int64) {
			fmt.Fprintf(stdout, "deleted %d local media no longer referenced\n", total)
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "done: %d expired upload reservations, %d cached remote media and %d local media no longer referenced, older than %s, deleted\n", n, r, u, *olderThan)
		return nil
	}
	return fmt.Errorf("unknown media command %q", cmd)
}

// parseAge reads a duration that may also be given in days ("90d").
func parseAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != d {
			return 0, fmt.Errorf("invalid age %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid age %q", s)
	}
	return d, nil
}

// followHeap keeps a soft memory limit that follows the live heap (see
// softLimit): the collector then works harder only as the heap nears it,
// which returns short-lived password hashing buffers promptly on a small
// server, while a sector's server, whose live heap is hundreds of MiB, is
// not held under a fixed limit it would spend its CPU collecting against.
// With pace, it also caps how far the heap may grow past the live heap
// between collections (see gcPercent). Both move after every
// collection: read on a timer, the limit lagged a heap that grew fast (a
// cold sync of a user in 1,000 rooms after the start), and until the next
// tick the collector ran back to back under a limit set for the heap it
// had been, most of the CPU of the syncs then.
func followHeap(ctx context.Context, pace bool) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/os-stacks:bytes"}, {Name: "/gc/scan/globals:bytes"}, {Name: "/sched/goroutines:goroutines"}}
	var goroutinesAtGC atomic.Uint64
	update := func() {
		metrics.Read(sample)
		live, stacks := sample[0].Value.Uint64(), sample[1].Value.Uint64()+sample[2].Value.Uint64()
		debug.SetMemoryLimit(softLimit(live, stacks))
		if pace {
			debug.SetGCPercent(gcPercent(live, stacks+sample[3].Value.Uint64()))
		}
		goroutinesAtGC.Store(sample[4].Value.Uint64())
	}
	update()
	afterEachGC(ctx, update)
	go collectAfterBursts(ctx, &goroutinesAtGC)
}

// collectAfterBursts collects again, and returns the free pages at once,
// when most of the goroutines the last collection found have ended: that
// collection counted what thousands of requests in flight held (10,000
// clients connecting at once: ~190 MiB live where ~110 MiB stay), and
// the heap would grow by the headroom past that before the next one,
// into pages that stay resident. At most once a minute.
func collectAfterBursts(ctx context.Context, goroutinesAtGC *atomic.Uint64) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	sample := []metrics.Sample{{Name: "/sched/goroutines:goroutines"}}
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			metrics.Read(sample)
			if burstEnded(goroutinesAtGC.Load(), sample[0].Value.Uint64()) && now.Sub(last) >= time.Minute {
				last = now
				debug.FreeOSMemory() // its collection resets goroutinesAtGC
			}
		}
	}
}

// burstEnded reports whether a burst of requests found in flight by the
// last collection (then goroutines) has ended (now goroutines): at
// least 2,000 then (16 MiB of stacks at the least, and their requests'
// heap), and three quarters of them gone.
func burstEnded(then, now uint64) bool { return then >= 2000 && now <= then/4 }

// maxHeadroom is the most the heap may grow past the live heap between
// collections (gcPercent).
const maxHeadroom = 80 << 20

// gcPercent is the GOGC for a live heap of live bytes with roots (the
// goroutine stacks and globals the collector scans) of roots bytes: the
// default 100 (the heap grows by as much as is live and scanned before
// the next collection) up to maxHeadroom, and past that the percentage
// that grows it by maxHeadroom alone. What a heap grows to between
// collections stays resident: with the default, 10,000 connected clients
// (live heap ~130 MiB, most of it the caches) held 400–460 MiB, since the
// heap grew to twice what was live at a collection made while thousands
// of clients arriving were still in flight (190 MiB), and kept the pages.
// The price is more collections of a big heap that allocates fast: each
// marks the live heap, so the collector's CPU per byte allocated grows as
// (live + roots) / maxHeadroom past it (a sector's message burst, ~90 MiB,
// is just past it).
func gcPercent(live, roots uint64) int {
	base := live + roots
	if base <= maxHeadroom {
		return 100
	}
	return max(25, int(100*uint64(maxHeadroom)/base))
}

// afterEachGC calls f (on the runtime's finalizer goroutine) after every
// collection until ctx ends: a sentinel object's finalizer runs once the
// collection that found it unreachable ends, and makes the next one.
func afterEachGC(ctx context.Context, f func()) {
	var arm func()
	arm = func() {
		runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) {
			if ctx.Err() != nil {
				return
			}
			f()
			arm()
		})
	}
	arm()
}

// gcSentinel holds a pointer so that it is never placed in the tiny
// allocator's shared blocks, whose finalizers may never run.
type gcSentinel struct{ _ *byte }

// softLimit is the memory limit for a live heap of live bytes: at least
// 64 MiB, and three times the live heap: room for the collector's own
// goal (twice the live heap) and as much again for what is not live
// objects (spans left part-used, free spans kept, runtime metadata),
// plus goroutine stacks. A limit of just twice the live heap was tighter
// than that goal: a sector's server collected two to three times as
// often, a quarter of its CPU while a message reached 1,000 pollers. One
// of 2×live + 64 MiB was reached by what fragmentation holds after
// 10,000 clients came and went: from there every span the heap takes
// first returns pages to the system (a madvise per stack of a woken
// poll's timer goroutine), 4.5 % of a core with 1,000 idle pollers.
// Goroutine stacks are counted on top: the limit covers them, and 10,000
// connections waiting inside net/http hold 200 MiB of stacks, which put
// the runtime over a limit of the heap alone, collecting without pause
// at its cap of half the CPU (a core and more of an idle server).
func softLimit(live, stacks uint64) int64 {
	return int64(max(64<<20, 3*live+stacks))
}
