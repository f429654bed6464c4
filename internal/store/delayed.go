package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
)

// Delayed events (MSC4140): rows of events users scheduled to be sent
// later, and what became of them. The delayed package owns the timing;
// these are its queries.

// Outcomes of a finalised delayed event.
const (
	DelayedSent      = "sent"
	DelayedCancelled = "cancelled"
	DelayedFailed    = "error"
)

// DelayedEvent is one scheduled or finalised delayed event.
type DelayedEvent struct {
	Seq      int64
	DelayID  string
	UserID   string
	DeviceID string
	// TxnKey is the client transaction of the scheduling request (nil:
	// none).
	TxnKey   *string
	RoomID   string
	Type     string
	StateKey *string // nil: a message event
	Content  json.RawMessage
	DelayMS  int64
	// ScheduledAt is when the event was scheduled or last restarted
	// (ms); DueMS is ScheduledAt + DelayMS.
	ScheduledAt int64
	DueMS       int64
	// FinalisedTS is 0 while the event is scheduled.
	FinalisedTS int64
	Outcome     string
	EventID     string
	Error       json.RawMessage // a Matrix error, for outcomes with one
	// AppService is the id of the application service whose as_token
	// scheduled the event ("": the user's own token).
	AppService string
}

// ErrDelayedLimit is returned by ScheduleDelayedEvent when the user has
// as many scheduled delayed events as allowed.
var ErrDelayedLimit = errors.New("too many scheduled delayed events")

const delayedCols = `seq, delay_id, user_id, device_id, txn_key, room_id, event_type, state_key, content, delay_ms, scheduled_at, due_ms,
	finalised_ts, outcome, event_id, error, app_service`

func scanDelayed(row interface{ Scan(...any) error }) (*DelayedEvent, error) {
	var e DelayedEvent
	var txnKey, stateKey, outcome, eventID, errJSON, appService sql.NullString
	var finalised sql.NullInt64
	var content string
	err := row.Scan(&e.Seq, &e.DelayID, &e.UserID, &e.DeviceID, &txnKey, &e.RoomID, &e.Type, &stateKey, &content, &e.DelayMS,
		&e.ScheduledAt, &e.DueMS, &finalised, &outcome, &eventID, &errJSON, &appService)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if txnKey.Valid {
		e.TxnKey = &txnKey.String
	}
	if stateKey.Valid {
		e.StateKey = &stateKey.String
	}
	e.Content = json.RawMessage(content)
	e.FinalisedTS, e.Outcome, e.EventID, e.AppService = finalised.Int64, outcome.String, eventID.String, appService.String
	if errJSON.Valid {
		e.Error = json.RawMessage(errJSON.String)
	}
	return &e, nil
}

func scanDelayedRows(rows *sql.Rows, err error) ([]DelayedEvent, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DelayedEvent
	for rows.Next() {
		e, err := scanDelayed(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *e)
	}
	return out, rows.Err()
}

func nullString(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

// ScheduleDelayedEvent stores e unless the user already scheduled one
// under the same client transaction, whose row it returns instead
// (existing true). When the user has maxPerUser scheduled events it
// returns ErrDelayedLimit and the soonest due time of theirs.
func (s *Store) ScheduleDelayedEvent(ctx context.Context, e *DelayedEvent, maxPerUser int) (existing *DelayedEvent, soonest int64, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		if e.TxnKey != nil {
			prev, err := scanDelayed(tx.q.QueryRowContext(ctx, `SELECT `+delayedCols+` FROM delayed_events
				WHERE user_id = $1 AND device_id = $2 AND txn_key = $3`, e.UserID, e.DeviceID, *e.TxnKey))
			if err == nil {
				existing = prev
				return nil
			}
			if !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		// Two schedules by one user must not both pass the count below:
		// on PostgreSQL (READ COMMITTED) each would count without the
		// other's row. Touching the user's row locks it until the commit,
		// so the second waits and then counts the first's row. SQLite's
		// one writer serialises them anyway.
		if _, err := tx.q.ExecContext(ctx, `UPDATE users SET created_ts = created_ts WHERE user_id = $1`, e.UserID); err != nil {
			return err
		}
		var n int
		var first sql.NullInt64
		if err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*), MIN(due_ms) FROM delayed_events WHERE user_id = $1 AND finalised_ts IS NULL`,
			e.UserID).Scan(&n, &first); err != nil {
			return err
		}
		if n >= maxPerUser {
			soonest = first.Int64
			return ErrDelayedLimit
		}
		_, err := tx.q.ExecContext(ctx, `INSERT INTO delayed_events (delay_id, user_id, device_id, txn_key, room_id, event_type, state_key,
			content, delay_ms, scheduled_at, due_ms, app_service) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			e.DelayID, e.UserID, e.DeviceID, nullString(e.TxnKey), e.RoomID, e.Type, nullString(e.StateKey), string(e.Content),
			e.DelayMS, e.ScheduledAt, e.DueMS, nullString(nonEmpty(e.AppService)))
		return err
	})
	return existing, soonest, err
}

