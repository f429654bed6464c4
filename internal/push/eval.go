package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Event is an event prepared for evaluation: its properties flattened once
// into canonically escaped dotted paths, then shared by every recipient.
// It is immutable.
type Event struct {
	props map[string]any // path → string, bool, nil, json.Number or []any
}

// NewEvent prepares an event (PDU or client format JSON).
func NewEvent(raw []byte) (*Event, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, err
	}
	if top == nil {
		return nil, errors.New("event is not an object")
	}
	ev := &Event{props: make(map[string]any, 16)}
	for k, rv := range top {
		switch k {
		case "signatures", "hashes", "auth_events", "prev_events", "unsigned":
			// Never useful to match, and the bulk of a PDU: not decoded.
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(rv))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		flatten(ev.props, escapeKey(k), v)
	}
	return ev, nil
}

// Fields are the top-level properties of an event that conditions may
// look at besides its content.
type Fields struct {
	EventID, RoomID, Sender, Type string
	StateKey                      *string // nil for message events
	OriginServerTS                int64
}

// NewEventFields prepares an event from its fields and raw content,
// decoding only the content (cheaper than NewEvent on a whole PDU).
func NewEventFields(f Fields, content json.RawMessage) (*Event, error) {
	ev := &Event{props: make(map[string]any, 16)}
	ev.props["event_id"] = f.EventID
	ev.props["room_id"] = f.RoomID
	ev.props["sender"] = f.Sender
	ev.props["type"] = f.Type
	ev.props["origin_server_ts"] = json.Number(strconv.FormatInt(f.OriginServerTS, 10))
	if f.StateKey != nil {
		ev.props["state_key"] = *f.StateKey
	}
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.UseNumber()
	var c any
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if _, ok := c.(map[string]any); !ok {
		return nil, errors.New("content is not an object")
	}
	flatten(ev.props, "content", c)
	return ev, nil
}

// relTypeKey and relEventKey are the paths of an event's relation.
var (
	relTypeKey  = canonicalKey(`content.m\.relates_to.rel_type`)
	relEventKey = canonicalKey(`content.m\.relates_to.event_id`)
)

// ThreadRoot returns the root of the thread the event is part of, ""
// when it is in none.
func (e *Event) ThreadRoot() string {
	if t, _ := e.props[relTypeKey].(string); t != "m.thread" {
		return ""
	}
	id, _ := e.props[relEventKey].(string)
	return id
}

// Get returns the value at a dotted path (as a condition key writes it).
func (e *Event) Get(key string) (any, bool) {
	v, ok := e.props[canonicalKey(key)]
	return v, ok
}

func flatten(dst map[string]any, path string, v any) {
	if obj, ok := v.(map[string]any); ok {
		for k, vv := range obj {
			flatten(dst, path+"."+escapeKey(k), vv)
		}
		return
	}
	dst[path] = v
}

