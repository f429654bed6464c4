package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
	"luxchat/internal/testutil/pgtest"
)

type fixture struct {
	svc  *Service
	st   *store.Store
	dir  string
	keys *Keyring
}

// forEachEngine runs f with a media service on SQLite and on PostgreSQL.
func forEachEngine(t *testing.T, edit func(*config.Config), f func(t *testing.T, fx fixture)) {
	open := func(t *testing.T, dsn string) {
		dir := t.TempDir()
		st, err := store.Open(context.Background(), store.Options{DataDir: dir, PostgresDSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		cfg := config.Default()
		cfg.ServerName = "media.test"
		if edit != nil {
			edit(cfg)
		}
		t.Setenv(KeyEnv, "")
		keys, err := LoadKeyring(dir)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := NewFSBlobStore(filepath.Join(dir, "media"))
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		f(t, fixture{svc: New(cfg, st, bs, keys, nil, log), st: st, dir: dir, keys: keys})
	}
	t.Run("sqlite", func(t *testing.T) { open(t, "") })
	t.Run("postgres", func(t *testing.T) { open(t, pgtest.NewDatabase(t)) })
}

func mediaID(t *testing.T, uri string) string {
	t.Helper()
	id, ok := strings.CutPrefix(uri, "mxc://media.test/")
	if !ok {
		t.Fatalf("uri %q", uri)
	}
	return id
}

func wantCode(t *testing.T, err error, code string, status int) {
	t.Helper()
	e, ok := errcode.As(err)
	if !ok || e.Code != code || e.Status != status {
		t.Fatalf("got %v, want %s (%d)", err, code, status)
	}
}

func readContent(t *testing.T, fx fixture, id string) ([]byte, error) {
	t.Helper()
	ctx := context.Background()
	c, err := fx.svc.Get(ctx, "media.test", id, 0)
	if err != nil {
		return nil, err
	}
	rc, err := fx.svc.Open(ctx, c, 0, c.Size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func blobFiles(t *testing.T, dir string) []string {
	var files []string
	_ = filepath.WalkDir(filepath.Join(dir, "media"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}

func TestUploadEncryptedAtRest(t *testing.T) {
	forEachEngine(t, nil, func(t *testing.T, fx fixture) {
		ctx := context.Background()
		// Highly recognisable plaintext: any 16-byte window of it on disk
		// would show.
		plain := bytes.Repeat([]byte("TOP SECRET POLICE REPORT 0123456789 "), 5000)
		uri, err := fx.svc.Upload(ctx, Upload{UserID: "@a:media.test", ContentType: "text/plain", FileName: "r.txt", ContentLength: -1}, bytes.NewReader(plain))
		if err != nil {
			t.Fatal(err)
		}
		id := mediaID(t, uri)
		got, err := readContent(t, fx, id)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("read back: %v", err)
		}
		files := blobFiles(t, fx.dir)
		if len(files) != 1 {
			t.Fatalf("blob files: %v", files)
		}
		onDisk, _ := os.ReadFile(files[0])
		if bytes.Contains(onDisk, []byte("SECRET")) || bytes.Contains(onDisk, plain[:16]) {
			t.Fatal("plaintext found in the blob on disk")
		}
		if int64(len(onDisk)) != SealedSize(int64(len(plain))) {
			t.Fatalf("blob size %d", len(onDisk))
		}
		// The database holds no usable key either: the wrapped key does
		// not open without the master key.
		row, _ := fx.st.GetMedia(ctx, id)
		if _, err := NewKeyring(newFileKey()).unwrap(row.WrappedKey, row.KeyID, row.Blob); err == nil {
			t.Fatal("wrapped key opened without the master key")
		}

		// One flipped byte on disk: an authentication failure, reported
		// as 502 and never served.
		onDisk[len(onDisk)/2] ^= 0x01
		if err := os.WriteFile(files[0], onDisk, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err = readContent(t, fx, id)
		if err == nil {
			t.Fatalf("tampered blob served (%d bytes)", len(got))
		}
		if !errors.Is(err, ErrTampered) {
			wantCode(t, err, "M_UNKNOWN", http.StatusBadGateway)
		}
		// A damaged first chunk is caught before anything is sent.
		onDisk[headerSize+1] ^= 0x01
		_ = os.WriteFile(files[0], onDisk, 0o600)
		c, err := fx.svc.Get(ctx, "media.test", id, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fx.svc.Open(ctx, c, 0, c.Size)
		wantCode(t, err, "M_UNKNOWN", http.StatusBadGateway)
	})
}

func TestUploadLimits(t *testing.T) {
	forEachEngine(t, func(c *config.Config) {
		c.Media.MaxUploadBytes = 1000
		c.Media.QuotaBytes = 2500
	}, func(t *testing.T, fx fixture) {
		ctx := context.Background()
		u := Upload{UserID: "@a:media.test", ContentLength: -1}
		// Declared too large: refused before reading.
		_, err := fx.svc.Upload(ctx, Upload{UserID: u.UserID, ContentLength: 1001}, failReader{t})
		wantCode(t, err, "M_TOO_LARGE", http.StatusRequestEntityTooLarge)
		// Undeclared and too large: stopped while streaming, nothing kept.
		_, err = fx.svc.Upload(ctx, u, bytes.NewReader(make([]byte, 1001)))
		wantCode(t, err, "M_TOO_LARGE", http.StatusRequestEntityTooLarge)
		if files := blobFiles(t, fx.dir); len(files) != 0 {
			t.Fatalf("left behind: %v", files)
		}
		for range 2 {
			if _, err := fx.svc.Upload(ctx, u, bytes.NewReader(make([]byte, 1000))); err != nil {
				t.Fatal(err)
			}
		}
		// 2000 of 2500 used: 600 more break the quota (spec: 403 M_FORBIDDEN).
		_, err = fx.svc.Upload(ctx, u, bytes.NewReader(make([]byte, 600)))
		wantCode(t, err, "M_FORBIDDEN", http.StatusForbidden)
		_, err = fx.svc.Upload(ctx, Upload{UserID: u.UserID, ContentLength: 600}, failReader{t})
		wantCode(t, err, "M_FORBIDDEN", http.StatusForbidden)
		if _, err := fx.svc.Upload(ctx, u, bytes.NewReader(make([]byte, 500))); err != nil {
			t.Fatalf("upload within quota: %v", err)
		}
		// Another user has their own quota.
		if _, err := fx.svc.Upload(ctx, Upload{UserID: "@b:media.test", ContentLength: -1}, bytes.NewReader(make([]byte, 900))); err != nil {
			t.Fatal(err)
		}
		if n := len(blobFiles(t, fx.dir)); n != 4 {
			t.Fatalf("%d blobs", n)
		}
	})
}

type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("body read although the declared length was refused")
	return 0, io.EOF
}

func TestCreateThenUpload(t *testing.T) {
	forEachEngine(t, func(c *config.Config) { c.Media.MaxPendingUploads = 2 }, func(t *testing.T, fx fixture) {
		ctx := context.Background()
		alice := Upload{UserID: "@a:media.test", ContentType: "image/png", FileName: "x.png", ContentLength: -1}
		uri, exp, err := fx.svc.Create(ctx, alice.UserID)
		if err != nil {
			t.Fatal(err)
		}
		if exp < time.Now().Add(23*time.Hour).UnixMilli() {
			t.Fatalf("expiry %d", exp)
		}
		id := mediaID(t, uri)
		// Not yet uploaded: 504 M_NOT_YET_UPLOADED after the wait.
		_, err = fx.svc.Get(ctx, "media.test", id, 50*time.Millisecond)
		wantCode(t, err, "M_NOT_YET_UPLOADED", http.StatusGatewayTimeout)
		// Only the creator may upload.
		err = fx.svc.UploadTo(ctx, Upload{UserID: "@b:media.test", ContentLength: -1}, "media.test", id, strings.NewReader("x"))
		wantCode(t, err, "M_FORBIDDEN", http.StatusForbidden)
		// A waiting download is woken by the upload.
		done := make(chan error, 1)
		go func() {
			c, err := fx.svc.Get(ctx, "media.test", id, 10*time.Second)
			if err == nil && c.Size != 5 {
				err = errors.New("wrong size")
			}
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		if err := fx.svc.UploadTo(ctx, alice, "media.test", id, strings.NewReader("hello")); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("waiting download: %v", err)
		}
		got, err := readContent(t, fx, id)
		if err != nil || string(got) != "hello" {
			t.Fatalf("content %q %v", got, err)
		}
		// Only once.
		err = fx.svc.UploadTo(ctx, alice, "media.test", id, strings.NewReader("again"))
		wantCode(t, err, "M_CANNOT_OVERWRITE_MEDIA", http.StatusConflict)
		err = fx.svc.UploadTo(ctx, alice, "media.test", "nope", strings.NewReader("x"))
		wantCode(t, err, "M_NOT_FOUND", http.StatusNotFound)
		err = fx.svc.UploadTo(ctx, alice, "other.test", id, strings.NewReader("x"))
		wantCode(t, err, "M_NOT_FOUND", http.StatusNotFound)
		// Pending uploads are bounded (2 here).
		for range 2 {
			if _, _, err := fx.svc.Create(ctx, alice.UserID); err != nil {
				t.Fatal(err)
			}
		}
		_, _, err = fx.svc.Create(ctx, alice.UserID)
		wantCode(t, err, "M_LIMIT_EXCEEDED", http.StatusTooManyRequests)
		// Expired reservations cannot be filled, and purge removes them.
		fx.svc.now = func() time.Time { return time.Now().Add(25 * time.Hour) }
		uri2, _, err := fx.svc.Create(ctx, alice.UserID) // the others expired: allowed again
		if err != nil {
			t.Fatal(err)
		}
		fx.svc.now = func() time.Time { return time.Now().Add(50 * time.Hour) }
		err = fx.svc.UploadTo(ctx, alice, "media.test", mediaID(t, uri2), strings.NewReader("late"))
		wantCode(t, err, "M_NOT_FOUND", http.StatusNotFound)
		n, err := fx.svc.PurgeReservations(ctx, time.Now().Add(50*time.Hour), nil)
		if err != nil || n != 3 {
			t.Fatalf("purged %d: %v", n, err)
		}
		if _, err := readContent(t, fx, id); err != nil {
			t.Fatalf("uploaded media purged: %v", err)
		}
	})
}

func TestRemoteAndUnknownMedia(t *testing.T) {
	forEachEngine(t, nil, func(t *testing.T, fx fixture) {
		ctx := context.Background()
		for _, c := range [][2]string{{"other.test", "abc"}, {"media.test", "missing"}, {"media.test", "../../etc/passwd"}, {"media.test", ""}} {
			_, err := fx.svc.Get(ctx, c[0], c[1], 0)
			wantCode(t, err, "M_NOT_FOUND", http.StatusNotFound)
		}
	})
}

func TestRotateKey(t *testing.T) {
	forEachEngine(t, nil, func(t *testing.T, fx fixture) {
		ctx := context.Background()
		var ids []string
		for i := range 3 {
			uri, err := fx.svc.Upload(ctx, Upload{UserID: "@a:media.test", ContentLength: -1}, strings.NewReader(strings.Repeat("x", i+1)))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, mediaID(t, uri))
		}
		blobsBefore := map[string][]byte{}
		for _, f := range blobFiles(t, fx.dir) {
			blobsBefore[f], _ = os.ReadFile(f)
		}
		rotateGrace = 10 * time.Millisecond
		oldID := fx.keys.CurrentID()
		res, err := RotateKey(ctx, fx.st, fx.keys, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Rewrapped != 3 || res.Failed != 0 || res.KeyID == oldID || fx.keys.CurrentID() != res.KeyID {
			t.Fatalf("%+v (old %s)", res, oldID)
		}
		// The old key is gone from the key file; a fresh server reads all.
		k2, err := LoadKeyring(fx.dir)
		if err != nil || len(k2.keys) != 1 || k2.CurrentID() != res.KeyID {
			t.Fatalf("key file after rotation: %v", err)
		}
		fx.svc.keys = k2
		for i, id := range ids {
			got, err := readContent(t, fx, id)
			if err != nil || string(got) != strings.Repeat("x", i+1) {
				t.Fatalf("after rotation: %q %v", got, err)
			}
		}
		// Blobs were not rewritten.
		for f, b := range blobsBefore {
			now, _ := os.ReadFile(f)
			if !bytes.Equal(now, b) {
				t.Fatalf("blob %s rewritten", f)
			}
		}
	})
}
