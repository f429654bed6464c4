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
	rows, err := s.reader().QueryContext(ctx, `SELECT `+mediaCols+` FROM media
		WHERE origin <> '' AND fetched_ts < $1 ORDER BY fetched_ts LIMIT $2`, beforeTS, limit)
	if err != nil {
		return nil, fmt.Errorf("list remote media: %w", err)
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
	var n int
	if err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM media WHERE media_id = $1 AND origin <> ''`, mediaID).Scan(&n); err != nil {
		return nil, fmt.Errorf("find remote media: %w", err)
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
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM media WHERE media_id = $1 AND origin <> ''`, mediaID); err != nil {
		return nil, fmt.Errorf("delete remote media: %w", err)
	}
	return blobs, nil
}
