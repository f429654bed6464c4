package integration

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// botSDK is an application service written with matrix-bot-sdk (npm), run
// by node from e2e/js/lib/botsdk-appservice.cjs: what it receives arrives
// here as JSON lines, and it acts on commands written to it.
type botSDK struct {
	reg   map[string]any
	port  uint16
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu    sync.Mutex
	lines []botLine
	wake  chan struct{}
	next  int
}

// botLine is one line the service printed.
type botLine struct {
	Kind     string          `json:"kind"`
	ID       int             `json:"id"`
	Error    string          `json:"error"`
	Result   json.RawMessage `json:"result"`
	RoomID   string          `json:"room_id"`
	EventID  string          `json:"event_id"`
	Type     string          `json:"type"`
	Sender   string          `json:"sender"`
	ToUserID string          `json:"to_user_id"`
	ToDevice string          `json:"to_device_id"`
	UserID   string          `json:"user_id"`
	Alias    string          `json:"alias"`
	Changed  []string        `json:"changed"`
	Content  json.RawMessage `json:"content"`
}

// newBotSDK writes the service's registration (users @_botsdk_*, aliases
// #_botsdk_*, both exclusive; ephemeral data pushed) and returns the
// option that loads it. Without node or e2e/js's packages the test fails
// under CI and is skipped loudly otherwise.
func newBotSDK(t *testing.T) (*botSDK, ts.Option) {
	t.Helper()
	dir, err := filepath.Abs("../../e2e/js")
	if err != nil {
		t.Fatal(err)
	}
	_, nerr := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", "matrix-bot-sdk")); nerr != nil || serr != nil {
		msg := "!!! node or e2e/js/node_modules/matrix-bot-sdk missing (make tools, or npm ci in e2e/js): matrix-bot-sdk NOT tested !!!"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	b := &botSDK{port: freePort(t), wake: make(chan struct{}, 1)}
	b.reg = map[string]any{
		"id":                                 "botsdk",
		"url":                                fmt.Sprintf("http://127.0.0.1:%d", b.port),
		"as_token":                           "botsdk-as-" + rand.Text(),
		"hs_token":                           "botsdk-hs-" + rand.Text(),
		"sender_localpart":                   "_botsdk_bot",
		"rate_limited":                       false,
		"receive_ephemeral":                  true,
		"de.sorunome.msc2409.push_ephemeral": true,
		"namespaces": map[string]any{
			"users":   []any{map[string]any{"exclusive": true, "regex": "@_botsdk_.*"}},
			"aliases": []any{map[string]any{"exclusive": true, "regex": "#_botsdk_.*"}},
			"rooms":   []any{},
		},
	}
	data, err := json.Marshal(b.reg) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "botsdk.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return b, ts.WithConfig(func(c *config.Config) { c.AppServices.ConfigFiles = []string{file} })
}

// start runs the service against the homeserver at hsURL and waits until
// it listens.
func (b *botSDK) start(t *testing.T, hsURL, serverName string) {
	t.Helper()
	reg, _ := json.Marshal(b.reg)
	b.cmd = exec.Command("node", "lib/botsdk-appservice.cjs")
	b.cmd.Dir = "../../e2e/js"
	b.cmd.Env = append(os.Environ(), "AS_REGISTRATION="+string(reg), fmt.Sprint("AS_PORT=", b.port), "HS_URL="+hsURL, "HS_NAME="+serverName)
	b.cmd.Stderr = os.Stderr
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.stdin.Close()
		done := make(chan struct{})
		go func() { b.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			b.cmd.Process.Kill()
			<-done
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l botLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			b.mu.Lock()
			b.lines = append(b.lines, l)
			b.mu.Unlock()
			select {
			case b.wake <- struct{}{}:
			default:
			}
		}
	}()
	b.waitFor(t, "the service to listen", func(l botLine) bool { return l.Kind == "ready" })
}

// waitFor waits for a line that matches and returns it; 30 s is a
// failure's limit, not a measure.
func (b *botSDK) waitFor(t *testing.T, what string, match func(botLine) bool) botLine {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		b.mu.Lock()
		for _, l := range b.lines {
			if match(l) {
				b.mu.Unlock()
				return l
			}
		}
		b.mu.Unlock()
		select {
		case <-b.wake:
		case <-deadline:
			b.mu.Lock()
			defer b.mu.Unlock()
			t.Fatalf("matrix-bot-sdk service: no %s in %d lines: %+v", what, len(b.lines), b.lines)
		}
	}
}

// count counts the lines that match.
func (b *botSDK) count(match func(botLine) bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if match(l) {
			n++
		}
	}
	return n
}

// do runs a command in the service and returns its result; an error the
// service met fails the test.
func (b *botSDK) do(t *testing.T, op, user, room, body string) json.RawMessage {
	t.Helper()
	b.mu.Lock()
	b.next++
	id := b.next
	b.mu.Unlock()
	line, _ := json.Marshal(map[string]any{"id": id, "op": op, "user": user, "room": room, "body": body})
	if _, err := b.stdin.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
	l := b.waitFor(t, fmt.Sprint(op, " done"), func(l botLine) bool { return l.Kind == "done" && l.ID == id })
	if l.Error != "" {
		t.Fatalf("matrix-bot-sdk %s as %s: %s", op, user, l.Error)
	}
	return l.Result
}

