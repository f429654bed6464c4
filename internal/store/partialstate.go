package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// PartialStateRoom is a room joined with partial state whose full state
// is still to be fetched.
type PartialStateRoom struct {
	RoomID      string
	JoinEventID string
	Servers     []string
}

// PutPartialStateRoom marks a room as joined with partial state.
func (tx *Tx) PutPartialStateRoom(ctx context.Context, p PartialStateRoom) error {
	servers, _ := json.Marshal(p.Servers)
	_, err := tx.q.ExecContext(ctx, `INSERT INTO partial_state_rooms (room_id, join_event_id, servers) VALUES ($1, $2, $3)
		ON CONFLICT (room_id) DO UPDATE SET join_event_id = excluded.join_event_id, servers = excluded.servers`,
		p.RoomID, p.JoinEventID, string(servers))
	return err
}

// DeletePartialStateRoom clears a room's partial-state mark (its full
// state is known, or the room was left).
func (tx *Tx) DeletePartialStateRoom(ctx context.Context, roomID string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM partial_state_rooms WHERE room_id = $1`, roomID)
	return err
}

// PartialStateRooms lists the rooms still joined with partial state.
func (s *Store) PartialStateRooms(ctx context.Context) ([]PartialStateRoom, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT room_id, join_event_id, servers FROM partial_state_rooms ORDER BY room_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PartialStateRoom
	for rows.Next() {
		var p PartialStateRoom
		var servers string
		if err := rows.Scan(&p.RoomID, &p.JoinEventID, &servers); err != nil {
			return nil, err
		}
		_ = json.Unmarshal([]byte(servers), &p.Servers)
		out = append(out, p)
	}
	return out, rows.Err()
}

// SetEventStateGroup records the state group before a stored event (the
// full state before a partial-state join, once it is known).
func (tx *Tx) SetEventStateGroup(ctx context.Context, eventID string, group int64) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE events SET state_group = $1 WHERE event_id = $2`, group, eventID)
	return err
}

// StateGroupsAfter lists the distinct state groups of a room's timeline
// events after a stream position.
func (s *Store) StateGroupsAfter(ctx context.Context, roomID string, pos int64) ([]int64, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT DISTINCT state_group FROM events WHERE room_id = $1 AND stream_pos > $2 AND state_group > 0`, roomID, pos)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var g int64
		if err := rows.Scan(&g); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// ReplaceStateGroupAfter moves a room's timeline events after a stream
// position from one state group to another.
func (tx *Tx) ReplaceStateGroupAfter(ctx context.Context, roomID string, pos, from, to int64) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE events SET state_group = $1 WHERE room_id = $2 AND stream_pos > $3 AND state_group = $4`, to, roomID, pos, from)
	return err
}

// RejectStoredEvent rejects an event of a room's timeline found, once the
// room's full state is known, to fail the authorisation rules: it leaves
// the timeline and is recorded as rejected (see Store.RejectEvent).
func (tx *Tx) RejectStoredEvent(ctx context.Context, eventID, roomID, reason string, prevEvents []string) error {
	prev, _ := json.Marshal(append([]string{}, prevEvents...))
	if _, err := tx.q.ExecContext(ctx, `INSERT INTO federation_rejected (event_id, room_id, reason, received_ts, prev_events) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (event_id) DO NOTHING`, eventID, roomID, reason, now(), string(prev)); err != nil {
		return fmt.Errorf("reject stored event: %w", err)
	}
	_, err := tx.q.ExecContext(ctx, `DELETE FROM events WHERE event_id = $1`, eventID)
	return err
}

// DeleteCurrentState removes a key from a room's current state.
func (tx *Tx) DeleteCurrentState(ctx context.Context, roomID string, k StateKey) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM room_state WHERE room_id = $1 AND type = $2 AND state_key = $3`, roomID, k.Type, k.StateKey)
	return err
}

// DeleteMembership forgets a user's membership of a room (its event was
// rejected and no other replaces it).
func (tx *Tx) DeleteMembership(ctx context.Context, roomID, userID string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM room_members WHERE room_id = $1 AND user_id = $2`, roomID, userID)
	return err
}