// DelayedEventByID returns a delayed event, scheduled or finalised, or
// ErrNotFound.
func (s *Store) DelayedEventByID(ctx context.Context, delayID string) (*DelayedEvent, error) {
	return scanDelayed(s.reader().QueryRowContext(ctx, `SELECT `+delayedCols+` FROM delayed_events WHERE delay_id = $1`, delayID))
}

// DelayedEventByTxn returns the delayed event a user's device scheduled
// under a client transaction, or ErrNotFound.
func (s *Store) DelayedEventByTxn(ctx context.Context, userID, deviceID, txnKey string) (*DelayedEvent, error) {
	return scanDelayed(s.reader().QueryRowContext(ctx, `SELECT `+delayedCols+` FROM delayed_events
		WHERE user_id = $1 AND device_id = $2 AND txn_key = $3`, userID, deviceID, txnKey))
}

// DueDelayedEvents returns up to limit scheduled delayed events due at or
// before nowMS, soonest first.
func (s *Store) DueDelayedEvents(ctx context.Context, nowMS int64, limit int) ([]DelayedEvent, error) {
	return scanDelayedRows(s.reader().QueryContext(ctx, `SELECT `+delayedCols+` FROM delayed_events
		WHERE finalised_ts IS NULL AND due_ms <= $1 ORDER BY due_ms, seq LIMIT $2`, nowMS, limit))
}

// DueDelayed names a scheduled delayed event that is due.
type DueDelayed struct{ DelayID, RoomID string }

