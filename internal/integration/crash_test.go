package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestKill9KeepsAcknowledgedEvents sends a stream of messages from several
// clients, kills the server with SIGKILL in the middle, restarts it on the
// same data and checks that every event whose send returned 200 is there.
func TestKill9KeepsAcknowledgedEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server process")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "luxchat")
	build := exec.Command("go", "build", "-o", bin, "luxchat/cmd/luxchat")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(dir, "luxchat.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: {client: %q}\ndata_dir: %q\nregistration: {mode: open}\nrate_limits: {enabled: false}\nauth: {password_hash_memory_kib: 1024, password_hash_time: 1}\nlog: {level: warn}\n", addr, filepath.Join(dir, "data"))), 0o600)
	base := "http://" + addr
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--config", cfg)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if r, err := http.Get(base + "/health"); err == nil {
				r.Body.Close()
				if r.StatusCode == 200 {
					return cmd
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("server did not start")
		return nil
	}
	call := func(method, path, token string, body any, out any) (int, error) {
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(data))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode, nil
	}
	srv := start()
	var reg struct {
		AccessToken string `json:"access_token"`
	}
	if st, err := call("POST", "/_matrix/client/v3/register", "", map[string]any{"username": "crash", "password": "crash-test-password", "auth": map[string]string{"type": "m.login.dummy"}}, &reg); err != nil || st != 200 {
		t.Fatalf("register: %d %v", st, err)
	}
	var room struct {
		RoomID string `json:"room_id"`
	}
	call("POST", "/_matrix/client/v3/createRoom", reg.AccessToken, map[string]any{}, &room)

	var mu sync.Mutex
	acked := map[string]string{} // event id → body
	var sent atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				body := fmt.Sprintf("w%d-%d", w, i)
				var r struct {
					EventID string `json:"event_id"`
				}
				st, err := call("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/%s", esc(room.RoomID), body), reg.AccessToken, map[string]string{"msgtype": "m.text", "body": body}, &r)
				if err != nil {
					return // the server is gone
				}
				if st == 200 && r.EventID != "" {
					mu.Lock()
					acked[r.EventID] = body
					mu.Unlock()
					sent.Add(1)
				}
			}
		}()
	}
	for sent.Load() < 200 {
		time.Sleep(10 * time.Millisecond)
	}
	srv.Process.Signal(syscall.SIGKILL)
	srv.Wait()
	cancel()
	wg.Wait()

	srv = start()
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 200 {
		t.Fatalf("only %d acknowledged sends", len(acked))
	}
	for id, body := range acked {
		var ev struct {
			Content map[string]any `json:"content"`
		}
		st, err := call("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(room.RoomID), esc(id)), reg.AccessToken, nil, &ev)
		if err != nil || st != 200 || ev.Content["body"] != body {
			t.Fatalf("acknowledged event %s (%s) lost after kill -9: %d %v %v", id, body, st, err, ev.Content)
		}
	}
	// The server still accepts writes to the room after the restart.
	var r struct {
		EventID string `json:"event_id"`
	}
	if st, _ := call("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/after", esc(room.RoomID)), reg.AccessToken, map[string]string{"msgtype": "m.text", "body": "after restart"}, &r); st != 200 {
		t.Fatalf("send after restart: %d", st)
	}
	t.Logf("%d acknowledged events survived kill -9", len(acked))
}
