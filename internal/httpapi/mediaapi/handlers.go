package mediaapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"luxchat/internal/config"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/media"
)

// bodyReader turns request body failures into client errors, so that they
// are told apart from storage failures down the line.
type bodyReader struct{ r io.Reader }

func (b bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return n, errcode.TooLarge("file is larger than the limit of %d bytes", mbe.Limit)
		}
		if e, ok := errcode.As(err); ok {
			return n, e // a body that stalled
		}
		return n, errcode.Unknown("could not read request body").Wrap(err)
	}
	return n, err
}

func uploadOf(r *httputil.Request) media.Upload {
	return media.Upload{
		UserID:        r.Session.UserID,
		ContentType:   r.Header.Get("Content-Type"),
		FileName:      r.Query("filename"),
		ContentLength: r.ContentLength,
	}
}

// upload is POST /_matrix/media/v3/upload.
func (a *API) upload(r *httputil.Request) (any, error) {
	uri, err := a.Media.Upload(r.Context(), uploadOf(r), bodyReader{r.Request.Body})
	if err != nil {
		return nil, err
	}
	return map[string]string{"content_uri": uri}, nil
}

// create is POST /_matrix/media/v1/create.
func (a *API) create(r *httputil.Request) (any, error) {
	uri, expires, err := a.Media.Create(r.Context(), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"content_uri": uri, "unused_expires_at": expires}, nil
}

