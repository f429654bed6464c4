package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// OutboxItem is a PDU (EventID) or an EDU (EDU, its JSON) for one
// destination.
type OutboxItem struct {
	Destination string
	EventID     string
	EDU         []byte
}

// OutboxEntry is a pending item as read back: PDU is the stored event's
// JSON for a PDU row, EDU the EDU's JSON otherwise.
type OutboxEntry struct {
	ID  int64
	PDU []byte
	EDU []byte
}

// AddToOutbox stores items in one transaction.
func (s *Store) AddToOutbox(ctx context.Context, items []OutboxItem, nowTS int64) error {
	if len(items) == 0 {
		return nil
	}
	return s.InTx(ctx, func(tx *Tx) error { return tx.addToOutbox(ctx, items, nowTS) })
}

// PendingOutbox returns the oldest maxPDUs PDUs and maxEDUs EDUs waiting
// for a destination. PDU rows whose event is gone are returned with a nil
// PDU (to be deleted).
func (s *Store) PendingOutbox(ctx context.Context, destination string, maxPDUs, maxEDUs int) (pdus, edus []OutboxEntry, err error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT o.id, e.room_id, e.sender, e.pdu FROM federation_outbox o LEFT JOIN events e ON e.event_id = o.event_id
		WHERE o.destination = $1 AND o.event_id IS NOT NULL ORDER BY o.id LIMIT $2`, destination, maxPDUs)
	if err != nil {
		return nil, nil, fmt.Errorf("read outbox: %w", err)
	}
	for rows.Next() {
		var e OutboxEntry
		var roomID, sender sql.NullString
		var pdu []byte
		if err := rows.Scan(&e.ID, &roomID, &sender, &pdu); err != nil {
			rows.Close()
			return nil, nil, err
		}
		if pdu != nil {
			if e.PDU, err = decodePDU(pdu, roomID.String, sender.String); err != nil {
				rows.Close()
				return nil, nil, err
			}
		}
		pdus = append(pdus, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	rows, err = s.reader().QueryContext(ctx, `SELECT id, edu FROM federation_outbox
		WHERE destination = $1 AND edu IS NOT NULL ORDER BY id LIMIT $2`, destination, maxEDUs)
	if err != nil {
		return nil, nil, fmt.Errorf("read outbox: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e OutboxEntry
		var edu string
		if err := rows.Scan(&e.ID, &edu); err != nil {
			return nil, nil, err
		}
		e.EDU = []byte(edu)
		edus = append(edus, e)
	}
	return pdus, edus, rows.Err()
}

// DeleteFromOutbox removes acknowledged items.
func (s *Store) DeleteFromOutbox(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	return s.InTx(ctx, func(tx *Tx) error {
		for start := 0; start < len(ids); start += 500 {
			chunk := ids[start:min(len(ids), start+500)]
			var b strings.Builder
			b.WriteString(`DELETE FROM federation_outbox WHERE id IN (`)
			args := make([]any, len(chunk))
			for i, id := range chunk {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "$%d", i+1)
				args[i] = id
			}
			b.WriteString(")")
			if _, err := tx.q.ExecContext(ctx, b.String(), args...); err != nil {
				return fmt.Errorf("delete from outbox: %w", err)
			}
		}
		return nil
	})
}

// OutboxDestinations lists the destinations with pending items.
func (s *Store) OutboxDestinations(ctx context.Context) ([]string, error) {
	return queryStrings(ctx, s.reader(), `SELECT DISTINCT destination FROM federation_outbox`)
}

// OutboxDepth counts a destination's pending items.
func (s *Store) OutboxDepth(ctx context.Context, destination string) (int64, error) {
	var n int64
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM federation_outbox WHERE destination = $1`, destination).Scan(&n)
	return n, err
}

// DeviceListOutbound is what a local user's last device list update
// announced.
type DeviceListOutbound struct {
	StreamID int64
	Snapshot string
}

// GetDeviceListOutbound returns a user's announcement state, or
// ErrNotFound when nothing was announced yet.
func (s *Store) GetDeviceListOutbound(ctx context.Context, userID string) (*DeviceListOutbound, error) {
	var d DeviceListOutbound
	err := s.reader().QueryRowContext(ctx, `SELECT stream_id, snapshot FROM device_list_outbound WHERE user_id = $1`, userID).Scan(&d.StreamID, &d.Snapshot)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &d, err
}

// PutDeviceListOutbound records a user's announcement state.
func (s *Store) PutDeviceListOutbound(ctx context.Context, userID string, d DeviceListOutbound) error {
	_, err := s.writer().ExecContext(ctx, `INSERT INTO device_list_outbound (user_id, stream_id, snapshot) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, snapshot = excluded.snapshot`, userID, d.StreamID, d.Snapshot)
	return err
}

// FreshRemoteDeviceLists returns which of users have a stored device list
// not marked stale, refreshed after sinceTS, and still share a room with a
// local user: once none does, their server stops telling us of changes.
func (s *Store) FreshRemoteDeviceLists(ctx context.Context, users []string, sinceTS int64) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(users); start += 500 {
		chunk := users[start:min(len(users), start+500)]
		q, args := inList(`SELECT user_id FROM remote_device_lists WHERE user_id IN (`, chunk,
			`) AND stale = FALSE AND updated_ts > $`+itoa(len(chunk)+1)+`
			AND EXISTS (SELECT 1 FROM room_members m JOIN room_members o ON o.room_id = m.room_id
				JOIN users u ON u.user_id = o.user_id
				WHERE m.user_id = remote_device_lists.user_id AND m.membership = 'join' AND o.membership = 'join')`, sinceTS)
		ids, err := queryStrings(ctx, s.reader(), q, args...)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			out[id] = true
		}
	}
	return out, nil
}

