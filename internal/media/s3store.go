package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"luxchat/internal/config"
)

// OpenBlobStore returns the blob store cfg.Media.Store names: the
// filesystem under data_dir/media, or an S3 bucket.
func OpenBlobStore(ctx context.Context, cfg *config.Config) (BlobStore, error) {
	if cfg.Media.Store == config.MediaStoreS3 {
		c := cfg.Media.S3
		return NewS3BlobStore(ctx, S3Config{Endpoint: c.Endpoint, Bucket: c.Bucket, AccessKey: c.AccessKey,
			SecretKey: c.SecretKey, Region: c.Region, UseTLS: c.UseTLS})
	}
	return NewFSBlobStore(filepath.Join(cfg.DataDir, "media"))
}

// S3Config locates an S3-compatible bucket.
type S3Config struct {
	Endpoint  string // host:port, no scheme
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string
	UseTLS    bool
}

// s3PartSize is the size of one part of a streamed (unknown length)
// upload. minio-go buffers one part in memory per upload, so this bounds
// an upload's memory; S3 allows at most 10,000 parts, so 16 MiB parts allow
// blobs up to 156 GiB.
const s3PartSize = 16 << 20

// S3BlobStore keeps blobs as objects in an S3-compatible bucket. Blob
// names are object keys. Safe for concurrent use (the minio client is).
//
// Put never leaves a partial object visible: a single PUT or a multipart
// upload either completes or is aborted, and S3 shows an object only once
// it is complete.
type S3BlobStore struct {
	core   minio.Core
	bucket string
}

// NewS3BlobStore connects to the bucket described by c and checks that it
// exists.
func NewS3BlobStore(ctx context.Context, c S3Config) (*S3BlobStore, error) {
	cl, err := minio.New(c.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(c.AccessKey, c.SecretKey, ""),
		Secure:       c.UseTLS,
		Region:       c.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	ok, err := cl.BucketExists(ctx, c.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3 bucket %q: %w", c.Bucket, err)
	}
	if !ok {
		return nil, fmt.Errorf("s3 bucket %q does not exist", c.Bucket)
	}
	return &S3BlobStore{core: minio.Core{Client: cl}, bucket: c.Bucket}, nil
}

// Put streams r into the object: one PUT when it fits in a part, a
// multipart upload otherwise (aborted on error).
func (s *S3BlobStore) Put(ctx context.Context, name string, r io.Reader) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	cr := &countReader{r: ctxReader{ctx, r}}
	_, err := s.core.Client.PutObject(ctx, s.bucket, name, cr, -1, minio.PutObjectOptions{
		PartSize:    s3PartSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		// A reader's own error is reported as is, not wrapped in
		// minio's, so that callers can tell it apart.
		if cr.err != nil && !errors.Is(cr.err, io.EOF) {
			return cr.n, cr.err
		}
		return cr.n, fmt.Errorf("s3 put: %w", err)
	}
	return cr.n, nil
}

// countReader counts bytes and remembers the first error of r.
type countReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// Get asks for the range with one GET request.
func (s *S3BlobStore) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("media: negative offset")
	}
	if length == 0 {
		if _, err := s.Stat(ctx, name); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		if err := opts.SetRange(off, off+length-1); err != nil {
			return nil, fmt.Errorf("s3 range: %w", err)
		}
	case off > 0:
		if err := opts.SetRange(off, 0); err != nil {
			return nil, fmt.Errorf("s3 range: %w", err)
		}
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, name, opts)
	if err != nil {
		if notFound(err) {
			return nil, ErrBlobNotFound
		}
		// The range starts at or past the end: the object exists, the
		// answer is empty.
		if minio.ToErrorResponse(err).Code == "InvalidRange" || minio.ToErrorResponse(err).StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, fmt.Errorf("s3 get: %w", err)
	}
	return rc, nil
}

// Delete removes the object; S3 does not complain about a missing one.
func (s *S3BlobStore) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := s.core.Client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
		return fmt.Errorf("s3 delete: %w", err)
	}
	return nil
}

// Stat returns the object's size.
func (s *S3BlobStore) Stat(ctx context.Context, name string) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	info, err := s.core.Client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		if notFound(err) {
			return 0, ErrBlobNotFound
		}
		return 0, fmt.Errorf("s3 stat: %w", err)
	}
	return info.Size, nil
}

func notFound(err error) bool {
	r := minio.ToErrorResponse(err)
	if r.Code == "NoSuchBucket" {
		return false // a missing bucket is a configuration error, not a missing blob
	}
	return r.StatusCode == http.StatusNotFound || r.Code == "NoSuchKey" || strings.HasSuffix(r.Code, "NotFound")
}
