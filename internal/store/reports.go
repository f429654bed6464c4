package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Report is a user's report of an event, a room or a user.
type Report struct {
	ID        int64
	Kind      string // event | room | user
	Reporter  string
	RoomID    string
	EventID   string
	UserID    string
	Reason    string
	Score     sql.NullInt64
	CreatedTS int64
}

// AddReport stores a report.
func (s *Store) AddReport(ctx context.Context, r Report) error {
	_, err := s.writer().ExecContext(ctx, `INSERT INTO content_reports (kind, reporter, room_id, event_id, user_id, reason, score, created_ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, r.Kind, r.Reporter, r.RoomID, r.EventID, r.UserID, r.Reason, r.Score, now())
	if err != nil {
		return fmt.Errorf("add report: %w", err)
	}
	return nil
}

// Reports returns the reports, oldest first.
func (s *Store) Reports(ctx context.Context) ([]Report, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT id, kind, reporter, room_id, event_id, user_id, reason, score, created_ts FROM content_reports ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list reports: %w", err)
	}
	defer rows.Close()
	var out []Report
	for rows.Next() {
		var r Report
		if err := rows.Scan(&r.ID, &r.Kind, &r.Reporter, &r.RoomID, &r.EventID, &r.UserID, &r.Reason, &r.Score, &r.CreatedTS); err != nil {
			return nil, fmt.Errorf("list reports: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ServerNoticeRoom returns a user's server notices room, or ErrNotFound.
func (s *Store) ServerNoticeRoom(ctx context.Context, userID string) (string, error) {
	var id string
	err := s.reader().QueryRowContext(ctx, `SELECT room_id FROM server_notice_rooms WHERE user_id = $1`, userID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return id, err
}

// SetServerNoticeRoom records a user's server notices room.
func (s *Store) SetServerNoticeRoom(ctx context.Context, userID, roomID string) error {
	_, err := s.writer().ExecContext(ctx, `INSERT INTO server_notice_rooms (user_id, room_id, created_ts) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id`, userID, roomID, now())
	if err != nil {
		return fmt.Errorf("set server notice room: %w", err)
	}
	return nil
}

// IsServerNoticeRoom reports whether a room is some user's server notices
// room, and whose.
func (s *Store) IsServerNoticeRoom(ctx context.Context, roomID string) (string, bool, error) {
	var u string
	err := s.reader().QueryRowContext(ctx, `SELECT user_id FROM server_notice_rooms WHERE room_id = $1`, roomID).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return u, true, nil
}
