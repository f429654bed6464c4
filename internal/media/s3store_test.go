package media

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3ServerBinary is the S3-compatible server the S3 tests start on
// loopback (installed by .ci/run with go install).
const S3ServerBinary = "versitygw"

// StartTestS3 starts a versitygw (posix backend) on a free 127.0.0.1 port in
// a temporary directory, creates a bucket and returns its configuration.
// The server stops when the test ends. Without the binary the test fails
// under CI (CI set) and is skipped loudly otherwise; go test -short skips
// it. Exported for the external test package's end-to-end test.
func StartTestS3(t testing.TB) S3Config {
	t.Helper()
	if testing.Short() {
		t.Skip("external S3 server: not under -short")
	}
	bin, err := exec.LookPath(S3ServerBinary)
	if err != nil {
		if gopath, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
			if p := filepath.Join(string(bytes.TrimSpace(gopath)), "bin", S3ServerBinary); fileExists(p) {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		msg := fmt.Sprintf("!!! %s not found (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0): S3 blob store NOT tested !!!", S3ServerBinary)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	root := t.TempDir()
	cfg := S3Config{Endpoint: addr, Bucket: "luxchat-media", AccessKey: "luxchattest", SecretKey: randHex(16), Region: "us-east-1"}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--port", addr, "--access", cfg.AccessKey, "--secret", cfg.SecretKey, "--region", cfg.Region, "--quiet", "posix", root)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	cl, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""), Region: cfg.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = cl.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("%s exited: %s", S3ServerBinary, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("s3 server not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cfg
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func newTestS3Store(t *testing.T) *S3BlobStore {
	cfg := StartTestS3(t)
	bs, err := NewS3BlobStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func TestS3BlobStore(t *testing.T) {
	bs := newTestS3Store(t)
	testBlobStore(t, bs)

	ctx := context.Background()
	t.Run("multipart", func(t *testing.T) {
		// Larger than one part: the streamed multipart path.
		data := randBytes(s3PartSize + 300_000)
		if n, err := bs.Put(ctx, "local/mp/big", bytes.NewReader(data)); err != nil || n != int64(len(data)) {
			t.Fatalf("put: %d %v", n, err)
		}
		rc, err := bs.Get(ctx, "local/mp/big", s3PartSize-10, 20)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data[s3PartSize-10:s3PartSize+10]) {
			t.Fatal("range across a part boundary differs")
		}
		// A reader that fails after the first part: the multipart upload
		// is aborted and nothing appears.
		if _, err := bs.Put(ctx, "local/mp/broken", io.MultiReader(bytes.NewReader(data), iotestErr{})); err == nil {
			t.Fatal("put with a failing reader succeeded")
		}
		if _, err := bs.Stat(ctx, "local/mp/broken"); !errors.Is(err, ErrBlobNotFound) {
			t.Fatalf("half-written multipart blob visible: %v", err)
		}
	})
	t.Run("edges", func(t *testing.T) {
		if _, err := bs.Put(ctx, "local/e/small", bytes.NewReader([]byte("hello"))); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			off, n int64
			want   string
		}{{5, -1, ""}, {9, 3, ""}, {3, -1, "lo"}, {2, 0, ""}, {4, 100, "o"}} {
			rc, err := bs.Get(ctx, "local/e/small", c.off, c.n)
			if err != nil {
				t.Fatalf("%v: %v", c, err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != c.want {
				t.Errorf("%v: %q", c, got)
			}
		}
		if _, err := bs.Get(ctx, "local/e/none", 2, 0); !errors.Is(err, ErrBlobNotFound) {
			t.Fatalf("empty range of a missing blob: %v", err)
		}
	})
}

func TestS3MissingBucket(t *testing.T) {
	cfg := StartTestS3(t)
	cfg.Bucket = "no-such-bucket"
	if _, err := NewS3BlobStore(context.Background(), cfg); err == nil {
		t.Fatal("missing bucket accepted")
	}
}

// BenchmarkS3PutGet measures sealed-size blobs through the S3 store on
// loopback.
func BenchmarkS3PutGet(b *testing.B) {
	cfg := StartTestS3(b)
	bs, err := NewS3BlobStore(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	data := randBytes(64 << 20)
	ctx := context.Background()
	b.Run("put", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			if _, err := bs.Put(ctx, "bench/x", bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("get", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			rc, err := bs.Get(ctx, "bench/x", 0, -1)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
}
