package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AppServicePosition is how far an application service has acknowledged
// the events and to-device streams, and the id its next transaction gets.
type AppServicePosition struct {
	AckedPos         int64
	AckedToDevice    int64
	AckedDeviceLists int64 // device list changes (MSC3202)
	NextTxn          int64
}

// AppServiceTxn is a transaction built for an application service and not
// acknowledged yet: it is resent as it is.
type AppServiceTxn struct {
	TxnID           int64
	UptoPos         int64 // the events stream position it covers up to
	UptoToDevice    int64
	UptoDeviceLists int64
	Body            []byte
}

// AppServiceStart returns the position of an application service,
// starting a service seen for the first time at the given positions (it
// gets what happens from now on, not the history before it).
// A service stored before device list positions were kept starts those
// at deviceListsPos.
func (s *Store) AppServiceStart(ctx context.Context, asID string, eventsPos, toDevicePos, deviceListsPos int64) (AppServicePosition, error) {
	var p AppServicePosition
	err := s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO appservice_positions (as_id, acked_pos, acked_to_device, acked_device_lists, next_txn) VALUES ($1, $2, $3, $4, 1)
			ON CONFLICT (as_id) DO NOTHING`, asID, eventsPos, toDevicePos, deviceListsPos); err != nil {
			return fmt.Errorf("start appservice position: %w", err)
		}
		if _, err := tx.q.ExecContext(ctx, `UPDATE appservice_positions SET acked_device_lists = $1 WHERE as_id = $2 AND acked_device_lists < 0`,
			deviceListsPos, asID); err != nil {
			return fmt.Errorf("start appservice position: %w", err)
		}
		err := tx.q.QueryRowContext(ctx, `SELECT acked_pos, acked_to_device, acked_device_lists, next_txn FROM appservice_positions WHERE as_id = $1`, asID).
			Scan(&p.AckedPos, &p.AckedToDevice, &p.AckedDeviceLists, &p.NextTxn)
		if err != nil {
			return fmt.Errorf("read appservice position: %w", err)
		}
		return nil
	})
	return p, err
}

// AppServicePendingTxn returns the unacknowledged transaction of a
// service, or ErrNotFound.
func (s *Store) AppServicePendingTxn(ctx context.Context, asID string) (*AppServiceTxn, error) {
	var t AppServiceTxn
	var body string
	err := s.writer().QueryRowContext(ctx, `SELECT txn_id, upto_pos, upto_to_device, upto_device_lists, body FROM appservice_txns WHERE as_id = $1`, asID).
		Scan(&t.TxnID, &t.UptoPos, &t.UptoToDevice, &t.UptoDeviceLists, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read appservice transaction: %w", err)
	}
	t.Body = []byte(body)
	return &t, nil
}

// SaveAppServiceTxn stores a new transaction (before its first sending)
// and takes its id.
func (s *Store) SaveAppServiceTxn(ctx context.Context, asID string, t AppServiceTxn) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO appservice_txns (as_id, txn_id, upto_pos, upto_to_device, upto_device_lists, body) VALUES ($1, $2, $3, $4, $5, $6)`,
			asID, t.TxnID, t.UptoPos, t.UptoToDevice, t.UptoDeviceLists, string(t.Body)); err != nil {
			return fmt.Errorf("save appservice transaction: %w", err)
		}
		_, err := tx.q.ExecContext(ctx, `UPDATE appservice_positions SET next_txn = $1 WHERE as_id = $2`, t.TxnID+1, asID)
		return err
	})
}

