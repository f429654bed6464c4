package id

import (
	"strings"
	"unicode/utf8"
)

// Sigils of the common identifier format.
const (
	SigilUser      = '@'
	SigilRoom      = '!'
	SigilEvent     = '$'
	SigilRoomAlias = '#'
)

// UserID is a user id as accepted from anywhere: its localpart may use the
// historical character set (any code point but ':' and NUL, even empty).
type UserID string

// ParseUserID parses "@localpart:server". It accepts historical localparts,
// as servers must for remote users; use NewUserID for new local accounts.
func ParseUserID(s string) (UserID, error) {
	if _, _, err := split(s, SigilUser, true); err != nil {
		return "", err
	}
	return UserID(s), nil
}

// NewUserID builds the id of a new local account: the localpart must match
// the current grammar (ValidLocalpart).
func NewUserID(localpart string, server ServerName) (UserID, error) {
	if err := ValidLocalpart(localpart); err != nil {
		return "", err
	}
	return ParseUserID("@" + localpart + ":" + string(server))
}

// ValidLocalpart checks a localpart for a new registration: non-empty and
// only a-z, 0-9, '.', '_', '=', '-', '/' and '+'. The whole user id must
// also fit MaxLength, which NewUserID checks.
func ValidLocalpart(s string) error {
	if s == "" {
		return invalid("empty localpart")
	}
	if len(s) > MaxLength {
		return invalid("localpart longer than %d bytes", MaxLength)
	}
	for i := 0; i < len(s); i++ {
		if !isUserIDChar(s[i]) {
			return invalid("localpart %q: character %q not allowed", s, s[i])
		}
	}
	return nil
}

func isUserIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '=' || c == '-' || c == '/' || c == '+'
}

// Localpart returns the part between the sigil and the first ':'.
func (u UserID) Localpart() string { l, _ := splitUnchecked(string(u)); return l }

// Server returns the server name after the first ':'.
func (u UserID) Server() ServerName { _, s := splitUnchecked(string(u)); return ServerName(s) }

func (u UserID) String() string { return string(u) }

// IsCompliant reports whether the localpart is non-empty and within
// U+0021–U+007E; non-compliant ids should not be forwarded to clients
// outside the context of an event.
func (u UserID) IsCompliant() bool {
	l := u.Localpart()
	if l == "" {
		return false
	}
	for i := 0; i < len(l); i++ {
		if l[i] < 0x21 || l[i] > 0x7e {
			return false
		}
	}
	return true
}

// IsStrict reports whether the localpart matches the current grammar.
func (u UserID) IsStrict() bool { return ValidLocalpart(u.Localpart()) == nil }

// RoomID is "!opaque:server" (room versions 1–11) or "!opaque" without a
// server (room version 12 on, where opaque is the create event's hash).
type RoomID string

// ParseRoomID accepts both forms; which one a room version needs is checked
// by the event format.
func ParseRoomID(s string) (RoomID, error) {
	if err := checkSigilAndLength(s, SigilRoom); err != nil {
		return "", err
	}
	if strings.IndexByte(s, ':') < 0 {
		if err := checkOpaque(s[1:], false); err != nil {
			return "", err
		}
		return RoomID(s), nil
	}
	if _, _, err := split(s, SigilRoom, false); err != nil {
		return "", err
	}
	return RoomID(s), nil
}

// RoomIDFromCreateEvent returns the room id of a room version 12+ room: its
// create event's id with '!' instead of '$'.
func RoomIDFromCreateEvent(createID EventID) RoomID {
	if len(createID) == 0 {
		return ""
	}
	return RoomID("!" + string(createID[1:]))
}

// HasServer reports whether the id has a domain (room versions 1–11).
func (r RoomID) HasServer() bool { return strings.IndexByte(string(r), ':') >= 0 }

// Opaque returns the part between the sigil and the domain, or the whole
// hash when there is no domain.
func (r RoomID) Opaque() string { l, _ := splitUnchecked(string(r)); return l }

// Server returns the domain, or "" for domain-less ids.
func (r RoomID) Server() ServerName { _, s := splitUnchecked(string(r)); return ServerName(s) }

func (r RoomID) String() string { return string(r) }

// RoomAlias is "#localpart:server".
type RoomAlias string

// ParseRoomAlias parses "#localpart:server"; the localpart may hold any
// code point but ':' and NUL, and must not be empty.
func ParseRoomAlias(s string) (RoomAlias, error) {
	if _, _, err := split(s, SigilRoomAlias, false); err != nil {
		return "", err
	}
	return RoomAlias(s), nil
}

// Localpart returns the alias name without sigil and server.
func (a RoomAlias) Localpart() string { l, _ := splitUnchecked(string(a)); return l }

// Server returns the server that owns the alias.
func (a RoomAlias) Server() ServerName { _, s := splitUnchecked(string(a)); return ServerName(s) }

func (a RoomAlias) String() string { return string(a) }

// EventID is "$opaque:server" (room versions 1 and 2) or "$hash" (3 on).
type EventID string

// ParseEventID accepts both forms; the room version decides which one an
// event must use.
func ParseEventID(s string) (EventID, error) {
	if err := checkSigilAndLength(s, SigilEvent); err != nil {
		return "", err
	}
	if strings.IndexByte(s, ':') < 0 {
		if err := checkOpaque(s[1:], false); err != nil {
			return "", err
		}
		return EventID(s), nil
	}
	if _, _, err := split(s, SigilEvent, false); err != nil {
		return "", err
	}
	return EventID(s), nil
}

// HasServer reports whether the id has a domain (room versions 1 and 2).
func (e EventID) HasServer() bool { return strings.IndexByte(string(e), ':') >= 0 }

// Server returns the domain, or "" for hash ids.
func (e EventID) Server() ServerName { _, s := splitUnchecked(string(e)); return ServerName(s) }

func (e EventID) String() string { return string(e) }

func checkSigilAndLength(s string, sigil byte) error {
	if len(s) > MaxLength {
		return invalid("%.20q…: longer than %d bytes", s, MaxLength)
	}
	if len(s) == 0 || s[0] != sigil {
		return invalid("%q: must start with %q", s, sigil)
	}
	return nil
}

// split validates "&localpart:server" and returns its parts.
func split(s string, sigil byte, allowEmpty bool) (local string, server ServerName, err error) {
	if err := checkSigilAndLength(s, sigil); err != nil {
		return "", "", err
	}
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return "", "", invalid("%q: missing server name", s)
	}
	local = s[1:i]
	if err := checkOpaque(local, allowEmpty); err != nil {
		return "", "", err
	}
	if err := ValidServerName(s[i+1:]); err != nil {
		return "", "", err
	}
	return local, ServerName(s[i+1:]), nil
}

// checkOpaque enforces the lenient localpart rule shared by historical user
// ids, room ids, aliases and event ids: valid UTF-8 (hence no surrogates),
// no NUL. ':' is excluded by the caller's split.
func checkOpaque(s string, allowEmpty bool) error {
	if s == "" && !allowEmpty {
		return invalid("empty localpart")
	}
	if !utf8.ValidString(s) {
		return invalid("localpart is not valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return invalid("localpart contains NUL")
	}
	return nil
}

// splitUnchecked splits "&local:server" at the first ':'; without one, the
// whole remainder is the local part.
func splitUnchecked(s string) (local, server string) {
	if len(s) == 0 {
		return "", ""
	}
	rest := s[1:]
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		return rest[:i], rest[i+1:]
	}
	return rest, ""
}
