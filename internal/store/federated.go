package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// MinEventPos returns the smallest stream position of any event above
// BackfillBand (0 when there is none below 1): outliers are numbered
// downwards from it.
func (s *Store) MinEventPos(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := s.reader().QueryRowContext(ctx, `SELECT MIN(stream_pos) FROM events WHERE stream_pos > $1`, BackfillBand).Scan(&n); err != nil {
		return 0, fmt.Errorf("min event position: %w", err)
	}
	return min(n.Int64, 0), nil
}

// InsertOutlier stores an event outside every timeline (e.Pos < 0); an
// event already stored is left as it is.
func (tx *Tx) InsertOutlier(ctx context.Context, e *EventRow) error {
	if e.Pos >= 0 {
		return errors.New("outlier needs a negative position")
	}
	_, err := tx.q.ExecContext(ctx, `INSERT INTO events (`+eventInsertCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (event_id) DO NOTHING`, e.insertArgs()...)
	if err != nil {
		return fmt.Errorf("insert outlier: %w", err)
	}
	return nil
}

// PromoteOutlier gives a stored outlier its timeline position and the
// state group before it, once its state is known.
func (tx *Tx) PromoteOutlier(ctx context.Context, eventID string, pos, stateGroup int64) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE events SET stream_pos = $1, state_group = $2 WHERE event_id = $3 AND stream_pos < 0 AND stream_pos > $4`, pos, stateGroup, eventID, BackfillBand)
	return err
}

// DeleteOutlier removes an outlier so that the event can be stored again
// with its state.
func (tx *Tx) DeleteOutlier(ctx context.Context, eventID string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM events WHERE event_id = $1 AND stream_pos < 0 AND stream_pos > $2`, eventID, BackfillBand)
	return err
}

// SetExtremities replaces a room's recorded forward extremities. A linear
// room (one extremity) records none: see Extremities.
func (tx *Tx) SetExtremities(ctx context.Context, roomID string, ids []string) error {
	if len(ids) < 2 {
		return tx.ClearExtremities(ctx, roomID)
	}
	return tx.RecordExtremities(ctx, roomID, ids)
}

// RecordExtremities records a room's forward extremities even when there
// is one: for a linear room whose newest event is not its extremity.
func (tx *Tx) RecordExtremities(ctx context.Context, roomID string, ids []string) error {
	if err := tx.ClearExtremities(ctx, roomID); err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO room_extremities (room_id, event_id) VALUES ($1, $2) ON CONFLICT (room_id, event_id) DO NOTHING`, roomID, id); err != nil {
			return fmt.Errorf("insert extremity: %w", err)
		}
	}
	return nil
}

// RejectEvent records that an event failed the authorisation rules.
func (s *Store) RejectEvent(ctx context.Context, eventID, roomID, reason string, prevEvents []string) error {
	return s.InTx(ctx, func(tx *Tx) error { return tx.RecordRejected(ctx, eventID, roomID, reason, prevEvents) })
}

// RecordRejected records in tx that an event failed the authorisation
// rules; prevEvents are kept so that the state after it (its state
// before) can be found.
func (tx *Tx) RecordRejected(ctx context.Context, eventID, roomID, reason string, prevEvents []string) error {
	prev, err := json.Marshal(append([]string{}, prevEvents...))
	if err != nil {
		return err
	}
	if _, err := tx.q.ExecContext(ctx, `INSERT INTO federation_rejected (event_id, room_id, reason, received_ts, prev_events) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (event_id) DO NOTHING`, eventID, roomID, reason, now(), string(prev)); err != nil {
		return fmt.Errorf("record rejected event: %w", err)
	}
	return nil
}

// RejectedPrevEvents returns the prev events of a rejected event, or
// ErrNotFound when it was not rejected.
func (s *Store) RejectedPrevEvents(ctx context.Context, eventID string) ([]string, error) {
	var raw string
	err := s.reader().QueryRowContext(ctx, `SELECT prev_events FROM federation_rejected WHERE event_id = $1`, eventID).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var out []string
	err = json.Unmarshal([]byte(raw), &out)
	return out, err
}

