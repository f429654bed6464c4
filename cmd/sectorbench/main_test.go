package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"luxchat/internal/testutil/pgtest"
)

// TestSmoke runs the whole benchmark on a tiny sector (SQLite, and
// PostgreSQL when LUXCHAT_TEST_POSTGRES is set) and checks that the
// report has every row, each with figures.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a sector and a luxchat binary")
	}
	// The binary is built as the test was (same cache), not as shipped:
	// a cold -trimpath build takes minutes.
	bin := filepath.Join(t.TempDir(), "luxchat")
	if out, err := exec.Command("go", "build", "-o", bin, "luxchat/cmd/luxchat").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	engine, engines := "sqlite", 1
	if os.Getenv(pgtest.EnvVar) != "" {
		engine, engines = "both", 2
	}
	args := []string{"-engine", engine, "-postgres", os.Getenv(pgtest.EnvVar), "-luxchat", bin, "-scale", "0.01",
		"-messages", "3", "-interval", "100ms", "-idle", "1s", "-steady", "1s", "-poll-timeout", "5s"}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	t.Log("\n" + stdout.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	// Every measured line: phase, figure, one cell per engine, target.
	want := map[string]int{
		"initial sync, user in":           3,
		"all-staff room":                  2,
		"sliding sync beside /sync":       9, // three users, three rows each
		"login":                           1,
		"join, room of":                   3,
		"online users' first syncs":       1,
		"message into the all-staff room": 4, // the first message apart, CPU, delivery, lost
		"idle long-pollers":               2,
		"DMs and groups":                  3,
		"storage":                         2,
		"connected clients":               9, // with "coming online" at 10 and 100
	}
	number := regexp.MustCompile(`\d`)
	got := map[string]int{}
	for _, line := range strings.Split(stdout.String(), "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 3+engines {
			continue
		}
		for prefix := range want {
			if !strings.HasPrefix(cells[0], prefix) {
				continue
			}
			got[prefix]++
			for _, v := range cells[2 : 2+engines] {
				if !number.MatchString(v) || strings.Contains(v, "error") {
					t.Errorf("row %q / %q: no figure in %q", cells[0], cells[1], v)
				}
			}
		}
	}
	for prefix, n := range want {
		if got[prefix] != n {
			t.Errorf("%d rows for %q, want %d", got[prefix], prefix, n)
		}
	}
}

// TestSmokeSlidingIdle runs the sliding-idle phase, which "all" leaves
// out, on a tiny sector and checks its rows: every connection answered
// its first request and long-polled without failing.
func TestSmokeSlidingIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a sector and a luxchat binary")
	}
	bin := filepath.Join(t.TempDir(), "luxchat")
	if out, err := exec.Command("go", "build", "-o", bin, "luxchat/cmd/luxchat").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	args := []string{"-engine", "sqlite", "-luxchat", bin, "-scale", "0.01", "-phases", "sliding-idle", "-idle", "3s", "-poll-timeout", "1s"}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	t.Log("\n" + stdout.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	rows := 0
	for _, line := range strings.Split(stdout.String(), "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 4 || !strings.HasPrefix(cells[0], "sliding sync: 10 idle connections") {
			continue
		}
		rows++
		if strings.Contains(cells[1], "polls answered in the window") && !regexp.MustCompile(`^[1-9]\d*; [0-9.]+ ms; 0$`).MatchString(cells[2]) {
			t.Errorf("no poll timed out and was answered in the window, or polls failed: %q", cells[2])
		}
	}
	if rows != 7 {
		t.Errorf("%d sliding sync rows, want 7", rows)
	}
}
