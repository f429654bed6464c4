package rooms

import (
	"encoding/json"
	"slices"

	"luxchat/internal/matrix/pdu"
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
	if out, ok := fastClientJSON(pduJSON, eventID, roomID, unsigned); ok {
		return out
	}
	return decodedClientJSON(pduJSON, eventID, roomID, unsigned)
}

// decodedClientJSON is ClientJSON through decoding the PDU: for what
// fastClientJSON does not handle.
func decodedClientJSON(pduJSON []byte, eventID, roomID string, unsigned map[string]json.RawMessage) json.RawMessage {
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

// ClientBase is the client form of an event without room_id, unsigned and
// the closing brace: the part of it that is the same for every reader,
// which package roomread completes. It is cached per event; a redaction
// drops its target's.
func (s *Service) ClientBase(row *store.EventRow) []byte {
	if row.Pruned { // one reader's redacted copy: not the event's form
		full := s.ClientJSON(row.JSON(), row.EventID, "", nil)
		return full[:len(full)-1]
	}
	if b, ok := s.bases.get(row.EventID); ok {
		return b
	}
	full := s.ClientJSON(row.JSONOnce(), row.EventID, "", nil)
	base := full[:len(full)-1] // drop "}"
	s.bases.put(row.EventID, base)
	return base
}

// CachedClientBase is ClientBase when it is cached, without computing it.
func (s *Service) CachedClientBase(eventID string) ([]byte, bool) { return s.bases.get(eventID) }

// StateForm is the client form of a stored event as state lists show it
// (room_id and the stored unsigned included), cut before the age, which
// changes: package roomread completes it per reader. A member list of
// thousands is then spliced from memory instead of read, decompressed and
// decoded again on every request. It is cached per event; a redaction
// drops its target's.
type StateForm struct {
	Head       []byte // `{…,"unsigned":{…` ending where "age" goes (after a comma when needed)
	OriginTS   int64
	Sender     string
	TxnID      string // "" for none
	TxnDevice  string
	Membership string // of a member event
}

// NewStateForm makes the state form of a stored event from its client
// base (ClientBase) and, for a member event, its membership.
func NewStateForm(row *store.EventRow, base []byte, membership string) *StateForm {
	head := AppendHead(make([]byte, 0, len(base)+len(row.Unsigned)+len(row.RoomID)+24), base, row, false)
	f := &StateForm{Head: head, OriginTS: row.OriginTS, Sender: row.Sender, Membership: membership}
	if row.TxnID.Valid {
		f.TxnID, f.TxnDevice = row.TxnID.String, row.TxnDevice.String
	}
	return f
}

// AppendHead appends the client form of row from its client base up to
// where the age goes in its unsigned object: room_id unless omitted, and
// the stored unsigned object.
func AppendHead(out, base []byte, row *store.EventRow, omitRoomID bool) []byte {
	out = append(out, base...)
	if !omitRoomID {
		out = append(out, `,"room_id":`...)
		out = AppendJSONString(out, row.RoomID)
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
	return out
}

// appendJSONString appends s as a JSON string (see roomread's twin).
func AppendJSONString(out []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(out, b...)
		}
	}
	out = append(out, '"')
	out = append(out, s...)
	return append(out, '"')
}

// StateForms looks up the cached forms of events: forms[i] is that of
// ids[i], nil when it is not cached.
func (s *Service) StateForms(ids []string) []*StateForm {
	return s.forms.getAll(ids)
}

// PutStateForms caches forms of events by their ids.
func (s *Service) PutStateForms(ids []string, forms []*StateForm) { s.forms.putAll(ids, forms) }

// StateClientBases is ClientBase of stored state events, with the
// membership of the member events among them: those in their room's
// current state are encoded from the parsed state the room's cache
// holds, without decompressing and decoding their stored form again (a
// member list of thousands read cold). Rooms not cached are not loaded.
func (s *Service) StateClientBases(rows []*store.EventRow) (bases [][]byte, memberships []string) {
	bases, memberships = make([][]byte, len(rows)), make([]string, len(rows))
	parsed := make([]*pdu.Event, len(rows))
	byRoom := map[string][]int{}
	for i, row := range rows {
		if b, ok := s.bases.get(row.EventID); ok {
			bases[i] = b
		}
		if row.StateKey.Valid && (bases[i] == nil || row.Type == "m.room.member") {
			byRoom[row.RoomID] = append(byRoom[row.RoomID], i)
		}
	}
	for roomID, idx := range byRoom {
		s.mu.Lock()
		r := s.rooms[roomID]
		s.mu.Unlock()
		if r == nil {
			continue
		}
		r.mu.Lock()
		if r.loaded {
			for _, i := range idx {
				row := rows[i]
				if ev := r.state[pdu.StateTuple{Type: row.Type, StateKey: row.StateKey.String}]; ev != nil && ev.ID == row.EventID {
					parsed[i] = ev
				}
			}
		}
		r.mu.Unlock()
	}
	for i, row := range rows {
		ev := parsed[i]
		if bases[i] == nil && ev != nil {
			full, _ := json.Marshal(clientEvent{Content: ev.Content, EventID: ev.ID, OriginServerTS: ev.OriginServerTS,
				Sender: ev.Sender, StateKey: ev.StateKey, Type: ev.Type, Redacts: ev.Redacts})
			bases[i] = full[:len(full)-1]
			s.bases.put(row.EventID, bases[i])
		} else if bases[i] == nil {
			bases[i] = s.ClientBase(row)
		}
		if row.Type == "m.room.member" {
			if ev != nil {
				memberships[i] = MembershipOf(ev)
			} else {
				// From the client form, the PDU without its hashes and
				// signatures: less to scan.
				memberships[i] = membershipOfBase(bases[i])
			}
		}
	}
	return bases, memberships
}

// membershipOfBase is the membership of a member event's client base
// (ClientBase), read without decoding the event: a cold member list of
// thousands would decode each twice. Anything unexpected goes the slow
// way.
func membershipOfBase(base []byte) string {
	full := append(base[:len(base):len(base)], '}')
	var content []byte
	eachMember(full, func(key, val []byte) bool {
		if string(key) == "content" {
			content = val
			return false
		}
		return true
	})
	var m []byte
	if content != nil && eachMember(content, func(key, val []byte) bool {
		if string(key) == "membership" {
			m = val
		}
		return true
	}) && isString(m) && !slices.Contains(m, '\\') {
		return string(m[1 : len(m)-1])
	}
	return MembershipOf(&pdu.Event{Content: contentOf(full)})
}

// contentOf is the content of a PDU.
func contentOf(pduJSON []byte) json.RawMessage {
	var f struct {
		Content json.RawMessage `json:"content"`
	}
	_ = json.Unmarshal(pduJSON, &f)
	return f.Content
}
