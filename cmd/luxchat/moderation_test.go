package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"luxchat/internal/config"
	"luxchat/internal/server"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

func TestReportsList(t *testing.T) {
	cfgPath := writeConfig(t)
	c, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, r := range []store.Report{
		{Kind: "event", Reporter: "@bob:cli.test", RoomID: "!r:cli.test", EventID: "$e", Reason: "rude", Score: sql.NullInt64{Int64: -50, Valid: true}},
		{Kind: "user", Reporter: "@carol:cli.test", UserID: "@alice:cli.test", Reason: "line\n\x1b[31mred"},
	} {
		if err := srv.Store.AddReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	srv.Store.Close()

	var out, errb bytes.Buffer
	if err := run([]string{"reports", "list", "--config", cfgPath}, nil, &out, &errb); err != nil {
		t.Fatalf("reports list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "event\t@bob:cli.test\t!r:cli.test $e\tscore=-50\t\"rude\"") ||
		!strings.Contains(lines[1], "user\t@carol:cli.test\t@alice:cli.test\tscore=-\t\"line\\n\\x1b[31mred\"") {
		t.Fatalf("reports list printed:\n%s", out.String())
	}
	out.Reset()
	if err := run([]string{"reports", "list", "--json", "--config", cfgPath}, nil, &out, &errb); err != nil {
		t.Fatalf("reports list --json: %v", err)
	}
	var reps []map[string]any
	if err := json.Unmarshal(out.Bytes(), &reps); err != nil || len(reps) != 2 || reps[0]["event_id"] != "$e" || reps[0]["score"] != float64(-50) || reps[1]["user_id"] != "@alice:cli.test" {
		t.Fatalf("reports list --json: %v %s", err, out.String())
	}
	if err := run([]string{"reports", "purge", "--config", cfgPath}, nil, &out, &errb); err == nil {
		t.Fatal("unknown reports command accepted")
	}
}

func TestNoticeSend(t *testing.T) {
	s := ts.New(t)
	bob := s.Register(t, "bob")
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

	t.Setenv(adminTokenEnv, "")
	var out, errb bytes.Buffer
	if err := run([]string{"notice", "send", bob.UserID, "hello", "--url", s.URL}, nil, &out, &errb); err == nil || !strings.Contains(err.Error(), adminTokenEnv) {
		t.Fatalf("no token: %v", err)
	}
	if err := run([]string{"notice", "send", bob.UserID, "hello", "--url", s.URL, "--token", bob.Token}, nil, &out, &errb); err == nil || !strings.Contains(err.Error(), "M_FORBIDDEN") {
		t.Fatalf("non-admin token: %v", err)
	}
	t.Setenv(adminTokenEnv, login.AccessToken)
	if err := run([]string{"notice", "send", bob.UserID, "The server restarts at 22:00", "--url", s.URL}, nil, &out, &errb); err != nil {
		t.Fatalf("notice send: %v", err)
	}
	id := strings.TrimSpace(out.String())
	if !strings.HasPrefix(id, "$") {
		t.Fatalf("printed %q", id)
	}
	// listen.client from the configuration when --url is absent.
	if got := dialable("0.0.0.0:8008"); got != "127.0.0.1:8008" {
		t.Fatalf("dialable: %s", got)
	}
	if got := dialable("[::]:8008"); got != "127.0.0.1:8008" {
		t.Fatalf("dialable: %s", got)
	}
	if got := dialable("10.1.2.3:8008"); got != "10.1.2.3:8008" {
		t.Fatalf("dialable: %s", got)
	}
}