// AckAppServiceTxn forgets an acknowledged transaction and moves the
// service's positions past what it covered.
func (s *Store) AckAppServiceTxn(ctx context.Context, asID string, t AppServiceTxn) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM appservice_txns WHERE as_id = $1 AND txn_id = $2`, asID, t.TxnID); err != nil {
			return fmt.Errorf("forget appservice transaction: %w", err)
		}
		if t.UptoDeviceLists < 0 {
			// Saved before device list positions were kept: that one
			// stays where it is.
			_, err := tx.q.ExecContext(ctx, `UPDATE appservice_positions SET acked_pos = $1, acked_to_device = $2 WHERE as_id = $3`,
				t.UptoPos, t.UptoToDevice, asID)
			return err
		}
		_, err := tx.q.ExecContext(ctx, `UPDATE appservice_positions SET acked_pos = $1, acked_to_device = $2, acked_device_lists = $3 WHERE as_id = $4`,
			t.UptoPos, t.UptoToDevice, t.UptoDeviceLists, asID)
		return err
	})
}

// MoveAppServicePosition moves a service's positions without a
// transaction: a stretch of the streams with nothing for it.
func (s *Store) MoveAppServicePosition(ctx context.Context, asID string, p AppServicePosition) error {
	_, err := s.writer().ExecContext(ctx, `UPDATE appservice_positions SET acked_pos = $1, acked_to_device = $2, acked_device_lists = $3 WHERE as_id = $4`,
		p.AckedPos, p.AckedToDevice, p.AckedDeviceLists, asID)
	return err
}

// TimelineEventsBetween returns up to limit events of any room with from <
// pos <= to that have a place in their room's timeline (no outliers, no
// backfilled history), oldest first: what application services are sent.
func (s *Store) TimelineEventsBetween(ctx context.Context, from, to int64, limit int) ([]*EventRow, error) {
	return scanEvents(s.reader().QueryContext(ctx, `SELECT `+eventCols+` FROM events
		WHERE stream_pos > $1 AND stream_pos <= $2 AND state_group >= 0 ORDER BY stream_pos LIMIT $3`, max(from, 0), to, limit))
}

// ToDeviceBetween returns up to limit to-device messages of any device
// with from < pos <= to, oldest first.
func (s *Store) ToDeviceBetween(ctx context.Context, from, to int64, limit int) ([]ToDeviceMessage, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT stream_pos, user_id, device_id, sender, type, content FROM to_device
		WHERE stream_pos > $1 AND stream_pos <= $2 ORDER BY stream_pos LIMIT $3`, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("read to-device messages: %w", err)
	}
	defer rows.Close()
	var out []ToDeviceMessage
	for rows.Next() {
		var m ToDeviceMessage
		if err := rows.Scan(&m.Pos, &m.UserID, &m.DeviceID, &m.Sender, &m.Type, &m.Content); err != nil {
			return nil, fmt.Errorf("scan to-device message: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeviceListChangesBetween returns the users whose device lists changed
// with from < pos <= to (changes meant for everyone sharing a room with
// them) and the position read up to.
func (s *Store) DeviceListChangesBetween(ctx context.Context, from, to int64, limit int) ([]string, int64, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT stream_pos, user_id FROM device_list_changes
		WHERE stream_pos > $1 AND stream_pos <= $2 AND notify_user IS NULL ORDER BY stream_pos LIMIT $3`, from, to, limit)
	if err != nil {
		return nil, from, fmt.Errorf("read device list changes: %w", err)
	}
	defer rows.Close()
	var users []string
	n := 0
	for rows.Next() {
		var u string
		if err := rows.Scan(&from, &u); err != nil {
			return nil, from, fmt.Errorf("read device list changes: %w", err)
		}
		users = append(users, u)
		n++
	}
	if n < limit {
		from = to
	}
	return users, from, rows.Err()
}

// SetAppServiceRoomListed lists or unlists a room in a service's network
// directory.
func (s *Store) SetAppServiceRoomListed(ctx context.Context, asID, networkID, roomID string, listed bool) error {
	var err error
	if listed {
		_, err = s.writer().ExecContext(ctx, `INSERT INTO appservice_room_directory (as_id, network_id, room_id) VALUES ($1, $2, $3)
			ON CONFLICT (as_id, network_id, room_id) DO NOTHING`, asID, networkID, roomID)
	} else {
		_, err = s.writer().ExecContext(ctx, `DELETE FROM appservice_room_directory WHERE as_id = $1 AND network_id = $2 AND room_id = $3`,
			asID, networkID, roomID)
	}
	if err != nil {
		return fmt.Errorf("appservice room directory: %w", err)
	}
	return nil
}
