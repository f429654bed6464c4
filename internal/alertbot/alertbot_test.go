package alertbot_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/media"
	ts "luxchat/internal/testserver"
)

// forEachEngine runs f on a fresh server on SQLite and on PostgreSQL.
func forEachEngine(t *testing.T, f func(t *testing.T, s *ts.Server), opts ...ts.Option) {
	t.Run("sqlite", func(t *testing.T) { f(t, ts.New(t, opts...)) })
	t.Run("postgres", func(t *testing.T) { f(t, ts.New(t, append([]ts.Option{ts.WithPostgres(t)}, opts...)...)) })
}

// reader is e2e/js/interop/alertbot-reader.mjs: a matrix-js-sdk user with
// Rust crypto, driven over its standard input and output.
type reader struct {
	t                        *testing.T
	cmd                      *exec.Cmd
	in                       io.WriteCloser
	lines                    chan map[string]any
	UserID, DeviceID, RoomID string
}

// startReader starts a reader in mode owner or member against s; without
// node or e2e/js's packages the test fails under CI and is skipped
// loudly elsewhere.
func startReader(t *testing.T, s *ts.Server, mode string) *reader {
	t.Helper()
	dir, err := filepath.Abs("../../e2e/js")
	if err != nil {
		t.Fatal(err)
	}
	node, nerr := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", "matrix-js-sdk")); nerr != nil || serr != nil {
		msg := "!!! node or e2e/js/node_modules/matrix-js-sdk missing (make tools, or npm ci in e2e/js): the alert bot's encryption NOT checked by a real client !!!"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command(node, filepath.Join(dir, "interop", "alertbot-reader.mjs"), mode)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LUXCHAT_E2E_URL="+s.URL, "LUXCHAT_E2E_SERVER_NAME="+s.Config.ServerName,
		"ALERTBOT_USER="+s.AlertBot.UserID(), "LUXCHAT_E2E_WAIT_MS=30000")
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
	r := &reader{t: t, cmd: cmd, in: in, lines: make(chan map[string]any, 16)}
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				r.lines <- m
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
			t.Logf("reader %s stderr:\n%s", mode, stderr.String())
		}
	})
	ready := r.next()
	if ready["ready"] != true {
		t.Fatalf("reader %s: %v", mode, ready)
	}
	r.UserID, _ = ready["user_id"].(string)
	r.DeviceID, _ = ready["device_id"].(string)
	r.RoomID, _ = ready["room_id"].(string)
	return r
}

// next is the reader's next line; an error line fails the test.
func (r *reader) next() map[string]any {
	r.t.Helper()
	select {
	case m, ok := <-r.lines:
		if !ok {
			r.t.Fatal("the reader ended")
		}
		if e, bad := m["error"]; bad {
			r.t.Fatalf("reader: %v", e)
		}
		return m
	case <-time.After(3 * time.Minute):
		r.t.Fatal("the reader said nothing for 3 minutes")
	}
	return nil
}

func (r *reader) send(cmd map[string]any) {
	r.t.Helper()
	data, _ := json.Marshal(cmd)
	if _, err := r.in.Write(append(data, '\n')); err != nil {
		r.t.Fatal(err)
	}
}

// expectEncrypted waits until the reader has the bot's message body and
// checks that it arrived as m.room.encrypted (Megolm) and was decrypted.
func (r *reader) expectEncrypted(body string) map[string]any {
	r.t.Helper()
	r.send(map[string]any{"cmd": "expect", "body": body})
	got := r.next()
	if got["saw"] != body || got["type"] != "m.room.message" || got["wire_type"] != "m.room.encrypted" ||
		got["algorithm"] != "m.megolm.v1.aes-sha2" || got["encrypted"] != true {
		r.t.Fatalf("the reader saw %v; want %q decrypted from m.room.encrypted (Megolm)", got, body)
	}
	return got
}

func text(body string) map[string]any { return map[string]any{"msgtype": "m.notice", "body": body} }

func post(t *testing.T, s *ts.Server, roomID, body string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := s.AlertBot.Post(ctx, roomID, "m.room.message", text(body))
	if err != nil {
		t.Fatalf("Post %q: %v", body, err)
	}
	return id
}

