package eventauth

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"luxchat/internal/matrix/canonicaljson"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

// The cast of the test rooms. In the standard room alice created the room
// (level 100, infinite in v12), bob and erin are moderators (50), carol is
// a joined member (0) and dave is an outsider.
const (
	alice = "@alice:a.test"
	bob   = "@bob:b.test"
	carol = "@carol:c.test"
	dave  = "@dave:d.test"
	erin  = "@erin:b.test"
)

// spec describes an event for a test table; the room fills in the rest.
type spec struct {
	sender, typ string
	key         *string
	content     string
	levels      bool // content is merged into the standard power levels
	force       bool // as setup, skip the check that the event is allowed
	mod         func(e *pdu.Event, r *room)
}

func sk(s string) *string { return &s }

func member(sender, target, membership string) spec {
	return memberWith(sender, target, `{"membership":"`+membership+`"}`)
}

func memberWith(sender, target, content string) spec {
	return spec{sender: sender, typ: typeMember, key: sk(target), content: content}
}

func join(u string) spec { return member(u, u, "join") }

func state(sender, typ, key, content string) spec {
	return spec{sender: sender, typ: typ, key: sk(key), content: content}
}

func message(sender, typ string) spec { return spec{sender: sender, typ: typ, content: `{}`} }

func joinRules(rule string) spec {
	return state(alice, typeJoinRules, "", `{"join_rule":"`+rule+`"}`)
}

// levels is the standard power levels with override merged in (see
// mergeJSON).
func levels(sender, override string) spec {
	return spec{sender: sender, typ: typePowerLevels, key: sk(""), content: override, levels: true}
}

func forced(s spec) spec { s.force = true; return s }

func with(s spec, mod func(e *pdu.Event, r *room)) spec { s.mod = mod; return s }

// room builds events in one room of one version and keeps its state.
type room struct {
	t      testing.TB
	v      *roomversion.Version
	id     string
	create *pdu.Event
	state  StateMap
	last   string
	n      int
	opts   []Option
}

func version(t testing.TB, id string) *roomversion.Version {
	v, ok := roomversion.Get(id)
	if !ok {
		t.Fatalf("no room version %s", id)
	}
	return v
}

// newRoom creates a room with only its create event; createContent is
// merged into the default create content.
func newRoom(t testing.TB, v *roomversion.Version, createContent string, opts ...Option) *room {
	r := &room{t: t, v: v, state: StateMap{}, opts: opts}
	if !v.RoomIDFromCreate {
		r.id = "!room:a.test"
	}
	r.apply(spec{sender: alice, typ: typeCreate, key: sk(""), content: createContent})
	return r
}

// standard adds the standard room's state after the create event.
func (r *room) standard() *room {
	for _, s := range []spec{join(alice), levels(alice, `{}`), joinRules("public"), join(bob), join(carol), join(erin)} {
		r.apply(s)
	}
	return r
}

func (r *room) stdLevels() string {
	if r.v.RoomIDFromCreate {
		return `{"users":{"@bob:b.test":50,"@erin:b.test":50}}`
	}
	return `{"users":{"@alice:a.test":100,"@bob:b.test":50,"@erin:b.test":50}}`
}

func (r *room) build(s spec) *pdu.Event {
	r.n++
	e := &pdu.Event{
		Sender: s.sender, Type: s.typ, StateKey: s.key, Content: json.RawMessage(s.content),
		RoomID: r.id, Depth: int64(r.n), Version: r.v,
		ID: fmt.Sprintf("$e%d", r.n),
	}
	if r.v.EventIDs == roomversion.EventIDServer {
		e.ID += ":" + domain(s.sender)
	}
	if r.last != "" {
		e.PrevEvents = []string{r.last}
	}
	if s.levels {
		e.Content = json.RawMessage(mergeJSON(r.t, r.stdLevels(), s.content))
	}
	if s.typ == typeCreate {
		base := `{"room_version":"` + r.v.ID + `"}`
		if r.v.CreatorInContent {
			base = `{"room_version":"` + r.v.ID + `","creator":"` + alice + `"}`
		}
		e.Content = json.RawMessage(mergeJSON(r.t, base, s.content))
		e.PrevEvents = nil
		if r.v.RoomIDFromCreate {
			e.RoomID = ""
			if r.create == nil {
				e.ID = "$create" + r.v.ID
				r.id = "!" + e.ID[1:]
			}
		}
	}
	if s.mod != nil {
		s.mod(e, r)
	}
	for _, t := range SelectAuthEvents(FieldsOf(e)) {
		if a := r.state[t]; a != nil {
			e.AuthEvents = append(e.AuthEvents, a.ID)
		}
	}
	return e
}

