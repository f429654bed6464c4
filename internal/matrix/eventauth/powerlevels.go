package eventauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

// Level is a power level. Finite levels are clamped to
// [math.MinInt64, math.MaxInt64-1] (room versions 1–9 allow numbers beyond
// int64), which leaves math.MaxInt64 free for Infinite.
type Level int64

// Infinite is the level of room version 12's creators: above every finite
// level. It has no JSON form.
const Infinite Level = math.MaxInt64

const maxFinite Level = math.MaxInt64 - 1

var errInfinite = errors.New("eventauth: the infinite power level has no JSON form")

func (l Level) String() string {
	if l == Infinite {
		return "infinite"
	}
	return strconv.FormatInt(int64(l), 10)
}

// MarshalJSON fails for Infinite so that a creator's level can never leak
// into an event or a response.
func (l Level) MarshalJSON() ([]byte, error) {
	if l == Infinite {
		return nil, errInfinite
	}
	return strconv.AppendInt(nil, int64(l), 10), nil
}

// scalarKeys are the top-level levels, in the order the rules list them.
var scalarKeys = [...]string{"users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"}

// scalarDefaults apply when a key is absent, with or without an event.
var scalarDefaults = map[string]Level{
	"users_default": 0, "events_default": 0, "state_default": 50,
	"ban": 50, "redact": 50, "kick": 50, "invite": 0,
}

// defaultNotification applies to every absent notifications key; the spec
// names only "room", whose default is 50.
const defaultNotification Level = 50

// PowerLevels is the power levels model in force in a room. It is
// immutable and safe to share between goroutines.
type PowerLevels struct {
	// Only keys present (and valid) in the event; defaults are applied on
	// read, because the change rules compare presence, not effective levels.
	scalars                      map[string]Level
	events, notifications, users map[string]Level
	creators                     []string // room version 12: infinite power
}

// ParsePowerLevels parses the content of an m.room.power_levels event
// under the number rules of room version v: integers everywhere; before v10
// also integer strings (" +050 "), and before v6 floats, truncated. Any
// value that breaks them is an error, as is a "users" key that is not a
// user id. The result has no creators: see RoomPowerLevels.
func ParsePowerLevels(content json.RawMessage, v *roomversion.Version) (*PowerLevels, error) {
	p, probs := parsePowerLevels(content, v)
	if s := probs.first(); s != "" {
		return nil, fmt.Errorf("invalid power levels: %s", s)
	}
	return p, nil
}

// RoomPowerLevels returns the levels in force in a room whose state holds
// the create event and the power levels event pl (nil when the room has
// none: then the creator has 100 before v12). Invalid values, which only
// the first power levels event of a v1–9 room can carry, fall back to their
// defaults. Events should carry their Version; without it the version comes
// from create's content.
func RoomPowerLevels(create, pl *pdu.Event) *PowerLevels {
	return roomPowerLevels(versionOf(create, pl), create, pl)
}

func roomPowerLevels(v *roomversion.Version, create, pl *pdu.Event) *PowerLevels {
	var p *PowerLevels
	if pl != nil {
		p, _ = parsePowerLevels(pl.Content, v)
	} else {
		p = &PowerLevels{}
		if create != nil && !v.RoomIDFromCreate {
			if c := creators(v, create); len(c) > 0 {
				p.users = map[string]Level{c[0]: 100}
			}
		}
	}
	if create != nil && v.RoomIDFromCreate {
		p.creators = creators(v, create)
	}
	return p
}

// Creators lists a room's creators from its create event: the sender and
// the valid additional_creators from room version 12 (who have infinite
// power), the sender from v11, content.creator before that.
func Creators(create *pdu.Event) []string { return creators(versionOf(create, nil), create) }

