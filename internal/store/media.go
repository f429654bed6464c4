package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Media is a media row. UploadedTS is 0 while the row is a reservation
// (POST /_matrix/media/v1/create) waiting for its content.
type Media struct {
	MediaID         string
	UserID          string
	CreatedTS       int64
	ExpiresTS       int64
	UploadedTS      int64
	ContentType     string
	UploadName      string
	Size            int64
	Blob            string
	WrappedKey      string
	KeyID           string
	Unauthenticated bool
	// Quarantined: an administrator quarantined it (read only: see
	// SetMediaQuarantined).
	Quarantined bool
}

// mediaReadCols are mediaCols and whether the media is quarantined, for
// reads (scanMedia).
const mediaReadCols = mediaCols + `, quarantined_by IS NOT NULL`

const mediaCols = `media_id, user_id, created_ts, expires_ts, uploaded_ts, content_type, upload_name, size, blob, wrapped_key, key_id, unauthenticated`

func scanMedia(row interface{ Scan(...any) error }) (*Media, error) {
	var m Media
	err := row.Scan(&m.MediaID, &m.UserID, &m.CreatedTS, &m.ExpiresTS, &m.UploadedTS, &m.ContentType, &m.UploadName,
		&m.Size, &m.Blob, &m.WrappedKey, &m.KeyID, &m.Unauthenticated, &m.Quarantined)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("scan media: %w", err)
	}
	return &m, nil
}

