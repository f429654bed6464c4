package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// EventReport is a report of an event as the administrators see it: the
// report, the reported event's sender and the room's name and alias.
type EventReport struct {
	Report
	Sender         string
	RoomName       string
	CanonicalAlias string
}

// EventReportsQuery is a page of event reports: filters on the reporter
// (UserID), the room and the reported event's sender, by substring but
// the sender's (exact).
type EventReportsQuery struct {
	From, Limit            int
	Backward               bool // newest first
	UserID, RoomID, Sender string
}

const eventReportFrom = ` FROM content_reports c LEFT JOIN events e ON e.event_id = c.event_id
	LEFT JOIN room_summaries s ON s.room_id = c.room_id WHERE c.kind = 'event'`

const eventReportCols = `c.id, c.kind, c.reporter, c.room_id, c.event_id, c.user_id, c.reason, c.score, c.created_ts,
	COALESCE(e.sender, ''), COALESCE(s.name, ''), COALESCE(s.canonical_alias, '')`

func scanEventReport(sc interface{ Scan(...any) error }) (*EventReport, error) {
	var r EventReport
	err := sc.Scan(&r.ID, &r.Kind, &r.Reporter, &r.RoomID, &r.EventID, &r.UserID, &r.Reason, &r.Score, &r.CreatedTS,
		&r.Sender, &r.RoomName, &r.CanonicalAlias)
	return &r, err
}

// EventReports returns a page of event reports and how many match.
func (s *Store) EventReports(ctx context.Context, q EventReportsQuery) ([]EventReport, int64, error) {
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return ph(len(args)) }
	if q.UserID != "" {
		where = append(where, `c.reporter LIKE `+arg("%"+likeEscape(q.UserID)+"%")+` ESCAPE '\'`)
	}
	if q.RoomID != "" {
		where = append(where, `c.room_id LIKE `+arg("%"+likeEscape(q.RoomID)+"%")+` ESCAPE '\'`)
	}
	if q.Sender != "" {
		where = append(where, `e.sender = `+arg(q.Sender))
	}
	filter := ""
	if len(where) > 0 {
		filter = " AND " + strings.Join(where, " AND ")
	}
	var total int64
	if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*)`+eventReportFrom+filter, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count reports: %w", err)
	}
	dir := "ASC"
	if q.Backward {
		dir = "DESC"
	}
	rows, err := s.reader().QueryContext(ctx, `SELECT `+eventReportCols+eventReportFrom+filter+` ORDER BY c.created_ts `+dir+`, c.id `+dir+
		` LIMIT `+arg(q.Limit)+` OFFSET `+arg(q.From), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("list reports: %w", err)
	}
	defer rows.Close()
	var out []EventReport
	for rows.Next() {
		r, err := scanEventReport(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("list reports: %w", err)
		}
		out = append(out, *r)
	}
	return out, total, rows.Err()
}

// GetEventReport returns one event report, or ErrNotFound.
func (s *Store) GetEventReport(ctx context.Context, id int64) (*EventReport, error) {
	r, err := scanEventReport(s.reader().QueryRowContext(ctx, `SELECT `+eventReportCols+eventReportFrom+` AND c.id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get report: %w", err)
	}
	return r, nil
}

// DeleteEventReport deletes one event report; ErrNotFound when there is none.
func (s *Store) DeleteEventReport(ctx context.Context, id int64) error {
	res, err := s.writer().ExecContext(ctx, `DELETE FROM content_reports WHERE id = $1 AND kind = 'event'`, id)
	if err != nil {
		return fmt.Errorf("delete report: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
