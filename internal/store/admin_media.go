package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// SetMediaQuarantined quarantines (by is the administrator) or releases
// (by "") a media row, local or a cached remote copy; false when there is
// no such row.
func (s *Store) SetMediaQuarantined(ctx context.Context, mediaID, by string) (bool, error) {
	res, err := s.writer().ExecContext(ctx, `UPDATE media SET quarantined_by = $1 WHERE media_id = $2`, sql.NullString{String: by, Valid: by != ""}, mediaID)
	if err != nil {
		return false, fmt.Errorf("quarantine media: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// QuarantineRoomMedia quarantines the local media the room's events name
// (what media_refs knows: unencrypted events), and returns how many rows
// it newly quarantined.
func (s *Store) QuarantineRoomMedia(ctx context.Context, roomID, by string) (int64, error) {
	res, err := s.writer().ExecContext(ctx, `UPDATE media SET quarantined_by = $1 WHERE quarantined_by IS NULL AND media_id IN
		(SELECT r.media_id FROM media_refs r JOIN events e ON e.event_id = r.event_id WHERE e.room_id = $2)`, by, roomID)
	if err != nil {
		return 0, fmt.Errorf("quarantine room media: %w", err)
	}
	return res.RowsAffected()
}

// QuarantineUserMedia quarantines the media a local user uploaded.
func (s *Store) QuarantineUserMedia(ctx context.Context, userID, by string) (int64, error) {
	res, err := s.writer().ExecContext(ctx, `UPDATE media SET quarantined_by = $1 WHERE quarantined_by IS NULL AND user_id = $2 AND origin = ''`, by, userID)
	if err != nil {
		return 0, fmt.Errorf("quarantine user media: %w", err)
	}
	return res.RowsAffected()
}

// DeleteLocalMedia deletes a local media row (uploaded here) and its
// thumbnails, and returns the blobs to delete (the original's first);
// nil when there is no such row.
func (tx *Tx) DeleteLocalMedia(ctx context.Context, mediaID string) ([]string, error) {
	var blob string
	err := tx.q.QueryRowContext(ctx, `SELECT blob FROM media WHERE media_id = $1 AND origin = ''`, mediaID).Scan(&blob)
	if err == sql.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find media: %w", err)
	}
	thumbs, err := tx.deleteMediaWhere(ctx, mediaID, `origin = ''`)
	if err != nil {
		return nil, err
	}
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM media_refs WHERE media_id = $1`, mediaID); err != nil {
		return nil, fmt.Errorf("delete media refs: %w", err)
	}
	return append([]string{blob}, thumbs...), nil
}

// UserMediaStat is one local user's uploads.
type UserMediaStat struct {
	UserID      string
	DisplayName string
	Count       int64
	Length      int64
}

// UserMediaStatsQuery is a page of GET /v1/statistics/users/media.
type UserMediaStatsQuery struct {
	From, Limit     int
	OrderBy         string // user_id | displayname | media_length | media_count
	Backward        bool
	FromTS, UntilTS int64 // 0: no bound
	Search          string
}

// UserMediaStats returns a page of users' upload counts and sizes (local
// media, uploaded) and how many users match.
func (s *Store) UserMediaStats(ctx context.Context, q UserMediaStatsQuery) ([]UserMediaStat, int64, error) {
	var args []any
	arg := func(v any) string { args = append(args, v); return ph(len(args)) }
	where := []string{`m.origin = ''`, `m.uploaded_ts > 0`}
	if q.FromTS > 0 {
		where = append(where, `m.created_ts >= `+arg(q.FromTS))
	}
	if q.UntilTS > 0 {
		where = append(where, `m.created_ts <= `+arg(q.UntilTS))
	}
	if q.Search != "" {
		like := "%" + likeEscape(q.Search) + "%"
		where = append(where, `(m.user_id LIKE `+arg(like)+` ESCAPE '\' OR COALESCE(u.displayname, '') LIKE `+arg(like)+` ESCAPE '\')`)
	}
	inner := `SELECT m.user_id AS user_id, COALESCE(MAX(u.displayname), '') AS displayname, COUNT(*) AS media_count, SUM(m.size) AS media_length
		FROM media m LEFT JOIN users u ON u.user_id = m.user_id WHERE ` + strings.Join(where, " AND ") + ` GROUP BY m.user_id`
	var total int64
	if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM (`+inner+`) t`, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count media stats: %w", err)
	}
	order := map[string]string{"user_id": "user_id", "displayname": "displayname", "media_length": "media_length", "media_count": "media_count"}[q.OrderBy]
	if order == "" {
		order = "user_id"
	}
	dir := "ASC"
	if q.Backward {
		dir = "DESC"
	}
	rows, err := s.reader().QueryContext(ctx, `SELECT user_id, displayname, media_count, media_length FROM (`+inner+`) t ORDER BY `+
		order+` `+dir+`, user_id `+dir+` LIMIT `+arg(q.Limit)+` OFFSET `+arg(q.From), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("media stats: %w", err)
	}
	defer rows.Close()
	var out []UserMediaStat
	for rows.Next() {
		var st UserMediaStat
		if err := rows.Scan(&st.UserID, &st.DisplayName, &st.Count, &st.Length); err != nil {
			return nil, 0, fmt.Errorf("media stats: %w", err)
		}
		out = append(out, st)
	}
	return out, total, rows.Err()
}