// TestEncryptedAlertReachesRustCrypto: a matrix-js-sdk user with Rust
// crypto makes an encrypted room and invites the bot, which accepts; what
// the bot posts arrives as m.room.encrypted and decrypts to the exact
// text, and the server stores only ciphertext. After a restart of the
// server the bot's device, Olm and Megolm sessions are read back (sealed
// in the database) and its next post decrypts too. A second user who
// joins later reads the bot's new posts.
func TestEncryptedAlertReachesRustCrypto(t *testing.T) {
	if testing.Short() {
		t.Skip("node with matrix-js-sdk: not under -short")
	}
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		owner := startReader(t, s, "owner")
		first := "disk /var 95% on db1 — firing"
		id := post(t, s, owner.RoomID, first)
		got := owner.expectEncrypted(first)
		device := s.AlertBot.DeviceID()
		if got["sender_device"] != device || device == "" {
			t.Fatalf("sent by device %v; the bot's is %q", got["sender_device"], device)
		}
		// The server keeps ciphertext only.
		var stored struct {
			Type    string         `json:"type"`
			Content map[string]any `json:"content"`
		}
		c := s.Anonymous(t)
		c.Token = loginToken(t, s, owner)
		c.MustDo("GET", "/_matrix/client/v3/rooms/"+owner.RoomID+"/event/"+id, nil, &stored)
		if stored.Type != "m.room.encrypted" || strings.Contains(fmt.Sprint(stored.Content), "firing") {
			t.Fatalf("stored event: %+v", stored)
		}

		session := got["session_id"]
		// Restart: same database, same data dir, new tokens and ports of
		// the bot; the reader keeps syncing through it.
		s = s.Restart(t)
		second := "disk /var 97% on db1 — still firing"
		post(t, s, owner.RoomID, second)
		got = owner.expectEncrypted(second)
		if s.AlertBot.DeviceID() != device || got["session_id"] != session {
			t.Fatalf("device %q and Megolm session %v after the restart, %q and %v before", s.AlertBot.DeviceID(), got["session_id"], device, session)
		}

		// A second user joins; the bot's next post reaches both.
		member := startReader(t, s, "member")
		owner.send(map[string]any{"cmd": "invite", "user": member.UserID})
		owner.next()
		if j := member.next(); j["joined"] != true || j["room_id"] != owner.RoomID {
			t.Fatalf("member: %v", j)
		}
		third := "disk /var back to 60% on db1 — resolved"
		post(t, s, owner.RoomID, third)
		member.expectEncrypted(third)
		if got := owner.expectEncrypted(third); got["session_id"] != session {
			t.Fatalf("a member joined: session %v, before %v (it needs no new one)", got["session_id"], session)
		}

		// The member leaves: the next post is in a new Megolm session,
		// which the member's device is not sent.
		member.send(map[string]any{"cmd": "leave"})
		member.next()
		waitLeft(t, s, owner, member.UserID)
		fourth := "db2 unreachable — firing"
		post(t, s, owner.RoomID, fourth)
		if got := owner.expectEncrypted(fourth); got["session_id"] == session {
			t.Fatalf("a member left and the Megolm session %v goes on", session)
		}
	})
}

// waitLeft waits until the room's joined members no longer include user.
func waitLeft(t *testing.T, s *ts.Server, owner *reader, user string) {
	t.Helper()
	c := s.Anonymous(t)
	c.Token = loginToken(t, s, owner)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var members struct {
			Joined map[string]any `json:"joined"`
		}
		c.MustDo("GET", "/_matrix/client/v3/rooms/"+owner.RoomID+"/joined_members", nil, &members)
		if _, ok := members.Joined[user]; !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still joined", user)
		}
	}
}

// loginToken logs the reader's user in on a new device for the test's
// own requests.
func loginToken(t *testing.T, s *ts.Server, r *reader) string {
	t.Helper()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	s.Anonymous(t).MustDo("POST", "/_matrix/client/v3/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": r.UserID},
		"password": "correct horse battery staple"}, &out)
	return out.AccessToken
}

