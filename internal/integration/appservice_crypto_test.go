//go:build goolm

// The encrypted appservice bot needs mautrix-go's crypto package, which
// is pure Go only with the goolm tag (without it, cgo and libolm): `make
// unit` runs this file with -tags goolm, plain `go test` leaves it out.

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/crypto"
	mevent "maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	ts "luxchat/internal/testserver"
)

// encBot is an external application service written with mautrix-go: a
// namespaced user whose device (created by MSC4190) has an OlmMachine
// fed only by the service's transactions (MSC2409 to-device events,
// MSC3202 device lists and one-time key counts). It decrypts what it is
// sent and answers, encrypted, "echo: <plaintext>".
type encBot struct {
	as   *appservice.AppService
	ep   *appservice.EventProcessor
	mach *crypto.OlmMachine
	bot  *appservice.IntentAPI

	mu        sync.Mutex
	decrypted []string // plaintext bodies, in order
	failures  []string
}

func startEncBot(t *testing.T, b *bridge, s *ts.Server) *encBot {
	t.Helper()
	ctx := context.Background()
	server := s.Config.ServerName
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	as, err := appservice.CreateFull(appservice.CreateOpts{Registration: b.reg, HomeserverDomain: server, HomeserverURL: s.URL,
		HostConfig: appservice.HostConfig{Hostname: "127.0.0.1", Port: b.port}})
	if err != nil {
		t.Fatal(err)
	}
	as.Log = log
	e := &encBot{as: as, ep: appservice.NewEventProcessor(as)}
	go as.Start()
	t.Cleanup(as.Stop)
	waitListening(t, b.port)

	e.bot = as.Intent(id.NewUserID("_bridge_echo", server))
	if err := e.bot.EnsureRegistered(ctx); err != nil {
		t.Fatalf("register the bot: %v", err)
	}
	if err := e.bot.CreateDeviceMSC4190(ctx, "ECHOBOT", "echo bot"); err != nil {
		t.Fatalf("MSC4190 device: %v", err)
	}
	e.mach = crypto.NewOlmMachine(e.bot.Client, &log, crypto.NewMemoryStore(nil), as.StateStore.(crypto.StateStore))
	if err := e.mach.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.mach.ShareKeys(ctx, -1); err != nil {
		t.Fatalf("upload the bot's keys: %v", err)
	}
	e.mach.AddAppserviceListener(e.ep)
	e.ep.On(mevent.StateMember, e.onMember)
	e.ep.On(mevent.EventEncrypted, e.onEncrypted)
	e.ep.Start(ctx)
	t.Cleanup(e.ep.Stop)
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if t.Failed() && len(e.failures) > 0 {
			t.Logf("the bot's failures: %q", e.failures)
		}
	})
	return e
}

func waitListening(t *testing.T, port uint16) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("appservice did not listen")
}

// onMember joins the rooms the bot is invited to.
func (e *encBot) onMember(ctx context.Context, evt *mevent.Event) {
	if evt.GetStateKey() != string(e.bot.UserID) || evt.Content.AsMember().Membership != mevent.MembershipInvite {
		return
	}
	if _, err := e.bot.JoinRoomByID(ctx, evt.RoomID); err != nil {
		e.fail("join %s: %v", evt.RoomID, err)
	}
}

// onEncrypted decrypts a user's message (waiting a while for its room
// key, which comes by to-device event in another transaction) and
// answers encrypted.
func (e *encBot) onEncrypted(ctx context.Context, evt *mevent.Event) {
	if evt.Sender == e.bot.UserID {
		return
	}
	if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, mevent.ErrContentAlreadyParsed) {
		e.fail("parse %s: %v", evt.ID, err)
		return
	}
	content := evt.Content.AsEncrypted()
	if !e.mach.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, 30*time.Second) {
		e.fail("no room key for %s (session %s) reached the bot", evt.ID, content.SessionID)
		return
	}
	clear, err := e.mach.DecryptMegolmEvent(ctx, evt)
	if err != nil {
		e.fail("decrypt %s: %v", evt.ID, err)
		return
	}
	body := clear.Content.AsMessage().Body
	e.mu.Lock()
	e.decrypted = append(e.decrypted, body)
	e.mu.Unlock()

	members, err := e.bot.JoinedMembers(ctx, evt.RoomID)
	if err != nil {
		e.fail("members: %v", err)
		return
	}
	users := make([]id.UserID, 0, len(members.Joined))
	for u := range members.Joined {
		users = append(users, u)
	}
	if err := e.mach.ShareGroupSession(ctx, evt.RoomID, users); err != nil {
		e.fail("share the bot's room key: %v", err)
		return
	}
	enc, err := e.mach.EncryptMegolmEvent(ctx, evt.RoomID, mevent.EventMessage,
		&mevent.MessageEventContent{MsgType: mevent.MsgText, Body: "echo: " + body})
	if err != nil {
		e.fail("encrypt: %v", err)
		return
	}
	if _, err := e.bot.SendMessageEvent(ctx, evt.RoomID, mevent.EventEncrypted, enc); err != nil {
		e.fail("send the answer: %v", err)
	}
}

