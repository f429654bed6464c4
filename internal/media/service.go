package media

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"luxchat/internal/config"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Service is the media repository of one server. It is safe for concurrent
// use: uploads and downloads share nothing but the store; thumbnail
// generation is bounded by a semaphore and deduplicated per thumbnail.
type Service struct {
	cfg        config.Media
	serverName string
	st         *store.Store
	blobs      BlobStore
	keys       *Keyring
	log        *slog.Logger
	now        func() time.Time

	thumbSem chan struct{}
	thumbs   singleflight.Group

	mu      sync.Mutex
	waiters map[string]chan struct{} // media id → closed when its content arrives

	fetch         Fetcher            // nil: remote media is not found
	remote        singleflight.Group // one fetch per remote media at a time
	remoteFetches atomic.Int64
}

// New returns the media service; fetch reaches other servers' media (nil:
// remote media is not found).
func New(cfg *config.Config, st *store.Store, blobs BlobStore, keys *Keyring, fetch Fetcher, log *slog.Logger) *Service {
	return &Service{
		cfg: cfg.Media, serverName: cfg.ServerName, st: st, blobs: blobs, keys: keys, fetch: fetch, log: log, now: time.Now,
		thumbSem: make(chan struct{}, 2), waiters: map[string]chan struct{}{},
	}
}

// Keyring returns the master keys.
func (s *Service) Keyring() *Keyring { return s.keys }

// MaxUploadBytes is the largest accepted upload.
func (s *Service) MaxUploadBytes() int64 { return s.cfg.MaxUploadBytes }

var mediaIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func newMediaID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

func randSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func shard(id string) string {
	for len(id) < 4 {
		id += "_"
	}
	return id[0:2] + "/" + id[2:4]
}

// Errors of the content repository.
func errTooLarge(limit int64) *errcode.Error {
	return errcode.TooLarge("file is larger than the limit of %d bytes", limit)
}

var errQuota = errcode.Forbidden("upload quota exceeded")

func errNotYetUploaded() *errcode.Error {
	return &errcode.Error{Code: "M_NOT_YET_UPLOADED", Status: http.StatusGatewayTimeout, Message: "content has not yet been uploaded"}
}

func errCannotOverwrite() *errcode.Error {
	return &errcode.Error{Code: "M_CANNOT_OVERWRITE_MEDIA", Status: http.StatusConflict, Message: "media already uploaded"}
}

// errIntegrity answers for a blob that failed authentication. 502 is a
// status the spec lists for the download endpoints, and it says what
// happened: the server got an invalid answer from its own storage, not a
// bug (500) nor a missing file (404).
func errIntegrity() *errcode.Error {
	return &errcode.Error{Code: "M_UNKNOWN", Status: http.StatusBadGateway, Message: "the stored media failed its integrity check and will not be served"}
}

// Upload is what a client sends with its bytes.
type Upload struct {
	UserID      string
	ContentType string // as sent; "" becomes application/octet-stream
	FileName    string
	// ContentLength is the declared size, -1 when unknown.
	ContentLength int64
}

// cleanContentType keeps a parseable media type, as the client sent it.
func cleanContentType(ct string) string {
	ct = strings.TrimSpace(ct)
	if ct == "" || len(ct) > 255 {
		return "application/octet-stream"
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		return "application/octet-stream"
	}
	return ct
}

func cleanFileName(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, name)
	if len(name) > 255 {
		name = name[:255]
		for len(name) > 0 && !utfStart(name[len(name)-1]) {
			name = name[:len(name)-1]
		}
		if len(name) > 0 {
			name = name[:len(name)-1]
		}
	}
	return name
}

func utfStart(b byte) bool { return b < 0x80 || b >= 0xC0 }

// capReader fails with err once more than left bytes have been read, and
// keeps failing.
type capReader struct {
	r    io.Reader
	left int64
	err  error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, c.err
	}
	return n, err
}