// TestClearAlert: into an unencrypted room the bot posts in clear; into a
// room it is not in, it gets the server's refusal.
func TestClearAlert(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		var room struct {
			RoomID string `json:"room_id"`
		}
		alice.MustDo("POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat"}, &room)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := s.AlertBot.Post(ctx, room.RoomID, "m.room.message", text("not in the room"))
		if e, ok := errcode.As(err); !ok || e.Code != "M_FORBIDDEN" {
			t.Fatalf("post into a room the bot is not in: %v", err)
		}
		if _, err := s.AlertBot.Join(ctx, room.RoomID); err == nil {
			t.Fatal("the bot joined a private room without an invite")
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+room.RoomID+"/invite", map[string]any{"user_id": s.AlertBot.UserID()}, nil)
		// The bot accepts the invite by itself (its transaction).
		deadline := time.Now().Add(30 * time.Second)
		for {
			var members struct {
				Joined map[string]any `json:"joined"`
			}
			alice.MustDo("GET", "/_matrix/client/v3/rooms/"+room.RoomID+"/joined_members", nil, &members)
			if _, ok := members.Joined[s.AlertBot.UserID()]; ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the bot did not accept the invite")
			}
			time.Sleep(50 * time.Millisecond)
		}
		id, err := s.AlertBot.Post(ctx, room.RoomID, "m.room.message", text("plain alert"))
		if err != nil {
			t.Fatal(err)
		}
		var ev struct {
			Type    string         `json:"type"`
			Sender  string         `json:"sender"`
			Content map[string]any `json:"content"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+room.RoomID+"/event/"+id, nil, &ev)
		if ev.Type != "m.room.message" || ev.Sender != s.AlertBot.UserID() || ev.Content["body"] != "plain alert" {
			t.Fatalf("event: %+v", ev)
		}
		var profile struct {
			DisplayName string `json:"displayname"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/profile/"+s.AlertBot.UserID(), nil, &profile)
		if profile.DisplayName != s.Config.Webhooks.BotDisplayName {
			t.Fatalf("the bot's display name: %q", profile.DisplayName)
		}
	}, ts.WithConfig(func(c *config.Config) { c.Encryption.Default = false }))
}

// inviteBot invites the bot into a room and waits until it accepted.
func inviteBot(t testing.TB, s *ts.Server, c *ts.Client, roomID string) {
	t.Helper()
	c.MustDo("POST", "/_matrix/client/v3/rooms/"+roomID+"/invite", map[string]any{"user_id": s.AlertBot.UserID()}, nil)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var members struct {
			Joined map[string]any `json:"joined"`
		}
		c.MustDo("GET", "/_matrix/client/v3/rooms/"+roomID+"/joined_members", nil, &members)
		if _, ok := members.Joined[s.AlertBot.UserID()]; ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the bot did not accept the invite")
		}
	}
}

// encryptedRoom makes a room with m.room.encryption (extra keys added to
// its content) and the bot in it.
func encryptedRoom(t testing.TB, s *ts.Server, c *ts.Client, extra map[string]any) string {
	t.Helper()
	content := map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}
	for k, v := range extra {
		content[k] = v
	}
	var room struct {
		RoomID string `json:"room_id"`
	}
	c.MustDo("POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat",
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": content}}}, &room)
	inviteBot(t, s, c, room.RoomID)
	return room.RoomID
}

// sessionOf is the Megolm session id of an encrypted event as stored.
func sessionOf(t *testing.T, c *ts.Client, roomID, eventID string) string {
	t.Helper()
	var ev struct {
		Type    string         `json:"type"`
		Content map[string]any `json:"content"`
	}
	c.MustDo("GET", "/_matrix/client/v3/rooms/"+roomID+"/event/"+eventID, nil, &ev)
	id, _ := ev.Content["session_id"].(string)
	if ev.Type != "m.room.encrypted" || id == "" {
		t.Fatalf("event %s: %+v", eventID, ev)
	}
	return id
}

// TestRotationSettings: the room's rotation_period_msgs starts a new
// Megolm session after that many messages.
func TestRotationSettings(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := encryptedRoom(t, s, alice, map[string]any{"rotation_period_msgs": 2})
		var ids []string
		for i := range 5 {
			ids = append(ids, sessionOf(t, alice, room, post(t, s, room, fmt.Sprint("alert ", i))))
		}
		if ids[0] != ids[1] || ids[1] == ids[2] || ids[2] != ids[3] || ids[3] == ids[4] {
			t.Fatalf("sessions %v: want a new one every 2 messages", ids)
		}
	})
}

