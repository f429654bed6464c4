package pdu

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
)

// The fast path must produce exactly what the generic path produces.
func TestBuildFastMatchesGeneric(t *testing.T) {
	key, err := signing.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	empty, member := "", "@alice:example.org"
	protos := []Proto{
		{Type: "m.room.create", StateKey: &empty, Content: json.RawMessage(`{"room_version":"X","creator":"@alice:example.org"}`)},
		{Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"h\u00e9 <b>&amp; \"q\" \\ \n","n":[1,2,{"z":1,"a":null}]}`), PrevEvents: []string{"$" + strings.Repeat("A", 43)}, AuthEvents: []string{"$" + strings.Repeat("B", 43), "$" + strings.Repeat("C", 43)}},
		{Type: "m.room.member", StateKey: &member, Content: json.RawMessage(`{"membership":"join","displayname":"Alice \u2603","join_authorised_via_users_server":"@x:y"}`)},
		{Type: "m.room.power_levels", StateKey: &empty, Content: json.RawMessage(`{"users":{"@alice:example.org":100},"ban":50,"invite":0,"events":{"m.room.name":50}}`)},
		{Type: "m.room.join_rules", StateKey: &empty, Content: json.RawMessage(`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!r:x"}]}`)},
		{Type: "m.custom", Content: nil},
	}
	for _, v := range roomversion.All() {
		if v.EventFormat != roomversion.FormatV2 {
			continue
		}
		for i, p := range protos {
			p.Sender, p.Depth, p.OriginServerTS = "@alice:example.org", int64(i+1), 1700000000000+int64(i)
			if !(v.RoomIDFromCreate && p.Type == "m.room.create") {
				p.RoomID = "!room:example.org"
				if v.RoomIDFromCreate {
					p.RoomID = "!" + strings.Repeat("R", 43)
				}
			}
			fast, ok, err := buildFast(p, v, "example.org", key)
			if !ok || err != nil {
				t.Fatalf("v%s %s: fast path: ok=%v err=%v", v.ID, p.Type, ok, err)
			}
			slow, err := buildGeneric(p, v, "example.org", key)
			if err != nil {
				t.Fatalf("v%s %s: generic: %v", v.ID, p.Type, err)
			}
			if string(fast.JSON()) != string(slow.JSON()) {
				t.Fatalf("v%s %s:\nfast %s\nslow %s", v.ID, p.Type, fast.JSON(), slow.JSON())
			}
			slow.signed, slow.sigs = nil, nil // kept by Parse for verification only
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("v%s %s: events differ:\n%+v\n%+v", v.ID, p.Type, fast, slow)
			}
			if _, err := Parse(fast.JSON(), v); err != nil {
				t.Fatalf("v%s %s: fast output does not parse: %v", v.ID, p.Type, err)
			}
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	key, _ := signing.GenerateKeyPair()
	v, _ := roomversion.Get("12")
	h := func(c string) string { return strings.Repeat(c, 43) }
	p := Proto{RoomID: "!" + h("R"), Sender: "@alice:example.org", Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"hello"}`),
		PrevEvents: []string{"$" + h("P")}, AuthEvents: []string{"$" + h("A"), "$" + h("B"), "$" + h("C")}, Depth: 10, OriginServerTS: 1700000000000}
	for i := 0; i < b.N; i++ {
		if _, err := Build(p, v, "example.org", key); err != nil {
			b.Fatal(err)
		}
	}
}
