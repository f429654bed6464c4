package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"luxchat/internal/gdpr"
)

// userExport writes the GDPR export of a local user (package gdpr) to
// --out: through a temporary file beside it, renamed once complete, so
// that a failed export leaves no partial archive under that name. It
// shows a progress bar on stderr when stderr is a terminal, else a line
// at each tenth.
func userExport(args []string, stdout, stderr io.Writer) error {
	pos, flags := splitArgs(args)
	fs := flag.NewFlagSet("user export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "the archive to write (zip)")
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(flags); err != nil {
		return err
	}
	if len(pos) != 1 || *out == "" {
		return errors.New("usage: luxchat user export USER_ID --out FILE [--config FILE]")
	}
	srv, err := open(*cfgPath)
	if err != nil {
		return err
	}
	defer srv.Store.Close()
	ctx := context.Background()
	if _, err := srv.GDPR.CheckUser(ctx, pos[0]); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*.part")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	bar := newProgressBar(stderr)
	start := time.Now()
	m, err := srv.GDPR.Export(ctx, pos[0], tmp, bar.update)
	bar.finish()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	var events, media int64
	for _, f := range m.Files {
		switch f.Name {
		case "events.jsonl":
			events = f.Count
		case "media.json":
			media = f.Count
		}
	}
	fmt.Fprintf(stdout, "exported %s to %s: %d events, %d uploads, in %s\n", pos[0], *out, events, media, time.Since(start).Round(time.Millisecond))
	return nil
}

// progressBar draws an export's progress on a terminal (one line redrawn
// in place), or prints a line at each tenth elsewhere.
type progressBar struct {
	w        io.Writer
	terminal bool
	tenth    int64 // the last tenth printed (not a terminal)
	drawn    bool
}

func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, terminal: ok && term.IsTerminal(int(f.Fd())), tenth: -1}
}

func (b *progressBar) update(done, total int64) {
	pct := int64(100)
	if total > 0 {
		pct = done * 100 / total
	}
	if !b.terminal {
		if t := pct / 10; t > b.tenth {
			b.tenth = t
			fmt.Fprintf(b.w, "export: %d%% (%d of %d events and uploads)\n", pct, done, total)
		}
		return
	}
	const width = 30
	n := int(pct * width / 100)
	fmt.Fprintf(b.w, "\r[%s%s] %3d%% %d/%d", strings.Repeat("#", n), strings.Repeat(".", width-n), pct, done, total)
	b.drawn = true
}

func (b *progressBar) finish() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

var _ gdpr.Progress = (*progressBar)(nil).update
