package eventauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

var errNoVersion = errors.New("eventauth: event has no room version")

// AuthEvents looks up the room state the rules consult: an event's own
// auth events, the state before it, or the room's current state. Get
// returns the event for a state tuple or nil. It is asked only for the
// tuples of SelectAuthEvents plus, from room version 12, the create event,
// which the lookup must supply even though it is never an auth event (the
// room id names it). Events must not be rejected ones, and must carry
// their room Version.
type AuthEvents interface {
	Get(t pdu.StateTuple) *pdu.Event
}

// AuthEventsFunc adapts a function to AuthEvents.
type AuthEventsFunc func(t pdu.StateTuple) *pdu.Event

// Get calls f.
func (f AuthEventsFunc) Get(t pdu.StateTuple) *pdu.Event { return f(t) }

// StateMap is an AuthEvents over a map.
type StateMap map[pdu.StateTuple]*pdu.Event

// Get returns m[t].
func (m StateMap) Get(t pdu.StateTuple) *pdu.Event { return m[t] }

// NewStateMap indexes state events by tuple; a later event replaces an
// earlier one with the same tuple, and nil or non-state events are skipped.
func NewStateMap(events ...*pdu.Event) StateMap {
	m := make(StateMap, len(events))
	for _, e := range events {
		if e != nil && e.IsState() {
			m[e.Tuple()] = e
		}
	}
	return m
}

// Option configures Check.
type Option func(*config)

type config struct {
	signedBy func(ev *pdu.Event, server string) bool
}

// WithSignatureCheck supplies the check, for rooms with restricted joins
// (v8+), that a member event carrying join_authorised_via_users_server is
// validly signed by that user's server. Without it such events are
// rejected, since the rule cannot be shown to hold.
func WithSignatureCheck(signedBy func(ev *pdu.Event, server string) bool) Option {
	return func(c *config) { c.signedBy = signedBy }
}

// Check applies the authorisation rules of ev's room version to ev against
// the state given by auth. It returns nil when the event is allowed, a
// *NotAllowed (which unwraps to ErrNotAllowed) naming the rule it breaks,
// or another error when the input is unusable (no room version, a lookup
// that returns an event for the wrong tuple).
//
// The auth_events list itself (duplicates, unexpected or rejected entries)
// is checked by CheckAuthEventsShape; Check covers the rest of those rules
// for every event it looks up: a create event must exist and every event
// must be in ev's room.
func Check(ev *pdu.Event, auth AuthEvents, opts ...Option) error {
	if ev.Version == nil {
		return errNoVersion
	}
	r := rulesFor(ev.Version)
	if ev.Type == typeCreate {
		return checkCreate(r, ev)
	}
	c := &checker{r: r, v: ev.Version, ev: ev, state: map[pdu.StateTuple]*pdu.Event{}}
	for _, o := range opts {
		o(&c.cfg)
	}
	if err := c.load(auth); err != nil {
		return err
	}
	return c.check()
}

// checkCreate is rule 1.
func checkCreate(r *rulebook, ev *pdu.Event) error {
	v := ev.Version
	if len(ev.PrevEvents) > 0 {
		return r.denyf(at(1, 1), "m.room.create has prev_events")
	}
	if v.RoomIDFromCreate {
		if ev.RoomID != "" {
			return r.denyf(at(1, 2), "m.room.create has a room_id")
		}
	} else if d := domain(ev.RoomID); d == "" || d != domain(ev.Sender) {
		return r.denyf(at(1, 2), "room id %q is not on the sender's server", ev.RoomID)
	}
	content := object(ev.Content)
	if raw, ok := content["room_version"]; ok {
		if id, ok := strOK(raw); !ok {
			return r.malformedf(at(1, 3), "room_version is not a string")
		} else if _, ok := roomversion.Get(id); !ok {
			return r.denyf(at(1, 3), "room version %q is not recognised", id)
		}
	}
	if v.RoomIDFromCreate {
		if raw, ok := content["additional_creators"]; ok {
			var list []json.RawMessage
			if json.Unmarshal(raw, &list) != nil || list == nil {
				return r.malformedf(at(1, 4), "additional_creators is not an array")
			}
			for _, item := range list {
				if u, ok := strOK(item); !ok || !validUserID(u) {
					return r.malformedf(at(1, 4), "additional_creators holds %s, not a user id", item)
				}
			}
		}
	}
	if v.CreatorInContent {
		if _, ok := content["creator"]; !ok {
			return r.denyf(at(1, 4), "m.room.create has no creator")
		}
	}
	return nil
}