// limits checks the declared length and returns the reader that enforces
// the size limit and the quota while streaming.
func (s *Service) limits(ctx context.Context, u Upload, body io.Reader) (io.Reader, error) {
	max := s.cfg.MaxUploadBytes
	if u.ContentLength > max {
		return nil, errTooLarge(max)
	}
	r := io.Reader(&capReader{r: body, left: max, err: errTooLarge(max)})
	if s.cfg.QuotaBytes > 0 {
		used, err := s.st.MediaUsage(ctx, u.UserID)
		if err != nil {
			return nil, fmt.Errorf("media usage: %w", err)
		}
		left := s.cfg.QuotaBytes - used
		if left < 0 || u.ContentLength > left {
			return nil, errQuota
		}
		r = &capReader{r: r, left: left, err: errQuota}
	}
	return r, nil
}

// putSealed seals r into a new blob under a fresh file key.
func (s *Service) putSealed(ctx context.Context, name string, r io.Reader) (int64, []byte, error) {
	key := newFileKey()
	pr, pw := io.Pipe()
	var size int64
	done := make(chan error, 1)
	go func() {
		n, err := seal(pw, r, key)
		size = n
		pw.CloseWithError(err)
		done <- err
	}()
	_, err := s.blobs.Put(ctx, name, pr)
	pr.CloseWithError(io.ErrClosedPipe) // unblocks the sealer if Put gave up
	serr := <-done
	if serr != nil && !errors.Is(serr, io.ErrClosedPipe) {
		err = serr // the body's error (too large, quota, client gone) is the cause
	}
	if err != nil {
		_ = s.blobs.Delete(context.WithoutCancel(ctx), name)
		return 0, nil, err
	}
	return size, key, nil
}

// Upload stores content and returns its mxc:// URI.
func (s *Service) Upload(ctx context.Context, u Upload, body io.Reader) (string, error) {
	r, err := s.limits(ctx, u, body)
	if err != nil {
		return "", err
	}
	id := newMediaID()
	m := store.Media{MediaID: id, UserID: u.UserID, ContentType: cleanContentType(u.ContentType), UploadName: cleanFileName(u.FileName),
		Blob: "local/" + shard(id) + "/" + id}
	if err := s.storeContent(ctx, &m, r); err != nil {
		return "", err
	}
	err = s.st.InTx(ctx, func(tx *store.Tx) error {
		if err := s.checkQuota(ctx, tx, u.UserID, m.Size); err != nil {
			return err
		}
		m.CreatedTS = m.UploadedTS
		return tx.InsertMedia(ctx, m)
	})
	if err != nil {
		_ = s.blobs.Delete(context.WithoutCancel(ctx), m.Blob)
		return "", err
	}
	return "mxc://" + s.serverName + "/" + id, nil
}

// storeContent seals the body into m.Blob and fills in the size and the
// wrapped key. The key is wrapped last, just before the row is written, so
// that a master key rotation running meanwhile is not missed.
func (s *Service) storeContent(ctx context.Context, m *store.Media, r io.Reader) error {
	size, key, err := s.putSealed(ctx, m.Blob, r)
	if err != nil {
		return fmt.Errorf("store media: %w", err)
	}
	wrapped, keyID, err := s.keys.wrap(key, m.Blob)
	if err != nil {
		_ = s.blobs.Delete(context.WithoutCancel(ctx), m.Blob)
		return err
	}
	m.Size, m.WrappedKey, m.KeyID = size, wrapped, keyID
	m.UploadedTS = s.now().UnixMilli()
	m.Unauthenticated = s.cfg.LegacyUnauthenticated == config.MediaLegacyOpen
	return nil
}

func (s *Service) checkQuota(ctx context.Context, tx *store.Tx, userID string, size int64) error {
	if s.cfg.QuotaBytes <= 0 {
		return nil
	}
	used, err := tx.MediaUsage(ctx, userID)
	if err != nil {
		return err
	}
	if used+size > s.cfg.QuotaBytes {
		return errQuota
	}
	return nil
}