// NoteRemoteJoin records that a remote user joined (or changed their
// membership in) a room of ours: local users see them in
// device_lists.changed and fetch their keys, so the list counts as not
// fetched since (updated_ts 0) until a key query keeps it again.
func (tx *Tx) NoteRemoteJoin(ctx context.Context, userID string) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO remote_device_lists (user_id, stale, updated_ts) VALUES ($1, TRUE, 0)
		ON CONFLICT (user_id) DO UPDATE SET stale = TRUE, updated_ts = 0`, userID)
	return err
}

// RemoteJoinUnfetched reports whether a remote user joined since their
// keys were last fetched here (see NoteRemoteJoin).
func (tx *Tx) RemoteJoinUnfetched(ctx context.Context, userID string) (bool, error) {
	ids, err := queryStrings(ctx, tx.q, `SELECT user_id FROM remote_device_lists WHERE user_id = $1 AND updated_ts = 0`, userID)
	return len(ids) > 0, err
}

// MarkRemoteDeviceListStale makes the next key query for a remote user ask
// its server again. It reports whether the user's list was kept here.
func (tx *Tx) MarkRemoteDeviceListStale(ctx context.Context, userID string) (bool, error) {
	res, err := tx.q.ExecContext(ctx, `UPDATE remote_device_lists SET stale = TRUE WHERE user_id = $1`, userID)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// RemoteDevice is one device's keys of a remote user, checked.
type RemoteDevice struct {
	DeviceID string
	KeyJSON  string
	Ed25519  string
}

// ReplaceRemoteDeviceList stores the complete device and cross-signing
// keys of a remote user (replacing what was kept) and marks them fresh.
// It reports whether anything changed.
func (tx *Tx) ReplaceRemoteDeviceList(ctx context.Context, userID string, devices []RemoteDevice, cross []CrossSigningKey, nowTS int64) (bool, error) {
	changed := false
	old, err := queryStrings(ctx, tx.q, `SELECT device_id FROM device_keys WHERE user_id = $1`, userID)
	if err != nil {
		return false, err
	}
	keep := map[string]bool{}
	for _, d := range devices {
		keep[d.DeviceID] = true
		c, err := tx.PutDeviceKeys(ctx, userID, d.DeviceID, d.KeyJSON, d.Ed25519)
		if err != nil {
			return false, err
		}
		changed = changed || c
	}
	for _, d := range old {
		if !keep[d] {
			if _, err := tx.q.ExecContext(ctx, `DELETE FROM device_keys WHERE user_id = $1 AND device_id = $2`, userID, d); err != nil {
				return false, err
			}
			changed = true
		}
	}
	have, err := tx.UserCrossSigningKeys(ctx, userID)
	if err != nil {
		return false, err
	}
	for _, k := range cross {
		if h, ok := have[k.Type]; ok && h.KeyJSON == k.KeyJSON {
			continue
		}
		if err := tx.PutCrossSigningKey(ctx, k); err != nil {
			return false, err
		}
		changed = true
	}
	_, err = tx.q.ExecContext(ctx, `INSERT INTO remote_device_lists (user_id, stale, updated_ts) VALUES ($1, FALSE, $2)
		ON CONFLICT (user_id) DO UPDATE SET stale = FALSE, updated_ts = excluded.updated_ts`, userID, nowTS)
	return changed, err
}

// RememberToDeviceMessage records an inbound to-device message id; false
// when it was seen before.
func (tx *Tx) RememberToDeviceMessage(ctx context.Context, origin, messageID string, nowTS int64) (bool, error) {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO federation_to_device_ids (origin, message_id, received_ts) VALUES ($1, $2, $3)
		ON CONFLICT (origin, message_id) DO NOTHING`, origin, messageID, nowTS)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// ForgetToDeviceMessages deletes message ids received before cutoffTS.
func (s *Store) ForgetToDeviceMessages(ctx context.Context, cutoffTS int64) error {
	_, err := s.writer().ExecContext(ctx, `DELETE FROM federation_to_device_ids WHERE received_ts < $1`, cutoffTS)
	return err
}

// RemoteDeviceKeys returns the kept device keys of remote users (which
// have no devices rows).
func (s *Store) RemoteDeviceKeys(ctx context.Context, userIDs []string) ([]DeviceKeys, error) {
	var out []DeviceKeys
	for _, c := range chunks(userIDs) {
		q, args := inList(`SELECT user_id, device_id, key_json, ed25519 FROM device_keys WHERE user_id IN (`, c, `)`)
		rows, err := s.reader().QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("query remote device keys: %w", err)
		}
		for rows.Next() {
			var k DeviceKeys
			if err := rows.Scan(&k.UserID, &k.DeviceID, &k.KeyJSON, &k.Ed25519); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scan device keys: %w", err)
			}
			out = append(out, k)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
