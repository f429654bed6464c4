package slidingsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/threadsubs"
)

// Bounds of a request: what one connection may ask the server to hold.
const (
	maxLists         = 100
	maxRanges        = 20
	maxNameLen       = 128 // list names, conn_id, txn_id
	maxTimelineLimit = 100
	maxStateEntries  = 100
	maxSubscriptions = 500 // kept per connection
	maxFilterItems   = 100
	maxTimeout       = 5 * time.Minute
	maxRangeIndex    = 1 << 30
)

// Request is a sliding sync call, decoded and checked.
type Request struct {
	UserID, DeviceID string
	ConnID           string
	TxnID            string
	Pos              string
	Timeout          time.Duration
	SetPresence      string
	Lists            map[string]ListConfig
	// Subscribe adds (or replaces) room subscriptions; Unsubscribe drops
	// them. Subscriptions stay with the connection until dropped.
	Subscribe   map[string]RoomConfig
	Unsubscribe []string
	Extensions  ExtensionsRequest
	// body is the JSON it was decoded from (DecodeRequest): a waiting
	// poll keeps it instead of the decoded lists (Poll.Compact).
	body []byte
}

// ListConfig is one list of a request.
type ListConfig struct {
	Ranges  [][2]int // inclusive; none: the whole list
	All     bool     // no range given: every room of the filtered list
	Room    RoomConfig
	Filters Filters
}

// RoomConfig is what to send of a room: its timeline's length and state.
// A room that several lists or a subscription match gets the superset:
// the longest timeline and the state that any of States asks for.
type RoomConfig struct {
	TimelineLimit int
	States        []RequiredState
}

// RequiredState says which state a room's response carries. A pair's
// Type or StateKey "*" matches any; the key "$ME" is the user, and
// Lazy (the key "$LAZY" of m.room.member) asks for the members the
// timeline needs.
type RequiredState struct {
	Include []StatePair
	Exclude []StatePair
	Lazy    bool
}

// StatePair is a (type, state key) pattern.
type StatePair struct{ Type, StateKey string }

const wildcard = "*"

// Filters are a list's room filters; nil fields do not filter.
type Filters struct {
	IsDM         *bool
	IsEncrypted  *bool
	IsInvite     *bool
	RoomTypes    []*string // nil entry: rooms without a type
	NotRoomTypes []*string
	HasRoomTypes bool // room_types was given (an empty list matches nothing)
	Spaces       []string
	Tags         []string
	NotTags      []string
}

// ExtensionsRequest holds the extensions a request names; nil is not
// named (the connection keeps what it had).
type ExtensionsRequest struct {
	ToDevice    *ToDeviceRequest
	E2EE        *Toggle
	AccountData *RoomsExtension
	Receipts    *RoomsExtension
	Typing      *RoomsExtension
	ThreadSubs  *ThreadSubsRequest
}

// ThreadSubsRequest is the thread subscriptions extension (MSC4308).
type ThreadSubsRequest struct {
	Enabled *bool
	Limit   int // 0: unchanged (the default, 100, at first)
}

// threadSubsExt is the extension's name while MSC4308 is unstable.
const threadSubsExt = "io.element.msc4308.thread_subscriptions"

// Toggle is an extension's enabled flag (nil: unchanged).
type Toggle struct{ Enabled *bool }

// ToDeviceRequest is the to_device extension (MSC3885).
type ToDeviceRequest struct {
	Enabled *bool
	Limit   int    // 0: the server's
	Since   string // the next_batch of the previous response
}

// RoomsExtension is an extension over some of the connection's rooms:
// those of the named lists and rooms ("*": every subscription); nil
// Lists or Rooms means all of them.
type RoomsExtension struct {
	Enabled *bool
	Lists   []string
	Rooms   []string
	HasList bool
	HasRoom bool
}

// wire forms of the request, both the form current clients send (ranges,
// required_state as pairs, is_invite, pos and timeout in the query) and
// the MSC's later text (range, required_state as an object, is_invited,
// pos and timeout in the body).
type wireRequest struct {
	ConnID            *string                    `json:"conn_id"`
	TxnID             *string                    `json:"txn_id"`
	Pos               *string                    `json:"pos"`
	Timeout           *int64                     `json:"timeout"`
	SetPresence       *string                    `json:"set_presence"`
	Lists             map[string]wireList        `json:"lists"`
	RoomSubscriptions map[string]wireRoomConfig  `json:"room_subscriptions"`
	UnsubscribeRooms  []string                   `json:"unsubscribe_rooms"`
	Extensions        map[string]json.RawMessage `json:"extensions"`
}

