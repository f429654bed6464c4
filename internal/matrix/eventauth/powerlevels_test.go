package eventauth

import (
	"encoding/json"
	"math"
	"testing"

	"luxchat/internal/matrix/pdu"
)

func TestParseLevel(t *testing.T) {
	// want per version group: v1–5, v6–9, v10+; "x" is invalid.
	cases := []struct {
		raw               string
		v1to5, v6to9, v10 string
	}{
		{`50`, "50", "50", "50"},
		{`-7`, "-7", "-7", "-7"},
		{`"50"`, "50", "50", "x"},
		{`"000100"`, "100", "100", "x"},
		{`" +100 "`, "100", "100", "x"},
		{`"-100"`, "-100", "-100", "x"},
		{`"\t-0100\n"`, "-100", "-100", "x"},
		{`"+-1"`, "x", "x", "x"},
		{`"1.5"`, "x", "x", "x"},
		{`"1e2"`, "x", "x", "x"},
		{`""`, "x", "x", "x"},
		{`"ten"`, "x", "x", "x"},
		{`50.57`, "50", "x", "x"},
		{`-50.57`, "-50", "x", "x"},
		{`5.114698E4`, "51146", "x", "x"},
		{`1e400`, "x", "x", "x"},
		{`9007199254740991`, "9007199254740991", "9007199254740991", "9007199254740991"},
		{`9007199254740992`, "9007199254740992", "x", "x"},
		{`99999999999999999999`, "9223372036854775806", "x", "x"},
		{`"99999999999999999999"`, "9223372036854775806", "9223372036854775806", "x"},
		{`"-99999999999999999999"`, "-9223372036854775808", "-9223372036854775808", "x"},
		{`1e300`, "9223372036854775806", "x", "x"},
		{`true`, "x", "x", "x"},
		{`null`, "x", "x", "x"},
		{`{}`, "x", "x", "x"},
		{`[1]`, "x", "x", "x"},
	}
	for _, tc := range cases {
		for _, vw := range []struct{ id, want string }{{"1", tc.v1to5}, {"5", tc.v1to5}, {"6", tc.v6to9}, {"9", tc.v6to9}, {"10", tc.v10}, {"12", tc.v10}} {
			l, ok := parseLevel(json.RawMessage(tc.raw), version(t, vw.id))
			got := "x"
			if ok {
				got = l.String()
			}
			if got != vw.want {
				t.Errorf("v%s %s: got %s, want %s", vw.id, tc.raw, got, vw.want)
			}
		}
	}
}

func TestPowerLevelsDefaults(t *testing.T) {
	for _, v := range []string{"1", "11", "12"} {
		p, err := ParsePowerLevels(json.RawMessage(`{}`), version(t, v))
		if err != nil {
			t.Fatal(err)
		}
		checks := []struct {
			name      string
			got, want Level
		}{
			{"user", p.UserLevel(bob), 0},
			{"message", p.EventLevel("m.room.message", false), 0},
			{"state", p.EventLevel("m.room.topic", true), 50},
			{"ban", p.Ban(), 50}, {"kick", p.Kick(), 50}, {"redact", p.Redact(), 50}, {"invite", p.Invite(), 0},
			{"@room", p.Notification("room"), 50},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("v%s %s: got %s, want %s", v, c.name, c.got, c.want)
			}
		}
	}
}

