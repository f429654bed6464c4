// Package roomversion is the table of room versions 1–12: one row per
// version with the rule flags that the protocol packages switch on.
//
// It imports only the standard library.
package roomversion

// EventFormat selects the PDU layout.
type EventFormat int

const (
	// FormatV1 carries event_id in the event and references prev/auth
	// events as [id, {hashes}] pairs (room versions 1 and 2).
	FormatV1 EventFormat = 1
	// FormatV2 derives event ids from the reference hash and references
	// other events by id alone (room versions 3+).
	FormatV2 EventFormat = 2
)

// EventIDFormat selects how event ids are derived.
type EventIDFormat int

const (
	EventIDServer    EventIDFormat = iota // "$opaque:server" chosen by the origin (v1, v2)
	EventIDBase64                         // "$" + unpadded standard base64 of the reference hash (v3)
	EventIDURLBase64                      // "$" + unpadded URL-safe base64 (v4+)
)

// RedactionAlgo selects the keys kept by redaction.
type RedactionAlgo int

const (
	RedactV1  RedactionAlgo = 1
	RedactV6  RedactionAlgo = 6  // drops m.room.aliases special case
	RedactV8  RedactionAlgo = 8  // keeps join_rules "allow"
	RedactV9  RedactionAlgo = 9  // keeps member "join_authorised_via_users_server"
	RedactV11 RedactionAlgo = 11 // keeps all of m.room.create content, "redacts", "invite"; drops "origin" etc.
)

// StateRes selects the state resolution algorithm.
type StateRes int

const (
	StateResV1  StateRes = 1
	StateResV2  StateRes = 2
	StateResV21 StateRes = 21 // v2.1 of room version 12
)

// Version holds the rules of one room version.
type Version struct {
	ID          string
	Stable      bool
	EventFormat EventFormat
	EventIDs    EventIDFormat
	Redaction   RedactionAlgo
	StateRes    StateRes

	// EnforceKeyValidity: signing keys must be valid at origin_server_ts (v5+).
	EnforceKeyValidity bool
	// StrictCanonicalJSON: integers in the safe range, no floats (v6+).
	StrictCanonicalJSON bool
	// SpecialCaseAliases: m.room.aliases auth rule of v1–5.
	SpecialCaseAliases bool
	// NotificationsPowerLevels: auth checks "notifications" in power levels (v6+).
	NotificationsPowerLevels bool
	// Knock: the knock membership and join rule (v7+).
	Knock bool
	// Restricted: the restricted join rule (v8+).
	Restricted bool
	// KnockRestricted: the knock_restricted join rule (v10+).
	KnockRestricted bool
	// IntegerPowerLevels: power level values must be JSON integers, not strings (v10+).
	IntegerPowerLevels bool
	// CreatorInContent: m.room.create carries "creator" (v1–10); v11+ uses the sender.
	CreatorInContent bool
	// RedactsInContent: m.room.redaction carries "redacts" in content (v11+).
	RedactsInContent bool
	// OwnedStateKeys (MSC3757, unstable): a state_key that starts with a
	// user id and "_" belongs to that user, whom only users of a higher
	// level may overwrite; state keys may then hold 511 bytes.
	OwnedStateKeys bool
	// ByteKeyLimits: the 255 limits on type and state_key count bytes
	// (v11+). Servers counted code points in older rooms, so events of
	// up to 255 code points exist there and must stay usable.
	ByteKeyLimits bool
	// RoomIDFromCreate: the room id is the create event's reference hash with
	// sigil '!'; the create event has no room_id and is never an auth event;
	// creators have infinite power (v12+).
	RoomIDFromCreate bool
}

var versions = map[string]*Version{}

func init() {
	base := Version{
		Stable: true, EventFormat: FormatV1, EventIDs: EventIDServer, Redaction: RedactV1,
		StateRes: StateResV1, SpecialCaseAliases: true, CreatorInContent: true,
	}
	add := func(id string, change func(v *Version)) {
		v := base
		v.ID = id
		change(&v)
		versions[id] = &v
		base = v
	}
	add("1", func(v *Version) {})
	add("2", func(v *Version) { v.StateRes = StateResV2 })
	add("3", func(v *Version) { v.EventFormat = FormatV2; v.EventIDs = EventIDBase64 })
	add("4", func(v *Version) { v.EventIDs = EventIDURLBase64 })
	add("5", func(v *Version) { v.EnforceKeyValidity = true })
	add("6", func(v *Version) {
		v.Redaction = RedactV6
		v.StrictCanonicalJSON = true
		v.SpecialCaseAliases = false
		v.NotificationsPowerLevels = true
	})
	add("7", func(v *Version) { v.Knock = true })
	add("8", func(v *Version) { v.Restricted = true; v.Redaction = RedactV8 })
	add("9", func(v *Version) { v.Redaction = RedactV9 })
	add("10", func(v *Version) { v.KnockRestricted = true; v.IntegerPowerLevels = true })
	add("11", func(v *Version) {
		v.Redaction = RedactV11
		v.CreatorInContent = false
		v.RedactsInContent = true
		v.ByteKeyLimits = true
	})
	add("12", func(v *Version) { v.StateRes = StateResV21; v.RoomIDFromCreate = true })

	// MSC3757's unstable versions: 10 and 11 with owned state keys.
	for _, base := range []string{"10", "11"} {
		v := *versions[base]
		v.ID, v.Stable, v.OwnedStateKeys = "org.matrix.msc3757."+base, false, true
		versions[v.ID] = &v
		unstable = append(unstable, &v)
	}
}

// unstable lists the versions of unstable MSCs, in order.
var unstable []*Version

// Unstable lists the room versions of unstable proposals.
func Unstable() []*Version { return unstable }

// Default is the version of rooms created without one, unless the
// configuration (rooms.default_version) says otherwise: the spec (v1.16)
// asks servers to keep 11 for a while.
const Default = "11"

// Get returns the rules of a room version, or false when it is unknown.
func Get(id string) (*Version, bool) {
	v, ok := versions[id]
	return v, ok
}

// All lists the stable versions in ascending order.
func All() []*Version {
	out := make([]*Version, 0, len(versions))
	for i := 1; i <= len(versions)-len(unstable); i++ {
		out = append(out, versions[itoa(i)])
	}
	return out
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return string(rune('0'+i/10)) + string(rune('0'+i%10))
}
