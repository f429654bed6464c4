package rooms

import (
	"encoding/json"
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

// clientJSON renders a PDU in the client format with the given unsigned
// object (nil for none).
func (s *Service) clientJSON(pduJSON []byte, eventID, roomID string, unsigned map[string]json.RawMessage) json.RawMessage {
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
}

// ClientEvent renders a stored event for a client.
func (s *Service) ClientEvent(row *store.EventRow, f Format) json.RawMessage {
	var u map[string]json.RawMessage
	if len(row.Unsigned) > 2 {
		_ = json.Unmarshal(row.Unsigned, &u)
	}
	if u == nil {
		u = make(map[string]json.RawMessage, 2)
	}
	age := time.Now().UnixMilli() - row.OriginTS
	u["age"], _ = json.Marshal(max(age, 0))
	if row.TxnID.Valid && row.Sender == f.Viewer && row.TxnDevice.String == f.DeviceID {
		u["transaction_id"], _ = json.Marshal(row.TxnID.String)
	}
	roomID := row.RoomID
	if f.OmitRoomID {
		roomID = ""
	}
	return s.clientJSON(row.PDU, row.EventID, roomID, u)
}
