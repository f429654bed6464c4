package rooms

import (
	"encoding/json"
	"strconv"
	"time"

	"luxchat/internal/store"
)

// pduFields are the parts of a PDU the client format shows.
type pduFields struct {
	Content        json.RawMessage `json:"content"`
	OriginServerTS int64           `json:"origin_server_ts"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key"`
	Type           string          `json:"type"`
	Redacts        string          `json:"redacts"`
}

// clientEvent is the ClientEvent format of the Client-Server API.
type clientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id,omitempty"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        string          `json:"redacts,omitempty"`
	Unsigned       json.RawMessage `json:"unsigned,omitempty"`
}

// ClientJSON renders a PDU in the client format with the given unsigned
// object (nil for none).
func (s *Service) ClientJSON(pduJSON []byte, eventID, roomID string, unsigned map[string]json.RawMessage) json.RawMessage {
	var f pduFields
	_ = json.Unmarshal(pduJSON, &f)
	if f.Redacts == "" && f.Type == "m.room.redaction" {
		// Room version 11 moved redacts into content; clients still read
		// the top-level key.
		var c struct {
			Redacts string `json:"redacts"`
		}
		_ = json.Unmarshal(f.Content, &c)
		f.Redacts = c.Redacts
	}
	ce := clientEvent{
		Content: f.Content, EventID: eventID, OriginServerTS: f.OriginServerTS, RoomID: roomID,
		Sender: f.Sender, StateKey: f.StateKey, Type: f.Type, Redacts: f.Redacts,
	}
	if ce.Content == nil {
		ce.Content = json.RawMessage("{}")
	}
	if len(unsigned) > 0 {
		ce.Unsigned, _ = json.Marshal(unsigned)
	}
	data, _ := json.Marshal(ce)
	return data
}

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
// client form is cached per event; room_id and unsigned (whose age changes)
// are spliced in without decoding anything.
func (s *Service) ClientEvent(row *store.EventRow, f Format) json.RawMessage {
	base := s.clientBase(row)
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

// clientBase is the client form of an event without room_id, unsigned and
// the closing brace.
func (s *Service) clientBase(row *store.EventRow) []byte {
	if b, ok := s.bases.get(row.EventID); ok {
		return b
	}
	full := s.ClientJSON(row.PDU, row.EventID, "", nil)
	base := full[:len(full)-1] // drop "}"
	s.bases.put(row.EventID, base)
	return base
}

func appendJSONString(out []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(out, b...)
}
