package rooms

import (
	"context"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// The one place where events become rows. Every event that enters a room
// goes through persist (the timeline: built here, received, a fork, our
// join through another server) or, kept outside the timeline, through
// eventRow (outliers, backfilled history: no indexer may treat them as
// news).

// eventRow builds the stored row of ev at pos; group is the state group
// before it (-1: unknown).
func eventRow(ev *pdu.Event, roomID string, pos, group int64, unsigned []byte) *store.EventRow {
	row := &store.EventRow{
		Pos: pos, EventID: ev.ID, RoomID: roomID, Type: ev.Type, Sender: ev.Sender,
		Depth: ev.Depth, OriginTS: ev.OriginServerTS, PDU: ev.JSON(), Unsigned: unsigned, StateGroup: group,
	}
	if ev.IsState() {
		row.StateKey.String, row.StateKey.Valid = *ev.StateKey, true
	}
	return row
}

// persist writes, in tx, an event joining a room's timeline at pe.pos
// with the state group before it: its row, the local media it names,
// its effect on the room's state (applyState, the caller's: state
// groups, current state, memberships; nil for none), then the rows
// derived from it (a redaction's effect, relations, history gaps and the
// other domains' indexers). Publishing follows the commit (announce).
func (s *Service) persist(ctx context.Context, tx *store.Tx, b *Batch, pe *pending, group int64, applyState func() error) (*store.EventRow, error) {
	ev := pe.ev
	row := eventRow(ev, b.roomID, pe.pos, group, unsignedFor(pe))
	if pe.txn != nil {
		row.TxnDevice.String, row.TxnDevice.Valid = pe.txn.DeviceID, true
		row.TxnID.String, row.TxnID.Valid = pe.txn.ID, true
		row.TxnKey.String, row.TxnKey.Valid = pe.txn.key(), true
	}
	if err := tx.InsertEvent(ctx, row); err != nil {
		return nil, err
	}
	// Encrypted content names no media the server can see.
	if ids := localMediaIDs(ev.Content, s.serverName); len(ids) > 0 && ev.Type != "m.room.encrypted" {
		if err := tx.AddMediaRefs(ctx, ev.ID, ids); err != nil {
			return nil, err
		}
	}
	if applyState != nil {
		if err := applyState(); err != nil {
			return nil, err
		}
	}
	return row, s.indexEvent(ctx, tx, b, pe)
}