// escapeKey escapes one property name for a dotted path.
func escapeKey(k string) string {
	if !strings.ContainsAny(k, `.\`) {
		return k
	}
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		if k[i] == '.' || k[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(k[i])
	}
	return b.String()
}

// canonicalKey rewrites a dotted path in the escaping escapeKey produces:
// "\." and "\\" are a literal dot and backslash, any other backslash is
// literal ("\x" is a backslash and an x), as the spec's appendix says.
func canonicalKey(key string) string {
	if !strings.Contains(key, `\`) {
		return key
	}
	var out []string
	var seg strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '\\' && i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\'):
			seg.WriteByte(key[i+1])
			i++
		case c == '.':
			out = append(out, escapeKey(seg.String()))
			seg.Reset()
		default:
			seg.WriteByte(c)
		}
	}
	out = append(out, escapeKey(seg.String()))
	return strings.Join(out, ".")
}

// Room is what conditions need to know about the room of an event.
type Room struct {
	MemberCount int
	// SenderLevel is the sender's power level (math.MaxInt64 for infinite).
	SenderLevel int64
	// NotificationLevel returns the level needed for a notification key
	// (power levels' "notifications"); nil means the default, 50.
	NotificationLevel func(key string) int64
}

type condKind uint8

const (
	condUnknown condKind = iota // never matches
	condEventMatch
	condPropertyIs
	condPropertyContains
	condDisplayName
	condMemberCount
	condSenderPermission
	condThreadSub // MSC4306: the event is in a thread the recipient is (value true) or is not subscribed to
	condExact     // room and sender rules: an exact string
)

type condition struct {
	kind  condKind
	key   string // canonical path
	glob  *glob
	value any
	op    string // member count comparison
	n     int64
	// owner: the pattern or value is the rule set's owner (a shared rule
	// set's placeholder), compared with the recipient's user id.
	owner bool
}

// Recipient is the user an event is evaluated for.
type Recipient struct {
	UserID string
	// DisplayName is the user's display name in the room, needed only
	// when the rule set UsesDisplayName.
	DisplayName string
	// ThreadSubscribed is whether the user is subscribed to the event's
	// thread (MSC4306), needed only when the rule set
	// UsesThreadSubscriptions and the event has a ThreadRoot.
	ThreadSubscribed bool
}

// personal reports whether the condition's outcome depends on who
// receives the event.
func (c *condition) personal() bool {
	return c.owner || c.kind == condDisplayName || c.kind == condThreadSub
}

// impossible reports whether a personal condition fails for every
// recipient of the event (a thread subscription outside threads).
func (c *condition) impossible(ev *Event) bool {
	return c.kind == condThreadSub && ev.ThreadRoot() == ""
}

func (c *condition) match(ev *Event, room *Room, who *Recipient) bool {
	switch c.kind {
	case condEventMatch:
		s, ok := ev.props[c.key].(string)
		if c.owner {
			return ok && strings.EqualFold(s, who.UserID)
		}
		return ok && c.glob.match(s)
	case condExact:
		s, ok := ev.props[c.key].(string)
		return ok && s == c.value
	case condPropertyIs:
		v, ok := ev.props[c.key]
		return ok && isScalar(v) && scalarEqual(v, c.valueFor(who))
	case condPropertyContains:
		arr, ok := ev.props[c.key].([]any)
		if !ok {
			return false
		}
		want := c.valueFor(who)
		for _, v := range arr {
			if isScalar(v) && scalarEqual(v, want) {
				return true
			}
		}
		return false
	case condDisplayName:
		body, ok := ev.props["content.body"].(string)
		if !ok || who.DisplayName == "" {
			return false
		}
		return displayNameGlob(who.DisplayName).match(body)
	case condMemberCount:
		n := int64(room.MemberCount)
		switch c.op {
		case "==":
			return n == c.n
		case "<":
			return n < c.n
		case ">":
			return n > c.n
		case "<=":
			return n <= c.n
		case ">=":
			return n >= c.n
		}
		return false
	case condThreadSub:
		return ev.ThreadRoot() != "" && who.ThreadSubscribed == c.value
	case condSenderPermission:
		need := int64(50)
		if room.NotificationLevel != nil {
			need = room.NotificationLevel(c.key)
		}
		return room.SenderLevel >= need
	}
	return false
}

// valueFor is the value a property condition compares with.
func (c *condition) valueFor(who *Recipient) any {
	if c.owner {
		return who.UserID
	}
	return c.value
}

// ThreadSubscriptionKind is MSC4306's condition under its unstable name.
const ThreadSubscriptionKind = "io.element.msc4306.thread_subscription"

// parseCondition reads a condition. Unknown kinds are no error (they never
// match); a known kind with missing or ill-typed parameters is.
func parseCondition(raw json.RawMessage) (condition, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return condition{}, errors.New("a condition is an object")
	}
	var kind string
	if err := json.Unmarshal(m["kind"], &kind); err != nil || kind == "" {
		return condition{}, errors.New("a condition needs a kind")
	}
	str := func(name string) (string, error) {
		var s string
		if err := json.Unmarshal(m[name], &s); err != nil || m[name] == nil {
			return "", errors.New(kind + " needs a string " + name)
		}
		return s, nil
	}
	switch kind {
	case "event_match":
		key, err := str("key")
		if err != nil {
			return condition{}, err
		}
		pattern, err := str("pattern")
		if err != nil {
			return condition{}, err
		}
		ck := canonicalKey(key)
		return condition{kind: condEventMatch, key: ck, glob: compileGlob(pattern, ck == "content.body")}, nil
	case "event_property_is", "event_property_contains":
		key, err := str("key")
		if err != nil {
			return condition{}, err
		}
		raw, ok := m["value"]
		if !ok {
			return condition{}, errors.New(kind + " needs a value")
		}
		v, err := scalar(raw)
		if err != nil {
			return condition{}, err
		}
		k := condPropertyIs
		if kind == "event_property_contains" {
			k = condPropertyContains
		}
		return condition{kind: k, key: canonicalKey(key), value: v}, nil
	case "contains_display_name":
		return condition{kind: condDisplayName}, nil
	case "room_member_count":
		is, err := str("is")
		if err != nil {
			return condition{}, err
		}
		op, n, err := parseMemberCount(is)
		if err != nil {
			return condition{}, err
		}
		return condition{kind: condMemberCount, op: op, n: n}, nil
	case "sender_notification_permission":
		key, err := str("key")
		if err != nil {
			return condition{}, err
		}
		return condition{kind: condSenderPermission, key: key}, nil
	case ThreadSubscriptionKind:
		var subscribed bool
		if raw, ok := m["subscribed"]; !ok || json.Unmarshal(raw, &subscribed) != nil {
			return condition{}, errors.New(kind + " needs a boolean subscribed")
		}
		return condition{kind: condThreadSub, value: subscribed}, nil
	}
	return condition{kind: condUnknown}, nil
}

func parseMemberCount(is string) (string, int64, error) {
	op := "=="
	for _, p := range []string{"==", "<=", ">=", "<", ">"} {
		if rest, ok := strings.CutPrefix(is, p); ok {
			op, is = p, rest
			break
		}
	}
	if is == "" || strings.TrimLeft(is, "0123456789") != "" {
		return "", 0, errors.New("room_member_count needs a decimal integer, optionally after ==, <, >, <= or >=")
	}
	n, err := strconv.ParseInt(is, 10, 64)
	if err != nil {
		return "", 0, errors.New("room_member_count is out of range")
	}
	return op, n, nil
}

// scalar decodes a non-compound canonical JSON value.
func scalar(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errors.New("invalid value")
	}
	if !isScalar(v) {
		return nil, errors.New("value must be a string, an integer, a boolean or null")
	}
	return v, nil
}

const maxSafeInt = 1<<53 - 1

func isScalar(v any) bool {
	switch x := v.(type) {
	case string, bool, nil:
		return true
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		return err == nil && n >= -maxSafeInt && n <= maxSafeInt
	}
	return false
}

// scalarEqual compares two scalars exactly, without casting types.
func scalarEqual(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		nx, err1 := strconv.ParseInt(string(x), 10, 64)
		ny, err2 := strconv.ParseInt(string(y), 10, 64)
		return err1 == nil && err2 == nil && nx == ny
	}
	return false
}

// glob is a compiled glob-style pattern, matched case-insensitively.
type glob struct {
	literal string // for patterns without wildcards, when !words
	re      *regexp.Regexp
}

func (g *glob) match(s string) bool {
	if g.re == nil {
		return strings.EqualFold(s, g.literal)
	}
	return g.re.MatchString(s)
}

// globs caches compiled patterns: the same few patterns recur in every
// user's rules.
var (
	globs     sync.Map // "w" or "f" + pattern → *glob
	globCount atomic.Int64
)

const maxCachedGlobs = 10000

// compileGlob compiles a pattern that must match a whole value, or with
// words any part of it that starts and ends at a word boundary (the
// content.body rule).
func compileGlob(pattern string, words bool) *glob {
	key := "f" + pattern
	if words {
		key = "w" + pattern
	}
	if g, ok := globs.Load(key); ok {
		return g.(*glob)
	}
	g := &glob{}
	if !words && !strings.ContainsAny(pattern, "*?") {
		g.literal = pattern
	} else {
		var b strings.Builder
		b.WriteString(`(?is)`)
		if words {
			// \W is exactly the spec's word boundary: not [A-Za-z0-9_].
			b.WriteString(`(?:^|\W)`)
		} else {
			b.WriteString(`^`)
		}
		for _, r := range pattern {
			switch r {
			case '*':
				b.WriteString(`.*`)
			case '?':
				b.WriteString(`.`)
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		if words {
			b.WriteString(`(?:\W|$)`)
		} else {
			b.WriteString(`$`)
		}
		g.re = regexp.MustCompile(b.String())
	}
	if globCount.Load() < maxCachedGlobs {
		if _, loaded := globs.LoadOrStore(key, g); !loaded {
			globCount.Add(1)
		}
	}
	return g
}

// displayNameGlob matches a display name as a word in a body.
func displayNameGlob(name string) *glob {
	return compileGlob(strings.NewReplacer("*", "", "?", "").Replace(name), true)
}

// Actions are the actions of the rule that matched an event.
type Actions struct {
	Notify    bool
	Highlight bool
	// Tweaks are the set_tweak actions by name (value or true).
	Tweaks map[string]json.RawMessage
	// JSON is the actions array.
	JSON json.RawMessage
}

func compileActions(actions []json.RawMessage) *Actions {
	a := &Actions{}
	clean := make([]json.RawMessage, 0, len(actions))
	for _, raw := range actions {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if s == "notify" {
				a.Notify = true
				clean = append(clean, raw)
			}
			continue
		}
		var obj struct {
			SetTweak string          `json:"set_tweak"`
			Value    json.RawMessage `json:"value"`
		}
		if json.Unmarshal(raw, &obj) != nil || obj.SetTweak == "" {
			continue
		}
		clean = append(clean, raw)
		v := obj.Value
		if v == nil {
			v = json.RawMessage("true")
		}
		if a.Tweaks == nil {
			a.Tweaks = map[string]json.RawMessage{}
		}
		a.Tweaks[obj.SetTweak] = v
		if obj.SetTweak == "highlight" {
			var b bool
			a.Highlight = json.Unmarshal(v, &b) == nil && b
		}
	}
	a.JSON, _ = json.Marshal(clean)
	return a
}

// Compiled is a rule set ready for evaluation. It is immutable and safe
// for concurrent use.
type Compiled struct {
	rules       []compiledRule
	displayName bool
	threadSubs  bool
}

type compiledRule struct {
	id       string
	conds    []condition
	actions  *Actions
	personal bool // a condition depends on the recipient
}

// Compile prepares a rule set; disabled rules are left out, and rules
// with invalid conditions get a condition that never matches.
func Compile(rs *Ruleset) *Compiled {
	c := &Compiled{}
	for _, kind := range Kinds {
		for _, r := range *rs.Kind(kind) {
			if !r.Enabled {
				continue
			}
			cr := compiledRule{id: r.RuleID, actions: compileActions(r.Actions)}
			switch kind {
			case "override", "underride":
				for _, raw := range r.Conditions {
					cond, err := parseCondition(raw)
					if err != nil {
						cond = condition{kind: condUnknown}
					}
					c.displayName = c.displayName || cond.kind == condDisplayName
					c.threadSubs = c.threadSubs || cond.kind == condThreadSub
					cond.owner = isOwner(cond)
					cr.personal = cr.personal || cond.personal()
					cr.conds = append(cr.conds, cond)
				}
			case "content":
				cr.conds = []condition{{kind: condEventMatch, key: "content.body", glob: compileGlob(r.Pattern, true)}}
			case "room":
				cr.conds = []condition{{kind: condExact, key: "room_id", value: r.RuleID}}
			case "sender":
				cr.conds = []condition{{kind: condExact, key: "sender", value: r.RuleID}}
			}
			c.rules = append(c.rules, cr)
		}
	}
	return c
}

// Evaluate returns the actions of the first rule that matches the event
// for who, and the rule's id; nil when no rule matches.
func (c *Compiled) Evaluate(ev *Event, room *Room, who Recipient) (*Actions, string) {
next:
	for i := range c.rules {
		r := &c.rules[i]
		for j := range r.conds {
			if !r.conds[j].match(ev, room, &who) {
				continue next
			}
		}
		return r.actions, r.id
	}
	return nil, ""
}

// Prepared is a rule set's verdict on one event for all its recipients:
// the conditions that do not depend on the recipient are checked once,
// so that each recipient costs only the few personal conditions (a
// mention, an invite) of the rules that come before the first rule that
// matches everyone.
type Prepared struct {
	c          *Compiled
	ev         *Event
	room       *Room
	first      int   // the first impersonal rule that matches; len(rules) if none
	candidates []int // personal rules before first whose other conditions match
}

// Prepare checks what does not depend on the recipient.
func (c *Compiled) Prepare(ev *Event, room *Room) *Prepared {
	p := &Prepared{c: c, ev: ev, room: room, first: len(c.rules)}
	var nobody Recipient
next:
	for i := range c.rules {
		r := &c.rules[i]
		for j := range r.conds {
			cond := &r.conds[j]
			if !cond.personal() && !cond.match(ev, room, &nobody) || cond.personal() && cond.impossible(ev) {
				continue next
			}
		}
		if !r.personal {
			p.first = i
			break
		}
		p.candidates = append(p.candidates, i)
	}
	return p
}

// Evaluate is Compiled.Evaluate for one recipient of the prepared event.
func (p *Prepared) Evaluate(who Recipient) (*Actions, string) {
next:
	for _, i := range p.candidates {
		r := &p.c.rules[i]
		for j := range r.conds {
			if r.conds[j].personal() && !r.conds[j].match(p.ev, p.room, &who) {
				continue next
			}
		}
		return r.actions, r.id
	}
	if p.first < len(p.c.rules) {
		r := &p.c.rules[p.first]
		return r.actions, r.id
	}
	return nil, ""
}

// Uniform returns the verdict when it is the same for every recipient
// (no rule that depends on the recipient could match before the first
// one that matches everyone): the actions, nil when no rule matches, and
// true; false when recipients must be evaluated one by one.
func (p *Prepared) Uniform() (*Actions, bool) {
	if len(p.candidates) > 0 {
		return nil, false
	}
	if p.first < len(p.c.rules) {
		return p.c.rules[p.first].actions, true
	}
	return nil, true
}

// Infinite is the SenderLevel of a room version 12 creator.
const Infinite = math.MaxInt64

// UsesDisplayName reports whether an enabled rule has a
// contains_display_name condition (so callers look the name up only then).
func (c *Compiled) UsesDisplayName() bool { return c.displayName }

// UsesThreadSubscriptions reports whether an enabled rule has a thread
// subscription condition (so callers look subscriptions up only then).
func (c *Compiled) UsesThreadSubscriptions() bool { return c.threadSubs }
