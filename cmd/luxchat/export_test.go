package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luxchat/internal/config"
	"luxchat/internal/media"
	"luxchat/internal/server"
)

// luxchat user export writes the archive through a temporary file, shows
// its progress on stderr (a line at each tenth, not being a terminal) and
// refuses unknown or malformed users without leaving a file.
func TestUserExport(t *testing.T) {
	t.Setenv("LUXCHAT_MEDIA_KEY", "")
	cfgPath := writeConfig(t)
	var out, errb bytes.Buffer
	if err := run([]string{"user", "add", "alice", "--config", cfgPath}, strings.NewReader("s3cret-passw0rd\n"), &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	c, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srv, err := server.New(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	uri, err := srv.Media.Upload(ctx, media.Upload{UserID: "@alice:cli.test", ContentLength: -1, FileName: "notes.txt"}, strings.NewReader("alice's notes"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Store.Close()

	dest := filepath.Join(t.TempDir(), "alice.zip")
	out.Reset()
	errb.Reset()
	if err := run([]string{"user", "export", "@alice:cli.test", "--out", dest, "--config", cfgPath}, nil, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	if !strings.Contains(errb.String(), "export: 100%") || !strings.Contains(out.String(), "1 uploads") {
		t.Errorf("progress %q, summary %q", errb.String(), out.String())
	}
	zr, err := zip.OpenReader(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	files := map[string]string{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		files[f.Name] = string(b)
	}
	mediaID := uri[strings.LastIndex(uri, "/")+1:]
	if files["media/"+mediaID+".txt"] != "alice's notes" {
		t.Errorf("archive files %v", keys(files))
	}
	var m struct {
		UserID string `json:"user_id"`
		Server string `json:"server"`
	}
	if err := json.Unmarshal([]byte(files["manifest.json"]), &m); err != nil || m.UserID != "@alice:cli.test" || m.Server != "cli.test" {
		t.Errorf("manifest %s", files["manifest.json"])
	}
	if st, err := os.Stat(dest); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("archive mode: %v %v", st, err)
	}

	for _, who := range []string{"@bob:cli.test", "bob", "@alice:elsewhere.test"} {
		other := filepath.Join(filepath.Dir(dest), "other.zip")
		if err := run([]string{"user", "export", who, "--out", other, "--config", cfgPath}, nil, &out, &errb); err == nil {
			t.Errorf("export of %s: no error", who)
		}
		if _, err := os.Stat(other); !os.IsNotExist(err) {
			t.Errorf("export of %s left a file", who)
		}
	}
	if err := run([]string{"user", "export", "@alice:cli.test", "--config", cfgPath}, nil, &out, &errb); err == nil {
		t.Error("export without --out: no error")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".*.part"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
