package pdu

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"

	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
)

// Proto is an event not yet laid out, hashed and signed.
type Proto struct {
	RoomID         string // empty for the create event of a RoomIDFromCreate version
	Sender         string
	Type           string
	StateKey       *string
	Content        json.RawMessage // a JSON object; nil means {}
	PrevEvents     []string
	AuthEvents     []string
	Depth          int64
	OriginServerTS int64
	// Redacts is the target of an m.room.redaction; Build puts it where the
	// room version wants it.
	Redacts string
	// RefHashes maps every prev and auth event id to the unpadded base64
	// of its reference hash (Event.ReferenceHash); room versions 1 and 2
	// only.
	RefHashes map[string]string
}

// Build lays out a PDU for room version v, adds its content hash, signs it
// as origin and returns it parsed, so that Parse(ev.JSON(), v) yields the
// same event.
func Build(p Proto, v *roomversion.Version, origin string, key signing.KeyPair) (*Event, error) {
	if v == nil {
		return nil, invalid("no room version")
	}
	if ev, ok, err := buildFast(p, v, origin, key); ok {
		return ev, err
	}
	return buildGeneric(p, v, origin, key)
}

// buildGeneric is Build through maps: every version and every event.
func buildGeneric(p Proto, v *roomversion.Version, origin string, key signing.KeyPair) (*Event, error) {
	strict := v.StrictCanonicalJSON
	content := object{}
	if len(p.Content) > 0 {
		var err error
		if content, err = decodeObject(p.Content, strict); err != nil {
			return nil, fmt.Errorf("content: %w", err)
		}
	}
	obj := object{
		"type":             mustJSON(p.Type),
		"sender":           mustJSON(p.Sender),
		"depth":            mustJSON(p.Depth),
		"origin_server_ts": mustJSON(p.OriginServerTS),
		"hashes":           json.RawMessage(`{}`),
		"signatures":       json.RawMessage(`{}`),
	}
	isCreate := p.Type == "m.room.create" && p.StateKey != nil && *p.StateKey == ""
	switch {
	case v.RoomIDFromCreate && isCreate:
		if p.RoomID != "" {
			return nil, invalid("create event of room version %s must not carry a room id", v.ID)
		}
	default:
		obj["room_id"] = mustJSON(p.RoomID)
	}
	if p.StateKey != nil {
		obj["state_key"] = mustJSON(*p.StateKey)
	}
	if v.Redaction < roomversion.RedactV11 {
		// Room version 11 stopped protecting (and using) origin.
		obj["origin"] = mustJSON(origin)
	}
	if p.Redacts != "" {
		if p.Type != "m.room.redaction" {
			return nil, invalid("redacts on a %s event", p.Type)
		}
		if v.RedactsInContent {
			if prev, ok := content["redacts"]; ok && string(prev) != string(mustJSON(p.Redacts)) {
				return nil, invalid("content.redacts differs from Redacts")
			}
			content["redacts"] = mustJSON(p.Redacts)
		} else {
			obj["redacts"] = mustJSON(p.Redacts)
		}
	}
	obj["content"] = mustJSON(content)
	if v.EventFormat == roomversion.FormatV1 {
		eid, err := randomEventID(origin)
		if err != nil {
			return nil, err
		}
		obj["event_id"] = mustJSON(eid)
		prev, err := pairs(p.PrevEvents, p.RefHashes)
		if err != nil {
			return nil, err
		}
		auth, err := pairs(p.AuthEvents, p.RefHashes)
		if err != nil {
			return nil, err
		}
		obj["prev_events"], obj["auth_events"] = prev, auth
	} else {
		obj["prev_events"] = mustJSON(nonNil(p.PrevEvents))
		obj["auth_events"] = mustJSON(nonNil(p.AuthEvents))
	}
	raw, err := obj.encode(strict)
	if err != nil {
		return nil, err
	}
	signed, err := HashAndSign(raw, v, origin, key)
	if err != nil {
		return nil, err
	}
	return Parse(signed, v)
}

// pairs lays out references as [id, {"sha256": hash}] (room versions 1–2).
func pairs(ids []string, hashes map[string]string) (json.RawMessage, error) {
	out := make([][2]any, 0, len(ids))
	for _, eid := range ids {
		h, ok := hashes[eid]
		if !ok {
			return nil, invalid("no reference hash for %s", eid)
		}
		out = append(out, [2]any{eid, map[string]string{"sha256": h}})
	}
	return json.Marshal(out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// randomEventID makes a room version 1–2 event id "$<18 letters>:origin".
func randomEventID(origin string) (string, error) {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return "$" + string(b) + ":" + origin, nil
}

// HashAndSign sets "hashes" to the content hash of raw and adds the
// signature of serverName (server-server API "Signing Events"). raw need
// not be a complete PDU; "unsigned" is kept.
func HashAndSign(raw []byte, v *roomversion.Version, serverName string, key signing.KeyPair) ([]byte, error) {
	obj, err := decodeObject(raw, v.StrictCanonicalJSON)
	if err != nil {
		return nil, err
	}
	h, err := ContentHash(raw)
	if err != nil {
		return nil, err
	}
	obj["hashes"] = mustJSON(map[string]string{"sha256": signing.EncodeBase64(h[:])})
	hashed, err := obj.encode(v.StrictCanonicalJSON)
	if err != nil {
		return nil, err
	}
	return SignEvent(hashed, v, serverName, key)
}

// SignEvent adds the signature of serverName to a PDU, keeping its other
// signatures: the signature covers the redacted event, so it survives
// redaction. Resident servers use it to co-sign invites and restricted
// joins.
func SignEvent(raw []byte, v *roomversion.Version, serverName string, key signing.KeyPair) ([]byte, error) {
	obj, err := decodeObject(raw, v.StrictCanonicalJSON)
	if err != nil {
		return nil, err
	}
	redacted, err := Redact(raw, v)
	if err != nil {
		return nil, err
	}
	signed, err := signing.SignJSON(redacted, serverName, key)
	if err != nil {
		return nil, err
	}
	signedObj, err := splitCanonical(signed)
	if err != nil {
		return nil, err
	}
	obj["signatures"] = signedObj["signatures"]
	return obj.encode(v.StrictCanonicalJSON)
}

// VerifySignature checks the signature of serverName with keyID on an
// event; which servers must have signed is the caller's decision.
func VerifySignature(ev *Event, serverName, keyID string, pub ed25519.PublicKey) error {
	if ev.signed != nil {
		return verifyParsed(ev, serverName, keyID, pub)
	}
	redacted, err := Redact(ev.raw, ev.Version)
	if err != nil {
		return err
	}
	return signing.VerifyJSON(redacted, serverName, keyID, pub)
}

// Signatures returns the event's signatures: server name → key id →
// unpadded base64 signature.
func (e *Event) Signatures() map[string]map[string]string {
	if e.sigs != nil {
		if sigs, err := parsedSignatures(e.sigs); err == nil {
			return sigs
		}
	}
	sigs, err := signing.Signatures(e.raw)
	if err != nil {
		panic("pdu: signatures of a parsed event: " + err.Error())
	}
	return sigs
}