// checker holds one Check: the event, the state it is checked against, and
// the power levels in force.
type checker struct {
	r       *rulebook
	v       *roomversion.Version
	ev      *pdu.Event
	cfg     config
	state   map[pdu.StateTuple]*pdu.Event
	create  *pdu.Event
	levels  *PowerLevels
	content map[string]json.RawMessage
}

// load fetches the state the rules need and applies the rules about it
// that apply to every event: v12's rule 2, and the create and room id
// parts of the auth events rule.
func (c *checker) load(auth AuthEvents) error {
	r, ev := c.r, c.ev
	tuples := SelectAuthEvents(FieldsOf(ev))
	if c.v.RoomIDFromCreate {
		tuples = append(tuples, createTuple)
	}
	for _, t := range tuples {
		e := auth.Get(t)
		if e == nil {
			continue
		}
		if !e.IsState() || e.Tuple() != t {
			return fmt.Errorf("eventauth: lookup of %v returned %s of type %q", t, e.ID, e.Type)
		}
		c.state[t] = e
	}
	c.create = c.state[createTuple]
	if c.v.RoomIDFromCreate {
		if c.create == nil || !strings.HasPrefix(c.create.ID, "$") || ev.RoomID != "!"+c.create.ID[1:] {
			return r.denyf(at(r.roomID), "room id %q does not name an accepted m.room.create", ev.RoomID)
		}
	} else if c.create == nil {
		return r.denyf(at(r.authEvents, 4), "no m.room.create")
	}
	for _, t := range tuples {
		e := c.state[t]
		if e == nil || c.v.RoomIDFromCreate && t == createTuple {
			continue
		}
		if e.RoomID != ev.RoomID {
			return r.denyf(at(r.authEvents, r.authRoomMismatch), "auth event %s is in room %q, not %q", e.ID, e.RoomID, ev.RoomID)
		}
	}
	c.levels = cachedPowerLevels(c.v, c.create, c.state[powerLevelsTuple])
	c.content = object(ev.Content)
	return nil
}

// check is rule 3 onwards (4 onwards in v12).
func (c *checker) check() error {
	r, ev := c.r, c.ev
	if federate, ok := object(c.create.Content)["m.federate"]; ok && string(federate) == "false" &&
		domain(ev.Sender) != domain(c.create.Sender) {
		return r.denyf(at(r.federate), "room does not federate and %s is on another server", ev.Sender)
	}
	if r.aliases != 0 && ev.Type == typeAliases {
		if ev.StateKey == nil {
			return r.denyf(at(r.aliases, 1), "m.room.aliases has no state_key")
		}
		if *ev.StateKey != domain(ev.Sender) {
			return r.denyf(at(r.aliases, 2), "state_key %q is not the sender's server", *ev.StateKey)
		}
		return nil
	}
	if ev.Type == typeMember {
		return c.member()
	}
	if m := c.membership(ev.Sender); m != "join" {
		return r.denyf(at(r.joined), "sender's membership is %q, not join", m)
	}
	sender := c.levels.UserLevel(ev.Sender)
	if ev.Type == typeThirdPartyInvite {
		if sender >= c.levels.Invite() {
			return nil
		}
		return r.denyf(at(r.thirdPartyInvite, 1), "sender's level %s is below the invite level %s", sender, c.levels.Invite())
	}
	if need := c.levels.EventLevel(ev.Type, ev.IsState()); need > sender {
		return r.denyf(at(r.required), "%s needs level %s, sender has %s", ev.Type, need, sender)
	}
	if c.v.OwnedStateKeys && ev.StateKey != nil {
		if err := c.ownedStateKey(sender); err != nil {
			return err
		}
	} else if ev.StateKey != nil && strings.HasPrefix(*ev.StateKey, "@") && *ev.StateKey != ev.Sender {
		return r.denyf(at(r.stateKey), "state_key %q belongs to another user", *ev.StateKey)
	}
	if ev.Type == typePowerLevels {
		return c.powerLevels(sender)
	}
	if r.redaction != 0 && ev.Type == typeRedaction {
		if sender >= c.levels.Redact() {
			return nil
		}
		if d := domain(ev.Redacts); d != "" && d == domain(ev.ID) {
			return nil
		}
		return r.denyf(at(r.redaction, 3), "sender's level %s is below the redact level %s and %s is from another server",
			sender, c.levels.Redact(), ev.Redacts)
	}
	return nil
}

// membership is the user's current membership; no member event is "leave".
func (c *checker) membership(userID string) string {
	e := c.state[memberTuple(userID)]
	if e == nil {
		return "leave"
	}
	return str(object(e.Content)["membership"])
}

