package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// BackfillBand is the top of the band of stream positions given to
// backfilled timeline events: they are below it, numbered downwards, so
// that they sort before every other timeline event of their room. Outliers
// and soft-failed events live in (BackfillBand, 0) and are never read as
// timeline.
const BackfillBand int64 = -(1 << 40)

// IsBackfilled reports whether a stream position belongs to a backfilled
// timeline event.
func IsBackfilled(pos int64) bool { return pos < BackfillBand }

// IsTimelinePos reports whether an event at pos is part of its room's
// timeline (a live or a backfilled event).
func IsTimelinePos(pos int64) bool { return pos > 0 || pos < BackfillBand }

// timelinePos is the SQL condition of IsTimelinePos.
var timelinePos = `(stream_pos > 0 OR stream_pos < ` + strconv.FormatInt(BackfillBand, 10) + `)`

// knownPos is true for events whose place in the room is known: timeline
// events, and soft-failed events (stored with their state); outliers
// (state_group -1) are not.
var knownPos = `(stream_pos > 0 OR stream_pos < ` + strconv.FormatInt(BackfillBand, 10) + ` OR state_group >= 0)`

// MinBackfillPos returns the lowest position handed to a backfilled event,
// or BackfillBand when there is none.
func (s *Store) MinBackfillPos(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := s.reader().QueryRowContext(ctx, `SELECT MIN(stream_pos) FROM events WHERE stream_pos < $1`, BackfillBand).Scan(&n); err != nil {
		return 0, fmt.Errorf("min backfill position: %w", err)
	}
	if !n.Valid {
		return BackfillBand, nil
	}
	return n.Int64, nil
}

// BackwardExtremity is an event cited as a prev event by a timeline event
// of a room but not itself in the timeline here.
type BackwardExtremity struct {
	EventID string
	Depth   int64 // depth of the citing event
}

// BackwardExtremities returns up to limit backward extremities of a room
// cited by events of depth maxDepth or less, those cited by the newest
// events first.
func (s *Store) BackwardExtremities(ctx context.Context, roomID string, maxDepth int64, limit int) ([]BackwardExtremity, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT event_id, depth FROM room_backward_extremities WHERE room_id = $1 AND depth <= $2 ORDER BY depth DESC, event_id LIMIT $3`, roomID, maxDepth, limit)
	if err != nil {
		return nil, fmt.Errorf("backward extremities: %w", err)
	}
	defer rows.Close()
	var out []BackwardExtremity
	for rows.Next() {
		var b BackwardExtremity
		if err := rows.Scan(&b.EventID, &b.Depth); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// HasBackwardExtremities reports whether a room's history here has a gap
// before its earliest events.
func (s *Store) HasBackwardExtremities(ctx context.Context, roomID string) (bool, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM room_backward_extremities WHERE room_id = $1 LIMIT 1) AS t`, roomID).Scan(&n)
	return n > 0, err
}

// KnownEventIDs returns which of ids are timeline or soft-failed events
// (not outliers, not unknown).
func (tx *Tx) KnownEventIDs(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(len(ids), start+500)]
		q, args := inList(`SELECT event_id FROM events WHERE event_id IN (`, chunk, `) AND `+knownPos)
		found, err := queryStrings(ctx, tx.q, q, args...)
		if err != nil {
			return nil, fmt.Errorf("known events: %w", err)
		}
		for _, id := range found {
			out[id] = true
		}
	}
	return out, nil
}

// RejectedEventIDs is RejectedEvents inside a transaction.
func (tx *Tx) RejectedEventIDs(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(len(ids), start+500)]
		q, args := inList(`SELECT event_id FROM federation_rejected WHERE event_id IN (`, chunk, `)`)
		found, err := queryStrings(ctx, tx.q, q, args...)
		if err != nil {
			return nil, err
		}
		for _, id := range found {
			out[id] = true
		}
	}
	return out, nil
}

