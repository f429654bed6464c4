package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// report is the markdown the command prints: the setup steps and the
// measured figures, one column per engine, beside the targets.
type report struct {
	opts options
	load [2]string // load average at the start and the end
	runs []*engineRun
}

var engineTitle = map[string]string{"sqlite": "SQLite", "postgres": "PostgreSQL"}

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Sector benchmark, scale %g (%s)\n\n", r.opts.scale, time.Now().Format("2006-01-02"))
	fmt.Fprintf(&b, "%d cores, load average %s at the start and %s at the end; server CPU is luxchat's own", runtime.NumCPU(), r.load[0], r.load[1])
	if r.hasPG() {
		b.WriteString(" plus, on PostgreSQL, that of the backends serving its database (\"+ … PG\")")
	}
	b.WriteString(".\n\n")

	header := func(first ...string) {
		cols := append([]string(nil), first...)
		for _, run := range r.runs {
			cols = append(cols, engineTitle[run.engine])
		}
		fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
	}
	// Setup: one line per step, in the order of the first engine.
	header("setup step")
	for _, name := range r.keys(func(run *engineRun) []string {
		var ks []string
		for _, t := range run.setup {
			ks = append(ks, t.name)
		}
		return ks
	}) {
		cells := []string{name}
		for _, run := range r.runs {
			cells = append(cells, setupCell(run, name))
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
	}
	b.WriteString("\n")

	// Measured: the target goes last.
	cols := []string{"phase", "figure"}
	for _, run := range r.runs {
		cols = append(cols, engineTitle[run.engine])
	}
	cols = append(cols, "target")
	fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
	for _, key := range r.keys(func(run *engineRun) []string {
		var ks []string
		for _, row := range run.rows {
			ks = append(ks, row.phase+"\x00"+row.figure)
		}
		return ks
	}) {
		phase, figure, _ := strings.Cut(key, "\x00")
		cells := []string{phase, figure}
		target := ""
		for _, run := range r.runs {
			v := "—"
			for _, row := range run.rows {
				if row.phase == phase && row.figure == figure {
					v, target = row.value, row.target
				}
			}
			cells = append(cells, v)
		}
		cells = append(cells, target)
		fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
	}
	b.WriteString("\n")
	for _, run := range r.runs {
		fmt.Fprintf(&b, "- %s: whole run %s.\n", engineTitle[run.engine], run.runtime.Round(time.Second))
		for _, n := range run.notes {
			fmt.Fprintf(&b, "- %s: %s\n", engineTitle[run.engine], n)
		}
	}
	return b.String()
}

func setupCell(run *engineRun, name string) string {
	for _, t := range run.setup {
		if t.name == name {
			s := t.d.Round(100 * time.Millisecond).String()
			if t.note != "" {
				s += " (" + t.note + ")"
			}
			return s
		}
	}
	return "—"
}

// keys lists the keys of every run in first-seen order.
func (r *report) keys(of func(*engineRun) []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, run := range r.runs {
		for _, k := range of(run) {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

func (r *report) hasPG() bool {
	for _, run := range r.runs {
		if run.engine == "postgres" {
			return true
		}
	}
	return false
}
