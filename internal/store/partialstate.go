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
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM partial_state_refused WHERE room_id = $1`, roomID); err != nil {
		return err
	}
	_, err := tx.q.ExecContext(ctx, `DELETE FROM partial_state_rooms WHERE room_id = $1`, roomID)
	return err
}

// RefusedEvent is an event refused against a room's partial state, kept
// to be checked again against the full one.
type RefusedEvent struct {
	EventID, RoomID, Origin string
	PDU                     []byte
	AfterPos                int64    // the room's newest position when refused
	StateBefore             StateMap // the partial state before it
}

// RejectPartial records an event refused against a room's partial state:
// rejected (see RejectEvent) until the full state admits it.
func (s *Store) RejectPartial(ctx context.Context, e RefusedEvent, reason string, prevEvents []string) error {
	st := make([][3]string, 0, len(e.StateBefore))
	for k, x := range e.StateBefore {
		st = append(st, [3]string{k.Type, k.StateKey, x})
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO partial_state_refused (event_id, room_id, origin, pdu, after_pos, state_before)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING`,
			e.EventID, e.RoomID, e.Origin, string(e.PDU), e.AfterPos, string(raw)); err != nil {
			return err
		}
		return tx.RecordRejected(ctx, e.EventID, e.RoomID, reason, prevEvents)
	})
}

// RefusedEvents lists the events refused against a room's partial state
// by the room's position when each was refused.
func (s *Store) RefusedEvents(ctx context.Context, roomID string) ([]RefusedEvent, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT event_id, origin, pdu, after_pos, state_before FROM partial_state_refused
		WHERE room_id = $1 ORDER BY after_pos, event_id`, roomID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RefusedEvent
	for rows.Next() {
		e := RefusedEvent{RoomID: roomID, StateBefore: StateMap{}}
		var pduJSON, st string
		if err := rows.Scan(&e.EventID, &e.Origin, &pduJSON, &e.AfterPos, &st); err != nil {
			return nil, err
		}
		var entries [][3]string
		if err := json.Unmarshal([]byte(st), &entries); err != nil {
			return nil, fmt.Errorf("refused event %s: %w", e.EventID, err)
		}
		for _, x := range entries {
			e.StateBefore[StateKey{Type: x[0], StateKey: x[1]}] = x[2]
		}
		e.PDU = []byte(pduJSON)
		out = append(out, e)
	}
	return out, rows.Err()
}

// AdmitRejected forgets that an event was rejected: the full state of
// its room, known now, admits it.
func (tx *Tx) AdmitRejected(ctx context.Context, eventID string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM federation_rejected WHERE event_id = $1`, eventID)
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

// StateGroupsBetween lists the distinct state groups of a room's timeline
// events at stream positions in (from, to].
func (s *Store) StateGroupsBetween(ctx context.Context, roomID string, from, to int64) ([]int64, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT DISTINCT state_group FROM events WHERE room_id = $1 AND stream_pos > $2 AND stream_pos <= $3 AND state_group > 0`, roomID, from, to)
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

// ReplaceStateGroupBetween moves a room's timeline events at stream
// positions in (from, to] from one state group to another.
func (tx *Tx) ReplaceStateGroupBetween(ctx context.Context, roomID string, from, to, old, new int64) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE events SET state_group = $1 WHERE room_id = $2 AND stream_pos > $3 AND stream_pos <= $4 AND state_group = $5`, new, roomID, from, to, old)
	return err
}

// RejectStoredEvent rejects an event of a room's timeline found, once the
// room's full state is known, to fail the authorisation rules: it leaves
// the timeline and is recorded as rejected (see Store.RejectEvent).
func (tx *Tx) RejectStoredEvent(ctx context.Context, eventID, roomID, reason string, prevEvents []string) error {
	if err := tx.RecordRejected(ctx, eventID, roomID, reason, prevEvents); err != nil {
		return err
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
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM room_members WHERE room_id = $1 AND user_id = $2`, roomID, userID); err != nil {
		return err
	}
	return tx.recountJoined(ctx, []Membership{{RoomID: roomID}})
}