type wireList struct {
	Ranges        [][]int64       `json:"ranges"`
	Range         []int64         `json:"range"`
	TimelineLimit *int64          `json:"timeline_limit"`
	RequiredState json.RawMessage `json:"required_state"`
	Filters       *wireFilters    `json:"filters"`
}

type wireRoomConfig struct {
	TimelineLimit *int64          `json:"timeline_limit"`
	RequiredState json.RawMessage `json:"required_state"`
}

type wireFilters struct {
	IsDM         *bool      `json:"is_dm"`
	IsEncrypted  *bool      `json:"is_encrypted"`
	IsInvite     *bool      `json:"is_invite"`
	IsInvited    *bool      `json:"is_invited"`
	RoomTypes    *[]*string `json:"room_types"`
	NotRoomTypes []*string  `json:"not_room_types"`
	Spaces       []string   `json:"spaces"`
	Tags         []string   `json:"tags"`
	NotTags      []string   `json:"not_tags"`
}

type wireStateObject struct {
	Include     []wireStateElement `json:"include"`
	Exclude     []wireStateElement `json:"exclude"`
	LazyMembers bool               `json:"lazy_members"`
}

type wireStateElement struct {
	Type     *string `json:"type"`
	StateKey *string `json:"state_key"`
}

type wireExtension struct {
	Enabled *bool     `json:"enabled"`
	Limit   *int64    `json:"limit"`
	Since   *string   `json:"since"`
	Lists   *[]string `json:"lists"`
	Rooms   *[]string `json:"rooms"`
}

// DecodeRequest reads a request body with the query's pos and timeout
// (which win over the body's). Every fault is a Matrix error (M_BAD_JSON
// or M_INVALID_PARAM), never a panic.
func DecodeRequest(body []byte, queryPos, queryTimeout string) (Request, error) {
	var req Request
	var w wireRequest
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return req, errcode.BadJSON("request body must be a JSON object")
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return req, errcode.BadJSON("bad request body: %s", jsonFault(err))
	}
	if w.ConnID != nil {
		if len(*w.ConnID) > maxNameLen {
			return req, errcode.InvalidParam("conn_id is too long")
		}
		req.ConnID = *w.ConnID
	}
	if w.TxnID != nil {
		if len(*w.TxnID) > maxNameLen {
			return req, errcode.InvalidParam("txn_id is too long")
		}
		req.TxnID = *w.TxnID
	}
	if w.Pos != nil {
		req.Pos = *w.Pos
	}
	if queryPos != "" {
		req.Pos = queryPos
	}
	timeoutMS := int64(0)
	if w.Timeout != nil {
		timeoutMS = *w.Timeout
	}
	if queryTimeout != "" {
		n, err := strconv.ParseInt(queryTimeout, 10, 64)
		if err != nil {
			return req, errcode.InvalidParam("timeout must be an integer of milliseconds")
		}
		timeoutMS = n
	}
	req.Timeout = min(time.Duration(max(min(timeoutMS, int64(maxTimeout/time.Millisecond)), 0))*time.Millisecond, maxTimeout)
	if w.SetPresence != nil {
		switch *w.SetPresence {
		case "", "online", "offline", "unavailable":
			req.SetPresence = *w.SetPresence
		default:
			return req, errcode.InvalidParam("set_presence must be online, offline or unavailable")
		}
	}
	if len(w.Lists) > maxLists {
		return req, errcode.InvalidParam("at most %d lists", maxLists)
	}
	req.Lists = make(map[string]ListConfig, len(w.Lists))
	for name, wl := range w.Lists {
		if name == "" || len(name) > maxNameLen {
			return req, errcode.InvalidParam("list names must have 1 to %d bytes", maxNameLen)
		}
		l, err := decodeList(wl)
		if err != nil {
			return req, errcode.InvalidParam("list %q: %s", name, err)
		}
		req.Lists[name] = l
	}
	if len(w.RoomSubscriptions) > maxSubscriptions {
		return req, errcode.InvalidParam("at most %d room subscriptions", maxSubscriptions)
	}
	req.Subscribe = make(map[string]RoomConfig, len(w.RoomSubscriptions))
	for roomID, wc := range w.RoomSubscriptions {
		if !validRoomID(roomID) {
			return req, errcode.InvalidParam("room_subscriptions: %q is not a room id", roomID)
		}
		c, err := decodeRoomConfig(wc.TimelineLimit, wc.RequiredState)
		if err != nil {
			return req, errcode.InvalidParam("room subscription %s: %s", roomID, err)
		}
		req.Subscribe[roomID] = c
	}
	if len(w.UnsubscribeRooms) > maxSubscriptions {
		return req, errcode.InvalidParam("at most %d unsubscriptions", maxSubscriptions)
	}
	req.Unsubscribe = w.UnsubscribeRooms
	ext, err := decodeExtensions(w.Extensions)
	if err != nil {
		return req, err
	}
	req.Extensions = ext
	req.body = body
	return req, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// jsonFault names the field a type error is about, without echoing input.