// joinRule is the current join rule. A room without m.room.join_rules is
// treated as invite-only: the rules do not say, and that is how the room
// behaves for every other purpose.
func (c *checker) joinRule() string {
	e := c.state[joinRulesTuple]
	if e == nil {
		return "invite"
	}
	return str(object(e.Content)["join_rule"])
}

// member is the m.room.member rule.
func (c *checker) member() error {
	r, ev := c.r, c.ev
	rawMembership, hasMembership := c.content["membership"]
	if ev.StateKey == nil || !hasMembership {
		return r.denyf(at(r.member, 1), "no state_key or no membership")
	}
	if r.via != 0 {
		if raw, ok := c.content[keyAuthorisedVia]; ok {
			via, _ := strOK(raw)
			if !validUserID(via) {
				return r.denyf(at(r.member, r.via, 1), "%s is %s, not a user id", keyAuthorisedVia, raw)
			}
			if c.cfg.signedBy == nil || !c.cfg.signedBy(ev, domain(via)) {
				return r.denyf(at(r.member, r.via, 1), "not signed by %s, the server of %s", domain(via), keyAuthorisedVia)
			}
		}
	}
	switch m := str(rawMembership); {
	case m == "join":
		return c.join()
	case m == "invite":
		return c.invite()
	case m == "leave":
		return c.leave()
	case m == "ban":
		return c.ban()
	case m == "knock" && c.v.Knock:
		return c.knock()
	default:
		return r.denyf(at(r.member, r.unknownMembership), "unknown membership %s", rawMembership)
	}
}

func (c *checker) join() error {
	r, ev, key := c.r, c.ev, *c.ev.StateKey
	rule := func(n ...int) []int { return append(at(r.member, r.join), n...) }
	creator := c.create.Sender
	if c.v.CreatorInContent {
		creator = str(object(c.create.Content)["creator"])
	}
	if len(ev.PrevEvents) == 1 && ev.PrevEvents[0] == c.create.ID && key == creator {
		return nil
	}
	if ev.Sender != key {
		return r.denyf(rule(2), "sender cannot join another user")
	}
	if c.membership(ev.Sender) == "ban" {
		return r.denyf(rule(3), "sender is banned")
	}
	current := c.membership(key)
	invitedOrJoined := current == "invite" || current == "join"
	switch jr := c.joinRule(); {
	case jr == "invite" || jr == "knock" && c.v.Knock:
		if invitedOrJoined {
			return nil
		}
		return r.denyf(rule(r.otherwise), "join rule is %s and the user is not invited", jr)
	case jr == "restricted" && c.v.Restricted || jr == "knock_restricted" && c.v.KnockRestricted:
		if invitedOrJoined {
			return nil
		}
		via, ok := strOK(c.content[keyAuthorisedVia])
		if !ok {
			return r.denyf(rule(r.restricted, 2), "join rule is %s and no %s", jr, keyAuthorisedVia)
		}
		if m := c.membership(via); m != "join" {
			return r.denyf(rule(r.restricted, 2), "authorising user %s is not joined (membership %q)", via, m)
		}
		if l := c.levels.UserLevel(via); l < c.levels.Invite() {
			return r.denyf(rule(r.restricted, 2), "authorising user %s has level %s, below the invite level %s", via, l, c.levels.Invite())
		}
		return nil
	case jr == "public":
		return nil
	default:
		return r.denyf(rule(r.otherwise), "join rule %q does not allow joining", jr)
	}
}

func (c *checker) invite() error {
	r, ev, key := c.r, c.ev, *c.ev.StateKey
	rule := func(n ...int) []int { return append(at(r.member, r.invite), n...) }
	if raw, ok := c.content["third_party_invite"]; ok {
		return c.thirdPartyInvite(raw)
	}
	if m := c.membership(ev.Sender); m != "join" {
		return r.denyf(rule(2), "sender's membership is %q, not join", m)
	}
	if m := c.membership(key); m == "join" || m == "ban" {
		return r.denyf(rule(3), "target's membership is %s", m)
	}
	if l := c.levels.UserLevel(ev.Sender); l < c.levels.Invite() {
		return r.denyf(rule(5), "sender's level %s is below the invite level %s", l, c.levels.Invite())
	}
	return nil
}

