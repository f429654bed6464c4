package store

import (
	"context"
	"database/sql"
	"errors"
)

// Thread subscriptions (MSC4306): a user's choice of threads to hear of.
// Changes take positions in the account data stream, so that sync tokens
// and sliding sync positions already carry them.

// ThreadSub is a user's subscription to a thread, or its removal
// (Subscribed false).
type ThreadSub struct {
	RoomID, RootID string
	Subscribed     bool
	Automatic      bool
	// UnsubscribedAt is the events position when the user last
	// unsubscribed (0: never).
	UnsubscribedAt int64
	// Pos is the last change's account data stream position.
	Pos int64
}

const threadSubCols = `room_id, root_id, subscribed, automatic, unsubscribed_at, stream_pos`

func scanThreadSub(row interface{ Scan(...any) error }) (*ThreadSub, error) {
	var t ThreadSub
	err := row.Scan(&t.RoomID, &t.RootID, &t.Subscribed, &t.Automatic, &t.UnsubscribedAt, &t.Pos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// ThreadSubscription returns a user's row for a thread (subscribed or
// not) or ErrNotFound.
func (s *Store) ThreadSubscription(ctx context.Context, userID, roomID, rootID string) (*ThreadSub, error) {
	return scanThreadSub(s.reader().QueryRowContext(ctx, `SELECT `+threadSubCols+` FROM thread_subscriptions
		WHERE user_id = $1 AND room_id = $2 AND root_id = $3`, userID, roomID, rootID))
}

// ThreadSubscription is Store.ThreadSubscription inside a write
// transaction.
func (tx *Tx) ThreadSubscription(ctx context.Context, userID, roomID, rootID string) (*ThreadSub, error) {
	return scanThreadSub(tx.q.QueryRowContext(ctx, `SELECT `+threadSubCols+` FROM thread_subscriptions
		WHERE user_id = $1 AND room_id = $2 AND root_id = $3`, userID, roomID, rootID))
}

// SubscribeThread subscribes a user to a thread. A manual subscription
// always applies and turns an automatic one manual. An automatic one,
// caused by the event at causePos, applies only when the user is not
// subscribed and did not unsubscribe at or after causePos; applied
// reports whether the row changed.
func (tx *Tx) SubscribeThread(ctx context.Context, userID, roomID, rootID string, automatic bool, causePos int64) (applied bool, err error) {
	pos := tx.Alloc(tx.s.Streams.AccountData)
	var res sql.Result
	if !automatic {
		res, err = tx.q.ExecContext(ctx, `INSERT INTO thread_subscriptions (user_id, room_id, root_id, subscribed, automatic, unsubscribed_at, stream_pos)
			VALUES ($1, $2, $3, TRUE, FALSE, 0, $4)
			ON CONFLICT (user_id, room_id, root_id) DO UPDATE SET subscribed = TRUE, automatic = FALSE, stream_pos = excluded.stream_pos
			WHERE NOT thread_subscriptions.subscribed OR thread_subscriptions.automatic`, userID, roomID, rootID, pos)
	} else {
		res, err = tx.q.ExecContext(ctx, `INSERT INTO thread_subscriptions (user_id, room_id, root_id, subscribed, automatic, unsubscribed_at, stream_pos)
			VALUES ($1, $2, $3, TRUE, TRUE, 0, $4)
			ON CONFLICT (user_id, room_id, root_id) DO UPDATE SET subscribed = TRUE, automatic = TRUE, stream_pos = excluded.stream_pos
			WHERE NOT thread_subscriptions.subscribed AND thread_subscriptions.unsubscribed_at < $5`, userID, roomID, rootID, pos, causePos)
	}
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// UnsubscribeThread removes a user's subscription to a thread, noting
// the events position of the moment (eventsPos); it reports whether there
// was one.
func (tx *Tx) UnsubscribeThread(ctx context.Context, userID, roomID, rootID string, eventsPos int64) (bool, error) {
	pos := tx.Alloc(tx.s.Streams.AccountData)
	res, err := tx.q.ExecContext(ctx, `UPDATE thread_subscriptions SET subscribed = FALSE, automatic = FALSE, unsubscribed_at = $1, stream_pos = $2
		WHERE user_id = $3 AND room_id = $4 AND root_id = $5 AND subscribed`, eventsPos, pos, userID, roomID, rootID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ThreadSubChanges returns up to limit of a user's thread subscription
// rows changed in (after, upTo], newest first.
func (s *Store) ThreadSubChanges(ctx context.Context, userID string, after, upTo int64, limit int) ([]ThreadSub, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT `+threadSubCols+` FROM thread_subscriptions
		WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos DESC LIMIT $4`, userID, after, upTo, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ThreadSub
	for rows.Next() {
		t, err := scanThreadSub(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, rows.Err()
}

// ThreadSubscribers returns the users subscribed to a thread (push rules'
// thread_subscription condition).
func (tx *Tx) ThreadSubscribers(ctx context.Context, roomID, rootID string) (map[string]bool, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT user_id FROM thread_subscriptions WHERE room_id = $1 AND root_id = $2 AND subscribed`, roomID, rootID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, rows.Err()
}