// Create reserves an mxc:// URI for content uploaded later by the same
// user, and returns it with its expiry (ms since the epoch).
func (s *Service) Create(ctx context.Context, userID string) (string, int64, error) {
	now := s.now()
	n, err := s.st.PendingMediaCount(ctx, userID, now.UnixMilli())
	if err != nil {
		return "", 0, err
	}
	if n >= s.cfg.MaxPendingUploads {
		return "", 0, errcode.LimitExceeded(60_000)
	}
	id := newMediaID()
	expires := now.Add(s.cfg.UnusedExpiry.Duration).UnixMilli()
	err = s.st.InTx(ctx, func(tx *store.Tx) error {
		return tx.InsertMedia(ctx, store.Media{MediaID: id, UserID: userID, CreatedTS: now.UnixMilli(), ExpiresTS: expires})
	})
	if err != nil {
		return "", 0, err
	}
	return "mxc://" + s.serverName + "/" + id, expires, nil
}

// UploadTo fills a reservation made by Create.
func (s *Service) UploadTo(ctx context.Context, u Upload, serverName, mediaID string, body io.Reader) error {
	if serverName != s.serverName || !mediaIDRe.MatchString(mediaID) {
		return errcode.NotFound("unknown media id")
	}
	row, err := s.st.GetMedia(ctx, mediaID)
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("unknown media id")
	}
	if err != nil {
		return err
	}
	switch {
	case row.UserID != u.UserID:
		return errcode.Forbidden("this media id was created by another user")
	case row.UploadedTS != 0:
		return errCannotOverwrite()
	case row.ExpiresTS <= s.now().UnixMilli():
		return errcode.NotFound("this media id has expired")
	}
	r, err := s.limits(ctx, u, body)
	if err != nil {
		return err
	}
	m := store.Media{MediaID: mediaID, UserID: u.UserID, ContentType: cleanContentType(u.ContentType), UploadName: cleanFileName(u.FileName),
		Blob: "local/" + shard(mediaID) + "/" + mediaID + "." + randSuffix()}
	if err := s.storeContent(ctx, &m, r); err != nil {
		return err
	}
	err = s.st.InTx(ctx, func(tx *store.Tx) error {
		if err := s.checkQuota(ctx, tx, u.UserID, m.Size); err != nil {
			return err
		}
		ok, err := tx.CompleteMedia(ctx, m)
		if err != nil {
			return err
		}
		if !ok {
			return errCannotOverwrite()
		}
		return nil
	})
	if err != nil {
		_ = s.blobs.Delete(context.WithoutCancel(ctx), m.Blob)
		return err
	}
	s.mu.Lock()
	if ch, ok := s.waiters[mediaID]; ok {
		close(ch)
		delete(s.waiters, mediaID)
	}
	s.mu.Unlock()
	return nil
}

// Content is a stored file (an original or a thumbnail) ready to be read.
type Content struct {
	MediaID     string
	ContentType string
	FileName    string
	Size        int64
	// ETag is a strong validator: content under an id never changes.
	ETag string
	// Unauthenticated: may be served on the deprecated endpoints.
	Unauthenticated bool

	blob string
	key  []byte
}

// MaxWait bounds timeout_ms for content not yet uploaded.
const MaxWait = 60 * time.Second

// Get returns content, waiting up to wait for a local reservation to be
// filled. Remote media is served from the cache, fetched first when it is
// not there (see remote.go).
func (s *Service) Get(ctx context.Context, serverName, mediaID string, wait time.Duration) (*Content, error) {
	if serverName != s.serverName {
		return s.getRemote(ctx, serverName, mediaID)
	}
	return s.GetLocal(ctx, mediaID, wait)
}

