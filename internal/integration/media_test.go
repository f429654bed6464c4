package integration

import (
	"bytes"
	"encoding/json"
	"image"
	"image/jpeg"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// mediaReq sends a raw request with the client's token (when token is
// true) and returns the response with its body read.
func mediaReq(t testing.TB, c *ts.Client, method, path string, body io.Reader, hdr map[string]string, token bool) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

func errcodeOf(data []byte) string {
	var e struct {
		Errcode string `json:"errcode"`
	}
	_ = json.Unmarshal(data, &e)
	return e.Errcode
}

// upload posts content and returns the media id (server name checked).
func upload(t testing.TB, c *ts.Client, contentType, filename string, data []byte) string {
	t.Helper()
	path := "/_matrix/media/v3/upload"
	if filename != "" {
		path += "?filename=" + urlQueryEscape(filename)
	}
	resp, body := mediaReq(t, c, "POST", path, bytes.NewReader(data), map[string]string{"Content-Type": contentType}, true)
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	var out struct {
		ContentURI string `json:"content_uri"`
	}
	_ = json.Unmarshal(body, &out)
	id, ok := strings.CutPrefix(out.ContentURI, "mxc://localhost/")
	if !ok {
		t.Fatalf("content_uri %q", out.ContentURI)
	}
	return id
}

func urlQueryEscape(s string) string {
	return strings.NewReplacer("%", "%25", " ", "%20", "&", "%26", "#", "%23", "+", "%2B", "?", "%3F").Replace(s)
}

const dl = "/_matrix/client/v1/media/download/localhost/"

func jpegBytes(t testing.TB, w, h int) []byte {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for i := range img.Y {
		img.Y[i] = uint8(i * 7)
	}
	for i := range img.Cb {
		img.Cb[i], img.Cr[i] = uint8(i), uint8(255-i)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestMediaUploadDownload(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		video := make([]byte, 300_000)
		for i := range video {
			video[i] = byte(i * 31)
		}
		id := upload(t, alice, "video/mp4", "clip ünïcode \"q\".mp4", video)

		// Bob downloads it, with the protective headers.
		resp, body := mediaReq(t, bob, "GET", dl+id, nil, nil, true)
		if resp.StatusCode != 200 || !bytes.Equal(body, video) {
			t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(body))
		}
		want := map[string]string{
			"Content-Type":                 "video/mp4",
			"Content-Disposition":          `inline; filename="clip _n_code \"q\".mp4"; filename*=utf-8''clip%20%C3%BCn%C3%AFcode%20%22q%22.mp4`,
			"X-Content-Type-Options":       "nosniff",
			"Cross-Origin-Resource-Policy": "cross-origin",
			"Accept-Ranges":                "bytes",
			"Content-Length":               "300000",
			"ETag":                         `"` + id + `"`,
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox; default-src 'none'; script-src 'none';") {
			t.Errorf("CSP %q", csp)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "private") {
			t.Errorf("Cache-Control %q", cc)
		}
		// The file name in the path wins.
		resp, _ = mediaReq(t, bob, "GET", dl+id+"/other.mp4", nil, nil, true)
		if cd := resp.Header.Get("Content-Disposition"); cd != `inline; filename="other.mp4"` {
			t.Errorf("override: %q", cd)
		}

		// Ranges (video seeking).
		resp, body = mediaReq(t, bob, "GET", dl+id, nil, map[string]string{"Range": "bytes=100000-165599"}, true)
		if resp.StatusCode != 206 || !bytes.Equal(body, video[100000:165600]) || resp.Header.Get("Content-Range") != "bytes 100000-165599/300000" {
			t.Fatalf("range: %d %q %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
		}
		resp, body = mediaReq(t, bob, "GET", dl+id, nil, map[string]string{"Range": "bytes=-10"}, true)
		if resp.StatusCode != 206 || !bytes.Equal(body, video[len(video)-10:]) {
			t.Fatalf("suffix range: %d", resp.StatusCode)
		}
		resp, body = mediaReq(t, bob, "GET", dl+id, nil, map[string]string{"Range": "bytes=299990-"}, true)
		if resp.StatusCode != 206 || !bytes.Equal(body, video[299990:]) {
			t.Fatalf("open range: %d", resp.StatusCode)
		}
		resp, body = mediaReq(t, bob, "GET", dl+id, nil, map[string]string{"Range": "bytes=300000-"}, true)
		if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != "bytes */300000" || errcodeOf(body) == "" {
			t.Fatalf("unsatisfiable: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Range"), body)
		}
		for _, ignored := range []string{"bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=x-y"} {
			resp, body = mediaReq(t, bob, "GET", dl+id, nil, map[string]string{"Range": ignored}, true)
			if resp.StatusCode != 200 || len(body) != len(video) {
				t.Fatalf("range %q: %d", ignored, resp.StatusCode)
			}
		}
		resp, _ = mediaReq(t, bob, "GET", dl+id, nil, map[string]string{"Range": "bytes=0-1", "If-Range": `"stale"`}, true)
		if resp.StatusCode != 200 {
			t.Fatalf("If-Range mismatch: %d", resp.StatusCode)
		}
		resp, body = mediaReq(t, bob, "GET", dl+id, nil, map[string]string{"If-None-Match": `"` + id + `"`}, true)
		if resp.StatusCode != 304 || len(body) != 0 {
			t.Fatalf("If-None-Match: %d", resp.StatusCode)
		}
		resp, body = mediaReq(t, bob, "HEAD", dl+id, nil, nil, true)
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != "300000" {
			t.Fatalf("HEAD: %d", resp.StatusCode)
		}

		// Authentication is required; unsafe types are attachments.
		resp, body = mediaReq(t, bob, "GET", dl+id, nil, nil, false)
		if resp.StatusCode != 401 || errcodeOf(body) != "M_MISSING_TOKEN" {
			t.Fatalf("anonymous: %d %s", resp.StatusCode, body)
		}
		html := upload(t, alice, "text/html", "x.html", []byte("<script>alert(1)</script>"))
		resp, _ = mediaReq(t, bob, "GET", dl+html, nil, nil, true)
		if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="x.html"` || resp.Header.Get("Content-Type") != "text/html" {
			t.Fatalf("html: %q", cd)
		}
		svg := upload(t, alice, "image/svg+xml", "", []byte("<svg/>"))
		resp, _ = mediaReq(t, bob, "GET", dl+svg, nil, nil, true)
		if cd := resp.Header.Get("Content-Disposition"); cd != "attachment" {
			t.Fatalf("svg: %q", cd)
		}
		empty := upload(t, alice, "", "", nil)
		resp, body = mediaReq(t, bob, "GET", dl+empty, nil, map[string]string{"Range": "bytes=0-10"}, true)
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("empty: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}

		// Frozen legacy endpoints: 404 for media uploaded while frozen.
		resp, body = mediaReq(t, bob, "GET", "/_matrix/media/v3/download/localhost/"+id, nil, nil, false)
		if resp.StatusCode != 404 || errcodeOf(body) != "M_NOT_FOUND" {
			t.Fatalf("legacy: %d %s", resp.StatusCode, body)
		}
		resp, _ = mediaReq(t, bob, "GET", "/_matrix/media/v3/thumbnail/localhost/"+id+"?width=32&height=32", nil, nil, false)
		if resp.StatusCode != 404 {
			t.Fatalf("legacy thumbnail: %d", resp.StatusCode)
		}

		// Remote and unknown media.
		// Remote media is fetched over federation: an unreachable server
		// (here a loopback address, a denied network) is 504
		// M_NOT_YET_UPLOADED: not available now, worth a retry.
		resp, body = mediaReq(t, bob, "GET", "/_matrix/client/v1/media/download/127.0.0.1:1/abc", nil, nil, true)
		if resp.StatusCode != 504 || errcodeOf(body) != "M_NOT_YET_UPLOADED" {
			t.Fatalf("unreachable remote: %d %s", resp.StatusCode, body)
		}
		for _, p := range []string{dl + "unknown", dl + "bad%2F..%2Fid", "/_matrix/client/v1/media/download/localhost/" + id + "%00"} {
			resp, body = mediaReq(t, bob, "GET", p, nil, nil, true)
			if resp.StatusCode != 404 && resp.StatusCode != 400 {
				t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
			}
		}

		// Config.
		var cfg map[string]any
		bob.MustDo("GET", "/_matrix/client/v1/media/config", nil, &cfg)
		if cfg["m.upload.size"] != float64(100<<20) {
			t.Fatalf("config %v", cfg)
		}
	})
}

func TestMediaAsyncUpload(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		var created struct {
			ContentURI      string `json:"content_uri"`
			UnusedExpiresAt int64  `json:"unused_expires_at"`
		}
		alice.MustDo("POST", "/_matrix/media/v1/create", map[string]any{}, &created)
		id := strings.TrimPrefix(created.ContentURI, "mxc://localhost/")
		if created.UnusedExpiresAt <= time.Now().UnixMilli() || id == created.ContentURI {
			t.Fatalf("%+v", created)
		}
		resp, body := mediaReq(t, bob, "GET", dl+id+"?timeout_ms=100", nil, nil, true)
		if resp.StatusCode != 504 || errcodeOf(body) != "M_NOT_YET_UPLOADED" {
			t.Fatalf("not yet: %d %s", resp.StatusCode, body)
		}
		put := "/_matrix/media/v3/upload/localhost/" + id + "?filename=a.txt"
		resp, body = mediaReq(t, bob, "PUT", put, strings.NewReader("bob"), map[string]string{"Content-Type": "text/plain"}, true)
		if resp.StatusCode != 403 || errcodeOf(body) != "M_FORBIDDEN" {
			t.Fatalf("other user: %d %s", resp.StatusCode, body)
		}
		// A download waiting for the content gets it when it arrives.
		got := make(chan []byte, 1)
		go func() {
			_, body := mediaReq(t, bob, "GET", dl+id+"?timeout_ms=10000", nil, nil, true)
			got <- body
		}()
		time.Sleep(100 * time.Millisecond)
		resp, body = mediaReq(t, alice, "PUT", put, strings.NewReader("hello"), map[string]string{"Content-Type": "text/plain"}, true)
		if resp.StatusCode != 200 || string(body) != "{}" {
			t.Fatalf("put: %d %s", resp.StatusCode, body)
		}
		if b := <-got; string(b) != "hello" {
			t.Fatalf("waiting download got %q", b)
		}
		resp, body = mediaReq(t, alice, "PUT", put, strings.NewReader("again"), nil, true)
		if resp.StatusCode != 409 || errcodeOf(body) != "M_CANNOT_OVERWRITE_MEDIA" {
			t.Fatalf("second put: %d %s", resp.StatusCode, body)
		}
		resp, body = mediaReq(t, alice, "PUT", "/_matrix/media/v3/upload/localhost/nothing", strings.NewReader("x"), nil, true)
		if resp.StatusCode != 404 {
			t.Fatalf("unknown id: %d %s", resp.StatusCode, body)
		}
	})
}

func TestMediaLimitsOverHTTP(t *testing.T) {
	s := ts.New(t, ts.WithConfig(func(c *config.Config) {
		c.Media.MaxUploadBytes = 200_000
		c.Media.LegacyUnauthenticated = config.MediaLegacyOpen
		c.RateLimits = config.RateLimits{Enabled: true, PerSecond: 0.1, Burst: 4}
	}))
	alice := s.Register(t, "alice")
	// Declared too large: refused before the body is read.
	var read atomic.Int64
	body := readerFunc(func(p []byte) (int, error) {
		read.Add(int64(len(p)))
		return len(p), nil
	})
	req, _ := http.NewRequest("POST", s.URL+"/_matrix/media/v3/upload", io.LimitReader(body, 300_000))
	req.ContentLength = 300_000
	req.Header.Set("Authorization", "Bearer "+alice.Token)
	req.Header.Set("Expect", "100-continue")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || errcodeOf(data) != "M_TOO_LARGE" {
		t.Fatalf("declared too large: %d %s", resp.StatusCode, data)
	}
	if n := read.Load(); n != 0 {
		t.Fatalf("%d bytes of the refused body were sent", n)
	}
	// Chunked (no length) and too large: cut while streaming.
	r, data := mediaReq(t, alice, "POST", "/_matrix/media/v3/upload", io.MultiReader(bytes.NewReader(make([]byte, 250_000))), nil, true)
	if r.StatusCode != 413 || errcodeOf(data) != "M_TOO_LARGE" {
		t.Fatalf("streamed too large: %d %s", r.StatusCode, data)
	}
	// Open legacy endpoints serve media uploaded while open.
	id := upload(t, alice, "text/plain", "a.txt", []byte("public"))
	r, data = mediaReq(t, alice, "GET", "/_matrix/media/v3/download/localhost/"+id, nil, nil, false)
	if r.StatusCode != 200 || string(data) != "public" || !strings.Contains(r.Header.Get("Cache-Control"), "public") {
		t.Fatalf("open legacy: %d %s", r.StatusCode, data)
	}
	// The upload rate limit (burst 4: 3 used above... the next ones are limited).
	limited := false
	for range 4 {
		r, data = mediaReq(t, alice, "POST", "/_matrix/media/v3/upload", strings.NewReader("x"), nil, true)
		if r.StatusCode == 429 && errcodeOf(data) == "M_LIMIT_EXCEEDED" {
			limited = true
		}
	}
	if !limited {
		t.Fatal("uploads are not rate limited")
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestMediaThumbnailsOverHTTP(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		id := upload(t, alice, "image/jpeg", "photo.jpg", jpegBytes(t, 1600, 1200))
		th := "/_matrix/client/v1/media/thumbnail/localhost/" + id
		resp, body := mediaReq(t, bob, "GET", th+"?width=320&height=240&method=scale", nil, nil, true)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
			t.Fatalf("thumbnail: %d %s", resp.StatusCode, body)
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(body))
		if err != nil || cfg.Width != 320 || cfg.Height != 240 {
			t.Fatalf("thumbnail %dx%d %v", cfg.Width, cfg.Height, err)
		}
		resp, body = mediaReq(t, bob, "GET", th+"?width=96&height=96&method=crop", nil, nil, true)
		if cfg, _ := jpeg.DecodeConfig(bytes.NewReader(body)); resp.StatusCode != 200 || cfg.Width != 96 || cfg.Height != 96 {
			t.Fatalf("crop: %d", resp.StatusCode)
		}
		// Bad input: 4xx, never 5xx.
		for _, q := range []string{"", "?width=0&height=10", "?width=-1&height=10", "?width=a&height=1", "?width=10&height=10&method=zoom",
			"?width=99999999999999999999&height=1", "?width=10&height=10&animated=maybe"} {
			resp, body = mediaReq(t, bob, "GET", th+q, nil, nil, true)
			if resp.StatusCode != 400 {
				t.Errorf("%q: %d %s", q, resp.StatusCode, body)
			}
		}
		// A huge request returns at most the original (never upscaled).
		resp, body = mediaReq(t, bob, "GET", th+"?width=3000&height=3000", nil, nil, true)
		if cfg, _ := jpeg.DecodeConfig(bytes.NewReader(body)); resp.StatusCode != 200 || cfg.Width != 1600 {
			t.Fatalf("large request: %d %d", resp.StatusCode, cfg.Width)
		}
		notImage := upload(t, alice, "image/png", "", []byte("not a png"))
		resp, body = mediaReq(t, bob, "GET", "/_matrix/client/v1/media/thumbnail/localhost/"+notImage+"?width=32&height=32", nil, nil, true)
		if resp.StatusCode != 400 || errcodeOf(body) != "M_UNKNOWN" {
			t.Fatalf("not an image: %d %s", resp.StatusCode, body)
		}
	})
}

// A blob damaged on disk is refused with 502, never served.
func TestMediaTamperedOverHTTP(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	data := bytes.Repeat([]byte("confidential "), 20000)
	id := upload(t, alice, "text/plain", "", data)
	var blob string
	_ = filepath.WalkDir(filepath.Join(s.Config.DataDir, "media"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, id) {
			blob = p
		}
		return nil
	})
	raw, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("confidential")) {
		t.Fatal("plaintext on disk")
	}
	raw[100] ^= 0x40
	_ = os.WriteFile(blob, raw, 0o600)
	resp, body := mediaReq(t, alice, "GET", dl+id, nil, nil, true)
	if resp.StatusCode != 502 || errcodeOf(body) != "M_UNKNOWN" || bytes.Contains(body, []byte("confidential")) {
		t.Fatalf("tampered: %d %s", resp.StatusCode, body)
	}
	// Damage in a later chunk: the range before it is still served, the
	// damaged chunk is not.
	raw[100] ^= 0x40
	raw[len(raw)-5] ^= 0x40
	_ = os.WriteFile(blob, raw, 0o600)
	resp, body = mediaReq(t, alice, "GET", dl+id, nil, map[string]string{"Range": "bytes=0-99"}, true)
	if resp.StatusCode != 206 || !bytes.Equal(body, data[:100]) {
		t.Fatalf("intact range: %d", resp.StatusCode)
	}
	resp, body = mediaReq(t, alice, "GET", dl+id, nil, map[string]string{"Range": "bytes=-10"}, true)
	if resp.StatusCode != 502 {
		t.Fatalf("damaged range: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", s.URL+dl+id, nil)
	req.Header.Set("Authorization", "Bearer "+alice.Token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err == nil || len(got) >= len(data) {
		t.Fatalf("damaged tail: the response was not cut short (%d bytes, %v)", len(got), err)
	}
}

// BenchmarkMediaUpload100MiB and BenchmarkMediaDownload100MiB measure
// throughput through the HTTP API with encryption at rest (SQLite).
func BenchmarkMediaUpload100MiB(b *testing.B) {
	s := ts.New(b, ts.WithConfig(func(c *config.Config) { c.Media.MaxUploadBytes = 200 << 20 }))
	alice := s.Register(b, "alice")
	data := make([]byte, 100<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		upload(b, alice, "application/octet-stream", "", data)
	}
}

func BenchmarkMediaDownload100MiB(b *testing.B) {
	s := ts.New(b, ts.WithConfig(func(c *config.Config) { c.Media.MaxUploadBytes = 200 << 20 }))
	alice := s.Register(b, "alice")
	data := make([]byte, 100<<20)
	id := upload(b, alice, "application/octet-stream", "", data)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		req, _ := http.NewRequest("GET", s.URL+dl+id, nil)
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != int64(len(data)) {
			b.Fatalf("%d bytes", n)
		}
	}
}

// BenchmarkMediaUpload1GiBMemory streams 1 GiB through the HTTP API (the
// client generates it on the fly) and reports the largest heap seen.
func BenchmarkMediaUpload1GiBMemory(b *testing.B) {
	s := ts.New(b, ts.WithConfig(func(c *config.Config) { c.Media.MaxUploadBytes = 2 << 30 }))
	alice := s.Register(b, "alice")
	const size = 1 << 30
	b.SetBytes(size)
	for range b.N {
		runtime.GC()
		var peak atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				if v := ms.HeapInuse; v > peak.Load() {
					peak.Store(v)
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		chunk := make([]byte, 1<<20)
		src := io.LimitReader(readerFunc(func(p []byte) (int, error) { return copy(p, chunk), nil }), size)
		req, _ := http.NewRequest("POST", s.URL+"/_matrix/media/v3/upload", src)
		req.ContentLength = size
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		resp, err := http.DefaultClient.Do(req)
		close(stop)
		<-done
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	}
}
