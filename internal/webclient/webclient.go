package webclient

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html"
	"io/fs"
	"mime"
	"net/http"
	pathpkg "path"
	"strings"
	"sync"
	"time"

	"luxchat/internal/config"
)

//go:embed all:dist
var dist embed.FS

// CSP is the Content-Security-Policy of every answer: scripts, styles,
// images, workers and connections only from this origin (the homeserver
// is this origin), no inline script or style, WebAssembly compilation
// for the Rust crypto, no framing, no plugins.
const CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob:; font-src 'self'; connect-src 'self'; worker-src 'self'; manifest-src 'self'; " +
	"base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

// baseTag is the <base> of the built index.html, which New rewrites to
// web.path so that the relative asset URLs resolve from any client route.
const baseTag = `<base href="/" />`

// file is one embedded file, compressed once on first use.
type file struct {
	data  []byte
	etag  string
	ctype string
	// immutable: a content-hashed asset (under assets/), cached for a
	// year; every other file is revalidated on each use.
	immutable bool
	gzOnce    sync.Once
	gz        []byte // nil: not worth compressing
}

// Handler serves the client under its base path. Its files are read at
// New and never change; it is safe for concurrent use.
type Handler struct {
	base  string // web.path with a trailing slash
	files map[string]*file
	index *file
}

// New loads the embedded client for web.path. It fails when the binary
// was built without the client (no dist/index.html).
func New(cfg config.Web) (*Handler, error) {
	if err := config.ValidWebPath(cfg.Path); err != nil {
		return nil, err
	}
	return newHandler(dist, cfg.Path)
}

func newHandler(fsys fs.FS, path string) (*Handler, error) {
	base := strings.TrimSuffix(path, "/") + "/"
	root, err := fs.Sub(fsys, "dist")
	if err != nil {
		return nil, err
	}
	h := &Handler{base: base, files: map[string]*file{}}
	err = fs.WalkDir(root, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(root, name)
		if err != nil {
			return err
		}
		if name == "index.html" {
			if !bytes.Contains(data, []byte(baseTag)) {
				return fmt.Errorf("webclient: index.html has no %s to set web.path in", baseTag)
			}
			data = bytes.Replace(data, []byte(baseTag), []byte(`<base href="`+html.EscapeString(base)+`" />`), 1)
		}
		h.files[name] = newFile(name, data)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webclient: read the embedded client: %w", err)
	}
	if h.index = h.files["index.html"]; h.index == nil {
		return nil, fmt.Errorf("webclient: the binary holds no web client (run make web)")
	}
	return h, nil
}

func newFile(name string, data []byte) *file {
	sum := sha256.Sum256(data)
	ctype := mime.TypeByExtension(pathpkg.Ext(name))
	switch pathpkg.Ext(name) {
	case ".webmanifest":
		ctype = "application/manifest+json"
	case ".js", ".mjs":
		ctype = "text/javascript; charset=utf-8"
	case ".wasm":
		ctype = "application/wasm"
	}
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	return &file{data: data, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, ctype: ctype, immutable: strings.HasPrefix(name, "assets/")}
}

// gzipped returns the file compressed, or nil when that does not pay.
func (f *file) gzipped() []byte {
	f.gzOnce.Do(func() {
		if len(f.data) < 1024 || strings.HasPrefix(f.ctype, "image/png") {
			return
		}
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		_, _ = zw.Write(f.data)
		_ = zw.Close()
		if b.Len() < len(f.data)*9/10 {
			f.gz = b.Bytes()
		}
	})
	return f.gz
}

// Base is the path the client is served at, with a trailing slash.
func (h *Handler) Base() string { return h.base }

// Serve answers a GET or HEAD request for a path under the base: the
// file, or index.html for a client route. It reports false, having
// written nothing, for paths it does not serve (outside the base, a
// missing asset), which the caller answers.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	if p+"/" == h.base {
		// "/chat" → "/chat/", so that relative URLs resolve.
		http.Redirect(w, r, h.base, http.StatusMovedPermanently)
		return true
	}
	rel, ok := strings.CutPrefix(p, h.base)
	if !ok {
		return false
	}
	f := h.files[rel]
	switch {
	case f != nil && rel != "index.html":
	case strings.HasPrefix(rel, "assets/"):
		// A missing asset is a 404, never index.html served as script.
		return false
	default:
		f = h.index
	}
	h.write(w, r, f)
	return true
}

func (h *Handler) write(w http.ResponseWriter, r *http.Request, f *file) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Content-Type", f.ctype)
	hd.Set("Vary", "Accept-Encoding")
	if f.immutable {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	data, etag := f.data, f.etag
	if gz := f.gzipped(); gz != nil && acceptsGzip(r) {
		data, etag = gz, strings.TrimSuffix(f.etag, `"`)+`-gz"`
		hd.Set("Content-Encoding", "gzip")
	}
	hd.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// acceptsGzip reports whether the request's Accept-Encoding takes gzip
// (with a q-value above zero).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