func (c *checker) thirdPartyInvite(raw json.RawMessage) error {
	r, ev, key := c.r, c.ev, *c.ev.StateKey
	rule := func(n ...int) []int { return append(at(r.member, r.invite, 1), n...) }
	if c.membership(key) == "ban" {
		return r.denyf(rule(1), "target is banned")
	}
	signedRaw, ok := object(raw)["signed"]
	if !ok {
		return r.denyf(rule(2), "third_party_invite has no signed")
	}
	signed, _ := objectOK(signedRaw)
	mxid, okMXID := strOK(signed["mxid"])
	token, okToken := strOK(signed["token"])
	if !okMXID || !okToken {
		return r.denyf(rule(3), "signed has no mxid or no token")
	}
	if mxid != key {
		return r.denyf(rule(4), "signed mxid %q is not the state_key", mxid)
	}
	tpi := c.state[pdu.StateTuple{Type: typeThirdPartyInvite, StateKey: token}]
	if tpi == nil {
		return r.denyf(rule(5), "no m.room.third_party_invite for the token")
	}
	if tpi.Sender != ev.Sender {
		return r.denyf(rule(6), "the third-party invite was sent by %s", tpi.Sender)
	}
	if thirdPartySigned(signed, tpi.Content, c.v) {
		return nil
	}
	return r.denyf(rule(8), "no signature in signed matches a public key of the third-party invite")
}

func (c *checker) leave() error {
	r, ev, key := c.r, c.ev, *c.ev.StateKey
	rule := func(n ...int) []int { return append(at(r.member, r.leave), n...) }
	senderMembership := c.membership(ev.Sender)
	if ev.Sender == key {
		switch senderMembership {
		case "invite", "join":
			return nil
		case "knock":
			if c.v.Knock {
				return nil
			}
		}
		return r.denyf(rule(1), "cannot leave from membership %q", senderMembership)
	}
	if senderMembership != "join" {
		return r.denyf(rule(2), "sender's membership is %q, not join", senderMembership)
	}
	sender, target := c.levels.UserLevel(ev.Sender), c.levels.UserLevel(key)
	if c.membership(key) == "ban" && sender < c.levels.Ban() {
		return r.denyf(rule(3), "sender's level %s is below the ban level %s, so cannot unban", sender, c.levels.Ban())
	}
	if sender >= c.levels.Kick() && target < sender {
		return nil
	}
	return r.denyf(rule(5), "sender's level %s must reach the kick level %s and exceed the target's %s", sender, c.levels.Kick(), target)
}

func (c *checker) ban() error {
	r, ev, key := c.r, c.ev, *c.ev.StateKey
	rule := func(n ...int) []int { return append(at(r.member, r.ban), n...) }
	if m := c.membership(ev.Sender); m != "join" {
		return r.denyf(rule(1), "sender's membership is %q, not join", m)
	}
	sender, target := c.levels.UserLevel(ev.Sender), c.levels.UserLevel(key)
	if sender >= c.levels.Ban() && target < sender {
		return nil
	}
	return r.denyf(rule(3), "sender's level %s must reach the ban level %s and exceed the target's %s", sender, c.levels.Ban(), target)
}

func (c *checker) knock() error {
	r, ev, key := c.r, c.ev, *c.ev.StateKey
	rule := func(n ...int) []int { return append(at(r.member, r.knock), n...) }
	if jr := c.joinRule(); jr != "knock" && !(jr == "knock_restricted" && c.v.KnockRestricted) {
		return r.denyf(rule(1), "join rule %q does not allow knocking", jr)
	}
	if ev.Sender != key {
		return r.denyf(rule(2), "sender cannot knock for another user")
	}
	switch m := c.membership(ev.Sender); m {
	case "ban", "invite", "join":
		return r.denyf(rule(4), "cannot knock from membership %s", m)
	}
	return nil
}

