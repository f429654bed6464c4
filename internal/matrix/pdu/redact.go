package pdu

import (
	"fmt"

	"luxchat/internal/matrix/roomversion"
)

// Top-level keys that survive redaction.
var (
	keepTopV1 = setOf("event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
		"signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",
		"origin_server_ts", "membership")
	// Room version 11 stops protecting origin, membership and prev_state.
	keepTopV11 = setOf("event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
		"signatures", "depth", "prev_events", "auth_events", "origin_server_ts")
)

var powerLevelsV1 = []string{"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}

// keepContent lists, per algorithm and event type, the content keys that
// survive redaction; all means the whole content is kept.
func keepContent(algo roomversion.RedactionAlgo, evType string) (keys []string, all bool) {
	switch evType {
	case "m.room.member":
		switch {
		case algo >= roomversion.RedactV11:
			return []string{"membership", "join_authorised_via_users_server", "third_party_invite"}, false
		case algo >= roomversion.RedactV9:
			return []string{"membership", "join_authorised_via_users_server"}, false
		}
		return []string{"membership"}, false
	case "m.room.create":
		if algo >= roomversion.RedactV11 {
			return nil, true
		}
		return []string{"creator"}, false
	case "m.room.join_rules":
		if algo >= roomversion.RedactV8 {
			return []string{"join_rule", "allow"}, false
		}
		return []string{"join_rule"}, false
	case "m.room.power_levels":
		if algo >= roomversion.RedactV11 {
			return append([]string{"invite"}, powerLevelsV1...), false
		}
		return powerLevelsV1, false
	case "m.room.history_visibility":
		return []string{"history_visibility"}, false
	case "m.room.aliases":
		if algo == roomversion.RedactV1 {
			return []string{"aliases"}, false
		}
	case "m.room.redaction":
		if algo >= roomversion.RedactV11 {
			return []string{"redacts"}, false
		}
	}
	return nil, false
}

// Redact applies the redaction algorithm of the room version to a PDU and
// returns its canonical JSON. "unsigned" is removed with every other key
// the algorithm does not list; hashes and signatures stay.
func Redact(raw []byte, v *roomversion.Version) ([]byte, error) {
	obj, err := decodeObject(raw, v.StrictCanonicalJSON)
	if err != nil {
		return nil, err
	}
	out, err := redactObject(obj, v)
	if err != nil {
		return nil, err
	}
	// Every value was split from the canonical JSON of raw.
	return out.encodeCanonical(), nil
}

// redactObject is Redact for a PDU already split.
func redactObject(obj object, v *roomversion.Version) (object, error) {
	keepTop := keepTopV1
	if v.Redaction >= roomversion.RedactV11 {
		keepTop = keepTopV11
	}
	out := object{}
	for k, val := range obj {
		if keepTop[k] {
			out[k] = val
		}
	}
	evType, _, err := obj.str("type")
	if err != nil {
		return nil, err
	}
	if content, ok, err := obj.sub("content"); err != nil {
		return nil, err
	} else if ok {
		keys, all := keepContent(v.Redaction, evType)
		if !all {
			kept := object{}
			for _, k := range keys {
				if val, ok := content[k]; ok {
					kept[k] = val
				}
			}
			keepOnlySigned(v, evType, kept)
			out["content"] = kept.encodeCanonical()
		}
	}
	return out, nil
}

// keepOnlySigned reduces a member event's content.third_party_invite to its
// "signed" key (room version 11 on). A third_party_invite that is not an
// object has no keys to keep and is dropped.
func keepOnlySigned(v *roomversion.Version, evType string, content object) {
	if v.Redaction < roomversion.RedactV11 || evType != "m.room.member" {
		return
	}
	tpi, ok, err := content.sub("third_party_invite")
	if !ok {
		return
	}
	if err != nil {
		delete(content, "third_party_invite")
		return
	}
	kept := object{}
	if signed, ok := tpi["signed"]; ok {
		kept["signed"] = signed
	}
	content["third_party_invite"] = kept.encodeCanonical()
}

// RedactEvent returns the redacted form of a parsed event. It keeps the
// event id: the reference hash covers only what redaction keeps.
func RedactEvent(ev *Event) (*Event, error) {
	redacted, err := Redact(ev.raw, ev.Version)
	if err != nil {
		return nil, err
	}
	out, err := Parse(redacted, ev.Version)
	if err != nil {
		return nil, fmt.Errorf("redacted event: %w", err)
	}
	if out.ID != ev.ID {
		return nil, fmt.Errorf("%w: redaction changed event id %s to %s", ErrInvalid, ev.ID, out.ID)
	}
	return out, nil
}

func setOf(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}
