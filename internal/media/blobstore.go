package media

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// BlobStore keeps opaque blobs by name. The media service stores only
// sealed (encrypted and authenticated) bytes in it, so an implementation
// needs no trust: it may lose or damage data, never disclose it.
//
// Names are slash-separated segments of [A-Za-z0-9_.-] (no "." or ".."
// segment). Implementations are safe for concurrent use.
type BlobStore interface {
	// Put stores everything r yields under name, replacing nothing that a
	// reader can see half-written: the blob appears whole or not at all.
	// It returns the number of bytes stored.
	Put(ctx context.Context, name string, r io.Reader) (int64, error)
	// Get returns length bytes from offset off (length < 0: to the end).
	// A range past the end is cut short. ErrBlobNotFound when missing.
	Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
	// Delete removes a blob; a missing blob is not an error.
	Delete(ctx context.Context, name string) error
	// Stat returns a blob's size, or ErrBlobNotFound.
	Stat(ctx context.Context, name string) (int64, error)
}

// ErrBlobNotFound is returned for a blob that does not exist.
var ErrBlobNotFound = errors.New("media: blob not found")

var blobName = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)

func checkName(name string) error {
	if !blobName.MatchString(name) {
		return fmt.Errorf("media: invalid blob name %q", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "." || seg == ".." || strings.HasPrefix(seg, ".tmp-") {
			return fmt.Errorf("media: invalid blob name %q", name)
		}
	}
	return nil
}

// FSBlobStore keeps blobs as files under a root directory.
type FSBlobStore struct {
	root string
}

// NewFSBlobStore returns a store rooted at dir, which it creates.
func NewFSBlobStore(dir string) (*FSBlobStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create media dir: %w", err)
	}
	return &FSBlobStore{root: dir}, nil
}

func (s *FSBlobStore) path(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(name)), nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Put writes to a temporary file in the target directory, syncs it and
// renames it into place.
func (s *FSBlobStore) Put(ctx context.Context, name string, r io.Reader) (int64, error) {
	p, err := s.path(name)
	if err != nil {
		return 0, err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("create blob dir: %w", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create blob: %w", err)
	}
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return n, err
	}
	return n, nil
}

// Get opens the file and limits it to the range.
func (s *FSBlobStore) Get(_ context.Context, name string, off, length int64) (io.ReadCloser, error) {
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrBlobNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	if off < 0 {
		f.Close()
		return nil, fmt.Errorf("media: negative offset")
	}
	if length < 0 {
		length = 1<<63 - 1 - off
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, off, length), f}, nil
}

// Delete removes the file.
func (s *FSBlobStore) Delete(_ context.Context, name string) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete blob: %w", err)
	}
	return nil
}

// Stat returns the file's size.
func (s *FSBlobStore) Stat(_ context.Context, name string) (int64, error) {
	p, err := s.path(name)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrBlobNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob: %w", err)
	}
	return fi.Size(), nil
}
