// Package filter models the Client-Server API's filters (the body of
// POST /user/{userId}/filter and the inline filter of /sync and
// /messages) and matches events against them.
//
// It imports only the standard library.
package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// Filter is a whole sync filter.
type Filter struct {
	EventFields []string     `json:"event_fields,omitempty"`
	EventFormat string       `json:"event_format,omitempty"`
	Presence    *EventFilter `json:"presence,omitempty"`
	AccountData *EventFilter `json:"account_data,omitempty"`
	Room        *RoomFilter  `json:"room,omitempty"`
}

// EventFilter filters non-room events.
type EventFilter struct {
	Limit      *int     `json:"limit,omitempty"`
	Types      []string `json:"types,omitempty"`
	NotTypes   []string `json:"not_types,omitempty"`
	Senders    []string `json:"senders,omitempty"`
	NotSenders []string `json:"not_senders,omitempty"`
}

// RoomFilter filters the rooms section of sync.
type RoomFilter struct {
	Rooms        []string         `json:"rooms,omitempty"`
	NotRooms     []string         `json:"not_rooms,omitempty"`
	IncludeLeave bool             `json:"include_leave,omitempty"`
	Ephemeral    *RoomEventFilter `json:"ephemeral,omitempty"`
	State        *RoomEventFilter `json:"state,omitempty"`
	Timeline     *RoomEventFilter `json:"timeline,omitempty"`
	AccountData  *RoomEventFilter `json:"account_data,omitempty"`
}

// RoomEventFilter filters room events.
type RoomEventFilter struct {
	EventFilter
	Rooms                   []string `json:"rooms,omitempty"`
	NotRooms                []string `json:"not_rooms,omitempty"`
	ContainsURL             *bool    `json:"contains_url,omitempty"`
	LazyLoadMembers         bool     `json:"lazy_load_members,omitempty"`
	IncludeRedundantMembers bool     `json:"include_redundant_members,omitempty"`
	UnreadThreadNotifs      bool     `json:"unread_thread_notifications,omitempty"`
	// RelTypes and NotRelTypes filter on the rel_type of an event's
	// m.relates_to (MSC3874, unstable names).
	RelTypes    []string `json:"org.matrix.msc3874.rel_types,omitempty"`
	NotRelTypes []string `json:"org.matrix.msc3874.not_rel_types,omitempty"`
}

// Parse decodes and validates a filter.
func Parse(data []byte) (*Filter, error) {
	var f Filter
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.EventFormat != "" && f.EventFormat != "client" && f.EventFormat != "federation" {
		return nil, errors.New("event_format must be client or federation")
	}
	for _, ef := range []*EventFilter{f.Presence, f.AccountData} {
		if err := ef.validate(); err != nil {
			return nil, err
		}
	}
	if f.Room != nil {
		if err := roomIDs(f.Room.Rooms, f.Room.NotRooms); err != nil {
			return nil, err
		}
		for _, rf := range []*RoomEventFilter{f.Room.Ephemeral, f.Room.State, f.Room.Timeline, f.Room.AccountData} {
			if rf != nil {
				if err := rf.EventFilter.validate(); err != nil {
					return nil, err
				}
				if err := roomIDs(rf.Rooms, rf.NotRooms); err != nil {
					return nil, err
				}
			}
		}
	}
	return &f, nil
}

func (f *EventFilter) validate() error {
	if f == nil {
		return nil
	}
	if f.Limit != nil && *f.Limit < 0 {
		return errors.New("limit must not be negative")
	}
	for _, l := range [][]string{f.Senders, f.NotSenders} {
		for _, u := range l {
			if len(u) < 4 || u[0] != '@' || !strings.Contains(u, ":") {
				return fmt.Errorf("%q is not a user id", u)
			}
		}
	}
	return nil
}

// roomIDs checks that lists of rooms hold room ids ("!" and an opaque
// part; older versions add ":server").
func roomIDs(lists ...[]string) error {
	for _, l := range lists {
		for _, r := range l {
			if len(r) < 2 || r[0] != '!' {
				return fmt.Errorf("%q is not a room id", r)
			}
		}
	}
	return nil
}

// LimitOr returns the filter's limit or def.
func (f *EventFilter) LimitOr(def int) int {
	if f == nil || f.Limit == nil {
		return def
	}
	return *f.Limit
}

// matchType applies the spec's "*" wildcards.
func matchType(patterns []string, t string) bool {
	for _, p := range patterns {
		if p == t {
			return true
		}
		if ok, _ := path.Match(p, t); ok {
			return true
		}
	}
	return false
}

// Allows reports whether an event of this type and sender passes.
func (f *EventFilter) Allows(typ, sender string) bool {
	if f == nil {
		return true
	}
	if f.Types != nil && !matchType(f.Types, typ) {
		return false
	}
	if matchType(f.NotTypes, typ) {
		return false
	}
	if f.Senders != nil && !slices.Contains(f.Senders, sender) {
		return false
	}
	return !slices.Contains(f.NotSenders, sender)
}

// Excludes reports whether no event of this type can pass (its type is
// filtered out, no sender is allowed, or the limit is 0), so that callers
// skip computing such events at all.
func (f *EventFilter) Excludes(typ string) bool {
	if f == nil {
		return false
	}
	if f.Limit != nil && *f.Limit == 0 {
		return true
	}
	if f.Types != nil && !matchType(f.Types, typ) {
		return true
	}
	if f.Senders != nil && len(f.Senders) == 0 {
		return true
	}
	return matchType(f.NotTypes, typ)
}

// AllowsRoom reports whether a room passes.
func (f *RoomEventFilter) AllowsRoom(roomID string) bool {
	if f == nil {
		return true
	}
	if f.Rooms != nil && !slices.Contains(f.Rooms, roomID) {
		return false
	}
	return !slices.Contains(f.NotRooms, roomID)
}

// AllowsEvent checks type, sender, and contains_url (hasURL: the content
// has a "url" key).
func (f *RoomEventFilter) AllowsEvent(typ, sender string, hasURL bool) bool {
	if f == nil {
		return true
	}
	if !f.EventFilter.Allows(typ, sender) {
		return false
	}
	if f.ContainsURL != nil && *f.ContainsURL != hasURL {
		return false
	}
	return true
}

// AllowsRoom reports whether the room filter lets a room through.
func (f *RoomFilter) AllowsRoom(roomID string) bool {
	if f == nil {
		return true
	}
	if f.Rooms != nil && !slices.Contains(f.Rooms, roomID) {
		return false
	}
	return !slices.Contains(f.NotRooms, roomID)
}

// FiltersRelations reports whether the filter looks at relation types (so
// that callers read them only then).
func (f *RoomEventFilter) FiltersRelations() bool {
	return f != nil && (f.RelTypes != nil || len(f.NotRelTypes) > 0)
}

// AllowsRelation checks the rel_type of an event's m.relates_to ("" for
// none): an event without one never passes rel_types.
func (f *RoomEventFilter) AllowsRelation(relType string) bool {
	if f == nil {
		return true
	}
	if f.RelTypes != nil && (relType == "" || !slices.Contains(f.RelTypes, relType)) {
		return false
	}
	return relType == "" || !slices.Contains(f.NotRelTypes, relType)
}