func creators(v *roomversion.Version, create *pdu.Event) []string {
	obj := object(create.Content)
	switch {
	case v.CreatorInContent:
		if c := str(obj["creator"]); c != "" {
			return []string{c}
		}
		return nil
	case !v.RoomIDFromCreate:
		return []string{create.Sender}
	}
	out := []string{create.Sender}
	var extra []json.RawMessage
	_ = json.Unmarshal(obj["additional_creators"], &extra)
	for _, raw := range extra {
		if u := str(raw); validUserID(u) && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// versionOf picks the room version of the first event that has one, then
// the version named by a create event's content (absent means "1").
func versionOf(create, other *pdu.Event) *roomversion.Version {
	for _, e := range []*pdu.Event{create, other} {
		if e != nil && e.Version != nil {
			return e.Version
		}
	}
	id := "1"
	if create != nil {
		if s := str(object(create.Content)["room_version"]); s != "" {
			id = s
		}
	}
	if v, ok := roomversion.Get(id); ok {
		return v
	}
	v, _ := roomversion.Get("1")
	return v
}

// UserLevel is the user's level: infinite for a v12 creator, else their
// "users" entry, else users_default.
func (p *PowerLevels) UserLevel(userID string) Level {
	if p.IsCreator(userID) {
		return Infinite
	}
	if l, ok := p.users[userID]; ok {
		return l
	}
	return p.scalar("users_default")
}

// IsCreator reports whether the user is a creator with infinite power
// (room version 12 and later).
func (p *PowerLevels) IsCreator(userID string) bool { return slices.Contains(p.creators, userID) }

// EventLevel is the level required to send an event of the type: its
// "events" entry, else state_default or events_default.
func (p *PowerLevels) EventLevel(evType string, isState bool) Level {
	if l, ok := p.events[evType]; ok {
		return l
	}
	if isState {
		return p.scalar("state_default")
	}
	return p.scalar("events_default")
}

// Ban is the level required to ban.
func (p *PowerLevels) Ban() Level { return p.scalar("ban") }

// Kick is the level required to kick.
func (p *PowerLevels) Kick() Level { return p.scalar("kick") }

// Invite is the level required to invite.
func (p *PowerLevels) Invite() Level { return p.scalar("invite") }

// Redact is the level required to redact other users' events.
func (p *PowerLevels) Redact() Level { return p.scalar("redact") }

// Notification is the level required to trigger the notification key (such
// as "room" for @room); 50 when absent.
func (p *PowerLevels) Notification(key string) Level {
	if l, ok := p.notifications[key]; ok {
		return l
	}
	return defaultNotification
}

func (p *PowerLevels) scalar(key string) Level {
	if l, ok := p.scalars[key]; ok {
		return l
	}
	return scalarDefaults[key]
}

// plProblems holds the first invalid value found in each part of a power
// levels event, because the rules that reject them differ by part and by
// room version.
type plProblems struct{ scalar, events, notifications, users string }

func (p plProblems) first() string {
	for _, s := range []string{p.scalar, p.events, p.notifications, p.users} {
		if s != "" {
			return s
		}
	}
	return ""
}

// parsePowerLevels keeps every valid value and reports the invalid ones.
func parsePowerLevels(content json.RawMessage, v *roomversion.Version) (*PowerLevels, plProblems) {
	p := &PowerLevels{scalars: map[string]Level{}}
	var probs plProblems
	obj, ok := objectOK(content)
	if !ok {
		s := "content is not a JSON object"
		return p, plProblems{s, s, s, s}
	}
	for _, k := range scalarKeys {
		raw, present := obj[k]
		if !present {
			continue
		}
		if l, ok := parseLevel(raw, v); ok {
			p.scalars[k] = l
		} else if probs.scalar == "" {
			probs.scalar = fmt.Sprintf("%s is not an integer", k)
		}
	}
	p.events, probs.events = parseLevelMap(obj, "events", v, nil)
	p.notifications, probs.notifications = parseLevelMap(obj, "notifications", v, nil)
	p.users, probs.users = parseLevelMap(obj, "users", v, validUserID)
	return p, probs
}

// parseLevelMap reads an object of levels; an absent key is no problem.
func parseLevelMap(obj map[string]json.RawMessage, key string, v *roomversion.Version, validKey func(string) bool) (map[string]Level, string) {
	raw, present := obj[key]
	if !present {
		return nil, ""
	}
	m, ok := objectOK(raw)
	if !ok {
		return nil, key + " is not an object"
	}
	out := make(map[string]Level, len(m))
	problem := ""
	// Sorted so that the reported problem is the same on every run.
	for _, k := range slices.Sorted(maps.Keys(m)) {
		l, ok := parseLevel(m[k], v)
		switch {
		case validKey != nil && !validKey(k):
			if problem == "" {
				problem = fmt.Sprintf("%s key %q is not a valid user id", key, k)
			}
		case !ok:
			if problem == "" {
				problem = fmt.Sprintf("%s[%q] is not an integer", key, k)
			}
		default:
			out[k] = l
		}
	}
	return out, problem
}

// parseLevel reads one level under room version v's number rules.
func parseLevel(raw json.RawMessage, v *roomversion.Version) (Level, bool) {
	if raw = bytes.TrimSpace(raw); len(raw) == 0 {
		return 0, false
	}
	switch c := raw[0]; {
	case c == '"':
		if v.IntegerPowerLevels {
			return 0, false
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		return parseLevelString(s)
	case c == '-' || isDigit(c):
		return parseLevelNumber(string(raw), v)
	}
	return 0, false
}

// maxSafe is 2**53-1, the canonical JSON integer bound of v6 and later.
const maxSafe = 1<<53 - 1

func parseLevelNumber(tok string, v *roomversion.Version) (Level, bool) {
	if !strings.ContainsAny(tok, ".eE") {
		n, err := strconv.ParseInt(tok, 10, 64)
		if v.StrictCanonicalJSON && (err != nil || n > maxSafe || n < -maxSafe) {
			return 0, false
		}
		if err != nil { // out of int64 range: only reachable before v6
			if tok[0] == '-' {
				return math.MinInt64, true
			}
			return maxFinite, true
		}
		return clamp(n), true
	}
	// Floats exist only before v6: exponent applied, then truncated. Beyond
	// binary64's range (ParseFloat's ErrRange) the value is invalid.
	if v.StrictCanonicalJSON {
		return 0, false
	}
	f, err := strconv.ParseFloat(tok, 64)
	if err != nil {
		return 0, false
	}
	f = math.Trunc(f)
	switch {
	case f >= math.MaxInt64:
		return maxFinite, true
	case f <= math.MinInt64:
		return math.MinInt64, true
	}
	return clamp(int64(f)), true
}

// parseLevelString accepts the v1–9 string form: optional surrounding
// whitespace, one optional sign, base-10 digits (leading zeros allowed).
func parseLevelString(s string) (Level, bool) {
	s = strings.TrimSpace(s)
	digits := s
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		digits = s[1:]
	}
	if digits == "" || !allBytes(digits, isDigit) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil { // range: the digits are valid
		if s[0] == '-' {
			return math.MinInt64, true
		}
		return maxFinite, true
	}
	return clamp(n), true
}

func clamp(n int64) Level {
	if Level(n) > maxFinite {
		return maxFinite
	}
	return Level(n)
}