func jsonFault(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("%s must be %s", te.Field, te.Type.String())
		}
		return "wrong type"
	}
	return "malformed JSON"
}

func validRoomID(id string) bool {
	return len(id) > 1 && len(id) <= 255 && id[0] == '!' && strings.IndexFunc(id, func(r rune) bool { return r < 0x20 }) < 0
}

func decodeList(wl wireList) (ListConfig, error) {
	var l ListConfig
	ranges := wl.Ranges
	if wl.Range != nil {
		ranges = append(ranges, wl.Range)
	}
	if len(ranges) > maxRanges {
		return l, fmt.Errorf("at most %d ranges", maxRanges)
	}
	l.All = wl.Ranges == nil && wl.Range == nil
	for _, r := range ranges {
		if len(r) != 2 || r[0] < 0 || r[1] < r[0] {
			return l, errors.New("a range is two indexes [first, last], 0 ≤ first ≤ last")
		}
		l.Ranges = append(l.Ranges, [2]int{int(min(r[0], maxRangeIndex)), int(min(r[1], maxRangeIndex))})
	}
	c, err := decodeRoomConfig(wl.TimelineLimit, wl.RequiredState)
	if err != nil {
		return l, err
	}
	l.Room = c
	if f := wl.Filters; f != nil {
		l.Filters.IsDM, l.Filters.IsEncrypted = f.IsDM, f.IsEncrypted
		l.Filters.IsInvite = f.IsInvite
		if f.IsInvited != nil {
			l.Filters.IsInvite = f.IsInvited
		}
		if f.RoomTypes != nil {
			l.Filters.HasRoomTypes, l.Filters.RoomTypes = true, *f.RoomTypes
		}
		l.Filters.NotRoomTypes = f.NotRoomTypes
		l.Filters.Spaces, l.Filters.Tags, l.Filters.NotTags = f.Spaces, f.Tags, f.NotTags
		for _, n := range []int{len(l.Filters.RoomTypes), len(f.NotRoomTypes), len(f.Spaces), len(f.Tags), len(f.NotTags)} {
			if n > maxFilterItems {
				return l, fmt.Errorf("at most %d items in a filter", maxFilterItems)
			}
		}
	}
	return l, nil
}

func decodeRoomConfig(limit *int64, rs json.RawMessage) (RoomConfig, error) {
	var c RoomConfig
	if limit != nil {
		if *limit < 0 {
			return c, errors.New("timeline_limit must not be negative")
		}
		c.TimelineLimit = int(min(*limit, maxTimelineLimit))
	}
	st, err := decodeRequiredState(rs)
	if err != nil {
		return c, err
	}
	c.States = []RequiredState{st}
	return c, nil
}

// decodeRequiredState accepts the list of [type, state_key] pairs and the
// object {include, exclude, lazy_members}.
func decodeRequiredState(raw json.RawMessage) (RequiredState, error) {
	var st RequiredState
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || isNull(raw) {
		return st, nil
	}
	if raw[0] == '[' {
		var pairs [][]string
		if err := json.Unmarshal(raw, &pairs); err != nil {
			return st, errors.New("required_state must be a list of [type, state_key] pairs")
		}
		if len(pairs) > maxStateEntries {
			return st, fmt.Errorf("at most %d required_state entries", maxStateEntries)
		}
		for _, p := range pairs {
			if len(p) != 2 {
				return st, errors.New("required_state entries are [type, state_key] pairs")
			}
			if p[0] == "m.room.member" && p[1] == "$LAZY" {
				st.Lazy = true
				continue
			}
			st.Include = append(st.Include, StatePair{p[0], p[1]})
		}
		return st, nil
	}
	var obj wireStateObject
	if err := json.Unmarshal(raw, &obj); err != nil {
		return st, errors.New("required_state must be a list of pairs or an object {include, exclude, lazy_members}")
	}
	if len(obj.Include)+len(obj.Exclude) > maxStateEntries {
		return st, fmt.Errorf("at most %d required_state entries", maxStateEntries)
	}
	conv := func(es []wireStateElement) []StatePair {
		out := make([]StatePair, 0, len(es))
		for _, e := range es {
			p := StatePair{wildcard, wildcard}
			if e.Type != nil {
				p.Type = *e.Type
			}
			if e.StateKey != nil {
				p.StateKey = *e.StateKey
			}
			out = append(out, p)
		}
		return out
	}
	st.Include, st.Exclude, st.Lazy = conv(obj.Include), conv(obj.Exclude), obj.LazyMembers
	return st, nil
}