func TestPowerLevelsLookups(t *testing.T) {
	p, err := ParsePowerLevels(json.RawMessage(`{
		"users":{"@bob:b.test":"75"},"users_default":"5","events":{"m.room.name":" 60 "},
		"events_default":1,"state_default":2,"ban":3,"kick":4,"redact":"6","invite":7,"notifications":{"room":8}}`), version(t, "9"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		got, want Level
	}{
		{p.UserLevel(bob), 75}, {p.UserLevel(carol), 5},
		{p.EventLevel("m.room.name", true), 60}, {p.EventLevel("m.room.name", false), 60},
		{p.EventLevel("x", false), 1}, {p.EventLevel("x", true), 2},
		{p.Ban(), 3}, {p.Kick(), 4}, {p.Redact(), 6}, {p.Invite(), 7},
		{p.Notification("room"), 8}, {p.Notification("other"), 50},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	if _, err := ParsePowerLevels(json.RawMessage(`{"users":{"@bob:b.test":"75"}}`), version(t, "10")); err == nil {
		t.Error("v10 accepted a string level")
	}
	if _, err := ParsePowerLevels(json.RawMessage(`{"users":{"bob":1}}`), version(t, "1")); err == nil {
		t.Error("accepted a key that is not a user id")
	}
	if _, err := ParsePowerLevels(json.RawMessage(`[]`), version(t, "1")); err == nil {
		t.Error("accepted content that is not an object")
	}
}

func TestRoomPowerLevels(t *testing.T) {
	create := func(v, content string) *pdu.Event {
		return &pdu.Event{ID: "$c", Type: typeCreate, StateKey: sk(""), Sender: alice, Version: version(t, v), Content: json.RawMessage(content)}
	}
	pl := func(v, content string) *pdu.Event {
		return &pdu.Event{ID: "$p", Type: typePowerLevels, StateKey: sk(""), Sender: alice, Version: version(t, v), Content: json.RawMessage(content)}
	}
	cases := []struct {
		name        string
		create, pl  *pdu.Event
		user        string
		want        Level
		wantCreator bool
	}{
		{"v1–10: no power levels, content.creator has 100", create("10", `{"creator":"@bob:b.test"}`), nil, bob, 100, false},
		{"v1–10: no power levels, the sender is not the creator", create("10", `{"creator":"@bob:b.test"}`), nil, alice, 0, false},
		{"v11: no power levels, the sender has 100", create("11", `{}`), nil, alice, 100, false},
		{"v11: power levels replace the creator's 100", create("11", `{}`), pl("11", `{}`), alice, 0, false},
		{"v12: no power levels, the sender is infinite", create("12", `{}`), nil, alice, Infinite, true},
		{"v12: the sender stays infinite", create("12", `{}`), pl("12", `{"users_default":10}`), alice, Infinite, true},
		{"v12: additional creators are infinite", create("12", `{"additional_creators":["@bob:b.test"]}`), pl("12", `{}`), bob, Infinite, true},
		{"v12: others have their level", create("12", `{"additional_creators":["@bob:b.test"]}`), pl("12", `{"users_default":10}`), carol, 10, false},
		{"v12: no power levels, others have 0", create("12", `{}`), nil, carol, 0, false},
		{"v1–9: an invalid first event falls back to defaults", create("9", `{"creator":"@alice:a.test"}`), pl("9", `{"users_default":"x","ban":[]}`), carol, 0, false},
	}
	for _, tc := range cases {
		p := RoomPowerLevels(tc.create, tc.pl)
		if got := p.UserLevel(tc.user); got != tc.want || p.IsCreator(tc.user) != tc.wantCreator {
			t.Errorf("%s: got %s (creator %v)", tc.name, got, p.IsCreator(tc.user))
		}
	}
	// Without versions on the events, the create content names the version.
	c := create("12", `{"room_version":"12"}`)
	c.Version = nil
	if got := RoomPowerLevels(c, nil).UserLevel(alice); got != Infinite {
		t.Errorf("unversioned v12 create: got %s", got)
	}
}

func TestInfiniteLevel(t *testing.T) {
	if !(Infinite > Level(math.MaxInt64-1)) || Infinite.String() != "infinite" {
		t.Fatal("Infinite must be above every finite level")
	}
	if _, err := json.Marshal(map[string]Level{"@alice:a.test": Infinite}); err == nil {
		t.Fatal("Infinite was serialised")
	}
	if b, err := json.Marshal(map[string]Level{"@bob:b.test": 50}); err != nil || string(b) != `{"@bob:b.test":50}` {
		t.Fatalf("got %s, %v", b, err)
	}
}

func TestCreators(t *testing.T) {
	ev := func(v, content string) *pdu.Event {
		return &pdu.Event{Type: typeCreate, StateKey: sk(""), Sender: alice, Version: version(t, v), Content: json.RawMessage(content)}
	}
	cases := []struct {
		ev   *pdu.Event
		want []string
	}{
		{ev("1", `{"creator":"@bob:b.test"}`), []string{bob}},
		{ev("1", `{}`), nil},
		{ev("11", `{"creator":"@bob:b.test"}`), []string{alice}},
		{ev("11", `{"additional_creators":["@bob:b.test"]}`), []string{alice}},
		{ev("12", `{"additional_creators":["@bob:b.test","@alice:a.test","@bob:b.test"]}`), []string{alice, bob}},
	}
	for i, tc := range cases {
		got := Creators(tc.ev)
		if len(got) != len(tc.want) {
			t.Errorf("%d: got %v, want %v", i, got, tc.want)
			continue
		}
		for j := range got {
			if got[j] != tc.want[j] {
				t.Errorf("%d: got %v, want %v", i, got, tc.want)
			}
		}
	}
}

func TestValidUserID(t *testing.T) {
	for id, want := range map[string]bool{
		"@alice:a.test": true, "@a:1.2.3.4:8448": true, "@a:[::1]": true, "@a:[1234:5678::abcd]:5678": true,
		"@:a.test": true, "@Ünïcode:a.test": true, // historical localparts
		"alice:a.test": false, "@alice": false, "@alice:": false, "@alice:a.test:": false, "@alice:a_b.test": false,
		"@a:[::1": false, "@a:[::1]x": false, "@a:a.test:123456": false, "@a\x00b:a.test": false,
		"@" + string(make([]byte, 250)) + ":a.test": false,
	} {
		if validUserID(id) != want {
			t.Errorf("%q: want %v", id, want)
		}
	}
}
