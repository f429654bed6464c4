package pdu

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"luxchat/internal/matrix/id"
	"luxchat/internal/matrix/roomversion"
)

// Limits of the event format (client-server API "Size limits" and the PDU
// schemas).
const (
	MaxSize       = 65536 // bytes of canonical JSON, signatures included
	MaxKeyLength  = 255   // bytes of type and state_key
	MaxPrevEvents = 20
	MaxAuthEvents = 10
)

// ErrInvalid wraps every reason a PDU does not match its room version's
// event format; such events are dropped.
var ErrInvalid = errors.New("invalid pdu")

const maxSafeInt = 1<<53 - 1

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Parse validates a PDU against the event format of room version v and
// returns the parsed event with its id. "unsigned" is dropped (it is not
// covered by hashes or signatures), and so is "event_id" from room version
// 3 on, where the id is computed from the reference hash.
func Parse(raw []byte, v *roomversion.Version) (*Event, error) { return parse(raw, v, true, "") }

// ParseStored is Parse for events read back from storage, checked when
// received: it keeps no bytes for signature checks (see Event.signed), so
// long-lived caches of stored events stay small. eventID is the id stored
// with the event: from room version 3 on it is taken instead of hashing
// the event again, and the shape of hashes and signatures, checked on
// receipt, is not checked again; loading a big room's state costs half as
// much. An empty eventID computes the id.
func ParseStored(raw []byte, v *roomversion.Version, eventID string) (*Event, error) {
	return parse(raw, v, false, eventID)
}

func parse(raw []byte, v *roomversion.Version, keepSigned bool, storedID string) (*Event, error) {
	if v == nil {
		return nil, invalid("no room version")
	}
	obj, err := decodeObject(raw, v.StrictCanonicalJSON)
	if err != nil {
		return nil, err
	}
	drop := []string{"unsigned"}
	if v.EventFormat != roomversion.FormatV1 {
		drop = append(drop, "event_id")
	}
	obj = obj.without(drop...)
	canon, content := obj.encodeCanonicalFinding("content")
	if len(canon) > MaxSize {
		return nil, invalid("event is %d bytes, limit %d", len(canon), MaxSize)
	}
	ev := &Event{Version: v, raw: canon}
	if err := ev.fill(obj, storedID != ""); err != nil {
		return nil, err
	}
	ev.Content = content // the same bytes, within raw
	if v.EventFormat == roomversion.FormatV1 {
		s, ok, err := obj.str("event_id")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, invalid("missing event_id")
		}
		if err := checkEventID(s, v); err != nil {
			return nil, fmt.Errorf("event_id: %w", err)
		}
		ev.ID = s
	} else if storedID != "" && !keepSigned {
		ev.ID = storedID
	} else {
		c, err := referenceBytesOf(obj, v) // obj is canon split
		if err != nil {
			return nil, err
		}
		ev.ID = eventIDFromHash(sha256.Sum256(c), v)
		if keepSigned {
			ev.signed, ev.sigs = c, obj["signatures"]
		}
	}
	return ev, nil
}

// keyTooLong applies the limit on type and state_key: in bytes from room
// version 11, in code points before (as servers counted them then).
func keyTooLong(s string, v *roomversion.Version) bool {
	if v.ByteKeyLimits {
		return len(s) > MaxKeyLength
	}
	return utf8.RuneCountInString(s) > MaxKeyLength
}

// fill copies and checks every field but the event id; stored events'
// hashes and signatures were checked on receipt.
func (ev *Event) fill(obj object, stored bool) error {
	v := ev.Version
	var err error
	if ev.Type, err = requiredString(obj, "type"); err != nil {
		return err
	}
	if keyTooLong(ev.Type, v) {
		return invalid("type longer than %d bytes", MaxKeyLength)
	}
	if ev.Sender, err = requiredString(obj, "sender"); err != nil {
		return err
	}
	ev.Type, ev.Sender = strs.get(ev.Type), strs.get(ev.Sender)
	if _, err := id.ParseUserID(ev.Sender); err != nil {
		return fmt.Errorf("%w: sender: %w", ErrInvalid, err)
	}
	if sk, ok, err := obj.str("state_key"); err != nil {
		return err
	} else if ok {
		if v.OwnedStateKeys {
			// A user id and "_" may lead the usual 255 bytes (MSC3757);
			// the auth rules check the parts.
			if len(sk) > 2*MaxKeyLength+1 {
				return invalid("state_key longer than %d bytes", 2*MaxKeyLength+1)
			}
		} else if keyTooLong(sk, v) {
			return invalid("state_key longer than %d bytes", MaxKeyLength)
		}
		if sk == ev.Sender {
			ev.StateKey = &ev.Sender // most member events: one string, not two
		} else {
			ev.StateKey = &sk
		}
	}
	if err := ev.fillRoomID(obj); err != nil {
		return err
	}
	content, ok, err := obj.sub("content")
	if err != nil {
		return err
	}
	if !ok {
		return invalid("missing content")
	}
	ev.Content = obj["content"]
	if ev.Depth, err = obj.integer("depth"); err != nil {
		return err
	}
	maxDepth := int64(1<<63 - 1) // room versions 1–5: less than 2^63-1 "or at the limit"
	if v.StrictCanonicalJSON {
		maxDepth = maxSafeInt
	}
	if ev.Depth < 0 || ev.Depth > maxDepth {
		return invalid("depth %d out of range", ev.Depth)
	}
	if ev.OriginServerTS, err = obj.integer("origin_server_ts"); err != nil {
		return err
	}
	if !stored {
		if err := checkHashes(obj); err != nil {
			return err
		}
		if err := checkSignatures(obj); err != nil {
			return err
		}
	}
	if ev.PrevEvents, err = references(obj, "prev_events", MaxPrevEvents, v); err != nil {
		return err
	}
	if ev.AuthEvents, err = references(obj, "auth_events", MaxAuthEvents, v); err != nil {
		return err
	}
	for i, id := range ev.AuthEvents {
		ev.AuthEvents[i] = strs.get(id) // the create event, power levels…: in most events
	}
	if ev.Type == "m.room.redaction" {
		from := obj
		if v.RedactsInContent {
			from = content
		}
		// Absent after redaction in versions before 11: the event stays
		// valid, it just redacts nothing.
		if ev.Redacts, _, err = from.str("redacts"); err != nil {
			return err
		}
	}
	return nil
}

