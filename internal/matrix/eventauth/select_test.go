package eventauth

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"luxchat/internal/matrix/pdu"
)

func TestSelectAuthEvents(t *testing.T) {
	create, pl, jr := createTuple, powerLevelsTuple, joinRulesTuple
	mem := memberTuple
	tpi := pdu.StateTuple{Type: typeThirdPartyInvite, StateKey: "tok"}
	cases := []struct {
		name    string
		version string
		f       Fields
		want    []pdu.StateTuple
	}{
		{"create has none", "9", Fields{Type: typeCreate, Sender: alice, StateKey: sk("")}, nil},
		{"a message", "9", Fields{Type: "m.room.message", Sender: carol}, []pdu.StateTuple{create, pl, mem(carol)}},
		{"a message in v12: never the create event", "12", Fields{Type: "m.room.message", Sender: carol}, []pdu.StateTuple{pl, mem(carol)}},
		{"a state event", "1", Fields{Type: "m.room.topic", Sender: bob, StateKey: sk("")}, []pdu.StateTuple{create, pl, mem(bob)}},
		{"a join", "9", Fields{Type: typeMember, Sender: dave, StateKey: sk(dave), Content: json.RawMessage(`{"membership":"join"}`)},
			[]pdu.StateTuple{create, pl, mem(dave), jr}},
		{"an invite", "9", Fields{Type: typeMember, Sender: bob, StateKey: sk(dave), Content: json.RawMessage(`{"membership":"invite"}`)},
			[]pdu.StateTuple{create, pl, mem(bob), mem(dave), jr}},
		{"a knock", "7", Fields{Type: typeMember, Sender: dave, StateKey: sk(dave), Content: json.RawMessage(`{"membership":"knock"}`)},
			[]pdu.StateTuple{create, pl, mem(dave), jr}},
		{"a kick: no join rules", "9", Fields{Type: typeMember, Sender: bob, StateKey: sk(carol), Content: json.RawMessage(`{"membership":"leave"}`)},
			[]pdu.StateTuple{create, pl, mem(bob), mem(carol)}},
		{"a ban", "12", Fields{Type: typeMember, Sender: bob, StateKey: sk(carol), Content: json.RawMessage(`{"membership":"ban"}`)},
			[]pdu.StateTuple{pl, mem(bob), mem(carol)}},
		{"a third-party invite", "9", Fields{Type: typeMember, Sender: bob, StateKey: sk(dave),
			Content: json.RawMessage(`{"membership":"invite","third_party_invite":{"signed":{"mxid":"@dave:d.test","token":"tok"}}}`)},
			[]pdu.StateTuple{create, pl, mem(bob), mem(dave), jr, tpi}},
		{"a third-party invite without a token", "9", Fields{Type: typeMember, Sender: bob, StateKey: sk(dave),
			Content: json.RawMessage(`{"membership":"invite","third_party_invite":{"signed":{}}}`)},
			[]pdu.StateTuple{create, pl, mem(bob), mem(dave), jr}},
		{"a restricted join", "8", Fields{Type: typeMember, Sender: dave, StateKey: sk(dave),
			Content: json.RawMessage(`{"membership":"join","join_authorised_via_users_server":"@bob:b.test"}`)},
			[]pdu.StateTuple{create, pl, mem(dave), jr, mem(bob)}},
		{"an authorising user before restricted rooms", "7", Fields{Type: typeMember, Sender: dave, StateKey: sk(dave),
			Content: json.RawMessage(`{"membership":"join","join_authorised_via_users_server":"@bob:b.test"}`)},
			[]pdu.StateTuple{create, pl, mem(dave), jr}},
		{"an authorising user on a leave", "9", Fields{Type: typeMember, Sender: dave, StateKey: sk(dave),
			Content: json.RawMessage(`{"membership":"leave","join_authorised_via_users_server":"@bob:b.test"}`)},
			[]pdu.StateTuple{create, pl, mem(dave)}},
		{"the authorising user is the joiner", "12", Fields{Type: typeMember, Sender: dave, StateKey: sk(dave),
			Content: json.RawMessage(`{"membership":"join","join_authorised_via_users_server":"@dave:d.test"}`)},
			[]pdu.StateTuple{pl, mem(dave), jr}},
	}
	for _, tc := range cases {
		tc.f.Version = version(t, tc.version)
		if got := SelectAuthEvents(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCheckAuthEventsShape(t *testing.T) {
	type setup func(ev *pdu.Event, r *room, byID map[string]*pdu.Event)
	cases := []struct {
		name    string
		version string
		edit    setup
		want    string
	}{
		{"the selected auth events", "9", nil, "ok"},
		{"the selected auth events (v12)", "12", nil, "ok"},
		{"a duplicate tuple", "9", func(ev *pdu.Event, r *room, byID map[string]*pdu.Event) {
			dup := *r.state[powerLevelsTuple]
			dup.ID = "$dup"
			byID[dup.ID] = &dup
			ev.AuthEvents = append(ev.AuthEvents, dup.ID)
		}, "2.1"},
		{"an unexpected tuple", "9", func(ev *pdu.Event, r *room, _ map[string]*pdu.Event) {
			ev.AuthEvents = append(ev.AuthEvents, r.state[joinRulesTuple].ID)
		}, "2.2"},
		{"the create event (v12)", "12", func(ev *pdu.Event, r *room, byID map[string]*pdu.Event) {
			byID[r.create.ID] = r.create
			ev.AuthEvents = append(ev.AuthEvents, r.create.ID)
		}, "3.2"},
		{"a message event", "9", func(ev *pdu.Event, r *room, byID map[string]*pdu.Event) {
			byID["$msg"] = &pdu.Event{ID: "$msg", RoomID: ev.RoomID, Type: "m.room.message"}
			ev.AuthEvents = append(ev.AuthEvents, "$msg")
		}, "2.2"},
		{"a rejected auth event", "9", func(ev *pdu.Event, r *room, byID map[string]*pdu.Event) {
			byID[r.state[powerLevelsTuple].ID] = nil
			pl := *r.state[powerLevelsTuple]
			pl.ID = "$rejected"
			byID[pl.ID] = &pl
			ev.AuthEvents = slices.DeleteFunc(ev.AuthEvents, func(id string) bool { return id == r.state[powerLevelsTuple].ID })
			ev.AuthEvents = append(ev.AuthEvents, pl.ID)
		}, "2.3"},
		{"no create event", "11", func(ev *pdu.Event, r *room, _ map[string]*pdu.Event) {
			ev.AuthEvents = slices.DeleteFunc(ev.AuthEvents, func(id string) bool { return id == r.create.ID })
		}, "2.4"},
		{"an auth event in another room", "9", func(ev *pdu.Event, r *room, byID map[string]*pdu.Event) {
			id := r.state[powerLevelsTuple].ID
			moved := *byID[id]
			moved.RoomID = "!other:a.test"
			byID[id] = &moved
		}, "2.5"},
		{"an auth event in another room (v12)", "12", func(ev *pdu.Event, r *room, byID map[string]*pdu.Event) {
			id := r.state[powerLevelsTuple].ID
			moved := *byID[id]
			moved.RoomID = "!other"
			byID[id] = &moved
		}, "3.4"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("v%s/%s", tc.version, tc.name), func(t *testing.T) {
			r := newRoom(t, version(t, tc.version), "").standard()
			ev := r.build(member(bob, carol, "ban"))
			byID := r.byID()
			if tc.edit != nil {
				tc.edit(ev, r, byID)
			}
			rejected := func(id string) bool { return id == "$rejected" }
			if got := ruleOf(t, CheckAuthEventsShape(ev, byID, rejected)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}

	r := newRoom(t, version(t, "9"), "").standard()
	ev := r.build(message(carol, "m.room.message"))
	if err := CheckAuthEventsShape(ev, map[string]*pdu.Event{}, nil); err == nil || ruleOfOrEmpty(err) != "" {
		t.Fatalf("missing auth events: got %v, want an error that is not a rejection", err)
	}
	if err := CheckAuthEventsShape(r.create, nil, nil); err != nil {
		t.Fatalf("create: %v", err)
	}
}

func ruleOfOrEmpty(err error) string {
	if na, ok := err.(*NotAllowed); ok {
		return na.Rule
	}
	return ""
}
