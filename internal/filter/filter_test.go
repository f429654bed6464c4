package filter

import "testing"

func TestAllows(t *testing.T) {
	f, err := Parse([]byte(`{"room":{"timeline":{"types":["m.room.*"],"not_senders":["@spam:x"],"limit":5},"rooms":["!a:x"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	tl := f.Room.Timeline
	for _, c := range []struct {
		typ, sender string
		want        bool
	}{
		{"m.room.message", "@a:x", true},
		{"m.reaction", "@a:x", false},
		{"m.room.message", "@spam:x", false},
	} {
		if got := tl.AllowsEvent(c.typ, c.sender, false); got != c.want {
			t.Errorf("%s from %s: %v", c.typ, c.sender, got)
		}
	}
	if tl.LimitOr(10) != 5 || !f.Room.AllowsRoom("!a:x") || f.Room.AllowsRoom("!b:x") {
		t.Fatal("limit or rooms wrong")
	}
	if _, err := Parse([]byte(`{"event_format":"xml"}`)); err == nil {
		t.Fatal("bad format accepted")
	}
	if _, err := Parse([]byte(`{"room":{"timeline":{"limit":-1}}}`)); err == nil {
		t.Fatal("negative limit accepted")
	}
}

func TestRelationFilter(t *testing.T) {
	only := &RoomEventFilter{RelTypes: []string{"m.thread"}}
	not := &RoomEventFilter{NotRelTypes: []string{"m.thread"}}
	for _, c := range []struct {
		f       *RoomEventFilter
		rel     string
		allowed bool
	}{
		{nil, "m.thread", true}, {only, "m.thread", true}, {only, "m.reference", false}, {only, "", false},
		{not, "m.thread", false}, {not, "m.reference", true}, {not, "", true},
	} {
		if got := c.f.AllowsRelation(c.rel); got != c.allowed {
			t.Errorf("%+v allows %q: %v", c.f, c.rel, got)
		}
	}
	if (&RoomEventFilter{}).FiltersRelations() || !only.FiltersRelations() || !not.FiltersRelations() {
		t.Error("FiltersRelations")
	}
}

func TestExcludes(t *testing.T) {
	zero := 0
	one := 1
	cases := []struct {
		f    *EventFilter
		want bool
	}{
		{nil, false},
		{&EventFilter{}, false},
		{&EventFilter{Limit: &one}, false},
		{&EventFilter{Limit: &zero}, true},
		{&EventFilter{Types: []string{}}, true},
		{&EventFilter{Types: []string{"m.*"}}, false},
		{&EventFilter{Types: []string{"m.room.*"}}, true},
		{&EventFilter{NotTypes: []string{"*"}}, true},
		{&EventFilter{NotTypes: []string{"m.typing"}}, false},
		{&EventFilter{Senders: []string{}}, true},
		{&EventFilter{Senders: []string{"@a:b"}}, false},
	}
	for i, c := range cases {
		if got := c.f.Excludes("m.presence"); got != c.want {
			t.Errorf("case %d (%+v): Excludes = %v, want %v", i, c.f, got, c.want)
		}
	}
}
