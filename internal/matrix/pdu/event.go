package pdu

import (
	"encoding/json"

	"luxchat/internal/matrix/roomversion"
)

// Event is a parsed PDU. It is immutable once built or parsed and safe to
// share between goroutines.
type Event struct {
	ID             string
	RoomID         string // empty only for an m.room.create of a RoomIDFromCreate version
	Sender         string
	Type           string
	StateKey       *string // nil for message events
	Content        json.RawMessage
	PrevEvents     []string // ids only, whatever the format
	AuthEvents     []string // ids only, whatever the format
	Depth          int64
	OriginServerTS int64
	// Redacts is the target of an m.room.redaction: the top-level key before
	// room version 11, content.redacts from 11 on.
	Redacts string
	Version *roomversion.Version

	// raw is the canonical JSON of the whole PDU (hashes and signatures
	// included, "unsigned" excluded) as signed by its origin.
	raw []byte
	// signed is, for events Parse gave an id computed from the reference
	// hash, that hash's input, which is also what the origin signed; sigs
	// is the "signatures" member (see verify.go).
	signed []byte
	sigs   json.RawMessage
}

// JSON returns the canonical JSON of the full PDU, without "unsigned".
// Callers must not modify the returned slice.
func (e *Event) JSON() []byte { return e.raw }

// IsState reports whether the event is a state event.
func (e *Event) IsState() bool { return e.StateKey != nil }

// StateKeyIs reports whether the event is a state event with state key k.
func (e *Event) StateKeyIs(k string) bool { return e.StateKey != nil && *e.StateKey == k }

// StateTuple identifies a piece of room state.
type StateTuple struct {
	Type     string
	StateKey string
}

// Tuple returns the event's state tuple; only meaningful when IsState.
func (e *Event) Tuple() StateTuple {
	if e.StateKey == nil {
		return StateTuple{Type: e.Type}
	}
	return StateTuple{Type: e.Type, StateKey: *e.StateKey}
}