func (ev *Event) fillRoomID(obj object) error {
	v := ev.Version
	s, ok, err := obj.str("room_id")
	if err != nil {
		return err
	}
	if !ok {
		// The room id of a version 12 room is its create event's id; a create
		// event that does carry one is rejected by the auth rules, not here.
		if v.RoomIDFromCreate && ev.Type == "m.room.create" && ev.StateKeyIs("") {
			return nil
		}
		return invalid("missing room_id")
	}
	rid, err := id.ParseRoomID(s)
	if err != nil {
		return fmt.Errorf("%w: room_id: %w", ErrInvalid, err)
	}
	if v.RoomIDFromCreate {
		if !isHashID(s, '!', base64.RawURLEncoding) {
			return invalid("room_id %q is not a create event hash", s)
		}
	} else if !rid.HasServer() {
		return invalid("room_id %q has no server name", s)
	}
	ev.RoomID = strs.get(s)
	return nil
}

func requiredString(obj object, key string) (string, error) {
	s, ok, err := obj.str(key)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", invalid("missing %q", key)
	}
	return s, nil
}

func checkHashes(obj object) error {
	hashes, ok, err := obj.sub("hashes")
	if err != nil {
		return err
	}
	if !ok {
		return invalid("missing hashes")
	}
	if _, ok, err := hashes.str("sha256"); err != nil || !ok {
		return invalid("hashes must hold a sha256 string")
	}
	return nil
}

// checkSignatures requires an object of objects of strings.
func checkSignatures(obj object) error {
	sigs, ok, err := obj.sub("signatures")
	if err != nil {
		return err
	}
	if !ok {
		return invalid("missing signatures")
	}
	for server := range sigs {
		keys, _, err := sigs.sub(server)
		if err != nil {
			return invalid("signatures of %q must be an object", server)
		}
		for keyID := range keys {
			if _, _, err := keys.str(keyID); err != nil {
				return invalid("signature %s %s must be a string", server, keyID)
			}
		}
	}
	return nil
}

// references reads prev_events or auth_events: [id, {hashes}] pairs for
// room versions 1–2, plain ids from 3 on.
func references(obj object, key string, limit int, v *roomversion.Version) ([]string, error) {
	raw, ok := obj[key]
	if !ok {
		return nil, invalid("missing %q", key)
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, invalid("%q must be an array", key)
	}
	if len(items) > limit {
		return nil, invalid("%q has %d entries, limit %d", key, len(items), limit)
	}
	ids := make([]string, 0, len(items))
	for _, item := range items {
		ref := item
		if v.EventFormat == roomversion.FormatV1 {
			var pair []json.RawMessage
			if item[0] != '[' || json.Unmarshal(item, &pair) != nil || len(pair) != 2 || pair[1][0] != '{' {
				return nil, invalid("%q entries must be [event_id, {hashes}] pairs", key)
			}
			ref = pair[0]
		}
		s, ok := asString(ref)
		if !ok {
			return nil, invalid("%q entries must be event ids", key)
		}
		if err := checkEventID(s, v); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		ids = append(ids, s)
	}
	return ids, nil
}

// checkEventID checks an event id against the room version's id format.
func checkEventID(s string, v *roomversion.Version) error {
	switch v.EventIDs {
	case roomversion.EventIDBase64:
		if isHashID(s, '$', base64.RawStdEncoding) {
			return nil
		}
	case roomversion.EventIDURLBase64:
		if isHashID(s, '$', base64.RawURLEncoding) {
			return nil
		}
	default:
		if eid, err := id.ParseEventID(s); err == nil && eid.HasServer() {
			return nil
		}
	}
	return invalid("event id %q does not match room version %s", s, v.ID)
}

// isHashID reports whether s is sigil followed by the unpadded base64 of a
// sha256 hash.
func isHashID(s string, sigil byte, enc *base64.Encoding) bool {
	if len(s) != 44 || s[0] != sigil {
		return false
	}
	b, err := enc.DecodeString(s[1:])
	return err == nil && len(b) == 32
}

// RoomIDForCreate returns the room id of the room an event belongs to,
// deriving it for the create event of a room version that has no room_id
// on it: the create event's id with '!' instead of '$'.
func RoomIDForCreate(ev *Event) string {
	if ev.Version.RoomIDFromCreate && ev.Type == "m.room.create" && ev.StateKeyIs("") {
		return string(id.RoomIDFromCreateEvent(id.EventID(ev.ID)))
	}
	return ev.RoomID
}