// AddBackwardExtremity records a gap before a room's event.
func (tx *Tx) AddBackwardExtremity(ctx context.Context, roomID, eventID string, depth int64) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO room_backward_extremities (room_id, event_id, depth) VALUES ($1, $2, $3)
		ON CONFLICT (room_id, event_id) DO UPDATE SET depth = excluded.depth WHERE room_backward_extremities.depth < excluded.depth`, roomID, eventID, depth)
	if err != nil {
		return fmt.Errorf("add backward extremity: %w", err)
	}
	return nil
}

// DeleteBackwardExtremities forgets gaps that are filled (the events are
// now in the timeline) or can never be (rejected events).
func (tx *Tx) DeleteBackwardExtremities(ctx context.Context, roomID string, ids []string) error {
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(len(ids), start+500)]
		q, args := inList(`DELETE FROM room_backward_extremities WHERE event_id IN (`, chunk, `) AND room_id = $`+strconv.Itoa(len(chunk)+1), roomID)
		if _, err := tx.q.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("delete backward extremities: %w", err)
		}
	}
	return nil
}

// InsertBackfilled stores a backfilled timeline event (e.Pos below
// BackfillBand). An outlier of the same id is moved into the timeline
// instead; an event already in the timeline is left as it is. It reports
// whether the event joined the timeline.
func (tx *Tx) InsertBackfilled(ctx context.Context, e *EventRow) (bool, error) {
	if !IsBackfilled(e.Pos) {
		return false, fmt.Errorf("backfilled event needs a position below %d", BackfillBand)
	}
	res, err := tx.q.ExecContext(ctx, `UPDATE events SET stream_pos = $1, state_group = $2 WHERE event_id = $3 AND stream_pos < 0 AND stream_pos > $4 AND state_group = -1`,
		e.Pos, e.StateGroup, e.EventID, BackfillBand)
	if err != nil {
		return false, fmt.Errorf("promote outlier: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return true, nil
	}
	res, err = tx.q.ExecContext(ctx, `INSERT INTO events (`+eventInsertCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (event_id) DO NOTHING`, e.insertArgs()...)
	if err != nil {
		return false, fmt.Errorf("insert backfilled event: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// EarliestLiveEvent returns the state group before a room's earliest live
// timeline event (for a room joined from another server, the state before
// the join) and its depth; ErrNotFound when there is none.
func (s *Store) EarliestLiveEvent(ctx context.Context, roomID string) (group, depth int64, err error) {
	var q query
	q.add(`SELECT state_group, depth FROM events WHERE `)
	s.inRoomOrdered(&q, roomID)
	q.add(` AND stream_pos > 0 ORDER BY room_id, stream_pos LIMIT 1`)
	err = s.reader().QueryRowContext(ctx, q.b.String(), q.args...).Scan(&group, &depth)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, ErrNotFound
	}
	return group, depth, err
}

// BackfilledHistoryVisibility is one m.room.history_visibility event among
// a room's backfilled events.
type BackfilledHistoryVisibility struct {
	Pos     int64
	EventID string
	PDU     []byte
}

// BackfilledHistoryVisibilities returns the history visibility events
// among a room's backfilled events, newest first.
func (s *Store) BackfilledHistoryVisibilities(ctx context.Context, roomID string) ([]BackfilledHistoryVisibility, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT stream_pos, event_id, sender, pdu FROM events WHERE room_id = $1 AND stream_pos < $2 AND type = 'm.room.history_visibility' AND state_key = '' ORDER BY stream_pos DESC`, roomID, BackfillBand)
	if err != nil {
		return nil, fmt.Errorf("backfilled history visibility: %w", err)
	}
	defer rows.Close()
	var out []BackfilledHistoryVisibility
	for rows.Next() {
		var h BackfilledHistoryVisibility
		var sender string
		var p []byte
		if err := rows.Scan(&h.Pos, &h.EventID, &sender, &p); err != nil {
			return nil, err
		}
		if h.PDU, err = decodePDU(p, roomID, sender); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}