// RejectedEvents returns which of ids were rejected.
func (s *Store) RejectedEvents(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(len(ids), start+500)]
		q, args := inList(`SELECT event_id FROM federation_rejected WHERE event_id IN (`, chunk, `)`)
		found, err := queryStrings(ctx, s.reader(), q, args...)
		if err != nil {
			return nil, err
		}
		for _, id := range found {
			out[id] = true
		}
	}
	return out, nil
}

// FederationTxn returns the stored answer to an inbound transaction, or
// ErrNotFound.
func (s *Store) FederationTxn(ctx context.Context, origin, txnID string) ([]byte, error) {
	var resp string
	err := s.reader().QueryRowContext(ctx, `SELECT response FROM federation_txns WHERE origin = $1 AND txn_id = $2`, origin, txnID).Scan(&resp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return []byte(resp), err
}

// PutFederationTxn stores the answer to an inbound transaction.
func (s *Store) PutFederationTxn(ctx context.Context, origin, txnID string, response []byte) error {
	_, err := s.writer().ExecContext(ctx, `INSERT INTO federation_txns (origin, txn_id, response, created_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (origin, txn_id) DO NOTHING`, origin, txnID, string(response), now())
	return err
}

// RemoteMembership is an invite or knock of a local user to a room this
// server is not in.
type RemoteMembership struct {
	RoomID      string
	UserID      string
	Membership  string
	EventID     string
	RoomVersion string
	PDU         []byte
	Stripped    []byte // JSON array of stripped state events
	Servers     []byte // JSON array of servers that know the room
}

// PutRemoteMembership records a remote invite or knock and the user's
// membership row at pos.
func (tx *Tx) PutRemoteMembership(ctx context.Context, m RemoteMembership, pos int64) error {
	if _, err := tx.q.ExecContext(ctx, `INSERT INTO remote_memberships (room_id, user_id, membership, event_id, room_version, pdu, stripped, servers)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id,
		room_version = excluded.room_version, pdu = excluded.pdu, stripped = excluded.stripped, servers = excluded.servers`,
		m.RoomID, m.UserID, m.Membership, m.EventID, m.RoomVersion, string(m.PDU), string(m.Stripped), string(m.Servers)); err != nil {
		return fmt.Errorf("put remote membership: %w", err)
	}
	return tx.SetMembership(ctx, Membership{RoomID: m.RoomID, UserID: m.UserID, Membership: m.Membership, EventID: m.EventID, Pos: pos})
}

// GetRemoteMembership returns a remote invite or knock, or ErrNotFound.
func (s *Store) GetRemoteMembership(ctx context.Context, roomID, userID string) (*RemoteMembership, error) {
	m := RemoteMembership{RoomID: roomID, UserID: userID}
	var p, st, sv string
	err := s.reader().QueryRowContext(ctx, `SELECT membership, event_id, room_version, pdu, stripped, servers FROM remote_memberships WHERE room_id = $1 AND user_id = $2`, roomID, userID).
		Scan(&m.Membership, &m.EventID, &m.RoomVersion, &p, &st, &sv)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	m.PDU, m.Stripped, m.Servers = []byte(p), []byte(st), []byte(sv)
	return &m, nil
}

// DeleteRemoteMembership forgets a remote invite or knock (the user joined,
// rejected or retracted it).
func (tx *Tx) DeleteRemoteMembership(ctx context.Context, roomID, userID string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM remote_memberships WHERE room_id = $1 AND user_id = $2`, roomID, userID)
	return err
}

// RemoteRoomVersion returns the room version recorded with the remote
// invites, knocks and leaves of a room not known here, or ErrNotFound.
func (s *Store) RemoteRoomVersion(ctx context.Context, roomID string) (string, error) {
	var v string
	err := s.reader().QueryRowContext(ctx, `SELECT room_version FROM remote_memberships WHERE room_id = $1 LIMIT 1`, roomID).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return v, err
}
