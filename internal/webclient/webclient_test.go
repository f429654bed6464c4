package webclient

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"luxchat/internal/config"
	"luxchat/internal/httpapi/httputil"
)

func testFS() fstest.MapFS {
	js := strings.Repeat("console.log('luxchat');\n", 200)
	return fstest.MapFS{
		"dist/index.html":               {Data: []byte(`<!doctype html><html><head><base href="/" /><script type="module" src="./assets/index-abc.js"></script></head><body></body></html>`)},
		"dist/assets/index-abc.js":      {Data: []byte(js)},
		"dist/assets/crypto-def.wasm":   {Data: []byte("\x00asm\x01\x00\x00\x00")},
		"dist/sw.js":                    {Data: []byte("self.addEventListener('fetch', () => {});")},
		"dist/manifest.webmanifest":     {Data: []byte(`{"name":"luxchat"}`)},
		"dist/icon.svg":                 {Data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`)},
		"dist/assets/sub/dir/nested.js": {Data: []byte("1")},
	}
}

func get(t *testing.T, h *Handler, path string, hdr ...string) (*http.Response, bool) {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	ok := h.Serve(w, r)
	return w.Result(), ok
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServeFilesAndRoutes(t *testing.T) {
	h, err := newHandler(testFS(), "/")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, ctype, cache, contains string
	}{
		{"/", "text/html; charset=utf-8", "no-cache", `<base href="/" />`},
		{"/index.html", "text/html; charset=utf-8", "no-cache", `<script type="module"`},
		{"/room/!abc:example.org", "text/html; charset=utf-8", "no-cache", `<base href="/" />`}, // a client route
		{"/assets/index-abc.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", "console.log"},
		{"/assets/crypto-def.wasm", "application/wasm", "public, max-age=31536000, immutable", "asm"},
		{"/sw.js", "text/javascript; charset=utf-8", "no-cache", "addEventListener"},
		{"/manifest.webmanifest", "application/manifest+json", "no-cache", "luxchat"},
		{"/icon.svg", "image/svg+xml", "no-cache", "<svg"},
	} {
		res, ok := get(t, h, tc.path)
		if !ok || res.StatusCode != 200 {
			t.Fatalf("GET %s: served %v, status %d", tc.path, ok, res.StatusCode)
		}
		if got := res.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if got := res.Header.Get("Cache-Control"); got != tc.cache {
			t.Errorf("GET %s: Cache-Control %q, want %q", tc.path, got, tc.cache)
		}
		if got := res.Header.Get("Content-Security-Policy"); got != CSP {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, got)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", tc.path)
		}
		if b := body(t, res); !strings.Contains(b, tc.contains) {
			t.Errorf("GET %s: body %.200q lacks %q", tc.path, b, tc.contains)
		}
	}
	// A missing hashed asset is not index.html in disguise.
	if res, ok := get(t, h, "/assets/gone-123.js"); ok {
		t.Errorf("GET a missing asset: served with status %d", res.StatusCode)
	}
}

func TestCSPIsStrict(t *testing.T) {
	directives := map[string][]string{}
	for _, d := range strings.Split(CSP, ";") {
		f := strings.Fields(d)
		directives[f[0]] = f[1:]
	}
	for name, want := range map[string][]string{
		"default-src": {"'none'"}, "script-src": {"'self'", "'wasm-unsafe-eval'"}, "connect-src": {"'self'"},
		"style-src": {"'self'"}, "frame-ancestors": {"'none'"}, "object-src": {"'none'"}, "base-uri": {"'self'"},
	} {
		if !slices.Equal(directives[name], want) {
			t.Errorf("%s: %v, want %v", name, directives[name], want)
		}
	}
	if strings.Contains(CSP, "unsafe-inline") || strings.Contains(CSP, "'unsafe-eval'") || strings.Contains(CSP, "http") || strings.Contains(CSP, "*") {
		t.Errorf("CSP allows inline code, eval or another origin: %s", CSP)
	}
}

func TestUnderAPath(t *testing.T) {
	h, err := newHandler(testFS(), "/chat")
	if err != nil {
		t.Fatal(err)
	}
	res, ok := get(t, h, "/chat/room/!x:y")
	if !ok || res.StatusCode != 200 || !strings.Contains(body(t, res), `<base href="/chat/" />`) {
		t.Fatalf("GET /chat/room/...: served %v, status %d", ok, res.StatusCode)
	}
	if res, ok := get(t, h, "/chat"); !ok || res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/chat/" {
		t.Fatalf("GET /chat: served %v, status %d, Location %q", ok, res.StatusCode, res.Header.Get("Location"))
	}
	if res, ok := get(t, h, "/chat/assets/index-abc.js"); !ok || res.StatusCode != 200 {
		t.Fatalf("GET /chat/assets/index-abc.js: served %v, status %d", ok, res.StatusCode)
	}
	for _, p := range []string{"/", "/index.html", "/assets/index-abc.js", "/chatter"} {
		if _, ok := get(t, h, p); ok {
			t.Errorf("GET %s: served outside web.path /chat/", p)
		}
	}
}

func TestGzipAndRevalidation(t *testing.T) {
	h, err := newHandler(testFS(), "/")
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := get(t, h, "/assets/index-abc.js")
	want := body(t, plain)
	res, _ := get(t, h, "/assets/index-abc.js", "Accept-Encoding", "br, gzip;q=0.8")
	if res.Header.Get("Content-Encoding") != "gzip" || res.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("no gzip: %v", res.Header)
	}
	zr, err := gzip.NewReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	if !bytes.Equal(got, []byte(want)) {
		t.Fatal("gzipped body differs from the file")
	}
	if res, _ := get(t, h, "/assets/index-abc.js", "Accept-Encoding", "gzip;q=0"); res.Header.Get("Content-Encoding") != "" {
		t.Fatal("gzip sent to a client that refused it")
	}
	// index.html is revalidated: its ETag answers 304.
	first, _ := get(t, h, "/")
	etag := first.Header.Get("ETag")
	if etag == "" {
		t.Fatal("index.html has no ETag")
	}
	if res, _ := get(t, h, "/", "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: status %d, want 304", res.StatusCode)
	}
}

func TestEmbeddedClient(t *testing.T) {
	// The committed build: an index.html that loads hashed assets with no
	// inline script, and a base to rewrite.
	h, err := New(config.Web{Enabled: true, Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	res, _ := get(t, h, "/")
	b := body(t, res)
	if !strings.Contains(b, `<script type="module" crossorigin src="./assets/`) {
		t.Fatalf("index.html loads no hashed module: %s", b)
	}
	if strings.Count(b, "<script") != strings.Count(b, "<script type=\"module\" crossorigin src=") {
		t.Fatalf("index.html has an inline script: %s", b)
	}
	var wasm bool
	for name, f := range h.files {
		if strings.HasSuffix(name, ".wasm") && f.immutable {
			wasm = true
		}
	}
	if !wasm {
		t.Fatal("the Rust crypto's WebAssembly is not among the embedded assets")
	}
}

func TestPathsMatchTheRouter(t *testing.T) {
	if !slices.Equal(config.APIPrefixes, httputil.APIPrefixes) {
		t.Fatalf("config.APIPrefixes %v != httputil.APIPrefixes %v", config.APIPrefixes, httputil.APIPrefixes)
	}
	for _, p := range []string{"/_matrix", "/_matrix/", "/_synapse/admin/", "/_luxchat/x", "/.well-known/", "chat", "/a/../_matrix/", "/a b"} {
		if _, err := New(config.Web{Enabled: true, Path: p}); err == nil {
			t.Errorf("web.path %q accepted", p)
		}
	}
}

// TestFirstLoadBudget holds the committed build to issue 19's budget: the
// JavaScript index.html loads (its scripts and module preloads) is at most
// 500 KB gzipped; the Rust crypto (its chunk and WebAssembly) loads later.
func TestFirstLoadBudget(t *testing.T) {
	h, err := New(config.Web{Enabled: true, Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	index := string(h.index.data)
	var total int
	var names []string
	for _, attr := range []string{`src="./`, `rel="modulepreload" crossorigin href="./`} {
		for _, part := range strings.Split(index, attr)[1:] {
			name := part[:strings.IndexByte(part, '"')]
			f := h.files[name]
			if f == nil {
				t.Fatalf("index.html loads %s, which is not embedded", name)
			}
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			_, _ = zw.Write(f.data)
			_ = zw.Close()
			total += b.Len()
			names = append(names, name)
		}
	}
	t.Logf("first load: %v, %d bytes gzipped", names, total)
	if len(names) == 0 || total > 500_000 {
		t.Fatalf("first-load JavaScript %v: %d bytes gzipped, budget 500000", names, total)
	}
	for _, n := range names {
		if strings.Contains(n, "crypto") || strings.HasSuffix(n, ".wasm") {
			t.Fatalf("the crypto loads with the page: %s", n)
		}
	}
}