func decodeExtensions(exts map[string]json.RawMessage) (ExtensionsRequest, error) {
	var out ExtensionsRequest
	get := func(name string) (*wireExtension, error) {
		raw, ok := exts[name]
		if !ok || isNull(raw) {
			return nil, nil
		}
		var w wireExtension
		if err := json.Unmarshal(raw, &w); err != nil {
			return nil, errcode.BadJSON("extensions.%s: %s", name, jsonFault(err))
		}
		return &w, nil
	}
	w, err := get("to_device")
	if err != nil {
		return out, err
	}
	if w != nil {
		td := &ToDeviceRequest{Enabled: w.Enabled}
		if w.Limit != nil {
			td.Limit = int(max(min(*w.Limit, 1000), 0))
		}
		if w.Since != nil {
			if _, err := strconv.ParseInt(*w.Since, 10, 64); err != nil && *w.Since != "" {
				return out, errcode.InvalidParam("extensions.to_device.since is not a token of this server")
			}
			td.Since = *w.Since
		}
		out.ToDevice = td
	}
	if w, err = get("e2ee"); err != nil {
		return out, err
	} else if w != nil {
		out.E2EE = &Toggle{Enabled: w.Enabled}
	}
	rooms := func(name string) (*RoomsExtension, error) {
		w, err := get(name)
		if err != nil || w == nil {
			return nil, err
		}
		e := &RoomsExtension{Enabled: w.Enabled}
		if w.Lists != nil {
			e.HasList, e.Lists = true, slices.Clone(*w.Lists)
		}
		if w.Rooms != nil {
			e.HasRoom, e.Rooms = true, slices.Clone(*w.Rooms)
		}
		if len(e.Lists) > maxLists || len(e.Rooms) > maxSubscriptions {
			return nil, errcode.InvalidParam("extensions.%s names too many lists or rooms", name)
		}
		return e, nil
	}
	if out.AccountData, err = rooms("account_data"); err != nil {
		return out, err
	}
	if out.Receipts, err = rooms("receipts"); err != nil {
		return out, err
	}
	if out.Typing, err = rooms("typing"); err != nil {
		return out, err
	}
	if w, err = get(threadSubsExt); err != nil {
		return out, err
	} else if w != nil {
		ts := &ThreadSubsRequest{Enabled: w.Enabled}
		if w.Limit != nil {
			if *w.Limit < 1 {
				return out, errcode.InvalidParam("extensions.%s.limit must be greater than zero", threadSubsExt)
			}
			ts.Limit = int(min(*w.Limit, threadsubs.MaxLimit))
		}
		out.ThreadSubs = ts
	}
	return out, nil
}

// key is the canonical text of a required state: two with the same key
// send the same state.
func (rs RequiredState) key() string {
	parts := make([]string, 0, len(rs.Include)+len(rs.Exclude)+1)
	for _, p := range rs.Include {
		parts = append(parts, "+"+p.Type+"\x00"+p.StateKey)
	}
	for _, p := range rs.Exclude {
		parts = append(parts, "-"+p.Type+"\x00"+p.StateKey)
	}
	sort.Strings(parts)
	parts = slices.Compact(parts)
	if rs.Lazy {
		parts = append(parts, "lazy")
	}
	return strings.Join(parts, "\x01")
}

// stateKey is a hash of the canonical text of a config's state: a room
// sent with one key and asked for with another is sent again in full.
// A hash, not the text: each room a connection sent keeps it.
func (c RoomConfig) stateKey() uint64 {
	keys := make([]string, 0, len(c.States))
	for _, st := range c.States {
		keys = append(keys, st.key())
	}
	sort.Strings(keys)
	return maphash.String(keySeed, strings.Join(slices.Compact(keys), "\x02"))
}

// merge combines two room configs into their superset (the MSC's
// "combining room configs").
func (c RoomConfig) merge(o RoomConfig) RoomConfig {
	return RoomConfig{TimelineLimit: max(c.TimelineLimit, o.TimelineLimit), States: append(slices.Clone(c.States), o.States...)}
}

// lazy reports whether the config lazy-loads members.
func (c RoomConfig) lazy() bool {
	for _, st := range c.States {
		if st.Lazy {
			return true
		}
	}
	return false
}
