package federation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"luxchat/internal/matrix/signing"
)

// ErrMediaTooLarge: the remote content is larger than the caller's limit.
var ErrMediaTooLarge = errors.New("remote media is larger than the limit")

// Media is remote content being downloaded: Body must be closed. Reading
// Body fails with ErrMediaTooLarge past the limit given to DownloadMedia.
type Media struct {
	ContentType string
	FileName    string
	Body        io.ReadCloser
}

// maxMediaMetadata bounds the JSON metadata part.
const maxMediaMetadata = 64 << 10

// DownloadMedia fetches media held by destination with a signed
// GET /_matrix/federation/v1/media/download/{mediaId} (or /thumbnail/…
// when thumb is non-nil, with those query parameters). The multipart/mixed
// answer's second part is the content, or a Location to fetch with a
// plain GET through the same network policy. maxBytes bounds the content.
func (c *Client) DownloadMedia(ctx context.Context, destination, mediaID string, thumb url.Values, maxBytes int64) (*Media, error) {
	if err := c.Policy.Allowed(destination); err != nil {
		return nil, err
	}
	uri := "/_matrix/federation/v1/media/download/" + url.PathEscape(mediaID)
	if thumb != nil {
		uri = "/_matrix/federation/v1/media/thumbnail/" + url.PathEscape(mediaID) + "?" + thumb.Encode()
	}
	x, err := signing.SignRequest(c.Key, c.ServerName, destination, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	dests, err := c.Resolver.Resolve(ctx, destination)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", destination, err)
	}
	var errs []error
	for _, d := range dests {
		resp, err := c.open(ctx, d, uri, x.String())
		if err != nil {
			var re *RemoteError
			if errors.As(err, &re) {
				re.Server = destination
				if !noFederationMedia(re) {
					return nil, re
				}
				// A server from before authenticated media (spec v1.11)
				// still serves its own files on the legacy endpoint.
				return c.downloadLegacy(ctx, d, destination, mediaID, thumb, maxBytes, re)
			}
			errs = append(errs, err)
			continue
		}
		m, err := c.readMultipart(ctx, resp, maxBytes)
		if err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("media from %s: %w", destination, err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("request to %s: %w", destination, errors.Join(errs...))
}

// noFederationMedia reports whether an answer to the federation media
// endpoint says the server does not have that endpoint (rather than the
// file): no Matrix error code, or M_UNRECOGNIZED.
func noFederationMedia(re *RemoteError) bool {
	switch re.Status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
	default:
		return false
	}
	code, _ := re.MatrixError()
	return code == "" || code == "M_UNRECOGNIZED"
}

// downloadLegacy fetches a server's own media from the unauthenticated
// /_matrix/media/v3/download (or thumbnail) endpoint, which servers from
// before authenticated media serve to other servers. first is the error
// of the federation endpoint, returned when this fails too.
func (c *Client) downloadLegacy(ctx context.Context, d Destination, destination, mediaID string, thumb url.Values, maxBytes int64, first error) (*Media, error) {
	q := url.Values{"allow_remote": {"false"}}
	uri := "/_matrix/media/v3/download/" + url.PathEscape(destination) + "/" + url.PathEscape(mediaID)
	if thumb != nil {
		for k, v := range thumb {
			q[k] = v
		}
		uri = "/_matrix/media/v3/thumbnail/" + url.PathEscape(destination) + "/" + url.PathEscape(mediaID)
	}
	resp, err := c.open(ctx, d, uri+"?"+q.Encode(), "")
	if err != nil {
		return nil, first
	}
	return plainMedia(resp, maxBytes)
}

// plainMedia is the content of a plain (not multipart) 2xx answer,
// bounded by maxBytes.
func plainMedia(resp *http.Response, maxBytes int64) (*Media, error) {
	if resp.ContentLength > maxBytes {
		resp.Body.Close()
		return nil, ErrMediaTooLarge
	}
	m := mediaOf(resp.Header)
	m.Body = &multipartBody{Reader: &limitReader{r: resp.Body, left: maxBytes}, closers: []io.Closer{resp.Body}}
	return m, nil
}

// open sends a GET, signed when auth is set, and returns a 2xx response
// with its body open.
func (c *Client) open(ctx context.Context, d Destination, uri, auth string) (*http.Response, error) {
	u, err := url.Parse("https://" + net.JoinHostPort(d.TLSName, d.Port) + uri)
	if err != nil {
		return nil, fmt.Errorf("bad uri %q: %w", uri, err)
	}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, destKey{}, d), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Host = d.HostHeader
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	// The body may take longer than c.http's timeout: ctx bounds it.
	hc := &http.Client{Transport: c.http.Transport, CheckRedirect: c.http.CheckRedirect}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return nil, &RemoteError{Status: resp.StatusCode, Body: data}
	}
	return resp, nil
}

