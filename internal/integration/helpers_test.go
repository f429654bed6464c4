package integration

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	ts "luxchat/internal/testserver"
)

// forEachEngine runs f against a fresh server on SQLite and on PostgreSQL.
func forEachEngine(t *testing.T, f func(t *testing.T, s *ts.Server)) {
	t.Run("sqlite", func(t *testing.T) { f(t, ts.New(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, ts.New(t, ts.WithPostgres(t))) })
}

// newFederation is ts.NewFederation for tests whose servers federate in
// this process: they make up half the suite's time, so go test -short
// leaves them to the full run.
func newFederation(t *testing.T) *ts.Federation {
	t.Helper()
	if testing.Short() {
		t.Skip("federating servers: not under -short")
	}
	return ts.NewFederation(t)
}

func esc(s string) string { return url.PathEscape(s) }

type event struct {
	EventID  string         `json:"event_id"`
	Type     string         `json:"type"`
	Sender   string         `json:"sender"`
	StateKey *string        `json:"state_key"`
	Content  map[string]any `json:"content"`
	Unsigned map[string]any `json:"unsigned"`
}

type messagesPage struct {
	Chunk []event `json:"chunk"`
	Start string  `json:"start"`
	End   string  `json:"end"`
}

func messages(t *testing.T, c *ts.Client, roomID, query string) messagesPage {
	t.Helper()
	var p messagesPage
	c.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/messages?%s", esc(roomID), query), nil, &p)
	return p
}

func bodies(evs []event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == "m.room.message" {
			b, _ := e.Content["body"].(string)
			out = append(out, b)
		}
	}
	return out
}

type syncResp struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events    []event `json:"events"`
				Limited   bool    `json:"limited"`
				PrevBatch string  `json:"prev_batch"`
			} `json:"timeline"`
			State struct {
				Events []event `json:"events"`
			} `json:"state"`
			Ephemeral struct {
				Events []event `json:"events"`
			} `json:"ephemeral"`
			Summary map[string]any `json:"summary"`
		} `json:"join"`
		Invite map[string]struct {
			InviteState struct {
				Events []event `json:"events"`
			} `json:"invite_state"`
		} `json:"invite"`
		Leave map[string]any `json:"leave"`
	} `json:"rooms"`
}

func doSync(t testing.TB, c *ts.Client, query string) syncResp {
	t.Helper()
	var s syncResp
	c.MustDo("GET", "/_matrix/client/v3/sync?"+query, nil, &s)
	return s
}

// silentListener listens on addr, accepts every connection and never
// answers: a peer that is up but hangs. It closes with the test.
func silentListener(t testing.TB, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return ln
}

// browserTools returns e2e/js's directory, node and Debian's chromium for
// a browser test (playwright-core from e2e/js): without them the test
// fails under CI and is skipped loudly otherwise, naming what is not
// tested.
func browserTools(t *testing.T, untested string) (dir, node, chromium string) {
	t.Helper()
	dir, err := filepath.Abs("../../e2e/js")
	if err != nil {
		t.Fatal(err)
	}
	node, nerr := exec.LookPath("node")
	chromium, cerr := exec.LookPath("chromium")
	_, perr := os.Stat(filepath.Join(dir, "node_modules", "playwright-core"))
	if nerr != nil || cerr != nil || perr != nil {
		msg := "!!! node, chromium or e2e/js/node_modules/playwright-core missing (make tools; apt-get install chromium): " + untested + " !!!"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir, node, chromium
}
