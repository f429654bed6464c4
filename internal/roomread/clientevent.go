package roomread

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"luxchat/internal/store"
)

// Format options for ClientEvent.
type Format struct {
	// Viewer is the user the event is shown to; DeviceID their device, so
	// that transaction_id is shown to the device that sent the event.
	Viewer   string
	DeviceID string
	// OmitRoomID drops room_id (sync timelines).
	OmitRoomID bool
	// Relations is the bundled aggregation shown as unsigned.m.relations
	// (nil for none), see Bundles.
	Relations json.RawMessage
	// Membership is the Viewer's membership when the event was sent,
	// shown as unsigned.membership (MSC4115); "" for none.
	Membership string
}

// ClientEvent renders a stored event for a client. The fixed part of the
// client form is cached per event (rooms.Service.ClientBase); room_id and
// unsigned (whose age changes) are spliced in without decoding anything.
func (s *Service) ClientEvent(row *store.EventRow, f Format) json.RawMessage {
	base := s.rooms.ClientBase(row)
	out := make([]byte, 0, len(base)+len(row.Unsigned)+len(row.RoomID)+64)
	out = append(out, base...)
	if !f.OmitRoomID {
		out = append(out, `,"room_id":`...)
		out = appendJSONString(out, row.RoomID)
	}
	out = append(out, `,"unsigned":`...)
	u := row.Unsigned
	if len(u) < 2 || u[len(u)-1] != '}' {
		u = []byte("{}")
	}
	out = append(out, u[:len(u)-1]...)
	if len(u) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"age":`...)
	out = strconv.AppendInt(out, max(time.Now().UnixMilli()-row.OriginTS, 0), 10)
	if row.TxnID.Valid && row.Sender == f.Viewer && row.TxnDevice.String == f.DeviceID {
		out = append(out, `,"transaction_id":`...)
		out = appendJSONString(out, row.TxnID.String)
	}
	if f.Membership != "" {
		out = append(out, `,"membership":`...)
		out = appendJSONString(out, f.Membership)
	}
	if len(f.Relations) > 0 {
		out = append(out, `,"m.relations":`...)
		out = append(out, f.Relations...)
	}
	out = append(out, "}}"...)
	return out
}

func appendJSONString(out []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(out, b...)
}

// RenderState renders state events for a user. Rows already at hand (by
// event id, may be nil) are used before the database.
func (s *Service) RenderState(ctx context.Context, st store.StateMap, userID string, have map[string]*store.EventRow) ([]json.RawMessage, error) {
	if len(have) == 0 {
		return s.renderState(ctx, st, userID)
	}
	out := make([]json.RawMessage, 0, len(st))
	var missing store.StateMap
	for k, id := range st {
		if row := have[id]; row != nil {
			out = append(out, s.ClientEvent(row, Format{Viewer: userID}))
		} else {
			if missing == nil {
				missing = store.StateMap{}
			}
			missing[k] = id
		}
	}
	if len(missing) > 0 {
		rest, err := s.renderState(ctx, missing, userID)
		if err != nil {
			return nil, err
		}
		out = append(out, rest...)
	}
	return out, nil
}

func (s *Service) renderState(ctx context.Context, st store.StateMap, userID string) ([]json.RawMessage, error) {
	ids := make([]string, 0, len(st))
	for _, id := range st {
		ids = append(ids, id)
	}
	rows, err := s.store.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(rows))
	for _, row := range rows {
		out = append(out, s.ClientEvent(row, Format{Viewer: userID}))
	}
	return out, nil
}
