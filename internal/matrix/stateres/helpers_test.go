package stateres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
)

// The cast: alice creates every room (level 100; infinite from v12), bob
// is a moderator (50), carol and erin are members, dave is an outsider.
const (
	alice = "@alice:a.test"
	bob   = "@bob:b.test"
	carol = "@carol:c.test"
	dave  = "@dave:d.test"
	erin  = "@erin:e.test"
)

var (
	plT    = pdu.StateTuple{Type: "m.room.power_levels"}
	jrT    = pdu.StateTuple{Type: "m.room.join_rules"}
	topicT = pdu.StateTuple{Type: "m.room.topic"}
	nameT  = pdu.StateTuple{Type: "m.room.name"}
)

func memberT(u string) pdu.StateTuple { return pdu.StateTuple{Type: "m.room.member", StateKey: u} }

// testRoom builds the events of one room, by name, either as plain
// unsigned structs with readable ids or, when signed, through pdu.Build
// (hashed, signed, ids as the room version derives them).
type testRoom struct {
	t       testing.TB
	v       *roomversion.Version
	signed  bool
	key     signing.KeyPair
	roomID  string
	events  map[string]*pdu.Event // by id
	ids     map[string]string     // name → id
	ts      int64
	fetches int // calls to fetch
}

// newRoom creates a room of version vid: alice's create and join, power
// levels making bob a moderator, public join rules, and joins of bob and
// carol. It returns the room and the branch at its end.
func newRoom(t testing.TB, vid string, signed bool) (*testRoom, *branch) {
	t.Helper()
	v, ok := roomversion.Get(vid)
	if !ok {
		t.Fatalf("no room version %s", vid)
	}
	key, err := signing.NewKeyPair("1", bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	r := &testRoom{t: t, v: v, signed: signed, key: key, events: map[string]*pdu.Event{}, ids: map[string]string{}, ts: 1000}
	if !v.RoomIDFromCreate {
		r.roomID = "!room:a.test"
	}
	b := &branch{r: r, state: StateSet{}}
	createContent := `{"room_version":"` + vid + `"}`
	if v.CreatorInContent {
		createContent = `{"room_version":"` + vid + `","creator":"` + alice + `"}`
	}
	b.send("create", alice, "m.room.create", "", createContent)
	b.send("joinA", alice, "m.room.member", alice, `{"membership":"join"}`)
	b.send("pl0", alice, "m.room.power_levels", "", r.levels(map[string]int{bob: 50}))
	b.send("jr0", alice, "m.room.join_rules", "", `{"join_rule":"public"}`)
	b.send("joinB", bob, "m.room.member", bob, `{"membership":"join"}`)
	b.send("joinC", carol, "m.room.member", carol, `{"membership":"join"}`)
	return r, b
}

// levels is power levels content giving users their levels; alice gets
// 100 except from v12, where the creator may not be listed.
func (r *testRoom) levels(users map[string]int) string {
	u := maps.Clone(users)
	if u == nil {
		u = map[string]int{}
	}
	if !r.v.RoomIDFromCreate {
		u[alice] = 100
	}
	b, err := json.Marshal(map[string]any{"users": u})
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// id is the event id of a named event.
func (r *testRoom) id(name string) string {
	r.t.Helper()
	id, ok := r.ids[name]
	if !ok {
		r.t.Fatalf("no event named %s", name)
	}
	return id
}

// name is the name of an event id, for messages.
func (r *testRoom) name(id string) string {
	for n, i := range r.ids {
		if i == id {
			return n
		}
	}
	return id
}

func (r *testRoom) fetch(ids []string) (map[string]*pdu.Event, error) {
	r.fetches++
	out := make(map[string]*pdu.Event, len(ids))
	for _, id := range ids {
		if ev, ok := r.events[id]; ok {
			out[id] = ev
		}
	}
	return out, nil
}

func (r *testRoom) resolve(sets ...StateSet) StateSet {
	r.t.Helper()
	got, err := Resolve(r.v, sets, r.fetch)
	if err != nil {
		r.t.Fatalf("resolve: %v", err)
	}
	return got
}

// expect checks the resolved tuples: want maps a tuple to an event name,
// "" for a tuple that must be absent.
func (r *testRoom) expect(got StateSet, want map[pdu.StateTuple]string) {
	r.t.Helper()
	for _, t := range sortedKeys(want) {
		name := want[t]
		id, ok := got[t]
		switch {
		case name == "" && ok:
			r.t.Errorf("%v: got %s, want none", t, r.name(id))
		case name != "" && !ok:
			r.t.Errorf("%v: got none, want %s", t, name)
		case name != "" && id != r.id(name):
			r.t.Errorf("%v: got %s, want %s", t, r.name(id), name)
		}
	}
}

// dump describes a state for failure messages.
func (r *testRoom) dump(s StateSet) string {
	var parts []string
	for _, t := range sortedKeys(s) {
		parts = append(parts, fmt.Sprintf("%s/%s=%s", t.Type, t.StateKey, r.name(s[t])))
	}
	return strings.Join(parts, " ")
}

// branch is one line of history: its state and its newest event.
type branch struct {
	r     *testRoom
	state StateSet
	head  string
	depth int64
}

func (b *branch) fork() *branch {
	c := *b
	c.state = maps.Clone(b.state)
	return &c
}

type sendOpt func(*sendOpts)

type sendOpts struct {
	ts       int64
	optional bool
}

// optional makes send return nil, adding nothing, when the event is not
// allowed on its branch.
func optional() sendOpt { return func(o *sendOpts) { o.optional = true } }

// at sets origin_server_ts.
func at(ts int64) sendOpt { return func(o *sendOpts) { o.ts = ts } }

// send builds a state event on the branch with the auth events that auth
// events selection picks from the branch's state, requires it to be
// allowed there, and applies it.
func (b *branch) send(name, sender, typ, stateKey, content string, opts ...sendOpt) *pdu.Event {
	r := b.r
	r.t.Helper()
	r.ts++
	o := sendOpts{ts: r.ts}
	for _, f := range opts {
		f(&o)
	}
	sk := stateKey
	fields := eventauth.Fields{Version: r.v, Type: typ, Sender: sender, StateKey: &sk, Content: json.RawMessage(content)}
	var auth []string
	for _, t := range eventauth.SelectAuthEvents(fields) {
		if id, ok := b.state[t]; ok {
			auth = append(auth, id)
		}
	}
	var prev []string
	if b.head != "" {
		prev = []string{b.head}
	}
	roomID := r.roomID
	if typ == "m.room.create" && r.v.RoomIDFromCreate {
		roomID = ""
	}
	var ev *pdu.Event
	if r.signed {
		p := pdu.Proto{
			RoomID: roomID, Sender: sender, Type: typ, StateKey: &sk, Content: json.RawMessage(content),
			PrevEvents: prev, AuthEvents: auth, Depth: b.depth + 1, OriginServerTS: o.ts,
		}
		if r.v.EventFormat == roomversion.FormatV1 {
			p.RefHashes = map[string]string{}
			for _, id := range append(slices.Clone(prev), auth...) {
				h := r.events[id].ReferenceHash()
				p.RefHashes[id] = signing.EncodeBase64(h[:])
			}
		}
		var err error
		if ev, err = pdu.Build(p, r.v, sender[strings.IndexByte(sender, ':')+1:], r.key); err != nil {
			r.t.Fatalf("build %s: %v", name, err)
		}
	} else {
		id := "$" + name
		if r.v.EventFormat == roomversion.FormatV1 {
			id += ":a.test"
		}
		ev = &pdu.Event{
			ID: id, RoomID: roomID, Sender: sender, Type: typ, StateKey: &sk, Content: json.RawMessage(content),
			PrevEvents: prev, AuthEvents: auth, Depth: b.depth + 1, OriginServerTS: o.ts, Version: r.v,
		}
	}
	if _, dup := r.ids[name]; dup {
		r.t.Fatalf("two events named %s", name)
	}
	if typ == "m.room.create" && r.v.RoomIDFromCreate {
		r.roomID = pdu.RoomIDForCreate(ev)
	}
	if err := eventauth.Check(ev, eventauth.AuthEventsFunc(func(t pdu.StateTuple) *pdu.Event {
		return r.events[b.state[t]]
	})); err != nil {
		if o.optional {
			return nil
		}
		r.t.Fatalf("event %s not allowed on its branch: %v", name, err)
	}
	r.ids[name] = ev.ID
	r.events[ev.ID] = ev
	b.state[ev.Tuple()] = ev.ID
	b.head = ev.ID
	b.depth++
	return ev
}

// with returns a copy of a state set with tuples set to named events.
func (r *testRoom) with(s StateSet, set map[pdu.StateTuple]string) StateSet {
	out := maps.Clone(s)
	for t, name := range set {
		out[t] = r.id(name)
	}
	return out
}

// forEachVersion runs f for each room version, on unsigned and on signed
// events.
func forEachVersion(t *testing.T, versions []string, f func(t *testing.T, vid string, signed bool)) {
	for _, vid := range versions {
		for _, signed := range []bool{false, true} {
			name := "v" + vid
			if signed {
				name += "/signed"
			}
			t.Run(name, func(t *testing.T) { f(t, vid, signed) })
		}
	}
}
