package pdu

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strconv"

	"luxchat/internal/matrix/canonicaljson"
	"luxchat/internal/matrix/id"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
)

// buildFast is Build for the event formats of room versions 3 and later,
// writing canonical JSON directly instead of re-encoding maps: every local
// message goes through here, and the generic path spent most of its time
// decoding and re-encoding JSON. Its output is byte for byte that of the
// generic path (TestBuildFastMatchesGeneric). It returns ok false for what
// it does not handle (redactions), which take the generic path.
func buildFast(p Proto, v *roomversion.Version, origin string, key signing.KeyPair) (ev *Event, ok bool, err error) {
	if v.EventFormat != roomversion.FormatV2 || p.Redacts != "" {
		return nil, false, nil
	}
	isCreate := p.Type == "m.room.create" && p.StateKey != nil && *p.StateKey == ""
	omitRoomID := v.RoomIDFromCreate && isCreate
	if omitRoomID && p.RoomID != "" {
		return nil, true, invalid("create event of room version %s must not carry a room id", v.ID)
	}
	if len(p.Type) > MaxKeyLength || (p.StateKey != nil && len(*p.StateKey) > MaxKeyLength) {
		return nil, true, invalid("type or state_key longer than %d bytes", MaxKeyLength)
	}
	if _, err := id.ParseUserID(p.Sender); err != nil {
		return nil, true, fmt.Errorf("%w: sender: %w", ErrInvalid, err)
	}
	if len(p.PrevEvents) > MaxPrevEvents || len(p.AuthEvents) > MaxAuthEvents {
		return nil, true, invalid("too many prev or auth events")
	}
	for _, ref := range append(slices.Clone(p.PrevEvents), p.AuthEvents...) {
		if err := checkEventID(ref, v); err != nil {
			return nil, true, err
		}
	}
	if !omitRoomID {
		// The same checks as Parse, on a throw-away event.
		probe := &Event{Version: v, Type: p.Type, StateKey: p.StateKey}
		if err := probe.fillRoomID(object{"room_id": mustJSON(p.RoomID)}); err != nil {
			return nil, true, err
		}
	}
	if p.Depth < 0 || (v.StrictCanonicalJSON && p.Depth > maxSafeInt) {
		return nil, true, invalid("depth %d out of range", p.Depth)
	}
	content := []byte("{}")
	if len(p.Content) > 0 {
		if v.StrictCanonicalJSON {
			content, err = canonicaljson.Canonicalize(p.Content)
		} else {
			content, err = canonicaljson.CanonicalizeLenient(p.Content)
		}
		if err != nil {
			return nil, true, fmt.Errorf("content: %w", err)
		}
		if content[0] != '{' {
			return nil, true, invalid("content must be an object")
		}
	}
	withOrigin := v.Redaction < roomversion.RedactV11

	// write lays the PDU out with its keys in canonical (sorted) order;
	// hashes and signatures are optional so that the same code produces the
	// hashed input, the signed input and the final event.
	write := func(dst []byte, body []byte, hashes, signatures []byte) []byte {
		dst = append(dst, `{"auth_events":`...)
		dst = appendStrings(dst, p.AuthEvents)
		dst = append(dst, `,"content":`...)
		dst = append(dst, body...)
		dst = append(dst, `,"depth":`...)
		dst = appendInt(dst, p.Depth)
		if hashes != nil {
			dst = append(dst, `,"hashes":`...)
			dst = append(dst, hashes...)
		}
		if withOrigin {
			dst = append(dst, `,"origin":`...)
			dst = canonicaljson.AppendString(dst, origin)
		}
		dst = append(dst, `,"origin_server_ts":`...)
		dst = appendInt(dst, p.OriginServerTS)
		dst = append(dst, `,"prev_events":`...)
		dst = appendStrings(dst, p.PrevEvents)
		if !omitRoomID {
			dst = append(dst, `,"room_id":`...)
			dst = canonicaljson.AppendString(dst, p.RoomID)
		}
		dst = append(dst, `,"sender":`...)
		dst = canonicaljson.AppendString(dst, p.Sender)
		if signatures != nil {
			dst = append(dst, `,"signatures":`...)
			dst = append(dst, signatures...)
		}
		if p.StateKey != nil {
			dst = append(dst, `,"state_key":`...)
			dst = canonicaljson.AppendString(dst, *p.StateKey)
		}
		dst = append(dst, `,"type":`...)
		dst = canonicaljson.AppendString(dst, p.Type)
		return append(dst, '}')
	}
	size := len(content) + 512 + 64*(len(p.AuthEvents)+len(p.PrevEvents)) + len(p.Sender) + len(p.RoomID) + len(p.Type)

	// Content hash: the event without hashes, signatures and unsigned.
	unhashed := write(make([]byte, 0, size), content, nil, nil)
	contentHash := sha256.Sum256(unhashed)
	hashes := append(append([]byte(`{"sha256":`), canonicaljson.AppendString(nil, signing.EncodeBase64(contentHash[:]))...), '}')

	// The signature covers the redacted event without signatures; so does
	// the reference hash, which makes the event id.
	redactedContent, err := Redact(write(nil, content, hashes, nil), v)
	if err != nil {
		return nil, true, err
	}
	sig := key.Sign(redactedContent)
	refHash := sha256.Sum256(redactedContent)

	sigs := make([]byte, 0, 160)
	sigs = append(sigs, '{')
	sigs = canonicaljson.AppendString(sigs, origin)
	sigs = append(sigs, `:{`...)
	sigs = canonicaljson.AppendString(sigs, key.ID())
	sigs = append(sigs, ':')
	sigs = canonicaljson.AppendString(sigs, signing.EncodeBase64(sig))
	sigs = append(sigs, "}}"...)
	raw := write(make([]byte, 0, size+len(sigs)+64), content, hashes, sigs)
	if len(raw) > MaxSize {
		return nil, true, invalid("event is %d bytes, limit %d", len(raw), MaxSize)
	}
	ev = &Event{
		ID: eventIDFromHash(refHash, v), RoomID: p.RoomID, Sender: p.Sender, Type: p.Type,
		Content: content, PrevEvents: nonNil(p.PrevEvents), AuthEvents: nonNil(p.AuthEvents),
		Depth: p.Depth, OriginServerTS: p.OriginServerTS, Version: v, raw: raw,
	}
	if p.StateKey != nil {
		sk := *p.StateKey
		ev.StateKey = &sk
	}
	return ev, true, nil
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = canonicaljson.AppendString(dst, s)
	}
	return append(dst, ']')
}

func appendInt(dst []byte, n int64) []byte {
	return strconv.AppendInt(dst, n, 10)
}
