package store

import (
	"context"
	"fmt"
)

// InsertRemoteMedia adds the row of a cached copy of remote media;
// ErrExists when it is already cached.
func (tx *Tx) InsertRemoteMedia(ctx context.Context, m Media, origin string, fetchedTS int64) error {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO media (`+mediaCols+`, origin, fetched_ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (media_id) DO NOTHING`,
		m.MediaID, m.UserID, m.CreatedTS, m.ExpiresTS, m.UploadedTS, m.ContentType, m.UploadName,
		m.Size, m.Blob, m.WrappedKey, m.KeyID, m.Unauthenticated, origin, fetchedTS)
	if err != nil {
		return fmt.Errorf("insert remote media: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// RemoteMediaBefore returns up to limit cached remote media rows fetched
// before beforeTS.
func (s *Store) RemoteMediaBefore(ctx context.Context, beforeTS int64, limit int) ([]Media, error) {
	return s.queryMedia(ctx, `SELECT `+mediaReadCols+` FROM media
		WHERE origin <> '' AND fetched_ts < $1 ORDER BY fetched_ts LIMIT $2`, beforeTS, limit)
}

// queryMedia runs a query returning media rows.
func (s *Store) queryMedia(ctx context.Context, query string, args ...any) ([]Media, error) {
	rows, err := s.reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list media: %w", err)
	}
	defer rows.Close()
	var out []Media
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

// DeleteRemoteMedia deletes a cached remote media row and its thumbnails
// and returns the thumbnails' blobs, for the caller to delete. It deletes
// nothing when the row is not a remote copy.
func (tx *Tx) DeleteRemoteMedia(ctx context.Context, mediaID string) ([]string, error) {
	return tx.deleteMediaWhere(ctx, mediaID, `origin <> ''`)
}

// DeleteUnreferencedMedia deletes a local media row that was referenced by
// events and no longer is, with its thumbnails, and returns the thumbnails'
// blobs; it deletes nothing when the row does not qualify (any more).
func (tx *Tx) DeleteUnreferencedMedia(ctx context.Context, mediaID string) ([]string, error) {
	return tx.deleteMediaWhere(ctx, mediaID, unreferencedLocal)
}

// unreferencedLocal selects local media that lost its last reference.
const unreferencedLocal = `origin = '' AND referenced = TRUE AND NOT EXISTS (SELECT 1 FROM media_refs r WHERE r.media_id = media.media_id)`

// deleteMediaWhere deletes a media row meeting cond (a fixed SQL condition
// on media, no placeholders) and its thumbnails.
func (tx *Tx) deleteMediaWhere(ctx context.Context, mediaID, cond string) ([]string, error) {
	var n int
	if err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM media WHERE media_id = $1 AND `+cond, mediaID).Scan(&n); err != nil {
		return nil, fmt.Errorf("find media: %w", err)
	}
	if n == 0 {
		return nil, nil
	}
	rows, err := tx.q.QueryContext(ctx, `SELECT blob FROM media_thumbnails WHERE media_id = $1 AND blob <> ''`, mediaID)
	if err != nil {
		return nil, fmt.Errorf("list thumbnails: %w", err)
	}
	var blobs []string
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return nil, err
		}
		blobs = append(blobs, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM media_thumbnails WHERE media_id = $1`, mediaID); err != nil {
		return nil, fmt.Errorf("delete thumbnails: %w", err)
	}
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM media WHERE media_id = $1 AND `+cond, mediaID); err != nil {
		return nil, fmt.Errorf("delete media: %w", err)
	}
	return blobs, nil
}

// AddMediaRefs records that an event names local media.
func (tx *Tx) AddMediaRefs(ctx context.Context, eventID string, mediaIDs []string) error {
	for _, m := range mediaIDs {
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO media_refs (media_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, m, eventID); err != nil {
			return fmt.Errorf("add media ref: %w", err)
		}
		if _, err := tx.q.ExecContext(ctx, `UPDATE media SET referenced = TRUE WHERE media_id = $1 AND referenced = FALSE`, m); err != nil {
			return fmt.Errorf("mark media referenced: %w", err)
		}
	}
	return nil
}

// DeleteMediaRefs forgets the media references of a (redacted) event.
func (tx *Tx) DeleteMediaRefs(ctx context.Context, eventID string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM media_refs WHERE event_id = $1`, eventID)
	return err
}

// UnreferencedMediaBefore returns up to limit local media rows uploaded
// before beforeTS that were referenced by events and no longer are, and are
// not a user's avatar (avatarPrefix is "mxc://<our server>/").
func (s *Store) UnreferencedMediaBefore(ctx context.Context, beforeTS int64, avatarPrefix string, limit int) ([]Media, error) {
	// The condition repeats unreferencedLocal, spelled out so that the
	// placeholders of this query read in order.
	return s.queryMedia(ctx, `SELECT `+mediaReadCols+` FROM media WHERE uploaded_ts > 0 AND uploaded_ts < $1
		AND origin = '' AND referenced = TRUE AND NOT EXISTS (SELECT 1 FROM media_refs r WHERE r.media_id = media.media_id)
		AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_url = $2 || media.media_id)
		ORDER BY uploaded_ts LIMIT $3`, beforeTS, avatarPrefix, limit)
}