func (e *encBot) fail(format string, args ...any) {
	e.mu.Lock()
	e.failures = append(e.failures, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

// jsUser is e2e/js/interop/alertbot-reader.mjs in owner mode: a
// matrix-js-sdk user with Rust crypto who creates an encrypted room,
// invites the bot, and sends and reads on command.
type jsUser struct {
	t     *testing.T
	in    io.WriteCloser
	lines chan map[string]any
	room  string
}

func startJSUser(t *testing.T, s *ts.Server, bot id.UserID) *jsUser {
	t.Helper()
	dir, err := filepath.Abs("../../e2e/js")
	if err != nil {
		t.Fatal(err)
	}
	node, nerr := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", "matrix-js-sdk")); nerr != nil || serr != nil {
		msg := "!!! node or e2e/js/node_modules/matrix-js-sdk missing (make tools, or npm ci in e2e/js): the encrypted appservice bot NOT tested !!!"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command(node, filepath.Join(dir, "interop", "alertbot-reader.mjs"), "owner")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LUXCHAT_E2E_URL="+s.URL, "LUXCHAT_E2E_SERVER_NAME="+s.Config.ServerName,
		"ALERTBOT_USER="+string(bot), "LUXCHAT_E2E_WAIT_MS=30000")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u := &jsUser{t: t, in: in, lines: make(chan map[string]any, 16)}
	go func() {
		defer close(u.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				u.lines <- m
			}
		}
	}()
	t.Cleanup(func() {
		_, _ = io.WriteString(in, `{"cmd":"quit"}`+"\n")
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("js user's stderr:\n%s", stderr.String())
		}
	})
	ready := u.next()
	if ready["ready"] != true {
		t.Fatalf("js user: %v", ready)
	}
	u.room, _ = ready["room_id"].(string)
	return u
}

func (u *jsUser) next() map[string]any {
	u.t.Helper()
	select {
	case m, ok := <-u.lines:
		if !ok {
			u.t.Fatal("the js user ended")
		}
		if e, bad := m["error"]; bad {
			u.t.Fatalf("js user: %v", e)
		}
		return m
	case <-time.After(3 * time.Minute):
		u.t.Fatal("the js user said nothing for 3 minutes")
	}
	return nil
}

func (u *jsUser) do(cmd map[string]any) map[string]any {
	u.t.Helper()
	data, _ := json.Marshal(cmd)
	if _, err := u.in.Write(append(data, '\n')); err != nil {
		u.t.Fatal(err)
	}
	return u.next()
}

// TestEncryptedAppServiceBot: a js-sdk user (Rust crypto) talks in an
// encrypted room with a mautrix-go appservice bot whose crypto runs in
// appservice mode; each side decrypts the other.
func TestEncryptedAppServiceBot(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			b, withAS := newBridge(t)
			opts := []ts.Option{withAS}
			if engine == "postgres" {
				opts = append(opts, ts.WithPostgres(t))
			}
			s := ts.New(t, opts...)
			bot := startEncBot(t, b, s)
			user := startJSUser(t, s, bot.bot.UserID) // returns once the bot joined

			sent := user.do(map[string]any{"cmd": "send", "body": "hello, encrypted bot"})
			if id, _ := sent["sent"].(string); id == "" {
				t.Fatalf("send: %v", sent)
			}
			// The server stored it encrypted: the bot decrypted it itself.
			got := user.do(map[string]any{"cmd": "expect", "body": "echo: hello, encrypted bot"})
			if got["type"] != "m.room.message" || got["wire_type"] != "m.room.encrypted" ||
				got["algorithm"] != "m.megolm.v1.aes-sha2" || got["encrypted"] != true || got["sender_device"] != "ECHOBOT" {
				t.Fatalf("the user saw %v; want the answer decrypted from m.room.encrypted (Megolm) of device ECHOBOT", got)
			}
			bot.mu.Lock()
			defer bot.mu.Unlock()
			if len(bot.failures) > 0 {
				t.Fatalf("bot: %v", bot.failures)
			}
			if len(bot.decrypted) != 1 || bot.decrypted[0] != "hello, encrypted bot" {
				t.Fatalf("the bot decrypted %q", bot.decrypted)
			}
		})
	}
}
