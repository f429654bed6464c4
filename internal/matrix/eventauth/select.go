package eventauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

// Event types and values the rules look at.
const (
	typeCreate           = "m.room.create"
	typeMember           = "m.room.member"
	typeJoinRules        = "m.room.join_rules"
	typePowerLevels      = "m.room.power_levels"
	typeThirdPartyInvite = "m.room.third_party_invite"
	typeAliases          = "m.room.aliases"
	typeRedaction        = "m.room.redaction"

	keyAuthorisedVia = "join_authorised_via_users_server"
)

var (
	createTuple      = pdu.StateTuple{Type: typeCreate}
	powerLevelsTuple = pdu.StateTuple{Type: typePowerLevels}
	joinRulesTuple   = pdu.StateTuple{Type: typeJoinRules}
)

func memberTuple(userID string) pdu.StateTuple {
	return pdu.StateTuple{Type: typeMember, StateKey: userID}
}

// Fields is what auth events selection needs to know about an event, so
// that it can run before the event is built.
type Fields struct {
	Version  *roomversion.Version // required
	Type     string
	Sender   string
	StateKey *string
	Content  json.RawMessage
}

// FieldsOf returns the selection fields of a built event.
func FieldsOf(ev *pdu.Event) Fields {
	return Fields{Version: ev.Version, Type: ev.Type, Sender: ev.Sender, StateKey: ev.StateKey, Content: ev.Content}
}

// SelectAuthEvents returns the state tuples an event's auth_events must be
// chosen from (server-server API "Auth events selection"), in a stable
// order and without duplicates: the create event (not from room version
// 12, whose room id stands for it), the power levels, the sender's member
// event and, for member events, the target's member event, the join rules
// for join/invite/knock, the third-party invite named by the signed token,
// and for restricted joins the authorising user's member event. The room
// may not hold all of them; an m.room.create event has none.
func SelectAuthEvents(f Fields) []pdu.StateTuple {
	if f.Version == nil {
		panic("eventauth: SelectAuthEvents needs the room version")
	}
	if f.Type == typeCreate {
		return nil
	}
	var out []pdu.StateTuple
	add := func(t pdu.StateTuple) {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if !f.Version.RoomIDFromCreate {
		add(createTuple)
	}
	add(powerLevelsTuple)
	add(memberTuple(f.Sender))
	if f.Type != typeMember {
		return out
	}
	if f.StateKey != nil {
		add(memberTuple(*f.StateKey))
	}
	content := object(f.Content)
	membership := str(content["membership"])
	switch membership {
	case "join", "invite", "knock":
		add(joinRulesTuple)
	}
	if membership == "invite" {
		if tpi, ok := objectOK(content["third_party_invite"]); ok {
			if token, ok := strOK(object(tpi["signed"])["token"]); ok {
				add(pdu.StateTuple{Type: typeThirdPartyInvite, StateKey: token})
			}
		}
	}
	if membership == "join" && f.Version.Restricted {
		if via, ok := strOK(content[keyAuthorisedVia]); ok {
			add(memberTuple(via))
		}
	}
	return out
}

// CheckAuthEventsShape applies the auth_events rules that need the list
// itself rather than a lookup (rules 2.1–2.5, 3.1–3.4 in v12): no two
// entries for one state tuple, only tuples that SelectAuthEvents allows,
// none rejected, an m.room.create among them (before v12), all in the
// event's room. authEvents maps event ids to the events named by
// ev.AuthEvents; rejected, when not nil, reports whether an event was
// rejected. An auth event missing from the map is an error that is not a
// rejection: the caller must fetch it first. Create events are always
// fine here: rule 1 decides them without looking at auth_events.
func CheckAuthEventsShape(ev *pdu.Event, authEvents map[string]*pdu.Event, rejected func(eventID string) bool) error {
	if ev.Version == nil {
		return errNoVersion
	}
	if ev.Type == typeCreate {
		return nil
	}
	r := rulesFor(ev.Version)
	// A rejected auth event rejects the event even when only its id is
	// kept (servers need not store rejected events).
	if rejected != nil {
		for _, id := range ev.AuthEvents {
			if rejected(id) {
				return r.denyf(at(r.authEvents, 3), "auth event %s was rejected", id)
			}
		}
	}
	evs := make([]*pdu.Event, len(ev.AuthEvents))
	for i, id := range ev.AuthEvents {
		if evs[i] = authEvents[id]; evs[i] == nil {
			return fmt.Errorf("eventauth: auth event %s of %s is not provided", id, ev.ID)
		}
	}
	seen := map[pdu.StateTuple]string{}
	for i, e := range evs {
		if !e.IsState() {
			return r.denyf(at(r.authEvents, 2), "auth event %s is not a state event", ev.AuthEvents[i])
		}
		if first, dup := seen[e.Tuple()]; dup {
			return r.denyf(at(r.authEvents, 1), "auth events %s and %s are both %v", first, ev.AuthEvents[i], e.Tuple())
		}
		seen[e.Tuple()] = ev.AuthEvents[i]
	}
	allowed := SelectAuthEvents(FieldsOf(ev))
	for i, e := range evs {
		if !slices.Contains(allowed, e.Tuple()) {
			return r.denyf(at(r.authEvents, 2), "auth event %s is %v, which auth events selection does not choose", ev.AuthEvents[i], e.Tuple())
		}
	}
	if _, ok := seen[createTuple]; !ok && !ev.Version.RoomIDFromCreate {
		return r.denyf(at(r.authEvents, 4), "no m.room.create among the auth events")
	}
	for i, e := range evs {
		if e.RoomID != ev.RoomID {
			return r.denyf(at(r.authEvents, r.authRoomMismatch), "auth event %s is in room %q, not %q", ev.AuthEvents[i], e.RoomID, ev.RoomID)
		}
	}
	return nil
}

// object decodes a JSON object, or returns an empty one.
func object(raw json.RawMessage) map[string]json.RawMessage {
	m, _ := objectOK(raw)
	return m
}

func objectOK(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil { // null decodes to nil
		return map[string]json.RawMessage{}, false
	}
	return m, true
}

// str returns a JSON string's value, or "" for anything else.
func str(raw json.RawMessage) string {
	s, _ := strOK(raw)
	return s
}

func strOK(raw json.RawMessage) (string, bool) {
	var s string
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}