// apply builds an event, requires it to be allowed (unless forced) and
// adds it to the room.
func (r *room) apply(s spec) *pdu.Event {
	r.t.Helper()
	e := r.build(s)
	if !s.force {
		if err := Check(e, r.state, r.opts...); err != nil {
			r.t.Fatalf("setup event %s %s by %s: %v", e.Type, e.Content, e.Sender, err)
		}
	}
	if e.Type == typeCreate && r.create == nil {
		r.create = e
	}
	if e.IsState() {
		r.state[e.Tuple()] = e
	}
	r.last = e.ID
	return e
}

// authEventsOf is the event's own auth events, as a server checking it on
// receipt would look them up; v12's create event comes from the room id.
func (r *room) authEventsOf(e *pdu.Event) StateMap {
	byID := r.byID()
	m := StateMap{}
	for _, id := range e.AuthEvents {
		m[byID[id].Tuple()] = byID[id]
	}
	if r.v.RoomIDFromCreate && r.state[createTuple] != nil {
		m[createTuple] = r.state[createTuple]
	}
	return m
}

func (r *room) byID() map[string]*pdu.Event {
	m := map[string]*pdu.Event{}
	for _, e := range r.state {
		m[e.ID] = e
	}
	return m
}

// mergeJSON merges override into base; nested objects merge, and the
// string "$delete" removes a key.
func mergeJSON(t testing.TB, base, override string) string {
	decode := func(s string) map[string]any {
		if s == "" {
			return map[string]any{}
		}
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatalf("bad test JSON %s: %v", s, err)
		}
		return m
	}
	var merge func(dst, src map[string]any)
	merge = func(dst, src map[string]any) {
		for k, v := range src {
			sub, isObj := v.(map[string]any)
			cur, curObj := dst[k].(map[string]any)
			switch {
			case v == "$delete":
				delete(dst, k)
			case isObj && curObj:
				merge(cur, sub)
			default:
				dst[k] = v
			}
		}
	}
	m := decode(base)
	merge(m, decode(override))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(buf.String())
}

// ruleOf is the rule an error names, "ok" for nil.
func ruleOf(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return "ok"
	}
	var na *NotAllowed
	if !errors.As(err, &na) || !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("error is not a rejection: %v", err)
	}
	return na.Rule
}

// expectations parses "ok" or "1-5:5.2.3 6-7:4.2.3 12:5.3.3" into the
// expected rule per room version; versions not listed are not tested.
func expectations(t testing.TB, want string) map[string]string {
	out := map[string]string{}
	for _, item := range strings.Fields(want) {
		versions, rule, ok := strings.Cut(item, ":")
		if !ok {
			versions, rule = "1-12", item
		}
		lo, hi, isRange := strings.Cut(versions, "-")
		if !isRange {
			hi = lo
		}
		from, err1 := strconv.Atoi(lo)
		to, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || from > to {
			t.Fatalf("bad expectation %q", item)
		}
		for i := from; i <= to; i++ {
			out[strconv.Itoa(i)] = rule
		}
	}
	return out
}

// Third-party invites are signed by an identity server key.
var (
	idKey    = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	otherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
)

func pubKey(k ed25519.PrivateKey, enc *base64.Encoding) string {
	return enc.EncodeToString(k.Public().(ed25519.PublicKey))
}

// thirdPartyInviteEvent is bob's m.room.third_party_invite for token.
func thirdPartyInviteEvent(sender, token string) spec {
	return state(sender, typeThirdPartyInvite, token,
		`{"display_name":"d...@d.test","key_validity_url":"https://id.test/v","public_key":"`+pubKey(idKey, base64.RawStdEncoding)+`"}`)
}

// signedBlock is the identity server's "signed" object for mxid and token.
func signedBlock(t testing.TB, key ed25519.PrivateKey, mxid, token string) string {
	body := fmt.Sprintf(`{"mxid":%q,"sender":%q,"token":%q}`, mxid, bob, token)
	msg, err := canonicaljson.Canonicalize([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, msg))
	return fmt.Sprintf(`{"mxid":%q,"sender":%q,"token":%q,"signatures":{"id.test":{"ed25519:0":%q}}}`, mxid, bob, token, sig)
}

func thirdPartyMember(sender, target, signed string) spec {
	return memberWith(sender, target, `{"membership":"invite","third_party_invite":{"display_name":"d...@d.test","signed":`+signed+`}}`)
}