// TestAppServiceMatrixBotSDK drives the Application Service API with
// matrix-bot-sdk's Appservice: its users register and join through their
// intents, the room's events and ephemeral data reach it by transaction,
// and the homeserver asks it for users and aliases of its namespaces that
// do not exist yet, which it creates.
func TestAppServiceMatrixBotSDK(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			b, withAS := newBotSDK(t)
			opts := []ts.Option{withAS}
			if engine == "postgres" {
				opts = append(opts, ts.WithPostgres(t))
			}
			s := ts.New(t, opts...)
			server := s.Config.ServerName
			b.start(t, s.URL, server)

			alice := s.Register(t, "alice")
			room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
			ghost := "@_botsdk_echo:" + server

			// A namespaced user registers (m.login.application_service) and joins.
			var who struct {
				UserID string `json:"user_id"`
			}
			if err := json.Unmarshal(b.do(t, "whoami", ghost, "", ""), &who); err != nil || who.UserID != ghost {
				t.Fatalf("whoami as the ghost: %+v %v", who, err)
			}
			b.do(t, "join", ghost, room, "")
			b.waitFor(t, "the ghost's join", func(l botLine) bool {
				return l.Kind == "event" && l.Type == "m.room.member" && l.RoomID == room && l.Sender == ghost
			})

			// Alice's message arrives by transaction; the ghost answers.
			alice.SendText(room, "hello bot-sdk")
			msg := b.waitFor(t, "alice's message", func(l botLine) bool {
				return l.Kind == "event" && l.Type == "m.room.message" && l.Sender == alice.UserID && string(l.Content) != "" && jsonField(l.Content, "body") == "hello bot-sdk"
			})
			b.do(t, "send", ghost, room, "echo: hello bot-sdk")
			if got := messages(t, alice, room, "dir=b&limit=1"); len(got.Chunk) != 1 || got.Chunk[0].Sender != ghost {
				t.Fatalf("alice sees %+v", got.Chunk)
			}

			// Ephemeral data (MSC2409): alice's typing and receipt.
			alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/typing/"+esc(alice.UserID), map[string]any{"typing": true, "timeout": 10000}, nil)
			b.waitFor(t, "typing", func(l botLine) bool { return l.Kind == "ephemeral" && l.Type == "m.typing" && l.RoomID == room })
			alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(msg.EventID), map[string]any{}, nil)
			b.waitFor(t, "alice's receipt", func(l botLine) bool { return l.Kind == "ephemeral" && l.Type == "m.receipt" && l.RoomID == room })

			// A user of the namespace nobody created: the server asks the
			// service, which registers it and sets its name.
			newcomer := "@_botsdk_newcomer:" + server
			var profile struct {
				DisplayName string `json:"displayname"`
			}
			r := alice.Do("GET", "/_matrix/client/v3/profile/"+esc(newcomer), nil)
			if r.Status != 200 || r.JSON(&profile) != nil || profile.DisplayName != "Ghost of _botsdk_newcomer" {
				t.Fatalf("profile of a queried user: %d %s", r.Status, r.Body)
			}
			b.waitFor(t, "the user query", func(l botLine) bool { return l.Kind == "query.user" && l.UserID == newcomer })

			// An alias of the namespace: the service creates its room.
			alias := "#_botsdk_lobby:" + server
			var resolved struct {
				RoomID string `json:"room_id"`
			}
			r = alice.Do("GET", "/_matrix/client/v3/directory/room/"+esc(alias), nil)
			if r.Status != 200 || r.JSON(&resolved) != nil || resolved.RoomID == "" {
				t.Fatalf("alias the service creates: %d %s", r.Status, r.Body)
			}
			b.waitFor(t, "the alias query", func(l botLine) bool { return l.Kind == "query.room" && l.Alias == alias })
			alice.MustDo("POST", "/_matrix/client/v3/join/"+esc(alias), map[string]any{}, nil)
			var name struct {
				Name string `json:"name"`
			}
			alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(resolved.RoomID)+"/state/m.room.name/", nil, &name)
			if name.Name != "Bridged "+alias {
				t.Fatalf("the bridged room's name: %q", name.Name)
			}

			// Unknown users and aliases outside the namespace are not asked for.
			if r := alice.Do("GET", "/_matrix/client/v3/directory/room/"+esc("#nobody:"+server), nil); r.Status != 404 {
				t.Fatalf("alias outside the namespace: %d %s", r.Status, r.Body)
			}
			if n := b.count(func(l botLine) bool { return l.Kind == "query.room" }); n != 1 {
				t.Fatalf("%d alias queries, want 1", n)
			}

			// Each event once: the service saw alice's message exactly once.
			if n := b.count(func(l botLine) bool { return l.Kind == "event" && l.EventID == msg.EventID }); n != 1 {
				t.Fatalf("alice's message delivered %d times", n)
			}
			joined := alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/joined_members", nil)
			var members struct {
				Joined map[string]any `json:"joined"`
			}
			if joined.JSON(&members) != nil || !slices.Contains(mapKeys(members.Joined), ghost) {
				t.Fatalf("joined members: %s", joined.Body)
			}
		})
	}
}

func jsonField(raw json.RawMessage, key string) string {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	s, _ := m[key].(string)
	return s
}

func mapKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