// InsertMedia adds a media row (uploaded or a reservation); ErrExists when
// the id is taken.
func (tx *Tx) InsertMedia(ctx context.Context, m Media) error {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO media (`+mediaCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (media_id) DO NOTHING`,
		m.MediaID, m.UserID, m.CreatedTS, m.ExpiresTS, m.UploadedTS, m.ContentType, m.UploadName,
		m.Size, m.Blob, m.WrappedKey, m.KeyID, m.Unauthenticated)
	if err != nil {
		return fmt.Errorf("insert media: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// CompleteMedia fills in the content of a reservation. It returns false
// when the row is not a reservation of userID any more (already uploaded,
// or gone).
func (tx *Tx) CompleteMedia(ctx context.Context, m Media) (bool, error) {
	res, err := tx.q.ExecContext(ctx, `UPDATE media SET uploaded_ts = $1, content_type = $2, upload_name = $3, size = $4,
		blob = $5, wrapped_key = $6, key_id = $7, unauthenticated = $8, expires_ts = 0
		WHERE media_id = $9 AND user_id = $10 AND uploaded_ts = 0`,
		m.UploadedTS, m.ContentType, m.UploadName, m.Size, m.Blob, m.WrappedKey, m.KeyID, m.Unauthenticated, m.MediaID, m.UserID)
	if err != nil {
		return false, fmt.Errorf("complete media: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// MediaUsage returns the bytes of media a user has uploaded.
func (tx *Tx) MediaUsage(ctx context.Context, userID string) (int64, error) {
	var n int64
	err := tx.q.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM media WHERE user_id = $1`, userID).Scan(&n)
	return n, err
}

// MediaUsage returns the bytes of media a user has uploaded.
func (s *Store) MediaUsage(ctx context.Context, userID string) (int64, error) {
	var n int64
	err := s.reader().QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM media WHERE user_id = $1`, userID).Scan(&n)
	return n, err
}

// PendingMediaCount counts a user's reservations that have not expired at
// nowTS.
func (s *Store) PendingMediaCount(ctx context.Context, userID string, nowTS int64) (int, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM media WHERE user_id = $1 AND uploaded_ts = 0 AND expires_ts > $2`,
		userID, nowTS).Scan(&n)
	return n, err
}

// GetMedia returns a media row or ErrNotFound.
func (s *Store) GetMedia(ctx context.Context, mediaID string) (*Media, error) {
	return scanMedia(s.reader().QueryRowContext(ctx, `SELECT `+mediaReadCols+` FROM media WHERE media_id = $1`, mediaID))
}

// DeleteExpiredReservations deletes reservations that expired before
// beforeTS, at most limit of them, and returns how many it deleted.
func (tx *Tx) DeleteExpiredReservations(ctx context.Context, beforeTS int64, limit int) (int64, error) {
	res, err := tx.q.ExecContext(ctx, `DELETE FROM media WHERE media_id IN (
		SELECT media_id FROM media WHERE uploaded_ts = 0 AND expires_ts < $1 LIMIT $2)`, beforeTS, limit)
	if err != nil {
		return 0, fmt.Errorf("delete reservations: %w", err)
	}
	return res.RowsAffected()
}

// Thumbnail is a media_thumbnails row.
type Thumbnail struct {
	MediaID     string
	Width       int
	Height      int
	Method      string
	Animated    bool
	ContentType string
	Size        int64
	Blob        string
	WrappedKey  string
	KeyID       string
	CreatedTS   int64
}

const thumbCols = `media_id, width, height, method, animated, content_type, size, blob, wrapped_key, key_id, created_ts`

// GetThumbnail returns a cached thumbnail or ErrNotFound.
func (s *Store) GetThumbnail(ctx context.Context, mediaID string, width, height int, method string, animated bool) (*Thumbnail, error) {
	var t Thumbnail
	err := s.reader().QueryRowContext(ctx, `SELECT `+thumbCols+` FROM media_thumbnails
		WHERE media_id = $1 AND width = $2 AND height = $3 AND method = $4 AND animated = $5`,
		mediaID, width, height, method, animated).Scan(&t.MediaID, &t.Width, &t.Height, &t.Method, &t.Animated,
		&t.ContentType, &t.Size, &t.Blob, &t.WrappedKey, &t.KeyID, &t.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get thumbnail: %w", err)
	}
	return &t, nil
}

// InsertThumbnail caches a thumbnail; ErrExists when one is already cached
// for the same media, size and method.
func (tx *Tx) InsertThumbnail(ctx context.Context, t Thumbnail) error {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO media_thumbnails (`+thumbCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (media_id, width, height, method, animated) DO NOTHING`,
		t.MediaID, t.Width, t.Height, t.Method, t.Animated, t.ContentType, t.Size, t.Blob, t.WrappedKey, t.KeyID, t.CreatedTS)
	if err != nil {
		return fmt.Errorf("insert thumbnail: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// WrappedKey is one wrapped file key, in media (Thumb false) or in
// media_thumbnails (Thumb true), identified by its blob name.
type WrappedKey struct {
	Thumb      bool
	Blob       string
	WrappedKey string
	KeyID      string
}

// WrappedKeysNotUnder returns up to limit wrapped file keys whose master
// key is not keyID, media rows first.
func (s *Store) WrappedKeysNotUnder(ctx context.Context, keyID string, limit int) ([]WrappedKey, error) {
	var out []WrappedKey
	for _, q := range []struct {
		thumb bool
		sql   string
	}{
		{false, `SELECT blob, wrapped_key, key_id FROM media WHERE key_id <> $1 AND wrapped_key <> '' LIMIT $2`},
		{true, `SELECT blob, wrapped_key, key_id FROM media_thumbnails WHERE key_id <> $1 LIMIT $2`},
	} {
		rows, err := s.reader().QueryContext(ctx, q.sql, keyID, limit-len(out))
		if err != nil {
			return nil, fmt.Errorf("wrapped keys: %w", err)
		}
		for rows.Next() {
			k := WrappedKey{Thumb: q.thumb}
			if err := rows.Scan(&k.Blob, &k.WrappedKey, &k.KeyID); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if len(out) >= limit {
			break
		}
	}
	return out, nil
}

// ReplaceWrappedKey stores a re-wrapped file key if the row still holds
// the key it was read with.
func (tx *Tx) ReplaceWrappedKey(ctx context.Context, old WrappedKey, wrapped, keyID string) error {
	q := `UPDATE media SET wrapped_key = $1, key_id = $2 WHERE blob = $3 AND wrapped_key = $4`
	if old.Thumb {
		q = `UPDATE media_thumbnails SET wrapped_key = $1, key_id = $2 WHERE blob = $3 AND wrapped_key = $4`
	}
	_, err := tx.q.ExecContext(ctx, q, wrapped, keyID, old.Blob, old.WrappedKey)
	if err != nil {
		return fmt.Errorf("replace wrapped key: %w", err)
	}
	return nil
}
