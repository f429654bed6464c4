package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Fanout is an event recorded for delivery to other servers (see
// 0018_federation_fanout.sql).
type Fanout struct {
	EventID   string
	RoomID    string
	Pos       int64
	BuiltHere bool
	// AlsoTo is the server of a membership event's target ("" when none).
	AlsoTo    string
	CreatedTS int64
}

// AddFanout records an event for delivery, inside the event's transaction.
// Running it again for the same event (a retried commit) is harmless.
func (tx *Tx) AddFanout(ctx context.Context, f Fanout) error {
	err := tx.execLater(ctx, nil, `INSERT INTO federation_fanout (event_id, room_id, stream_pos, built_here, also_to, created_ts)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING`,
		f.EventID, f.RoomID, f.Pos, f.BuiltHere, f.AlsoTo, f.CreatedTS)
	if err != nil {
		return fmt.Errorf("record fan-out: %w", err)
	}
	return nil
}

// PendingFanout returns up to limit recorded events created before
// beforeTS, oldest first.
func (s *Store) PendingFanout(ctx context.Context, beforeTS int64, limit int) ([]Fanout, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT event_id, room_id, stream_pos, built_here, also_to, created_ts
		FROM federation_fanout WHERE created_ts < $1 ORDER BY created_ts, stream_pos LIMIT $2`, beforeTS, limit)
	if err != nil {
		return nil, fmt.Errorf("read fan-out: %w", err)
	}
	defer rows.Close()
	var out []Fanout
	for rows.Next() {
		var f Fanout
		if err := rows.Scan(&f.EventID, &f.RoomID, &f.Pos, &f.BuiltHere, &f.AlsoTo, &f.CreatedTS); err != nil {
			return nil, fmt.Errorf("scan fan-out: %w", err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// AddToOutboxDone stores outbox items and deletes the fan-out rows of the
// events done in one transaction, so an event is either still recorded
// or queued for its destinations, never both nor neither.
func (s *Store) AddToOutboxDone(ctx context.Context, items []OutboxItem, done []string, nowTS int64) error {
	if len(items) == 0 && len(done) == 0 {
		return nil
	}
	return s.InTx(ctx, func(tx *Tx) error {
		if err := tx.addToOutbox(ctx, items, nowTS); err != nil {
			return err
		}
		for _, c := range chunks(done) {
			q, args := inList(`DELETE FROM federation_fanout WHERE event_id IN (`, c, `)`)
			if _, err := tx.q.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("clear fan-out: %w", err)
			}
		}
		return nil
	})
}

// AddToOutboxWith stores outbox items and runs also (when not nil) in
// one transaction.
func (s *Store) AddToOutboxWith(ctx context.Context, items []OutboxItem, nowTS int64, also func(tx *Tx) error) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if err := tx.addToOutbox(ctx, items, nowTS); err != nil {
			return err
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
}

// PutDeviceListOutbound records a user's announcement state (with the
// announcement's outbox rows: see AddToOutboxWith).
func (tx *Tx) PutDeviceListOutbound(ctx context.Context, userID string, d DeviceListOutbound) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO device_list_outbound (user_id, stream_id, snapshot) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, snapshot = excluded.snapshot`, userID, d.StreamID, d.Snapshot)
	return err
}

// addToOutbox inserts items, 100 rows per statement (4 parameters a row
// stay far below SQLite's limit).
func (tx *Tx) addToOutbox(ctx context.Context, items []OutboxItem, nowTS int64) error {
	for start := 0; start < len(items); start += 100 {
		chunk := items[start:min(len(items), start+100)]
		var b strings.Builder
		b.WriteString(`INSERT INTO federation_outbox (destination, event_id, edu, created_ts) VALUES `)
		args := make([]any, 0, 4*len(chunk))
		for i, it := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "($%d, $%d, $%d, $%d)", 4*i+1, 4*i+2, 4*i+3, 4*i+4)
			var ev, edu sql.NullString
			if it.EventID != "" {
				ev = sql.NullString{String: it.EventID, Valid: true}
			} else {
				edu = sql.NullString{String: string(it.EDU), Valid: true}
			}
			args = append(args, it.Destination, ev, edu, nowTS)
		}
		if _, err := tx.q.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("queue for federation: %w", err)
		}
	}
	return nil
}
