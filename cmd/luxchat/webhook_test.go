package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"luxchat/internal/config"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

func TestWebhookCommands(t *testing.T) {
	s := ts.New(t, ts.WithConfig(func(c *config.Config) { c.Encryption.Default = false }))
	admin := s.Register(t, "admin")
	ctx := context.Background()
	if err := s.Store.InTx(ctx, func(tx *store.Tx) error { return tx.SetAdmin(ctx, admin.UserID, true) }); err != nil {
		t.Fatal(err)
	}
	var login struct {
		AccessToken string `json:"access_token"`
	}
	s.Anonymous(t).MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": admin.UserID}, "password": "correct horse battery"}, &login)
	room := admin.CreateRoom(map[string]any{"preset": "public_chat", "room_alias_name": "alerts-room"})
	t.Setenv(adminTokenEnv, login.AccessToken)
	var out, errb bytes.Buffer
	cli := func(args ...string) error {
		out.Reset()
		return run(append(args, "--url", s.URL), nil, &out, &errb)
	}

	if err := cli("webhook", "create"); err == nil || !strings.Contains(err.Error(), "--room") {
		t.Fatalf("create without --room: %v", err)
	}
	if err := cli("webhook", "create", "--room", "#nope:"+s.Config.ServerName); err == nil || !strings.Contains(err.Error(), "M_NOT_FOUND") {
		t.Fatalf("unknown alias: %v", err)
	}
	if err := cli("webhook", "create", "--room", "#alerts-room:"+s.Config.ServerName, "--name", "grafana prod"); err != nil {
		t.Fatalf("create: %v", err)
	}
	url := strings.TrimSpace(out.String())
	if !strings.HasPrefix(url, s.URL+"/_luxchat/hooks/") {
		t.Fatalf("create printed %q", url)
	}
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"text": "from the CLI's hook"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("post: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := cli("webhook", "list"); err != nil {
		t.Fatal(err)
	}
	fields := strings.Split(strings.TrimSpace(out.String()), "\t")
	if len(fields) != 6 || fields[1] != "active" || fields[2] != room || fields[5] != `"grafana prod"` {
		t.Fatalf("list printed %q", out.String())
	}
	id := fields[0]
	if err := cli("webhook", "rotate", id); err != nil {
		t.Fatal(err)
	}
	if u := strings.TrimSpace(out.String()); u == url || !strings.Contains(u, "/_luxchat/hooks/"+id+"_") {
		t.Fatalf("rotate printed %q", u)
	}
	if err := cli("webhook", "revoke", id); err != nil {
		t.Fatal(err)
	}
	if err := cli("webhook", "revoke", id); err == nil || !strings.Contains(err.Error(), "M_NOT_FOUND") {
		t.Fatalf("revoke twice: %v", err)
	}
	if err := cli("webhook", "list"); err != nil || !strings.Contains(out.String(), "\trevoked\t") {
		t.Fatalf("list after revoke: %v %q", err, out.String())
	}
	t.Setenv(adminTokenEnv, "")
	if err := cli("webhook", "list"); err == nil || !strings.Contains(err.Error(), adminTokenEnv) {
		t.Fatalf("no token: %v", err)
	}
}
