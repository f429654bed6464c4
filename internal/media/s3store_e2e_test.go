package media_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"luxchat/internal/config"
	"luxchat/internal/media"
	ts "luxchat/internal/testserver"
)

// TestS3EndToEnd uploads and downloads through the HTTP API of a server
// whose blobs live in S3, and checks that the bucket holds only sealed
// bytes.
func TestS3EndToEnd(t *testing.T) {
	s3 := media.StartTestS3(t)
	srv := ts.New(t, ts.WithConfig(func(c *config.Config) {
		c.Media.Store = config.MediaStoreS3
		c.Media.S3 = config.MediaS3{Endpoint: s3.Endpoint, Bucket: s3.Bucket, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Region: s3.Region}
	}))
	alice := srv.Register(t, "alice")
	data := make([]byte, 3<<20+12345)
	_, _ = rand.Read(data)
	copy(data, "PLAINTEXT-MARKER")

	do := func(method, path string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	start := time.Now()
	resp, body := do("POST", "/_matrix/media/v3/upload?filename=x.bin", bytes.NewReader(data), map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	up := time.Since(start)
	var out struct {
		ContentURI string `json:"content_uri"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	path := "/_matrix/client/v1/media/download/" + strings.TrimPrefix(out.ContentURI, "mxc://")
	start = time.Now()
	resp, body = do("GET", path, nil, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(body))
	}
	t.Logf("3 MiB over HTTP through S3: upload %v, download %v", up, time.Since(start))
	resp, body = do("GET", path, nil, map[string]string{"Range": "bytes=1000000-1000099"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[1000000:1000100]) {
		t.Fatalf("range: %d, %d bytes", resp.StatusCode, len(body))
	}

	// What the bucket holds is sealed.
	cl, err := minio.New(s3.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, ""), Region: s3.Region})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for obj := range cl.ListObjects(context.Background(), s3.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		n++
		o, err := cl.GetObject(context.Background(), s3.Bucket, obj.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(o)
		o.Close()
		if bytes.Contains(raw, []byte("PLAINTEXT-MARKER")) {
			t.Fatalf("object %s holds plaintext", obj.Key)
		}
	}
	if n == 0 {
		t.Fatal("no object in the bucket")
	}
}
