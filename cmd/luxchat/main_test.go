package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"io"
	"log/slog"
	"luxchat/internal/config"
	"luxchat/internal/media"
	"luxchat/internal/server"
)

func writeConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "luxchat.yaml")
	cfg := "server_name: cli.test\ndata_dir: " + filepath.Join(dir, "data") + "\nauth: {password_hash_memory_kib: 1024, password_hash_time: 1}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUserAddAndTokens(t *testing.T) {
	cfg := writeConfig(t)
	var out, errb bytes.Buffer
	if err := run([]string{"user", "add", "alice", "--admin", "--config", cfg}, strings.NewReader("s3cret-passw0rd\n"), &out, &errb); err != nil {
		t.Fatalf("user add: %v (%s)", err, errb.String())
	}
	if strings.TrimSpace(out.String()) != "@alice:cli.test" {
		t.Fatalf("user add printed %q", out.String())
	}
	// The account exists, is an admin and can log in with that password.
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	u, err := srv.Store.GetUser(context.Background(), "@alice:cli.test")
	if err != nil || !u.IsAdmin || u.PasswordHash == "" || strings.Contains(u.PasswordHash, "s3cret") {
		t.Fatalf("stored user %+v %v", u, err)
	}
	srv.Store.Close()

	if err := run([]string{"user", "add", "alice", "--config", cfg}, strings.NewReader("another-passw0rd\n"), &out, &errb); err == nil {
		t.Fatal("duplicate user accepted")
	}
	out.Reset()
	if err := run([]string{"token", "create", "--uses", "2", "--config", cfg}, nil, &out, &errb); err != nil {
		t.Fatalf("token create: %v", err)
	}
	tok := strings.TrimSpace(out.String())
	if tok == "" {
		t.Fatal("no token printed")
	}
	out.Reset()
	if err := run([]string{"token", "list", "--config", cfg}, nil, &out, &errb); err != nil || !strings.Contains(out.String(), tok) || !strings.Contains(out.String(), "uses=0/2") {
		t.Fatalf("token list: %v %q", err, out.String())
	}
	if err := run([]string{"token", "revoke", tok, "--config", cfg}, nil, &out, &errb); err != nil {
		t.Fatalf("token revoke: %v", err)
	}
	out.Reset()
	_ = run([]string{"token", "list", "--config", cfg}, nil, &out, &errb)
	if strings.Contains(out.String(), tok) {
		t.Fatal("revoked token still listed")
	}
}

func TestGenerateConfigAndUnknownKey(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"generate-config"}, nil, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse(out.Bytes()); err != nil {
		t.Fatalf("generated config does not load: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("server_name: x\nrate_limits: {enabeld: false}\n"), 0o600)
	err := run([]string{"serve", "--config", path}, nil, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "enabeld") {
		t.Fatalf("unknown key not named: %v", err)
	}
	if err := run([]string{"frobnicate"}, nil, &out, &errb); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func TestMediaRotateKeyAndPurge(t *testing.T) {
	t.Setenv("LUXCHAT_MEDIA_KEY", "")
	cfgPath := writeConfig(t)
	c, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srv, err := server.New(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	uri, err := srv.Media.Upload(ctx, media.Upload{UserID: "@a:cli.test", ContentLength: -1}, strings.NewReader("kept secret"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Store.Close()
	keyBefore, _ := os.ReadFile(filepath.Join(c.DataDir, "media.key"))

	var out, errb bytes.Buffer
	if err := run([]string{"media", "rotate-key", "--config", cfgPath}, nil, &out, &errb); err != nil {
		t.Fatalf("rotate-key: %v", err)
	}
	if !strings.Contains(out.String(), "1 file keys re-wrapped") {
		t.Fatalf("rotate-key printed %q", out.String())
	}
	keyAfter, _ := os.ReadFile(filepath.Join(c.DataDir, "media.key"))
	if bytes.Equal(keyBefore, keyAfter) {
		t.Fatal("key file unchanged")
	}
	srv, err = server.New(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Store.Close()
	mc, err := srv.Media.Get(ctx, "cli.test", strings.TrimPrefix(uri, "mxc://cli.test/"), 0)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := srv.Media.Open(ctx, mc, 0, mc.Size)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "kept secret" {
		t.Fatalf("after rotation: %q", got)
	}

	out.Reset()
	if err := run([]string{"media", "purge", "--older-than", "30d", "--config", cfgPath}, nil, &out, &errb); err != nil {
		t.Fatalf("purge: %v", err)
	}
	if !strings.Contains(out.String(), "done: 0 expired upload reservations") {
		t.Fatalf("purge printed %q", out.String())
	}
	if err := run([]string{"media", "purge", "--older-than", "soon", "--config", cfgPath}, nil, &out, &errb); err == nil {
		t.Fatal("bad age accepted")
	}
}

func TestSoftLimitFollowsHeap(t *testing.T) {
	for _, tc := range []struct {
		live, stacks uint64
		want         int64
	}{{0, 0, 64 << 20}, {20 << 20, 0, 64 << 20}, {21 << 20, 0, 64 << 20}, {32 << 20, 0, 96 << 20}, {200 << 20, 0, 600 << 20}, {200 << 20, 200 << 20, 800 << 20}} {
		if got := softLimit(tc.live, tc.stacks); got != tc.want {
			t.Errorf("live %d MiB: limit %d MiB, want %d", tc.live>>20, got>>20, tc.want>>20)
		}
	}
}

func TestGCPercentCapsHeadroom(t *testing.T) {
	for _, tc := range []struct {
		live, roots uint64
		want        int
	}{{0, 0, 100}, {60 << 20, 20 << 20, 100}, {160 << 20, 0, 50}, {150 << 20, 10 << 20, 50}, {1 << 30, 0, 25}} {
		if got := gcPercent(tc.live, tc.roots); got != tc.want {
			t.Errorf("live %d MiB, roots %d MiB: GOGC %d, want %d", tc.live>>20, tc.roots>>20, got, tc.want)
		}
	}
}

func TestBurstEnded(t *testing.T) {
	for _, tc := range []struct {
		then, now uint64
		want      bool
	}{{0, 0, false}, {1000, 10, false}, {8740, 35, true}, {8740, 2185, true}, {8740, 3000, false}, {2000, 500, true}} {
		if got := burstEnded(tc.then, tc.now); got != tc.want {
			t.Errorf("%d goroutines at the collection, %d now: %v, want %v", tc.then, tc.now, got, tc.want)
		}
	}
}

// The limit moves with the collection that finds the heap grown, not a
// timer's tick later.
func TestLimitFollowsEachCollection(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); debug.SetMemoryLimit(prev) }()
	followHeap(ctx, false)
	grown := make([][]byte, 0, 200)
	for range 200 {
		grown = append(grown, make([]byte, 1<<20)) // 200 MiB live
	}
	deadline := time.Now().Add(2 * time.Second)
	for debug.SetMemoryLimit(-1) < 400<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("limit %d MiB two seconds of collections after the heap grew to 200 MiB, want ≥ 400 MiB", debug.SetMemoryLimit(-1)>>20)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(grown)
}