// TestEncryptionOff: with webhooks.encryption off, a post into an
// encrypted room is refused and nothing is sent.
func TestEncryptionOff(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := encryptedRoom(t, s, alice, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := s.AlertBot.Post(ctx, room, "m.room.message", text("secret"))
		if e, ok := errcode.As(err); !ok || e.Code != "M_FORBIDDEN" {
			t.Fatalf("post: %v", err)
		}
		for _, bad := range [][2]string{{"", "m.room.message"}, {room, ""}} {
			if _, err := s.AlertBot.Post(ctx, bad[0], bad[1], text("x")); err == nil {
				t.Errorf("post %q: no error", bad)
			}
		}
		if _, err := s.AlertBot.Post(ctx, "!nowhere:localhost", "m.room.message", text("x")); err == nil {
			t.Error("post into an unknown room: no error")
		}
	}, ts.WithConfig(func(c *config.Config) { c.Webhooks.Encryption = false }))
}

// TestMediaKeyRotationKeepsTheBot: `luxchat media rotate-key` re-wraps
// the bot's data key with the media file keys; after a restart on the
// new key alone the bot has the same device and posts.
func TestMediaKeyRotationKeepsTheBot(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := encryptedRoom(t, s, alice, nil)
		first := sessionOf(t, alice, room, post(t, s, room, "before rotation"))
		device := s.AlertBot.DeviceID()
		keys, err := media.LoadKeyring(s.Config.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		res, err := media.RotateKey(context.Background(), s.Store, keys, nil)
		if err != nil || res.Failed != 0 || res.Rewrapped < 1 {
			t.Fatalf("rotate: %+v %v", res, err)
		}
		row, err := s.Store.AlertBotGet(context.Background(), "key", "data")
		if err != nil || row.KeyID != res.KeyID {
			t.Fatalf("the bot's data key is under %q, the new media key is %q (%v)", row.KeyID, res.KeyID, err)
		}
		s = s.Restart(t)
		if got := sessionOf(t, alice, room, post(t, s, room, "after rotation")); got != first || s.AlertBot.DeviceID() != device {
			t.Fatalf("after rotation: device %q session %q; before %q %q", s.AlertBot.DeviceID(), got, device, first)
		}
	})
}

// TestTransactionsListener: the bot's listener for the server's
// transactions wants the hs_token and a transaction.
func TestTransactionsListener(t *testing.T) {
	s := ts.New(t)
	reg := s.AlertBot.Registration()
	if !strings.HasPrefix(reg.URL, "http://127.0.0.1:") {
		t.Fatalf("the bot listens at %q, not on loopback", reg.URL)
	}
	for _, c := range []struct {
		token, body string
		want        int
	}{
		{"", `{"events":[]}`, 401},
		{"wrong", `{"events":[]}`, 403},
		{reg.HSToken, `{"events":`, 400},
		{reg.HSToken, `[1,2]`, 400},
		{reg.HSToken, `{"events":[{"type":"m.room.member","state_key":5}]}`, 400},
		{reg.HSToken, `{"events":[{"type":"m.room.member","state_key":"@alerts:localhost","sender":"@x:elsewhere","room_id":"!r:elsewhere","content":{"membership":"invite"}}]}`, 200},
	} {
		req, _ := http.NewRequest("PUT", reg.URL+"/_matrix/app/v1/transactions/1", strings.NewReader(c.body))
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("token %q body %s: %d, want %d", c.token, c.body, resp.StatusCode, c.want)
		}
	}
	// Random tokens of 256 bits, each start its own.
	if reg.ASToken == reg.HSToken || len(reg.ASToken) < 64 {
		t.Fatalf("tokens %q %q", reg.ASToken, reg.HSToken)
	}
}

// TestWebhookIntoEncryptedRoom: a webhook made for an encrypted room
// posts through the bot's device; the js-sdk user with Rust crypto reads
// the alert decrypted from m.room.encrypted.
func TestWebhookIntoEncryptedRoom(t *testing.T) {
	if testing.Short() {
		t.Skip("node with matrix-js-sdk: not under -short")
	}
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		owner := startReader(t, s, "owner")
		hook, err := s.Webhooks.Create(context.Background(), owner.RoomID, "grafana", owner.UserID)
		if err != nil {
			t.Fatal(err)
		}
		u := s.HooksURL + hook.URL[strings.Index(hook.URL, "/_luxchat/hooks/"):]
		resp, err := http.Post(u, "application/json", strings.NewReader(`{"text": "backup job failed on nas2"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("hook: %d", resp.StatusCode)
		}
		owner.expectEncrypted("backup job failed on nas2")
	})
}
