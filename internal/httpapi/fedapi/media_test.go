package fedapi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/federation"
	"luxchat/internal/testserver"
)

// rawDo sends a request as c with a raw body and content type and returns
// the status, the headers and the body.
func rawDo(t *testing.T, c *testserver.Client, method, path, contentType string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

func upload(t *testing.T, c *testserver.Client, contentType, name string, data []byte) string {
	t.Helper()
	st, _, body := rawDo(t, c, "POST", "/_matrix/media/v3/upload?filename="+url.QueryEscape(name), contentType, data)
	if st != 200 {
		t.Fatalf("upload: %d %s", st, body)
	}
	_, after, _ := strings.Cut(string(body), `"content_uri":"mxc://`)
	mxc, _, _ := strings.Cut(after, `"`)
	_, id, _ := strings.Cut(mxc, "/")
	if id == "" {
		t.Fatalf("upload answer %s", body)
	}
	return id
}

func testPNG(t *testing.T, side int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, side, side))
	for y := 0; y < side; y++ {
		for x := 0; x < side; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func countFiles(t *testing.T, dir string) int {
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			n++
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return n
}

func TestFederatedMedia(t *testing.T) {
	fed := testserver.NewFederation(t)
	hs2 := testserver.New(t, fed.Server(), testserver.WithConfig(func(c *config.Config) {
		c.Media.MaxUploadBytes = 600_000
	}))
	hs2Host := strings.Split(hs2.Config.ServerName, ":")[0]
	hs1 := testserver.New(t, fed.Server(), testserver.WithConfig(func(c *config.Config) {
		c.Federation.AllowedServers = []string{hs2Host}
	}))
	outsider := testserver.New(t, fed.Server())
	ctx := context.Background()
	name1 := hs1.Config.ServerName

	alice := hs1.Register(t, "alice")
	bob := hs2.Register(t, "bob")
	text := []byte("hello from hs1, sealed at rest on both servers")
	textID := upload(t, alice, "text/plain", "hello wörld.txt", text)

	// Over federation, directly: multipart/mixed parsed by the client.
	m, err := hs2.Federation.DownloadMedia(ctx, name1, textID, nil, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(m.Body)
	m.Body.Close()
	if err != nil || !bytes.Equal(got, text) || m.ContentType != "text/plain" || m.FileName != "hello wörld.txt" {
		t.Fatalf("federation download: %q %q %q %v", got, m.ContentType, m.FileName, err)
	}
	// The size limit holds while streaming.
	if m, err := hs2.Federation.DownloadMedia(ctx, name1, textID, nil, 5); err == nil {
		_, err = io.ReadAll(m.Body)
		m.Body.Close()
		if !errors.Is(err, federation.ErrMediaTooLarge) {
			t.Fatalf("limit: %v", err)
		}
	} else {
		t.Fatal(err)
	}

	// Through hs2's client API: fetched once, then served from the cache.
	base := hs2.Media.RemoteFetches()
	path := "/_matrix/client/v1/media/download/" + name1 + "/" + textID
	for i := 0; i < 2; i++ {
		st, h, body := rawDo(t, bob, "GET", path, "", nil)
		if st != 200 || !bytes.Equal(body, text) || h.Get("Content-Type") != "text/plain" {
			t.Fatalf("download %d via hs2: %d %q %s", i, st, body, h)
		}
	}
	if n := hs2.Media.RemoteFetches() - base; n != 1 {
		t.Fatalf("%d fetches for two downloads", n)
	}
	// Ranges are served from the cached copy too.
	req, _ := http.NewRequest("GET", bob.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+bob.Token)
	req.Header.Set("Range", "bytes=0-4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || string(part) != "hello" {
		t.Fatalf("range: %d %q", resp.StatusCode, part)
	}

	// Concurrent first requests share one fetch.
	img := testPNG(t, 400)
	imgID := upload(t, alice, "image/png", "pic.png", img)
	base = hs2.Media.RemoteFetches()
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", bob.URL+"/_matrix/client/v1/media/download/"+name1+"/"+imgID, nil)
			req.Header.Set("Authorization", "Bearer "+bob.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(data, img) {
				errs <- resp.Status
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error("concurrent download:", e)
	}
	if n := hs2.Media.RemoteFetches() - base; n != 1 {
		t.Fatalf("%d fetches for 8 concurrent downloads", n)
	}

	// A thumbnail of remote media, made by hs2 from its cached copy.
	st, h, body := rawDo(t, bob, "GET", "/_matrix/client/v1/media/thumbnail/"+name1+"/"+imgID+"?width=32&height=32&method=scale", "", nil)
	if st != 200 || h.Get("Content-Type") != "image/png" {
		t.Fatalf("thumbnail via hs2: %d %s %.100s", st, h, body)
	}
	if cfg, err := png.DecodeConfig(bytes.NewReader(body)); err != nil || cfg.Width >= 400 {
		t.Fatalf("thumbnail: %+v %v", cfg, err)
	}
	// hs1 serves thumbnails over federation too.
	m, err = hs2.Federation.DownloadMedia(ctx, name1, imgID, url.Values{"width": {"32"}, "height": {"32"}, "method": {"crop"}}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(m.Body)
	m.Body.Close()
	if cfg, err := png.DecodeConfig(bytes.NewReader(body)); err != nil || cfg.Width >= 400 || m.ContentType != "image/png" {
		t.Fatalf("federation thumbnail: %+v %v %q", cfg, err, m.ContentType)
	}

	// Unknown media: 404 M_NOT_FOUND, through hs2 and over federation.
	if st, _, body := rawDo(t, bob, "GET", "/_matrix/client/v1/media/download/"+name1+"/nosuchmedia", "", nil); st != 404 || !strings.Contains(string(body), "M_NOT_FOUND") {
		t.Fatalf("unknown media via hs2: %d %s", st, body)
	}
	var re *federation.RemoteError
	if _, err := hs2.Federation.DownloadMedia(ctx, name1, "nosuchmedia", nil, 1<<20); !errors.As(err, &re) || re.Status != 404 || !strings.Contains(string(re.Body), "M_NOT_FOUND") {
		t.Fatalf("unknown media over federation: %v", err)
	}
	// The frozen deprecated endpoints never fetch remote media.
	base = hs2.Media.RemoteFetches()
	for _, p := range []string{"/_matrix/media/v3/download/" + name1 + "/" + textID, "/_matrix/media/v3/thumbnail/" + name1 + "/" + imgID + "?width=32&height=32"} {
		if st, _, body := rawDo(t, bob, "GET", p, "", nil); st != 404 {
			t.Fatalf("legacy %s: %d %s", p, st, body)
		}
	}
	if hs2.Media.RemoteFetches() != base {
		t.Fatal("a legacy endpoint fetched remote media")
	}
	// Servers never proxy others' media: hs2 does not serve its copy.
	if _, err := hs1.Federation.DownloadMedia(ctx, hs2.Config.ServerName, textID, nil, 1<<20); !errors.As(err, &re) || re.Status != 404 {
		t.Fatalf("hs2 served a cached copy: %v", err)
	}
	// Unauthenticated requests are refused.
	if st, body := fedDo(t, fed, hs1, "GET", "/_matrix/federation/v1/media/download/"+textID, "", nil); st != 401 {
		t.Fatalf("unsigned: %d %v", st, body)
	}

	// Remote media larger than hs2's media.max_upload_bytes: 502 M_TOO_LARGE.
	bigID := upload(t, alice, "application/octet-stream", "big.bin", bytes.Repeat([]byte("0123456789"), 70_000))
	if st, _, body := rawDo(t, bob, "GET", "/_matrix/client/v1/media/download/"+name1+"/"+bigID, "", nil); st != 502 || !strings.Contains(string(body), "M_TOO_LARGE") {
		t.Fatalf("too large via hs2: %d %s", st, body)
	}
	if c := countFiles(t, filepath.Join(hs2.Config.DataDir, "media", "remote")); c != 2 {
		t.Fatalf("%d cached blobs after a refused fetch", c)
	}

	// A server outside hs1's allow-list gets 403.
	if _, err := outsider.Federation.DownloadMedia(ctx, name1, textID, nil, 1<<20); !errors.As(err, &re) || re.Status != 403 || !strings.Contains(string(re.Body), "M_FORBIDDEN") {
		t.Fatalf("outsider: %v", err)
	}

	// Purge removes the remote copies (rows, thumbnails, blobs).
	remoteDir := filepath.Join(hs2.Config.DataDir, "media", "remote")
	if countFiles(t, remoteDir) != 2 {
		t.Fatalf("%d cached blobs", countFiles(t, remoteDir))
	}
	n, err := hs2.Media.PurgeRemote(ctx, time.Now().Add(-time.Hour), nil)
	if err != nil || n != 0 {
		t.Fatalf("purge of older media: %d %v", n, err)
	}
	var progress []int64
	n, err = hs2.Media.PurgeRemote(ctx, time.Now().Add(time.Minute), func(total int64) { progress = append(progress, total) })
	if err != nil || n != 2 || len(progress) == 0 || progress[len(progress)-1] != 2 {
		t.Fatalf("purge: %d %v %v", n, err, progress)
	}
	if c := countFiles(t, remoteDir) + countFiles(t, filepath.Join(hs2.Config.DataDir, "media", "thumb")); c != 0 {
		t.Fatalf("%d blobs left after purge", c)
	}
	// hs1's originals are untouched; the next download fetches again.
	base = hs2.Media.RemoteFetches()
	if st, _, body := rawDo(t, bob, "GET", path, "", nil); st != 200 || !bytes.Equal(body, text) {
		t.Fatalf("download after purge: %d %q", st, body)
	}
	if hs2.Media.RemoteFetches()-base != 1 {
		t.Fatal("no fetch after purge")
	}
}

// TestFederatedMediaLocation: a server may answer with a Location part
// instead of the content; it is fetched with a plain GET and cached.
func TestFederatedMediaLocation(t *testing.T) {
	fed := testserver.NewFederation(t)
	// 127.0.0.2 (loopback, where the second CDN listens) is a denied network.
	hs2 := testserver.New(t, fed.Server(), testserver.WithConfig(func(c *config.Config) {
		c.Federation.DenyNetworks = []string{"127.0.0.2/32"}
	}))
	bob := hs2.Register(t, "bob")
	content := []byte("served from a CDN")
	inner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a Location in a denied network was fetched")
	}))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skip("no 127.0.0.2 on this host:", err)
	}
	inner.Listener.Close()
	inner.Listener = ln
	inner.Start()
	defer inner.Close()
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Error("the Location was fetched with credentials")
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Disposition", `attachment; filename="cdn.txt"`)
		_, _ = w.Write(content)
	}))
	defer cdn.Close()
	certFile, keyFile := fed.Issue("remote.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	remote := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		loc := cdn.URL + "/file"
		switch {
		case !strings.HasPrefix(r.Header.Get("Authorization"), "X-Matrix "):
			http.NotFound(w, r)
			return
		case r.URL.Path == "/_matrix/federation/v1/media/download/innermedia":
			loc = inner.URL + "/secret"
		case r.URL.Path != "/_matrix/federation/v1/media/download/cdnmedia":
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		mw := multipart.NewWriter(w)
		w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
		p, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
		_, _ = p.Write([]byte("{}"))
		_, _ = mw.CreatePart(textproto.MIMEHeader{"Location": {loc}})
		_ = mw.Close()
	}))
	remote.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	remote.StartTLS()
	defer remote.Close()
	origin := "remote.test:" + strings.Split(remote.Listener.Addr().String(), ":")[1]

	for i := 0; i < 2; i++ {
		st, h, body := rawDo(t, bob, "GET", "/_matrix/client/v1/media/download/"+origin+"/cdnmedia", "", nil)
		if st != 200 || !bytes.Equal(body, content) || h.Get("Content-Type") != "text/plain" || !strings.Contains(h.Get("Content-Disposition"), "cdn.txt") {
			t.Fatalf("download %d: %d %s %q", i, st, h, body)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("%d requests to the remote server", hits.Load())
	}
	// A Location inside a denied network is not fetched: 504.
	if st, _, body := rawDo(t, bob, "GET", "/_matrix/client/v1/media/download/"+origin+"/innermedia", "", nil); st != 504 {
		t.Fatalf("denied Location: %d %s", st, body)
	}
	// Unknown media on a server that does not answer with JSON errors.
	if st, _, body := rawDo(t, bob, "GET", "/_matrix/client/v1/media/download/"+origin+"/other", "", nil); st != 404 {
		t.Fatalf("unknown remote media: %d %s", st, body)
	}
}