// powerLevels is the m.room.power_levels rule; sender is the sender's
// current level.
func (c *checker) powerLevels(sender Level) error {
	r := c.r
	rule := func(n ...int) []int { return append(at(r.powerLevels), n...) }
	next, probs := parsePowerLevels(c.ev.Content, c.v)
	if r.plScalars != 0 {
		if probs.scalar != "" {
			return r.malformedf(rule(r.plScalars), "%s", probs.scalar)
		}
		for _, p := range []string{probs.events, probs.notifications} {
			if p != "" {
				return r.malformedf(rule(r.plMaps), "%s", p)
			}
		}
	}
	if probs.users != "" {
		return r.malformedf(rule(r.plUsers), "%s", probs.users)
	}
	if r.plCreators != 0 {
		for _, u := range slices.Sorted(maps.Keys(next.users)) {
			if c.levels.IsCreator(u) {
				return r.malformedf(rule(r.plCreators), "users lists the creator %s", u)
			}
		}
	}
	prevEvent := c.state[powerLevelsTuple]
	if prevEvent == nil {
		return nil
	}
	// Before v10 only "users" is validated up front; the other values must
	// still be integers to be compared. Invalid current values (possible
	// only in a room's first power levels event) count as absent.
	if probs.scalar != "" {
		return r.denyf(rule(r.plChangedScalars), "%s", probs.scalar)
	}
	if probs.events != "" {
		return r.denyf(rule(r.plNewMaps), "%s", probs.events)
	}
	if c.v.NotificationsPowerLevels && probs.notifications != "" {
		return r.denyf(rule(r.plNewMaps), "%s", probs.notifications)
	}
	prev, _ := parsePowerLevels(prevEvent.Content, c.v)

	for _, k := range scalarKeys {
		old, hadOld := prev.scalars[k]
		now, hasNew := next.scalars[k]
		if hadOld == hasNew && old == now {
			continue
		}
		if hadOld && old > sender {
			return r.denyf(rule(r.plChangedScalars, 1), "cannot change %s from %s, above sender's level %s", k, old, sender)
		}
		if hasNew && now > sender {
			return r.denyf(rule(r.plChangedScalars, 2), "cannot set %s to %s, above sender's level %s", k, now, sender)
		}
	}

	type levelMap struct {
		name      string
		prev, new map[string]Level
	}
	levelMaps := []levelMap{{"events", prev.events, next.events}}
	if c.v.NotificationsPowerLevels {
		levelMaps = append(levelMaps, levelMap{"notifications", prev.notifications, next.notifications})
	}
	for _, m := range levelMaps {
		if k, old, ok := firstChange(m.prev, m.new, func(k string, old Level) bool { return old > sender }); ok {
			return r.denyf(rule(r.plOldMaps, 1), "cannot change %s[%q] from %s, above sender's level %s", m.name, k, old, sender)
		}
	}
	for _, m := range levelMaps {
		if k, now, ok := firstChange(m.new, m.prev, func(k string, now Level) bool { return now > sender }); ok {
			return r.denyf(rule(r.plNewMaps, 1), "cannot set %s[%q] to %s, above sender's level %s", m.name, k, now, sender)
		}
	}
	if k, old, ok := firstChange(prev.users, next.users, func(k string, old Level) bool { return k != c.ev.Sender && old >= sender }); ok {
		return r.denyf(rule(r.plOldUsers, 1), "cannot change the level of %s from %s, not below sender's level %s", k, old, sender)
	}
	if k, now, ok := firstChange(next.users, prev.users, func(k string, now Level) bool { return now > sender }); ok {
		return r.denyf(rule(r.plNewUsers, 1), "cannot set the level of %s to %s, above sender's level %s", k, now, sender)
	}
	return nil
}

// firstChange finds, in sorted key order, the first entry of from that is
// missing from or different in other and for which bad holds. Called with
// (previous, new) it visits entries changed or removed; with (new,
// previous), entries added or changed.
func firstChange(from, other map[string]Level, bad func(k string, l Level) bool) (string, Level, bool) {
	for _, k := range slices.Sorted(maps.Keys(from)) {
		l := from[k]
		if o, ok := other[k]; ok && o == l {
			continue
		}
		if bad(k, l) {
			return k, l, true
		}
	}
	return "", 0, false
}

// ownedStateKey is the state key rule of MSC3757's room versions: a state
// key starting with "@" starts with its owner's user id (up to the first
// "_" after the first ":"), whom only the owner and users of a higher
// level may overwrite; the rest is limited to 256 bytes, and a state key
// without owner to 255.
func (c *checker) ownedStateKey(sender Level) error {
	r, ev := c.r, c.ev
	sk := *ev.StateKey
	if !strings.HasPrefix(sk, "@") {
		if len(sk) > 255 {
			return r.malformedf(at(r.stateKey, 2), "state_key longer than 255 bytes")
		}
		return nil
	}
	owner := sk
	if i := strings.IndexByte(sk, ':'); i >= 0 {
		if j := strings.IndexByte(sk[i:], '_'); j >= 0 {
			owner = sk[:i+j]
		}
	}
	if !validUserID(owner) {
		return r.malformedf(at(r.stateKey, 1, 1), "state_key %q does not start with a user id", sk)
	}
	if len(sk)-len(owner) > 256 {
		return r.malformedf(at(r.stateKey, 1, 2), "state_key suffix longer than 256 bytes")
	}
	if owner != ev.Sender && sender <= c.levels.UserLevel(owner) {
		return r.denyf(at(r.stateKey, 1, 3), "state_key %q belongs to %s", sk, owner)
	}
	return nil
}