type multipartBody struct {
	io.Reader
	closers []io.Closer
}

func (b *multipartBody) Close() error {
	var err error
	for _, c := range b.closers {
		if e := c.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// limitReader fails with ErrMediaTooLarge once more than left bytes come.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, ErrMediaTooLarge
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, ErrMediaTooLarge
	}
	return n, err
}

func (c *Client) readMultipart(ctx context.Context, resp *http.Response, maxBytes int64) (*Media, error) {
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, fmt.Errorf("answer is not multipart/mixed (%q)", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	meta, err := mr.NextRawPart()
	if err != nil {
		return nil, fmt.Errorf("metadata part: %w", err)
	}
	if t, _, _ := mime.ParseMediaType(meta.Header.Get("Content-Type")); t != "application/json" {
		return nil, fmt.Errorf("metadata part is %q, not application/json", meta.Header.Get("Content-Type"))
	}
	if n, err := io.Copy(io.Discard, io.LimitReader(meta, maxMediaMetadata+1)); err != nil || n > maxMediaMetadata {
		return nil, errors.New("bad metadata part")
	}
	part, err := mr.NextRawPart()
	if err != nil {
		return nil, fmt.Errorf("content part: %w", err)
	}
	if loc := part.Header.Get("Location"); loc != "" {
		resp.Body.Close()
		return c.followLocation(ctx, loc, maxBytes)
	}
	m := mediaOf(part.Header)
	m.Body = &multipartBody{Reader: &limitReader{r: part, left: maxBytes}, closers: []io.Closer{resp.Body}}
	return m, nil
}

func mediaOf(h interface{ Get(string) string }) *Media {
	m := &Media{ContentType: h.Get("Content-Type")}
	if _, params, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil {
		m.FileName = params["filename"] // mime decodes filename* into filename
	}
	return m
}

// followLocation fetches the content at a Location part: a plain,
// unauthenticated GET (http or https), dialled through the denied
// networks check like every federation connection.
func (c *Client) followLocation(ctx context.Context, loc string, maxBytes int64) (*Media, error) {
	u, err := url.Parse(loc)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("bad Location %q", loc)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.plainClient().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		return nil, &RemoteError{Server: u.Host, Status: resp.StatusCode}
	}
	return plainMedia(resp, maxBytes)
}

var plainOnce sync.Map // *Client → *http.Client

func (c *Client) plainClient() *http.Client {
	if v, ok := plainOnce.Load(c); ok {
		return v.(*http.Client)
	}
	hc := &http.Client{Transport: &http.Transport{ // no overall timeout: the caller's ctx bounds the body
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return c.dial(ctx, strings.Trim(host, "[]"), port)
		},
		TLSClientConfig:       &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
	}, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		if req.URL.Scheme != "https" && req.URL.Scheme != "http" {
			return fmt.Errorf("redirect to %s", req.URL.Redacted())
		}
		return nil
	}}
	v, _ := plainOnce.LoadOrStore(c, hc)
	return v.(*http.Client)
}
