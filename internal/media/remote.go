package media

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// Remote media: the client download and thumbnail endpoints fetch media
// of other servers through a Fetcher (the federation client), once per
// media at a time, and keep it in the cache like local media: a media
// row (sealed blob, wrapped key) whose origin is the remote server and
// whose id is remoteKey(origin, mediaID). Thumbnails of remote media are
// generated here from the cached original, as for local media.

// RemoteFile is remote content being fetched; Body must be closed.
type RemoteFile struct {
	ContentType string
	FileName    string
	Body        io.ReadCloser
}

// A Fetcher downloads media held by origin. Its errors are matched with
// ErrRemoteNotFound and ErrRemoteTooLarge (also when reading Body).
type Fetcher func(ctx context.Context, origin, mediaID string, maxBytes int64) (*RemoteFile, error)

// Errors a Fetcher reports.
var (
	ErrRemoteNotFound = errors.New("media: remote media not found")
	ErrRemoteTooLarge = errors.New("media: remote media too large")
)

// remoteFetchTimeout bounds one fetch, which does not end when the
// client that started it goes away (others may be waiting for it).
const remoteFetchTimeout = 5 * time.Minute

// RemoteFetches counts the fetches of remote media started so far.
func (s *Service) RemoteFetches() int64 { return s.remoteFetches.Load() }

// remoteKey is the media_id of the cached copy of origin's mediaID. It
// has a dot, which local ids never have, and is a valid blob path segment.
func remoteKey(origin, mediaID string) string {
	h := sha256.Sum256([]byte(origin))
	return "r." + hex.EncodeToString(h[:8]) + "." + mediaID
}

func errRemote(status int, code, msg string) *errcode.Error {
	return &errcode.Error{Code: code, Status: status, Message: msg}
}