// uploadTo is PUT /_matrix/media/v3/upload/{serverName}/{mediaId}.
func (a *API) uploadTo(r *httputil.Request) (any, error) {
	err := a.Media.UploadTo(r.Context(), uploadOf(r), r.Var("serverName"), r.Var("mediaId"), bodyReader{r.Request.Body})
	if err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

// config is GET /_matrix/client/v1/media/config (and the deprecated
// /_matrix/media/v3/config).
func (a *API) config(*httputil.Request) (any, error) {
	return map[string]any{"m.upload.size": a.Media.MaxUploadBytes()}, nil
}

func (a *API) content(r *httputil.Request) (*media.Content, error) {
	wait, err := r.QueryInt("timeout_ms", 20000)
	if err != nil {
		return nil, err
	}
	return a.Media.Get(r.Context(), r.Var("serverName"), r.Var("mediaId"), time.Duration(wait)*time.Millisecond)
}

// download is GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}].
func (a *API) download(r *httputil.Request) (any, error) {
	c, err := a.content(r)
	if err != nil {
		return nil, err
	}
	return a.serve(r, c, r.Var("fileName"), true)
}

// frozen answers for media that the deprecated endpoints may not serve:
// media uploaded while they were frozen (the spec's 1.11 freeze).
func (a *API) frozen(c *media.Content) bool {
	return a.Config.Media.LegacyUnauthenticated != config.MediaLegacyOpen && !c.Unauthenticated
}

// frozenRemote: the deprecated endpoints, once frozen, do not fetch
// media from other servers (anyone could make us fetch without a token).
func (a *API) frozenRemote(r *httputil.Request) bool {
	return a.Config.Media.LegacyUnauthenticated != config.MediaLegacyOpen && r.Var("serverName") != a.Config.ServerName
}

// legacyDownload is the deprecated GET /_matrix/media/v3/download/….
func (a *API) legacyDownload(r *httputil.Request) (any, error) {
	if a.frozenRemote(r) {
		return nil, errcode.NotFound("media not found (use the authenticated /_matrix/client/v1/media endpoints)")
	}
	c, err := a.content(r)
	if err != nil {
		return nil, err
	}
	if a.frozen(c) {
		return nil, errcode.NotFound("media not found (use the authenticated /_matrix/client/v1/media endpoints)")
	}
	return a.serve(r, c, r.Var("fileName"), false)
}

// thumbnail is GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}.
func (a *API) thumbnail(r *httputil.Request) (any, error) {
	return a.thumb(r, true)
}

// legacyThumbnail is the deprecated GET /_matrix/media/v3/thumbnail/….
func (a *API) legacyThumbnail(r *httputil.Request) (any, error) {
	return a.thumb(r, false)
}

// ThumbnailQuery reads the width, height, method and animated parameters
// shared by the client and federation thumbnail endpoints.
func ThumbnailQuery(r *httputil.Request) (w, h int, method string, animated bool, err error) {
	q := r.URL.Query()
	if q.Get("width") == "" || q.Get("height") == "" {
		return 0, 0, "", false, errcode.MissingParam("width and height are required")
	}
	w, okW := media.ParseDimension(q.Get("width"))
	h, okH := media.ParseDimension(q.Get("height"))
	if !okW || !okH {
		return 0, 0, "", false, errcode.Unknown("width and height must be positive integers")
	}
	method = q.Get("method")
	if method == "" {
		method = "scale"
	}
	if method != "crop" && method != "scale" {
		return 0, 0, "", false, errcode.Unknown("method must be crop or scale")
	}
	animated, err = r.QueryBool("animated")
	return w, h, method, animated, err
}

func (a *API) thumb(r *httputil.Request, authed bool) (any, error) {
	w, h, method, animated, err := ThumbnailQuery(r)
	if err != nil {
		return nil, err
	}
	if !authed && a.frozenRemote(r) {
		return nil, errcode.NotFound("media not found (use the authenticated /_matrix/client/v1/media endpoints)")
	}
	c, err := a.content(r)
	if err != nil {
		return nil, err
	}
	if !authed && a.frozen(c) {
		return nil, errcode.NotFound("media not found (use the authenticated /_matrix/client/v1/media endpoints)")
	}
	t, err := a.Media.Thumbnail(r.Context(), c, w, h, method, animated)
	if err != nil {
		return nil, err
	}
	return a.serve(r, t, "", authed)
}

// contentSecurityPolicy is the spec's recommended policy, plus media-src
// so that audio and video play when opened directly.
const contentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

// serve answers with the content, a byte range of it (206, or 416), or
// 304 when the client's copy is current. The first chunk of what is sent
// is decrypted and authenticated before the status line goes out, so a
// damaged blob is a JSON error; damage found later ends the response
// early (the client sees fewer bytes than Content-Length), never serves
// unauthenticated bytes.
func (a *API) serve(r *httputil.Request, c *media.Content, fileName string, authed bool) (any, error) {
	if fileName == "" {
		fileName = c.FileName
	}
	h := http.Header{}
	h.Set("Content-Type", c.ContentType)
	h.Set("Content-Disposition", contentDisposition(c.ContentType, fileName))
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("ETag", c.ETag)
	if authed {
		h.Set("Cache-Control", "private, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	h.Set("Accept-Ranges", "bytes")

	if etagMatches(r.Header.Get("If-None-Match"), c.ETag) {
		return httputil.Stream(func(w http.ResponseWriter) {
			copyHeaders(w, h)
			w.Header().Del("Content-Type")
			w.WriteHeader(http.StatusNotModified)
		}), nil
	}
	off, n, status := int64(0), c.Size, http.StatusOK
	if rng := r.Header.Get("Range"); rng != "" && c.Size > 0 {
		if ir := r.Header.Get("If-Range"); ir == "" || ir == c.ETag {
			o, l, ok, unsatisfiable := parseRange(rng, c.Size)
			switch {
			case unsatisfiable:
				h.Set("Content-Range", fmt.Sprintf("bytes */%d", c.Size))
				return &httputil.Response{Status: http.StatusRequestedRangeNotSatisfiable, Headers: h,
					Body: errcode.Unknown("requested range not satisfiable")}, nil
			case ok:
				off, n, status = o, l, http.StatusPartialContent
				h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", o, o+l-1, c.Size))
			}
		}
	}
	rc, err := a.Media.Open(r.Context(), c, off, n)
	if err != nil {
		return nil, err
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	head := r.Method == http.MethodHead
	return httputil.Stream(func(w http.ResponseWriter) {
		defer rc.Close()
		copyHeaders(w, h)
		w.WriteHeader(status)
		if head {
			return
		}
		buf := make([]byte, 64<<10)
		if _, err := io.CopyBuffer(w, rc, buf); err != nil {
			if errors.Is(err, media.ErrTampered) {
				httputil.Logger(r.Context()).Error("media blob failed authentication while streaming: response cut short", "media_id", c.MediaID)
			} else if r.Context().Err() == nil {
				httputil.Logger(r.Context()).Warn("media download interrupted", "media_id", c.MediaID, "err", err)
			}
		}
	}), nil
}

func copyHeaders(w http.ResponseWriter, h http.Header) {
	for k, v := range h {
		w.Header()[k] = v
	}
}

func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// parseRange reads a single "bytes=" range of a size-byte representation.
// ok is false when the header is to be ignored (malformed, or several
// ranges, which a server may answer with the whole content).
func parseRange(h string, size int64) (off, n int64, ok, unsatisfiable bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	if first == "" { // suffix: the last N bytes
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k < 0 {
			return 0, 0, false, false
		}
		if k == 0 {
			return 0, 0, false, true
		}
		k = min(k, size)
		return size - k, k, true, false
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, 0, false, false
	}
	b := size - 1
	if last != "" {
		if b, err = strconv.ParseInt(last, 10, 64); err != nil || b < a {
			return 0, 0, false, false
		}
	}
	if a >= size {
		return 0, 0, false, true
	}
	b = min(b, size-1)
	return a, b - a + 1, true, false
}

// inlineTypes are the content types the spec lists as safe to serve
// with Content-Disposition: inline. Everything else is an attachment.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true, "application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/wave": true, "audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// contentDisposition builds the header (RFC 6266): inline only for the
// safe types, and the file name as a quoted ASCII fallback plus an RFC 5987
// filename* when it is not plain ASCII.
func contentDisposition(contentType, name string) string {
	t, _, _ := strings.Cut(contentType, ";")
	kind := "attachment"
	if inlineTypes[strings.ToLower(strings.TrimSpace(t))] {
		kind = "inline"
	}
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, name)
	if name == "" {
		return kind
	}
	var ascii strings.Builder
	plain := true
	for _, r := range name {
		switch {
		case r >= 0x80:
			ascii.WriteByte('_')
			plain = false
		case r == '"' || r == '\\':
			ascii.WriteByte('\\')
			ascii.WriteRune(r)
		default:
			ascii.WriteRune(r)
		}
	}
	out := kind + `; filename="` + ascii.String() + `"`
	if !plain {
		out += "; filename*=utf-8''" + rfc5987(name)
	}
	return out
}

func rfc5987(s string) string {
	const attrChars = "!#$&+-.^_`|~"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(attrChars, c) >= 0) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