// DueDelayedIDs returns up to limit scheduled delayed events due at or
// before nowMS, soonest first: their ids and rooms only (the sender reads
// each row again under its lock, so a burst costs no copies of contents).
func (s *Store) DueDelayedIDs(ctx context.Context, nowMS int64, limit int) ([]DueDelayed, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT delay_id, room_id FROM delayed_events
		WHERE finalised_ts IS NULL AND due_ms <= $1 ORDER BY due_ms, seq LIMIT $2`, nowMS, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DueDelayed
	for rows.Next() {
		var d DueDelayed
		if err := rows.Scan(&d.DelayID, &d.RoomID); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// NextDelayedDue returns the soonest due time of all scheduled delayed
// events; ok is false when there are none.
func (s *Store) NextDelayedDue(ctx context.Context) (due int64, ok bool, err error) {
	var d sql.NullInt64
	err = s.reader().QueryRowContext(ctx, `SELECT MIN(due_ms) FROM delayed_events WHERE finalised_ts IS NULL`).Scan(&d)
	return d.Int64, d.Valid, err
}

// RestartDelayedEvent starts a scheduled delayed event's delay again at
// nowMS and returns its new due time, or ErrNotFound when it is not
// scheduled (anymore).
func (s *Store) RestartDelayedEvent(ctx context.Context, delayID string, nowMS int64) (int64, error) {
	var due int64
	err := s.writer().QueryRowContext(ctx, `UPDATE delayed_events SET scheduled_at = $1, due_ms = $2 + delay_ms
		WHERE delay_id = $3 AND finalised_ts IS NULL RETURNING due_ms`, nowMS, nowMS, delayID).Scan(&due)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return due, err
}

// FinaliseDelayedEvent records what became of a scheduled delayed event;
// it reports false when the event was not scheduled (anymore).
func (s *Store) FinaliseDelayedEvent(ctx context.Context, delayID, outcome, eventID string, errJSON json.RawMessage, nowMS int64) (bool, error) {
	var ev, ej any
	if eventID != "" {
		ev = eventID
	}
	if errJSON != nil {
		ej = string(errJSON)
	}
	res, err := s.writer().ExecContext(ctx, `UPDATE delayed_events SET finalised_ts = $1, outcome = $2, event_id = $3, error = $4
		WHERE delay_id = $5 AND finalised_ts IS NULL`, nowMS, outcome, ev, ej, delayID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// DelayedEventSent records, in the transaction of the event it became,
// that a scheduled delayed event was sent: both commit or neither.
func (tx *Tx) DelayedEventSent(ctx context.Context, delayID, eventID string, nowMS int64) error {
	return tx.execLater(ctx, nil, `UPDATE delayed_events SET finalised_ts = $1, outcome = $2, event_id = $3
		WHERE delay_id = $4 AND finalised_ts IS NULL`, nowMS, DelayedSent, eventID, delayID)
}

// CancelDelayedStateEvents cancels, in the transaction of a state event
// sent by sender, the scheduled delayed state events of other users over
// the same room, type and state key (MSC4140's rule for conflicting
// delayed state). errJSON is recorded as their error.
func (tx *Tx) CancelDelayedStateEvents(ctx context.Context, roomID, typ, stateKey, sender string, errJSON json.RawMessage, nowMS int64) error {
	return tx.execLater(ctx, nil, `UPDATE delayed_events SET finalised_ts = $1, outcome = $2, error = $3
		WHERE room_id = $4 AND event_type = $5 AND state_key = $6 AND finalised_ts IS NULL AND user_id <> $7`,
		nowMS, DelayedCancelled, string(errJSON), roomID, typ, stateKey, sender)
}

// PruneDelayedEvents deletes the delayed events finalised before
// beforeMS, and those of each user beyond their keepPerUser most
// recently finalised, and returns how many it deleted.
func (s *Store) PruneDelayedEvents(ctx context.Context, beforeMS int64, keepPerUser int) (int64, error) {
	res, err := s.writer().ExecContext(ctx, `DELETE FROM delayed_events WHERE finalised_ts IS NOT NULL AND finalised_ts < $1`, beforeMS)
	if err != nil {
		return 0, err
	}
	old, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	res, err = s.writer().ExecContext(ctx, `DELETE FROM delayed_events WHERE seq IN (
		SELECT seq FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY finalised_ts DESC, seq DESC) AS n
			FROM delayed_events WHERE finalised_ts IS NOT NULL) AS ranked
		WHERE n > $1)`, keepPerUser)
	if err != nil {
		return old, err
	}
	over, err := res.RowsAffected()
	return old + over, err
}

// FinalisedDelayedEvents returns up to limit of a user's finalised
// delayed events, the most recently finalised first, before the position
// (beforeTS, beforeSeq) of a previous page.
func (s *Store) FinalisedDelayedEvents(ctx context.Context, userID string, beforeTS, beforeSeq int64, limit int) ([]DelayedEvent, error) {
	return scanDelayedRows(s.reader().QueryContext(ctx, `SELECT `+delayedCols+` FROM delayed_events
		WHERE user_id = $1 AND finalised_ts IS NOT NULL AND (finalised_ts < $2 OR finalised_ts = $3 AND seq < $4)
		ORDER BY finalised_ts DESC, seq DESC LIMIT $5`, userID, beforeTS, beforeTS, beforeSeq, limit))
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// DelayedStatus selects delayed events by what became of them (MSC4486's
// status values). A finalised event is classed as MSC4140 tells them
// apart: sent when it has an event, failed when it has an error
// (refused when sent, or cancelled by another user's state), cancelled
// otherwise.
type DelayedStatus int

const (
	DelayedAny DelayedStatus = iota
	DelayedScheduled
	DelayedFinalised
	DelayedStatusSent
	DelayedStatusCancelled
	DelayedStatusFailed
)

var delayedStatusWhere = map[DelayedStatus]string{
	DelayedAny:             "",
	DelayedScheduled:       " AND finalised_ts IS NULL",
	DelayedFinalised:       " AND finalised_ts IS NOT NULL",
	DelayedStatusSent:      " AND finalised_ts IS NOT NULL AND outcome = 'sent'",
	DelayedStatusCancelled: " AND finalised_ts IS NOT NULL AND outcome <> 'sent' AND error IS NULL",
	DelayedStatusFailed:    " AND finalised_ts IS NOT NULL AND outcome <> 'sent' AND error IS NOT NULL",
}

// DelayedQuery is a page of a user's delayed events, in the order of
// their send time (due_ms, then seq).
type DelayedQuery struct {
	UserID string
	RoomID string // "": any
	Type   string // "": any
	Status DelayedStatus
	// FromTS and ToTS bound the send time, both included (nil: unbounded).
	FromTS, ToTS *int64
	// Backward: the latest send time first.
	Backward bool
	// After is the position of the last event of the previous page (nil:
	// the first page).
	After *[2]int64 // due_ms, seq
	Limit int
}

// ListDelayedEvents returns a page of a user's delayed events.
func (s *Store) ListDelayedEvents(ctx context.Context, q DelayedQuery) ([]DelayedEvent, error) {
	where := `user_id = $1` + delayedStatusWhere[q.Status]
	args := []any{q.UserID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.RoomID != "" {
		where += ` AND room_id = ` + arg(q.RoomID)
	}
	if q.Type != "" {
		where += ` AND event_type = ` + arg(q.Type)
	}
	if q.FromTS != nil {
		where += ` AND due_ms >= ` + arg(*q.FromTS)
	}
	if q.ToTS != nil {
		where += ` AND due_ms <= ` + arg(*q.ToTS)
	}
	cmp, order := ">", "due_ms, seq"
	if q.Backward {
		cmp, order = "<", "due_ms DESC, seq DESC"
	}
	if q.After != nil {
		where += ` AND (due_ms ` + cmp + ` ` + arg(q.After[0]) + ` OR due_ms = ` + arg(q.After[0]) + ` AND seq ` + cmp + ` ` + arg(q.After[1]) + `)`
	}
	return scanDelayedRows(s.reader().QueryContext(ctx, `SELECT `+delayedCols+` FROM delayed_events WHERE `+where+
		` ORDER BY `+order+` LIMIT `+arg(q.Limit), args...))
}