// getRemote returns the cached copy of remote media, fetching it first
// when it is not cached.
func (s *Service) getRemote(ctx context.Context, origin, mediaID string) (*Content, error) {
	if s.fetch == nil || id.ValidServerName(origin) != nil || !mediaIDRe.MatchString(mediaID) {
		return nil, errcode.NotFound("media not found")
	}
	key := remoteKey(origin, mediaID)
	if c, err := s.cachedRemote(ctx, key); c != nil || err != nil {
		return c, err
	}
	ch := s.remote.DoChan(key, func() (any, error) {
		// Shared by every waiter: not ended by the first one going away.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), remoteFetchTimeout)
		defer cancel()
		if c, err := s.cachedRemote(fctx, key); c != nil || err != nil {
			return c, err
		}
		return s.fetchRemote(fctx, origin, mediaID, key)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Content), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Service) cachedRemote(ctx context.Context, key string) (*Content, error) {
	row, err := s.st.GetMedia(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if row.Quarantined {
		return nil, errcode.NotFound("media not found")
	}
	return s.contentOf(row)
}

func (s *Service) contentOf(row *store.Media) (*Content, error) {
	key, err := s.keys.unwrap(row.WrappedKey, row.KeyID, row.Blob)
	if err != nil {
		s.log.Error("media key failed authentication", "media_id", row.MediaID, "err", err)
		return nil, errIntegrity()
	}
	return &Content{MediaID: row.MediaID, ContentType: row.ContentType, FileName: row.UploadName, Size: row.Size,
		ETag: `"` + row.MediaID + `"`, Unauthenticated: row.Unauthenticated, blob: row.Blob, key: key}, nil
}

func (s *Service) fetchRemote(ctx context.Context, origin, mediaID, key string) (*Content, error) {
	s.remoteFetches.Add(1)
	max := s.cfg.MaxUploadBytes
	f, err := s.fetch(ctx, origin, mediaID, max)
	if err != nil {
		return nil, s.remoteError(origin, mediaID, err)
	}
	defer f.Body.Close()
	m := store.Media{MediaID: key, ContentType: cleanContentType(f.ContentType), UploadName: cleanFileName(f.FileName),
		Blob: "remote/" + key[2:4] + "/" + key + "." + randSuffix()}
	if err := s.storeContent(ctx, &m, &capReader{r: f.Body, left: max, err: ErrRemoteTooLarge}); err != nil {
		return nil, s.remoteError(origin, mediaID, err)
	}
	m.CreatedTS = m.UploadedTS
	err = s.st.InTx(ctx, func(tx *store.Tx) error { return tx.InsertRemoteMedia(ctx, m, origin, m.UploadedTS) })
	if errors.Is(err, store.ErrExists) { // another process cached it first
		_ = s.blobs.Delete(context.WithoutCancel(ctx), m.Blob)
		c, err := s.cachedRemote(ctx, key)
		if err == nil && c == nil {
			err = errors.New("cached remote media vanished")
		}
		return c, err
	}
	if err != nil {
		_ = s.blobs.Delete(context.WithoutCancel(ctx), m.Blob)
		return nil, err
	}
	return s.contentOf(&m)
}

func (s *Service) remoteError(origin, mediaID string, err error) error {
	switch {
	case errors.Is(err, ErrRemoteNotFound):
		return errcode.NotFound("media not found")
	case errors.Is(err, ErrRemoteTooLarge):
		return errRemote(http.StatusBadGateway, "M_TOO_LARGE", fmt.Sprintf("remote content is larger than the limit of %d bytes", s.cfg.MaxUploadBytes))
	}
	s.log.Warn("remote media fetch failed", "origin", origin, "media_id", mediaID, "err", err)
	// The spec keeps 502 for M_TOO_LARGE; content that cannot be had now
	// but may be later is its 504 M_NOT_YET_UPLOADED, which clients retry.
	return errRemote(http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED", "could not fetch the media from "+origin+" for now")
}

// PurgeRemote deletes cached remote media (rows, thumbnails and blobs)
// fetched before cutoff, in batches, calling progress after each batch
// with the running total.
func (s *Service) PurgeRemote(ctx context.Context, cutoff time.Time, progress func(total int64)) (int64, error) {
	return s.purge(ctx, progress,
		func(limit int) ([]store.Media, error) { return s.st.RemoteMediaBefore(ctx, cutoff.UnixMilli(), limit) },
		func(tx *store.Tx, mediaID string) ([]string, error) { return tx.DeleteRemoteMedia(ctx, mediaID) })
}

// PurgeUnreferenced deletes local media uploaded before cutoff that events
// referenced and no longer reference (every referencing event was
// redacted) and that is no user's avatar. Media never seen referenced is
// kept: references inside encrypted events are invisible to the server.
func (s *Service) PurgeUnreferenced(ctx context.Context, cutoff time.Time, progress func(total int64)) (int64, error) {
	prefix := "mxc://" + s.serverName + "/"
	return s.purge(ctx, progress,
		func(limit int) ([]store.Media, error) {
			return s.st.UnreferencedMediaBefore(ctx, cutoff.UnixMilli(), prefix, limit)
		},
		func(tx *store.Tx, mediaID string) ([]string, error) { return tx.DeleteUnreferencedMedia(ctx, mediaID) })
}

// purge deletes, batch by batch, the media rows list returns: each row
// (with its thumbnails) in a transaction that re-checks it still qualifies,
// then its blobs.
func (s *Service) purge(ctx context.Context, progress func(total int64),
	list func(limit int) ([]store.Media, error),
	del func(tx *store.Tx, mediaID string) ([]string, error)) (int64, error) {
	const batch = 100
	var total int64
	for {
		rows, err := list(batch)
		if err != nil {
			return total, err
		}
		for _, row := range rows {
			var thumbs []string
			err := s.st.InTx(ctx, func(tx *store.Tx) error {
				var err error
				thumbs, err = del(tx, row.MediaID)
				return err
			})
			if err != nil {
				return total, err
			}
			for _, b := range append(thumbs, row.Blob) {
				if err := s.blobs.Delete(ctx, b); err != nil && !errors.Is(err, ErrBlobNotFound) {
					s.log.Warn("purge: cannot delete blob", "blob", b, "err", err)
				}
			}
			total++
		}
		if progress != nil {
			progress(total)
		}
		if len(rows) < batch {
			return total, nil
		}
	}
}