// GetLocal returns media uploaded to this server (never a cached remote
// copy), waiting up to wait for a reservation to be filled.
func (s *Service) GetLocal(ctx context.Context, mediaID string, wait time.Duration) (*Content, error) {
	if !mediaIDRe.MatchString(mediaID) {
		return nil, errcode.NotFound("media not found")
	}
	wait = min(max(wait, 0), MaxWait)
	deadline := s.now().Add(wait)
	for {
		row, err := s.st.GetMedia(ctx, mediaID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errcode.NotFound("media not found")
		}
		if err != nil {
			return nil, err
		}
		if row.Quarantined {
			return nil, errcode.NotFound("media not found")
		}
		if row.UploadedTS != 0 {
			return s.contentOf(row)
		}
		now := s.now()
		if row.ExpiresTS <= now.UnixMilli() {
			return nil, errcode.NotFound("media not found")
		}
		left := deadline.Sub(now)
		if left <= 0 {
			return nil, errNotYetUploaded()
		}
		s.mu.Lock()
		ch, ok := s.waiters[mediaID]
		if !ok {
			ch = make(chan struct{})
			s.waiters[mediaID] = ch
		}
		s.mu.Unlock()
		// Another process (PostgreSQL deployments) cannot close ch: poll too.
		t := time.NewTimer(min(left, time.Second))
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

// Open returns plaintext [off, off+n) of c; the range must lie within
// c.Size. Each chunk is authenticated before any of it is returned: a
// damaged blob yields ErrTampered from Open (first chunk) or from Read.
func (s *Service) Open(ctx context.Context, c *Content, off, n int64) (io.ReadCloser, error) {
	rc, err := openSealed(ctx, s.blobs, c.blob, c.key, c.Size, off, n)
	if errors.Is(err, ErrBlobNotFound) {
		s.log.Error("media blob missing", "media_id", c.MediaID, "blob", c.blob)
		return nil, errIntegrity()
	}
	if errors.Is(err, ErrTampered) {
		s.log.Error("media blob failed authentication", "media_id", c.MediaID, "blob", c.blob)
		return nil, errIntegrity()
	}
	return rc, err
}

// IntegrityError is the client error for a blob found damaged while it was
// being read.
func IntegrityError() *errcode.Error { return errIntegrity() }

// openSealed opens a range of a sealed blob and decrypts its first chunk
// before returning, so that a damaged blob is reported before any header
// is sent.
func openSealed(ctx context.Context, bs BlobStore, name string, key []byte, size, off, n int64) (io.ReadCloser, error) {
	if off < 0 || n < 0 || off+n > size {
		return nil, fmt.Errorf("media: range %d+%d outside %d bytes", off, n, size)
	}
	if n == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	start, length, _ := sealedRange(off, n)
	var header [headerSize]byte
	var rc io.ReadCloser
	var err error
	if start == headerSize {
		rc, err = bs.Get(ctx, name, 0, headerSize+length)
		if err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(rc, header[:]); err != nil {
			rc.Close()
			return nil, ErrTampered
		}
	} else {
		hrc, err := bs.Get(ctx, name, 0, headerSize)
		if err != nil {
			return nil, err
		}
		_, err = io.ReadFull(hrc, header[:])
		hrc.Close()
		if err != nil {
			return nil, ErrTampered
		}
		if rc, err = bs.Get(ctx, name, start, length); err != nil {
			return nil, err
		}
	}
	o, err := newOpener(rc, key, header[:], size, off, n)
	if err != nil {
		rc.Close()
		return nil, err
	}
	sr := &sealedReader{o: o, c: rc}
	if err := o.next(); err != nil {
		sr.Close()
		return nil, err
	}
	return sr, nil
}

type sealedReader struct {
	o *opener
	c io.Closer
}

func (r *sealedReader) Read(p []byte) (int, error) { return r.o.Read(p) }

func (r *sealedReader) Close() error {
	r.o.release()
	return r.c.Close()
}

// readAll reads a whole sealed blob into memory (thumbnail sources).
func (s *Service) readAll(ctx context.Context, c *Content) ([]byte, error) {
	rc, err := s.Open(ctx, c, 0, c.Size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := make([]byte, c.Size)
	if _, err := io.ReadFull(rc, buf); err != nil {
		if errors.Is(err, ErrTampered) {
			s.log.Error("media blob failed authentication", "media_id", c.MediaID, "blob", c.blob)
			return nil, errIntegrity()
		}
		return nil, err
	}
	return buf, nil
}

// PurgeReservations deletes reservations that expired before cutoff, in
// batches, calling progress after each batch with the running total.
func (s *Service) PurgeReservations(ctx context.Context, cutoff time.Time, progress func(total int64)) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.st.InTx(ctx, func(tx *store.Tx) error {
			var err error
			n, err = tx.DeleteExpiredReservations(ctx, cutoff.UnixMilli(), 1000)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if progress != nil {
			progress(total)
		}
		if n < 1000 {
			return total, nil
		}
	}
}
